#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ec2spot-agent bootstrap: run the instance agent the launch template names, and nothing else.

EC2 takes at most 16 KB of user data and the instance agent is more. So the launch template's user
data installs this program as /usr/local/sbin/ec2spot-agent, and the fleet role stores the agent in
S3 under its SHA-256 (the configuration's ``agent_source``: bucket, key, sha256, region). On every
call this program runs the agent kept at ``<state_dir>/agent/<sha256>.py`` with the same arguments;
when it is missing it fetches it first (IMDSv2 credentials, a SigV4-signed GetObject, retried for
``agent_fetch_seconds``) and keeps it only if its SHA-256 is the one the launch template names. A
program whose digest differs is never run: what runs is what the operator deployed.

Standard library only, Python 3.9+. Exit codes: the agent's, or 1 when the agent cannot be had.
"""

import datetime
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_CONFIG = "/etc/ec2spot-agent/config.json"
DEFAULT_STATE_DIR = "/var/lib/ec2spot-agent"
FETCH_SECONDS = 120
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,512}")
SHA256 = re.compile(r"[0-9a-f]{64}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")


class BootstrapError(Exception):
    pass


def say(message):
    sys.stderr.write(f"ec2spot-agent bootstrap: {message}\n")
    sys.stderr.flush()


# ---- BEGIN sigv4: the bootstrap (ec2spot_bootstrap.py) carries a verbatim copy (tools/build_agent.py) ----


def sign_v4(method, url, region, service, body, headers, credentials, moment):
    """Headers for a request signed with Signature Version 4
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). ``url`` carries no query."""
    parsed = urllib.parse.urlsplit(url)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = dict(headers, **{"host": parsed.netloc, "x-amz-date": amz_date})
    if service == "s3":  # S3 signs the payload's hash in a header of its own
        headers["x-amz-content-sha256"] = payload_hash
    if credentials.get("Token"):
        headers["x-amz-security-token"] = credentials["Token"]
    names = sorted(name.lower() for name in headers)
    lowered = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(parsed.path or "/", safe="/~"),
            "",
            "".join(f"{name}:{lowered[name]}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + credentials["SecretAccessKey"]).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials['AccessKeyId']}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


# ---- END sigv4 ---------------------------------------------------------------------------------------------


def config_path(argv):
    for index, argument in enumerate(argv):
        if argument == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith("--config="):
            return argument.split("=", 1)[1]
    return os.environ.get("EC2SPOT_AGENT_CONFIG", DEFAULT_CONFIG)


def agent_source(config):
    source = config.get("agent_source")
    if not isinstance(source, dict):
        raise BootstrapError(
            "the configuration has no agent_source (bucket, key, sha256): this program only runs the "
            "agent the launch template names"
        )
    bucket, key, digest = source.get("bucket"), source.get("key"), source.get("sha256")
    region = source.get("region") or config.get("region")
    for name, value, pattern in (("bucket", bucket, BUCKET), ("key", key, KEY), ("sha256", digest, SHA256)):
        if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
            raise BootstrapError(f"agent_source.{name} {value!r} is not valid")
    if region is not None and (not isinstance(region, str) or not REGION.fullmatch(region)):
        raise BootstrapError(f"agent_source.region {region!r} is not a region")
    return bucket, key, digest, region


def imds(endpoint, path, token=None):
    headers = {"X-aws-ec2-metadata-token": token} if token else {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    request = urllib.request.Request(endpoint.rstrip("/") + path, method="GET" if token else "PUT", headers=headers)
    with urllib.request.urlopen(request, timeout=2) as response:
        return response.read().decode("utf-8")


def credentials_and_region(config, region):
    endpoint = config.get("imds_endpoint") or "http://169.254.169.254"
    token = None
    if not region or not os.environ.get("AWS_ACCESS_KEY_ID"):
        token = imds(endpoint, "/latest/api/token")
    if not region:
        region = imds(endpoint, "/latest/meta-data/placement/region", token)
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return {
            "AccessKeyId": os.environ["AWS_ACCESS_KEY_ID"],
            "SecretAccessKey": os.environ["AWS_SECRET_ACCESS_KEY"],
            "Token": os.environ.get("AWS_SESSION_TOKEN"),
        }, region
    roles = imds(endpoint, "/latest/meta-data/iam/security-credentials/", token).split()
    if not roles:
        raise BootstrapError("the instance has no instance profile, so it cannot read the agent from S3")
    return json.loads(imds(endpoint, "/latest/meta-data/iam/security-credentials/" + roles[0], token)), region


def object_url(config, bucket, key, region):
    quoted = urllib.parse.quote(key, safe="/~")
    if config.get("aws_endpoint_url"):  # tests and the sandbox: path-style at the given endpoint
        return f"{config['aws_endpoint_url'].rstrip('/')}/{bucket}/{quoted}"
    if "." in bucket:  # a dotted name breaks the virtual host's TLS certificate
        return f"https://s3.{region}.amazonaws.com/{bucket}/{quoted}"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{quoted}"


def fetch(config, bucket, key, region):
    credentials, region = credentials_and_region(config, region)
    url = object_url(config, bucket, key, region)
    headers = sign_v4("GET", url, region, "s3", b"", {}, credentials, datetime.datetime.now(datetime.timezone.utc))
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as response:
        return response.read()


def install(path, program):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = f"{path}.tmp.{os.getpid()}"
    with open(temporary, "wb") as handle:
        handle.write(program)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o700)
    os.replace(temporary, path)


def digest_of(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def ensure_agent(config):
    """The path of the verified agent, fetched when missing or not the named one."""
    bucket, key, digest, region = agent_source(config)
    path = os.path.join(config.get("state_dir") or DEFAULT_STATE_DIR, "agent", digest + ".py")
    if digest_of(path) == digest:
        return path
    deadline = time.monotonic() + float(config.get("agent_fetch_seconds") or FETCH_SECONDS)
    delay, last = 1.0, None
    while True:
        try:
            program = fetch(config, bucket, key, region)
            found = hashlib.sha256(program).hexdigest()
            if found != digest:
                raise BootstrapError(
                    f"s3://{bucket}/{key} has SHA-256 {found}, not the {digest} the launch template "
                    f"names: refusing to run it (redeploy the fleet, or restore the object)"
                )
            install(path, program)
            return path
        except BootstrapError:
            raise
        except urllib.error.HTTPError as exc:
            last = f"S3 answered {exc.code} for s3://{bucket}/{key}: {exc.read()[:300]!r}"
            if exc.code in (400, 403, 404):  # no retry fixes a missing object or permission
                raise BootstrapError(last + " (does the instance profile allow s3:GetObject on it?)") from exc
        except (OSError, ValueError) as exc:
            last = f"s3://{bucket}/{key}: {exc}"
        if time.monotonic() + delay > deadline:
            raise BootstrapError(f"could not fetch the agent: {last}")
        say(f"{last}; retrying in {delay:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 8.0)


def main(argv):
    try:
        path = config_path(argv)
        try:
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            raise BootstrapError(f"cannot read configuration {path}: {exc}") from exc
        if not isinstance(config, dict):
            raise BootstrapError(f"configuration {path} is not a JSON object")
        agent = ensure_agent(config)
    except BootstrapError as exc:
        say(str(exc))
        return 1
    flags = (["-I"] if sys.flags.isolated else []) + (["-S"] if sys.flags.no_site else [])
    os.execv(sys.executable, [sys.executable, *flags, agent, *argv])
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
