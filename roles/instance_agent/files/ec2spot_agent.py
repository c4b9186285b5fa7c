#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ec2spot-agent: the instance side of ec2spot.autorecover.

Installed as /usr/local/sbin/ec2spot-agent by the instance_agent role (or by cloud-init from
the launch template's user data). Standard library only, Python 3.9+: it runs on the bare
image before anything else is installed.

Commands:
  mount        find the lineage's data volume by its volume id, prove it is the lineage's
               current data, check and mount it; format it only when it is blank AND tagged
               as a brand-new lineage volume (ec2spot:fresh=true)
  start-app    refuse unless the data is mounted; run the start commands; report the boot
               (with the time of each phase) to the control plane through EventBridge
  boot         mount, then start-app
  stop         deregister from target groups, drain, stop the application, sync, unmount;
               idempotent and serialised by a lock (the watcher, systemd's ExecStop and the
               control plane's SSM stop may all run it, in any order, at the same time)
  watch        poll IMDSv2 for a Spot interruption notice or a rebalance recommendation
  status       print what this boot did
  check-config validate the configuration

Exit codes: 0 done, 1 error, 2 refused for the data's safety, 3 timed out.

The instance needs no EC2 write permission: the control plane attaches the volume, moves
the address and clears ec2spot:fresh when the boot report arrives. Calls made here:
ec2:DescribeVolumes, events:PutEvents, elasticloadbalancing:DeregisterTargets and, only
with address_tags set (seed 002's pattern), ec2:DescribeAddresses and ec2:AssociateAddress.
"""

import argparse
import datetime
import fcntl
import hashlib
import hmac
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from xml.etree import ElementTree

LOG = logging.getLogger("ec2spot-agent")

DEFAULT_CONFIG = "/etc/ec2spot-agent/config.json"
LINEAGE_TAG = "ec2spot:lineage"
GENERATION_TAG = "ec2spot:generation"
FRESH_TAG = "ec2spot:fresh"
MARKER = ".ec2spot/lineage.json"        # kept on the data volume, beside the data
EVENT_SOURCE = "ec2spot.autorecover"
BOOT_REPORT = "EC2Spot Recovery Boot Report"
EC2_API_VERSION = "2016-11-15"
ELB_API_VERSION = "2015-12-01"
SUPPORTED_FILESYSTEMS = ("ext4", "xfs")
ZERO_CHECK_BYTES = 1024 * 1024          # a blank volume reads zeros; anything else is somebody's data

DEFAULTS = {
    "service": None, "lineage": None, "region": None,
    "mount_point": "/data", "filesystem": "ext4", "mount_options": "defaults,noatime", "fs_label": "ec2spot-data",
    "device_wait_seconds": 300,
    "app_start_commands": [], "app_stop_commands": [], "app_directory": None, "command_timeout_seconds": 90,
    "target_group_arns": [], "drain_seconds": 30, "poll_seconds": 5, "on_rebalance": "record",
    "unmount_on_stop": True, "stop_reserve_seconds": 30,
    "report_boot": True, "event_bus": "default", "address_tags": None,
    "imds_endpoint": "http://169.254.169.254", "aws_endpoint_url": None,
    "state_dir": "/var/lib/ec2spot-agent", "run_dir": "/run/ec2spot-agent",
    "by_id_dir": "/dev/disk/by-id", "dev_dir": "/dev", "allow_directory_devices": False,
}


class AgentError(Exception):
    exit_code = 1


class Refused(AgentError):
    """Going on could lose or mix up data: stop and tell the operator exactly why."""
    exit_code = 2


class TimedOut(AgentError):
    exit_code = 3


class TransientError(AgentError):
    """IMDS or an AWS endpoint failed in a way worth retrying."""


# ---- configuration ----------------------------------------------------------------------------

def load_config(path):
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read configuration {path}: {exc}") from exc
    return validate_config(raw)


def validate_config(raw):
    if not isinstance(raw, dict):
        raise AgentError("configuration must be a JSON object")
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise AgentError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    config = dict(DEFAULTS, **raw)
    for key in ("service", "lineage"):
        value = config[key]
        if not isinstance(value, str) or not value or len(value) > 63 or not (value[0].isalnum() and value.isascii()):
            raise AgentError(f"{key} must be 1-63 characters starting with a letter or digit")
    if not config["mount_point"].startswith("/") or os.path.normpath(config["mount_point"]) == "/":
        raise AgentError("mount_point must be an absolute path other than /")
    if config["filesystem"] not in SUPPORTED_FILESYSTEMS:
        raise AgentError(f"filesystem must be one of {', '.join(SUPPORTED_FILESYSTEMS)}")
    if config["on_rebalance"] not in ("record", "stop"):
        raise AgentError("on_rebalance must be 'record' or 'stop'")
    for key in ("app_start_commands", "app_stop_commands", "target_group_arns"):
        if not isinstance(config[key], list) or not all(isinstance(item, str) and item for item in config[key]):
            raise AgentError(f"{key} must be a list of non-empty strings")
    for key in ("device_wait_seconds", "command_timeout_seconds", "drain_seconds", "poll_seconds", "stop_reserve_seconds"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AgentError(f"{key} must be a number of seconds >= 0")
    if config["poll_seconds"] <= 0:
        raise AgentError("poll_seconds must be > 0")
    if config["address_tags"] is not None and (not isinstance(config["address_tags"], dict) or not config["address_tags"]):
        raise AgentError("address_tags must be null or a non-empty object of tag key -> value")
    return config


# ---- time -------------------------------------------------------------------------------------

class Clock:
    """Wall time and sleeping, replaceable in tests."""

    def now(self):
        return datetime.datetime.now(datetime.timezone.utc)

    def sleep(self, seconds):
        if seconds > 0:
            time.sleep(seconds)


def stamp(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(datetime.timezone.utc)


# ---- IMDSv2 -----------------------------------------------------------------------------------

class Imds:
    """IMDSv2 client: a session token first, refreshed before it expires and after a 401."""

    TOKEN_TTL = 21600

    def __init__(self, endpoint, clock, timeout=2.0):
        self.endpoint = endpoint.rstrip("/")
        self.clock = clock
        self.timeout = timeout
        self._token = None
        self._token_expiry = None

    def _request(self, method, path, headers):
        request = urllib.request.Request(self.endpoint + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TransientError(f"IMDS {method} {path}: {exc}") from exc

    def token(self):
        now = self.clock.now()
        if self._token and self._token_expiry > now:
            return self._token
        status, body = self._request("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(self.TOKEN_TTL)})
        if status != 200 or not body:
            raise TransientError(f"IMDS token request answered {status}")
        self._token = body
        self._token_expiry = now + datetime.timedelta(seconds=self.TOKEN_TTL - 60)
        return body

    def get(self, path):
        """The value at ``/latest/<path>``; None on 404 (for notices: there is none)."""
        for attempt in (1, 2):
            status, body = self._request("GET", "/latest/" + path, {"X-aws-ec2-metadata-token": self.token()})
            if status == 200:
                return body
            if status == 404:
                return None
            if status == 401 and attempt == 1:   # token expired or IMDS restarted: get a new one once
                self._token = None
                continue
            raise TransientError(f"IMDS GET {path} answered {status}")
        return None

    def require(self, path):
        value = self.get(path)
        if value is None:
            raise AgentError(f"instance metadata {path} is missing")
        return value


# ---- AWS API (SigV4 over urllib; boto3 is not on a bare image) --------------------------------

def strip_namespaces(element):
    for node in element.iter():
        if "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    return element


class Aws:
    """Just the calls the agent makes, signed with Signature Version 4."""

    RETRIES = 5

    def __init__(self, region, imds, clock, endpoint_url=None, timeout=10.0):
        self.region, self.imds, self.clock = region, imds, clock
        self.endpoint_url, self.timeout = endpoint_url, timeout
        self._credentials = None

    def credentials(self):
        if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            return {"AccessKeyId": os.environ["AWS_ACCESS_KEY_ID"], "SecretAccessKey": os.environ["AWS_SECRET_ACCESS_KEY"],
                    "Token": os.environ.get("AWS_SESSION_TOKEN")}
        cached = self._credentials
        if cached and parse_time(cached["Expiration"]) - self.clock.now() > datetime.timedelta(minutes=5):
            return cached
        roles = (self.imds.get("meta-data/iam/security-credentials/") or "").split()
        if not roles:
            raise AgentError("the instance has no IAM instance profile; it needs one (see the instance_agent role's README)")
        self._credentials = json.loads(self.imds.require("meta-data/iam/security-credentials/" + roles[0]))
        return self._credentials

    def endpoint(self, service):
        return self.endpoint_url or f"https://{service}.{self.region}.amazonaws.com"

    def sign(self, service, url, body, headers, credentials, moment):
        """Headers for a SigV4-signed POST (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html)."""
        parsed = urllib.parse.urlsplit(url)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        headers = dict(headers, **{"host": parsed.netloc, "x-amz-date": amz_date})
        if credentials.get("Token"):
            headers["x-amz-security-token"] = credentials["Token"]
        names = sorted(name.lower() for name in headers)
        lowered = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
        canonical = "\n".join([
            "POST", parsed.path or "/", "", "".join(f"{name}:{lowered[name]}\n" for name in names), ";".join(names),
            hashlib.sha256(body).hexdigest()])
        scope = f"{amz_date[:8]}/{self.region}/{service}/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + credentials["SecretAccessKey"]).encode()
        for part in (amz_date[:8], self.region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials['AccessKeyId']}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return headers

    def _post(self, service, body, headers):
        url = self.endpoint(service)
        delay = 0.2
        for attempt in range(1, self.RETRIES + 1):
            signed = self.sign(service, url, body, headers, self.credentials(), self.clock.now())
            request = urllib.request.Request(url, data=body, method="POST", headers=signed)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:500]
                retryable = exc.code >= 500 or exc.code == 429 or "Throttl" in detail or "RequestLimitExceeded" in detail
                if not retryable or attempt == self.RETRIES:
                    raise AgentError(f"{service} answered {exc.code}: {detail}") from exc
            except (urllib.error.URLError, OSError) as exc:
                if attempt == self.RETRIES:
                    raise TransientError(f"{service} unreachable: {exc}") from exc
            self.clock.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise TransientError(f"{service}: no answer")

    def query(self, service, version, params):
        body = urllib.parse.urlencode(dict(params, Version=version)).encode()
        raw = self._post(service, body, {"content-type": "application/x-www-form-urlencoded; charset=utf-8"})
        return strip_namespaces(ElementTree.fromstring(raw))

    def put_events(self, entries):
        body = json.dumps({"Entries": entries}).encode()
        raw = self._post("events", body, {"content-type": "application/x-amz-json-1.1", "x-amz-target": "AWSEvents.PutEvents"})
        return json.loads(raw or b"{}")

    # ---- the calls ---------------------------------------------------------------------------
    def describe_volumes(self, filters):
        params = {}
        for index, (name, values) in enumerate(sorted(filters.items()), 1):
            params[f"Filter.{index}.Name"] = name
            for number, value in enumerate(values, 1):
                params[f"Filter.{index}.Value.{number}"] = value
        volumes, token = [], None
        while True:
            page = dict(params, **({"NextToken": token} if token else {}))
            root = self.query("ec2", EC2_API_VERSION, dict(page, Action="DescribeVolumes"))
            for item in root.findall("./volumeSet/item"):
                volumes.append({
                    "VolumeId": item.findtext("volumeId"), "AvailabilityZone": item.findtext("availabilityZone"),
                    "State": item.findtext("status"),
                    "Attachments": [{"InstanceId": a.findtext("instanceId"), "Device": a.findtext("device"),
                                     "State": a.findtext("status")} for a in item.findall("./attachmentSet/item")],
                    "Tags": {t.findtext("key"): t.findtext("value") or "" for t in item.findall("./tagSet/item")},
                })
            token = root.findtext("nextToken")
            if not token:
                return volumes

    def describe_addresses(self, tags):
        params = {"Action": "DescribeAddresses"}
        for index, (key, value) in enumerate(sorted(tags.items()), 1):
            params[f"Filter.{index}.Name"] = f"tag:{key}"
            params[f"Filter.{index}.Value.1"] = value
        root = self.query("ec2", EC2_API_VERSION, params)
        return [{"AllocationId": item.findtext("allocationId"), "PublicIp": item.findtext("publicIp"),
                 "InstanceId": item.findtext("instanceId")} for item in root.findall("./addressesSet/item")]

    def associate_address(self, allocation_id, instance_id):
        self.query("ec2", EC2_API_VERSION, {"Action": "AssociateAddress", "AllocationId": allocation_id,
                                            "InstanceId": instance_id, "AllowReassociation": "true"})

    def deregister_target(self, target_group_arn, instance_id):
        self.query("elasticloadbalancing", ELB_API_VERSION, {
            "Action": "DeregisterTargets", "TargetGroupArn": target_group_arn, "Targets.member.1.Id": instance_id})


# ---- block devices and filesystems ------------------------------------------------------------

def run(argv, timeout=600, check=True):
    LOG.debug("run %s", " ".join(shlex.quote(a) for a in argv))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AgentError(f"{argv[0]} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[:400]}")
    return result


class Disk:
    """A real block device: blkid to probe, mkfs/fsck/mount to act."""

    def __init__(self, path):
        self.path = path

    def probe(self):
        """Signature fields (TYPE, UUID, LABEL, PTTYPE, ...) or {} when blkid finds nothing at all.

        ``blkid -p`` probes the device itself (no cache) for filesystems, RAID members,
        partition tables and crypto headers; exit 2 means it found nothing.
        """
        result = run(["blkid", "-p", "-o", "export", self.path], check=False)
        if result.returncode == 2:
            return {}
        if result.returncode != 0:
            raise AgentError(f"blkid could not probe {self.path}: {result.stderr.strip()}")
        return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)

    def leading_bytes_are_zero(self):
        with open(self.path, "rb") as handle:
            chunk = handle.read(ZERO_CHECK_BYTES)
        return not chunk.strip(b"\0")

    def make_filesystem(self, filesystem, label):
        if filesystem == "xfs":
            run(["mkfs.xfs", "-q", "-L", label[:12], self.path])
        else:
            run(["mkfs.ext4", "-q", "-L", label[:16], self.path])

    def check(self, filesystem):
        """Run the check the filesystem needs; refuse on errors that need a human."""
        if filesystem == "xfs":
            return "xfs: the log is replayed at mount (xfs has no boot-time fsck)"
        result = run(["e2fsck", "-p", self.path], check=False)
        # e2fsck: 0 clean, 1 errors corrected, 2 corrected and a reboot advised (not for a data disk); >= 4 left uncorrected.
        if result.returncode >= 4:
            raise Refused(f"e2fsck -p {self.path} exited {result.returncode}: the filesystem has errors it will not fix "
                          f"unattended; repair it by hand (e2fsck -f) or restore from a snapshot. {result.stdout.strip()[:300]}")
        return f"e2fsck -p: exit {result.returncode}"

    def mount(self, mount_point, filesystem, options):
        run(["mount", "-t", filesystem, "-o", options, self.path, mount_point])


class DirectoryDisk(Disk):
    """A directory standing in for a block device where loop devices are unavailable (tests, sandbox).

    The "signature" is ``.ec2spot-superblock`` (TYPE, UUID, LABEL); mounting is a bind mount.
    Never used unless the configuration says ``allow_directory_devices: true``.
    """

    SUPERBLOCK = ".ec2spot-superblock"

    def probe(self):
        superblock = os.path.join(self.path, self.SUPERBLOCK)
        if os.path.exists(superblock):
            with open(superblock, encoding="utf-8") as handle:
                return json.load(handle)
        return {} if not os.listdir(self.path) else {"TYPE": "unknown-directory-content"}

    def leading_bytes_are_zero(self):
        return not os.listdir(self.path)

    def make_filesystem(self, filesystem, label):
        uuid = hashlib.sha256(os.urandom(16)).hexdigest()[:32]
        with open(os.path.join(self.path, self.SUPERBLOCK), "w", encoding="utf-8") as handle:
            json.dump({"TYPE": filesystem, "UUID": uuid, "LABEL": label}, handle)
        os.makedirs(os.path.join(self.path, "data"), exist_ok=True)

    def check(self, filesystem):
        return "directory stand-in: nothing to check"

    def mount(self, mount_point, filesystem, options):
        run(["mount", "--bind", os.path.join(self.path, "data"), mount_point])


def disk_for(device):
    """The Disk for a device path: a directory is a stand-in (allowed only by allow_directory_devices)."""
    return DirectoryDisk(device) if os.path.isdir(device) else Disk(device)


def mounted_source(mount_point):
    """The device mounted at ``mount_point`` (from /proc/self/mountinfo), or None."""
    target = os.path.realpath(mount_point)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[4].encode().decode("unicode_escape") == target:
            separator = fields.index("-")
            found = fields[separator + 2]  # the last mount on top wins
    return found


def generation_of(tags, default=0):
    try:
        return int(tags.get(GENERATION_TAG, ""))
    except ValueError:
        return default   # a malformed tag elsewhere counts as a rival: refuse rather than guess


# ---- state files ------------------------------------------------------------------------------

def write_json(path, document):
    """Atomic and durable: a crash leaves the old file or the new one, never half of one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp.{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise AgentError(f"{path} is not valid JSON ({exc}); inspect it before going on") from exc


# ---- the agent --------------------------------------------------------------------------------

class Agent:
    def __init__(self, config, clock=None, imds=None, aws=None):
        self.config = config
        self.clock = clock or Clock()
        self.imds = imds or Imds(config["imds_endpoint"], self.clock)
        self._aws = aws
        self._identity = None
        self.terminating = False

    # -- identity and AWS
    def identity(self):
        if self._identity is None:
            instance_id = self.imds.require("meta-data/instance-id")
            zone = self.imds.require("meta-data/placement/availability-zone")
            region = self.config["region"] or self.imds.get("meta-data/placement/region") or zone[:-1]
            self._identity = {"instance_id": instance_id, "zone": zone, "region": region}
        return self._identity

    @property
    def aws(self):
        if self._aws is None:
            self._aws = Aws(self.identity()["region"], self.imds, self.clock, self.config["aws_endpoint_url"])
        return self._aws

    def state_path(self, name, persistent=False):
        return os.path.join(self.config["state_dir" if persistent else "run_dir"], name)

    # -- mount
    def mount(self, adopt=False):
        config, phases = self.config, {}
        mount_point = config["mount_point"]
        previous = read_json(self.state_path("boot.json"))
        if previous and previous.get("mounted") and mounted_source(mount_point):
            LOG.info("already mounted at %s this boot (%s)", mount_point, previous.get("volume_id"))
            return previous
        identity = self.identity()
        phases["identity"] = stamp(self.clock.now())
        deadline = self.clock.now() + datetime.timedelta(seconds=config["device_wait_seconds"])
        volume = self.wait_for_attachment(identity["instance_id"], deadline)
        phases["volume_attached"] = stamp(self.clock.now())
        tags = volume["Tags"]
        generation = self.check_generation(volume)
        device = self.wait_for_device(volume, deadline)
        phases["device_found"] = stamp(self.clock.now())
        disk = disk_for(device)
        signature = disk.probe()
        initialised = False
        if not signature:
            if not disk.leading_bytes_are_zero():
                raise Refused(f"{volume['VolumeId']} ({device}) has no recognisable signature but is not blank: "
                              f"it holds data this agent does not understand; refusing to touch it")
            if tags.get(FRESH_TAG) != "true":
                raise Refused(
                    f"{volume['VolumeId']} ({device}) of lineage {config['lineage']} (generation {generation}) is blank, but it "
                    f"is not tagged {FRESH_TAG}=true: a lineage volume that reads blank is the wrong volume or lost data. "
                    f"Refusing to format it. Restore the lineage from a snapshot (restore.yml), or, if this really is a new "
                    f"lineage, tag the volume {FRESH_TAG}=true")
            LOG.info("formatting brand-new volume %s (%s) as %s", volume["VolumeId"], device, config["filesystem"])
            disk.make_filesystem(config["filesystem"], config["fs_label"])
            signature = disk.probe()
            initialised = True
            phases["formatted"] = stamp(self.clock.now())
        filesystem = signature.get("TYPE")
        if filesystem not in ("ext2", "ext3", "ext4", "xfs"):
            raise Refused(f"{volume['VolumeId']} ({device}) holds {filesystem or signature} rather than a filesystem this "
                          f"agent mounts (ext4, xfs); refusing to guess")
        check = disk.check(filesystem)
        phases["checked"] = stamp(self.clock.now())
        source = mounted_source(mount_point)
        if source:
            raise Refused(f"{mount_point} already has {source} mounted; refusing to mount the lineage volume over it")
        os.makedirs(mount_point, exist_ok=True)
        disk.mount(mount_point, filesystem, config["mount_options"])
        try:
            self.verify_marker(volume, generation, signature, initialised or adopt)
        except AgentError:
            run(["umount", mount_point], check=False)
            raise
        phases["mounted"] = stamp(self.clock.now())
        state = {"volume_id": volume["VolumeId"], "generation": generation, "device": device, "filesystem": filesystem,
                 "uuid": signature.get("UUID"), "check": check, "initialised": initialised, "mounted": True,
                 "mount_point": mount_point, "instance_id": identity["instance_id"], "phases": phases}
        write_json(self.state_path("boot.json"), state)
        LOG.info("mounted %s (lineage %s, generation %s) at %s", volume["VolumeId"], config["lineage"], generation, mount_point)
        return state

    def wait_for_attachment(self, instance_id, deadline):
        """The lineage volume attached to this instance (the control plane attaches it during Pending:Wait)."""
        lineage = self.config["lineage"]

        def attached_volume():
            attached = [v for v in self.aws.describe_volumes({
                "attachment.instance-id": [instance_id], f"tag:{LINEAGE_TAG}": [lineage], "tag-key": [GENERATION_TAG]})
                if any(a["InstanceId"] == instance_id and a["State"] == "attached" for a in v["Attachments"])]
            if len(attached) > 1:
                raise Refused(f"{len(attached)} volumes of lineage {lineage} are attached to {instance_id} "
                              f"({', '.join(v['VolumeId'] for v in attached)}); which one is current is for a human to decide")
            return attached[0] if attached else None
        return self.poll_until(attached_volume, deadline, 0.5, 5.0, lambda: (
            f"no volume of lineage {lineage} was attached to {instance_id} within {self.config['device_wait_seconds']} s; "
            f"is the control plane running and the group's launch hook in place? The application was not started"))

    def poll_until(self, probe, deadline, first_delay, max_delay, timed_out):
        """``probe()`` until it returns something, backing off x1.5 up to ``max_delay``; ``TimedOut`` at the deadline."""
        delay = first_delay
        while True:
            found = probe()
            if found is not None:
                return found
            if self.clock.now() >= deadline:
                raise TimedOut(timed_out())
            self.clock.sleep(delay)
            delay = min(delay * 1.5, max_delay)

    def check_generation(self, volume):
        """Refuse a volume that is not the lineage's one current copy (an older or a forked generation)."""
        lineage = self.config["lineage"]
        generation = generation_of(volume["Tags"], default=None)
        if generation is None:
            raise Refused(f"{volume['VolumeId']} has a malformed {GENERATION_TAG} tag")
        others = self.aws.describe_volumes({f"tag:{LINEAGE_TAG}": [lineage], "tag-key": [GENERATION_TAG],
                                            "status": ["creating", "available", "in-use"]})
        newer = [v["VolumeId"] for v in others if v["VolumeId"] != volume["VolumeId"]
                 and generation_of(v["Tags"], default=generation) >= generation]
        if newer:
            raise Refused(f"{volume['VolumeId']} holds generation {generation} of lineage {lineage}, but {', '.join(newer)} "
                          f"holds the same or a newer one: this copy is stale or the lineage forked; refusing to mount it")
        return generation

    def device_candidates(self, volume):
        # Nitro: the NVMe serial is the volume id without its dash; udev names it in /dev/disk/by-id.
        serial = volume["VolumeId"].replace("-", "")
        candidates = [os.path.join(self.config["by_id_dir"], f"nvme-Amazon_Elastic_Block_Store_{serial}")]
        # Xen instances have no NVMe serial: /dev/sdf is attached as /dev/xvdf. Only there (no NVMe device at all).
        by_id = self.config["by_id_dir"]
        if not (os.path.isdir(by_id) and any(name.startswith("nvme-") for name in os.listdir(by_id))):
            for attachment in volume["Attachments"]:
                name = os.path.basename(attachment["Device"] or "")
                if name.startswith("sd"):
                    candidates.append(os.path.join(self.config["dev_dir"], "xvd" + name[2:]))
        return candidates

    def wait_for_device(self, volume, deadline):
        def present_device():
            for candidate in self.device_candidates(volume):
                if os.path.exists(candidate):
                    device = os.path.realpath(candidate)
                    if os.path.isdir(device) and not self.config["allow_directory_devices"]:
                        raise Refused(f"{candidate} is a directory, not a block device")
                    return device
            return None
        return self.poll_until(present_device, deadline, 0.2, 2.0, lambda: (
            f"{volume['VolumeId']} is attached but no device for it appeared ({', '.join(self.device_candidates(volume))}) "
            f"within {self.config['device_wait_seconds']} s; the application was not started"))

    def verify_marker(self, volume, generation, signature, may_write_new):
        """The marker file on the volume must name this lineage, this filesystem and no newer generation."""
        config = self.config
        path = os.path.join(config["mount_point"], MARKER)
        marker = read_json(path)
        uuid = signature.get("UUID")
        if marker is None:
            # A crash between mkfs and the marker leaves a fresh volume with an empty filesystem: finish the job.
            empty = set(os.listdir(config["mount_point"])) <= {"lost+found"}
            if not may_write_new and not (volume["Tags"].get(FRESH_TAG) == "true" and empty):
                raise Refused(f"{volume['VolumeId']} has a {signature.get('TYPE')} filesystem but no lineage marker "
                              f"({MARKER}): nothing says it holds lineage {config['lineage']}. If it does (a volume made "
                              f"before this agent), check its data and run `ec2spot-agent mount --adopt` once")
            marker = {"lineage": config["lineage"], "generation": generation, "uuid": uuid,
                      "created": stamp(self.clock.now()), "created_on": volume["VolumeId"]}
        if marker.get("lineage") != config["lineage"]:
            raise Refused(f"{volume['VolumeId']} is tagged lineage {config['lineage']} but its data belongs to lineage "
                          f"{marker.get('lineage')} ({MARKER}); refusing to mount another service's data")
        if marker.get("uuid") and uuid and marker["uuid"] != uuid:
            raise Refused(f"{volume['VolumeId']}: the marker was written on filesystem {marker['uuid']} but this filesystem is "
                          f"{uuid}; the marker was copied, so it proves nothing about this data")
        if int(marker.get("generation", 0)) > generation:
            raise Refused(f"{volume['VolumeId']} is tagged generation {generation} but its data already reached generation "
                          f"{marker['generation']}: its tags are older than its data; refusing until a human reconciles them")
        marker.update(generation=generation, last_volume=volume["VolumeId"], last_instance=self.identity()["instance_id"],
                      last_mounted=stamp(self.clock.now()))
        write_json(path, marker)

    # -- application and report
    def run_commands(self, commands, deadline=None):
        for command in commands:
            timeout = self.config["command_timeout_seconds"]
            if deadline is not None:
                timeout = max(1.0, min(timeout, (deadline - self.clock.now()).total_seconds()))
            LOG.info("running: %s", command)
            try:
                result = subprocess.run(["/bin/sh", "-c", command], cwd=self.config["app_directory"] or None,
                                        capture_output=True, text=True, timeout=timeout, check=False)
            except subprocess.TimeoutExpired as exc:
                raise TimedOut(f"`{command}` did not finish within {timeout:.0f} s") from exc
            if result.returncode != 0:
                raise AgentError(f"`{command}` failed ({result.returncode}): {(result.stderr or result.stdout).strip()[:400]}")

    def start_app(self):
        state = read_json(self.state_path("boot.json"))
        mount_point = self.config["mount_point"]
        if not state or not state.get("mounted") or not mounted_source(mount_point):
            raise Refused(f"the lineage volume is not mounted at {mount_point} (run `ec2spot-agent mount` first); "
                          f"the application must never start on an empty directory")
        phases = state["phases"]
        if "app_started" not in phases:
            self.run_commands(self.config["app_start_commands"])
            phases["app_started"] = stamp(self.clock.now())
            write_json(self.state_path("boot.json"), state)
        if self.config["address_tags"] and "address" not in phases:
            state["address"] = self.associate_address()
            phases["address"] = stamp(self.clock.now())
            write_json(self.state_path("boot.json"), state)
        if self.config["report_boot"] and "reported" not in phases:
            self.report(state)
        return state

    def associate_address(self):
        instance_id = self.identity()["instance_id"]
        found = self.aws.describe_addresses(self.config["address_tags"])
        if len(found) != 1:
            raise AgentError(f"{len(found)} Elastic IPs carry tags {self.config['address_tags']}; exactly one is needed")
        if found[0]["InstanceId"] != instance_id:
            self.aws.associate_address(found[0]["AllocationId"], instance_id)
        return found[0]["PublicIp"]

    def report(self, state):
        """Tell the control plane the boot finished (it clears ec2spot:fresh and sends the success message)."""
        phases = state["phases"]
        reported_at = stamp(self.clock.now())
        detail = {"instance-id": state["instance_id"], "lineage": self.config["lineage"], "service": self.config["service"],
                  "volume-id": state["volume_id"], "generation": state["generation"], "initialised": state["initialised"],
                  "phases": dict(phases, reported=reported_at)}
        entry = {"Source": EVENT_SOURCE, "DetailType": BOOT_REPORT, "Detail": json.dumps(detail),
                 "EventBusName": self.config["event_bus"], "Resources": []}
        delay = 1.0
        for attempt in range(1, 6):
            try:
                answer = self.aws.put_events([entry])
                if not answer.get("FailedEntryCount"):
                    phases["reported"] = reported_at
                    write_json(self.state_path("boot.json"), state)
                    return True
                LOG.warning("boot report rejected: %s", answer.get("Entries"))
            except AgentError as exc:
                LOG.warning("boot report attempt %d failed: %s", attempt, exc)
            self.clock.sleep(delay)
            delay *= 2
        # The application runs; a lost report only delays the success message. Say so, loudly.
        LOG.error("could not report the boot to the control plane; the application is running")
        return False

    # -- stop
    def stop(self, reason, deadline=None):
        """Deregister, drain, stop, sync, unmount: once, whoever asks first; later callers get the record."""
        record_path = self.state_path("stop.json")
        os.makedirs(self.config["run_dir"], exist_ok=True)
        with open(self.state_path("stop.lock"), "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)   # a concurrent stop (SSM, systemd, watcher) waits here, then reads its record
            record = read_json(record_path)
            if record and record.get("outcome") == "stopped":
                LOG.info("already stopped at %s (%s)", record.get("finished"), record.get("reason"))
                return record
            record = self._stop(reason, deadline)
            write_json(record_path, record)
            history = self.state_path("stops.jsonl", persistent=True)
            os.makedirs(os.path.dirname(history), exist_ok=True)
            with open(history, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
        if record["outcome"] != "stopped":
            raise AgentError(f"stop incomplete: {record['errors']}")
        return record

    def _stop(self, reason, deadline):
        config, started = self.config, self.clock.now()
        record = {"reason": reason, "started": stamp(started), "deadline": stamp(deadline) if deadline else None, "errors": []}
        instance_id = None
        if config["target_group_arns"]:
            try:
                instance_id = self.identity()["instance_id"]
            except AgentError as exc:
                record["errors"].append(f"identity: {exc}")
        deregistered = []
        for arn in config["target_group_arns"] if instance_id else []:
            try:
                self.aws.deregister_target(arn, instance_id)
                deregistered.append(arn)
            except AgentError as exc:   # keep going: a failed deregistration must not keep the app from stopping
                record["errors"].append(f"deregister {arn}: {exc}")
        record["deregistered"] = deregistered
        drain = config["drain_seconds"] if deregistered else 0
        if deadline is not None:   # leave the stop its reserve before the instance goes away
            drain = min(drain, max(0.0, (deadline - self.clock.now()).total_seconds() - config["stop_reserve_seconds"]))
        self.clock.sleep(drain)
        record["drained_seconds"] = round(drain, 3)
        try:
            self.run_commands(config["app_stop_commands"], deadline)
            record["app_stopped"] = stamp(self.clock.now())
        except AgentError as exc:
            record["errors"].append(f"app stop: {exc}")
        os.sync()
        record["synced"] = stamp(self.clock.now())
        mount_point = config["mount_point"]
        if config["unmount_on_stop"] and "app_stopped" in record and mounted_source(mount_point):
            result = run(["umount", mount_point], check=False)
            if result.returncode == 0:
                record["unmounted"] = stamp(self.clock.now())
            else:
                record["errors"].append(f"umount {mount_point}: {result.stderr.strip()}")
        finished = self.clock.now()
        record["finished"] = stamp(finished)
        record["met_deadline"] = deadline is None or finished <= deadline
        record["outcome"] = "stopped" if "app_stopped" in record and not (
            config["unmount_on_stop"] and mounted_source(mount_point)) else "incomplete"
        return record

    # -- watch
    def poll_once(self):
        """One look at IMDS. Returns what was acted on: 'interruption', 'rebalance' or None."""
        try:
            action = self.imds.get("meta-data/spot/instance-action")
        except TransientError as exc:   # never act on an error: a false stop is an outage of its own
            LOG.warning("IMDS unavailable, will retry: %s", exc)
            return None
        if action:
            done = read_json(self.state_path("stop.json"))
            if done and done.get("outcome") == "stopped":
                return "interruption"
            try:
                notice = json.loads(action)
                deadline = parse_time(notice["time"])
            except (ValueError, KeyError, TypeError):
                LOG.error("unreadable instance-action %r; stopping with the documented two-minute lead", action)
                notice, deadline = {"action": "unknown"}, self.clock.now() + datetime.timedelta(seconds=120)
            self.stop(f"spot {notice.get('action', 'interruption')} at {stamp(deadline)}", deadline)
            return "interruption"
        try:
            rebalance = self.imds.get("meta-data/events/recommendations/rebalance")
        except TransientError as exc:
            LOG.warning("IMDS unavailable, will retry: %s", exc)
            return None
        if rebalance:
            path = self.state_path("rebalance.json")
            if read_json(path) is None:
                write_json(path, {"notice": rebalance, "seen": stamp(self.clock.now()), "action": self.config["on_rebalance"]})
                LOG.warning("rebalance recommendation: %s (action: %s)", rebalance, self.config["on_rebalance"])
            if self.config["on_rebalance"] == "stop":
                self.stop("rebalance recommendation")
            return "rebalance"
        return None

    def watch(self, max_polls=None):
        """Poll until told to end. SIGTERM (systemd stopping the watcher at shutdown) ends the loop between polls,
        never in the middle of a stop the watcher has begun: the app's ExecStop then finds the stop done."""
        self.terminating = False

        def end_between_polls(signum, frame):
            self.terminating = True
        previous = signal.signal(signal.SIGTERM, end_between_polls) if threading.current_thread() is threading.main_thread() else None
        try:
            self._watch(max_polls)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _watch(self, max_polls):
        polls = 0
        while (max_polls is None or polls < max_polls) and not self.terminating:
            try:
                self.poll_once()
            except AgentError as exc:
                LOG.error("%s", exc)
            polls += 1
            if (max_polls is None or polls < max_polls) and not self.terminating:
                self.clock.sleep(self.config["poll_seconds"])


# ---- command line -----------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog="ec2spot-agent", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--config", default=os.environ.get("EC2SPOT_AGENT_CONFIG", DEFAULT_CONFIG))
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    mount = commands.add_parser("mount", help="mount the lineage volume")
    mount.add_argument("--adopt", action="store_true", help="write the lineage marker on an unmarked filesystem (once)")
    commands.add_parser("start-app", help="start the application and report the boot")
    commands.add_parser("boot", help="mount, then start-app")
    stop = commands.add_parser("stop", help="stop the application cleanly (idempotent)")
    stop.add_argument("--reason", default="requested")
    stop.add_argument("--deadline", help="ISO 8601 time the instance goes away")
    watch = commands.add_parser("watch", help="poll IMDS for interruption notices")
    watch.add_argument("--max-polls", type=int)
    commands.add_parser("status", help="print this boot's state")
    commands.add_parser("check-config", help="validate the configuration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="ec2spot-agent %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
        agent = Agent(config)
        if args.command == "check-config":
            print(json.dumps(config, indent=2, sort_keys=True))
        elif args.command == "mount":
            agent.mount(adopt=args.adopt)
        elif args.command == "start-app":
            agent.start_app()
        elif args.command == "boot":
            agent.mount()
            agent.start_app()
        elif args.command == "stop":
            print(json.dumps(agent.stop(args.reason, parse_time(args.deadline) if args.deadline else None), indent=2))
        elif args.command == "watch":
            agent.watch(args.max_polls)
        elif args.command == "status":
            print(json.dumps({"boot": read_json(agent.state_path("boot.json")), "stop": read_json(agent.state_path("stop.json")),
                              "rebalance": read_json(agent.state_path("rebalance.json"))}, indent=2, sort_keys=True))
    except AgentError as exc:
        LOG.error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
