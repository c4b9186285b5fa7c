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
  start-app    refuse unless the data is mounted; run the start commands; register the instance in
               its target groups (only once the application has started); report the boot
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
ec2:DescribeVolumes, ec2:DescribeSnapshots, events:PutEvents, elasticloadbalancing:RegisterTargets (start-app,
once the application has started) and DeregisterTargets (stop) on the target groups of target_group_arns and, only
with address_tags set (seed 002's pattern), ec2:DescribeAddresses and ec2:AssociateAddress.
"""

import argparse
import datetime
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import shlex
import re
import signal
import stat
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
FRESH_TAG = "ec2spot:fresh"
MARKER = ".ec2spot/lineage.json"  # kept on the data volume, beside the data
EVENT_SOURCE = "ec2spot.autorecover"
BOOT_REPORT = "EC2Spot Recovery Boot Report"
# Said once per boot when the instance is up and no data volume is attached yet: a replacement waiting for its data.
REPLACEMENT_READY = "EC2Spot Replacement Ready"
# Once ready, how often the agent looks at its own devices (no API call), and how often it asks EC2 regardless.
READY_DEVICE_LOOK = 0.2
READY_ASK_EVERY = 5.0
MAINTENANCE_REPORT = "EC2Spot Scheduled Maintenance"
# EC2 scheduled events that end the instance's service (EC2 user guide, "Scheduled events for your instances").
MAINTENANCE_CODES = ("instance-retirement", "instance-stop", "instance-reboot", "system-reboot", "system-maintenance")
EC2_API_VERSION = "2016-11-15"
ELB_API_VERSION = "2015-12-01"
SUPPORTED_FILESYSTEMS = ("ext4", "xfs")

DEFAULTS = {
    "service": None,
    "lineage": None,
    "region": None,
    "mount_point": "/data",
    "filesystem": "ext4",
    "mount_options": "defaults,noatime",
    "fs_label": "ec2spot-data",
    "device_wait_seconds": 300,
    "app_start_commands": [],
    "app_stop_commands": [],
    "app_directory": None,
    "command_timeout_seconds": 90,
    "target_group_arns": [],
    "drain_seconds": 30,
    "poll_seconds": 5,
    "on_rebalance": "record",
    # A Spot terminate notice: stop the application at once (the control plane's break-before-make), or keep serving
    # until the control plane's cut-over and stop only when the reclaim is near (its make-before-break).
    "notice_stop": "at-once",
    "unmount_on_stop": True,
    "stop_reserve_seconds": 30,
    "maintenance_poll_seconds": 300,
    "report_boot": True,
    "event_bus": "default",
    "address_tags": None,
    "imds_endpoint": "http://169.254.169.254",
    "aws_endpoint_url": None,
    "state_dir": "/var/lib/ec2spot-agent",
    "run_dir": "/run/ec2spot-agent",
    "by_id_dir": "/dev/disk/by-id",
    "dev_dir": "/dev",
    "sys_block_dir": "/sys/class/block",
    # Read by the bootstrap (ec2spot_bootstrap.py) that fetches this program; the agent only validates them.
    "agent_source": None,
    "agent_fetch_seconds": 120,
    "allow_directory_devices": False,
}


# ---- BEGIN generations.py: a verbatim copy of plugins/module_utils/recovery/generations.py ---------------
# (written by tools/build_agent.py; tests/unit/recovery/test_generations.py fails when it differs)

LINEAGE_TAG = "ec2spot:lineage"
GENERATION_TAG = "ec2spot:generation"
HOLDER_TAG = "ec2spot:holder"  # the instance the generation was issued for
PREVIOUS_HOLDER_TAG = "ec2spot:previous-holder"  # written by a move: the instance the volume came from
RESTORED_FROM_TAG = "ec2spot:restored-from"  # written by a restore: the snapshot the volume was made from

# What the collection writes is str(int): decimal ASCII digits, no sign, no leading zero, no
# space. int() would also take " 7", "+7", "0_7", "٧" (an Arabic-Indic seven) and "7\n";
# a value that is not exactly what we write was written by someone else, so it orders nothing.
_CANONICAL = re.compile(r"(?:0|[1-9][0-9]{0,17})")


def parse_generation(value):
    """The generation in a tag value or a marker field, or None when it is absent or malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**18 else None
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return int(value)
    return None


def rank_copies(copies):
    """Which of a lineage's copies is current: ``copies`` is ``[(resource_id, generation tag value), ...]``.

    Returns ``(verdict, detail)``:
    ``("none", None)`` no copy; ``("current", (resource_id, generation))`` exactly one copy holds
    the highest generation; ``("malformed", [ids])`` a copy's generation is absent or malformed,
    so no order can be trusted; ``("fork", (generation, [ids]))`` two or more copies share the
    highest generation (two copies that both claim to be current: picking one loses the other's
    writes). Both refusals are for a human; neither is resolved by guessing.
    """
    parsed = [(resource_id, parse_generation(value)) for resource_id, value in copies]
    if not parsed:
        return "none", None
    malformed = sorted(resource_id for resource_id, generation in parsed if generation is None)
    if malformed:
        return "malformed", malformed
    top = max(generation for unused, generation in parsed)
    tied = sorted(resource_id for resource_id, generation in parsed if generation == top)
    if len(tied) > 1:
        return "fork", (top, tied)
    return "current", (tied[0], top)


def judge_marker(lineage, volume_id, volume_tags, volume_snapshot_id, marker, snapshot_tags=None):
    """Whether the data whose ``marker`` was read from volume ``volume_id`` may be mounted as its tags say.

    ``volume_tags`` are the volume's tags (a dict), ``volume_snapshot_id`` the snapshot EC2 says it
    was created from ('' or None for none), ``snapshot_tags`` the tags of the snapshot its
    ``ec2spot:restored-from`` tag names (None when not looked up). Returns ``(accepted, reason)``:

    accepted: ``current`` (the marker's generation is the tag's), ``moved`` (this very volume was
    moved one generation on: the marker was last written on this volume, by the instance the move
    recorded as its previous holder), ``restored`` (the volume was made from a snapshot of this
    lineage whose generation is the marker's, and EC2 agrees it was made from that snapshot).

    refused: ``other-lineage``, ``malformed-marker``, ``malformed-tag``, ``newer`` (the data is
    ahead of its tags), ``older`` (an older marker nothing on the volume explains: a stale copy).
    """
    if not isinstance(marker, dict):
        return False, "malformed-marker"
    if marker.get("lineage") != lineage:
        return False, "other-lineage"
    held = parse_generation(marker.get("generation"))
    if held is None:
        return False, "malformed-marker"
    tagged = parse_generation((volume_tags or {}).get(GENERATION_TAG))
    if tagged is None:
        return False, "malformed-tag"
    if held == tagged:
        return True, "current"
    if held > tagged:
        return False, "newer"
    tags = volume_tags or {}
    previous_holder = tags.get(PREVIOUS_HOLDER_TAG)
    if (
        tagged == held + 1
        and previous_holder
        and marker.get("last_instance") == previous_holder
        and marker.get("last_volume") == volume_id
    ):
        return True, "moved"
    restored_from = tags.get(RESTORED_FROM_TAG)
    if (
        restored_from
        and volume_snapshot_id == restored_from
        and isinstance(snapshot_tags, dict)
        and snapshot_tags.get(LINEAGE_TAG) == lineage
        and parse_generation(snapshot_tags.get(GENERATION_TAG)) == held
    ):
        return True, "restored"
    return False, "older"


# ---- END generations.py ---------------------------------------------------------------------------


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
    if config["notice_stop"] not in ("at-once", "before-reclaim"):
        raise AgentError("notice_stop must be 'at-once' or 'before-reclaim'")
    for key in ("app_start_commands", "app_stop_commands", "target_group_arns"):
        if not isinstance(config[key], list) or not all(isinstance(item, str) and item for item in config[key]):
            raise AgentError(f"{key} must be a list of non-empty strings")
    for key in (
        "device_wait_seconds",
        "command_timeout_seconds",
        "drain_seconds",
        "poll_seconds",
        "stop_reserve_seconds",
        "agent_fetch_seconds",
        "maintenance_poll_seconds",
    ):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AgentError(f"{key} must be a number of seconds >= 0")
    if config["poll_seconds"] <= 0:
        raise AgentError("poll_seconds must be > 0")
    source = config["agent_source"]
    if source is not None and (
        not isinstance(source, dict)
        or set(source) - {"bucket", "key", "sha256", "region"}
        or not all(isinstance(source.get(key), str) and source[key] for key in ("bucket", "key", "sha256"))
    ):
        raise AgentError("agent_source must be null or an object with bucket, key, sha256 (and optionally region)")
    if config["address_tags"] is not None and (
        not isinstance(config["address_tags"], dict) or not config["address_tags"]
    ):
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
        status, body = self._request(
            "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(self.TOKEN_TTL)}
        )
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
            if status == 401 and attempt == 1:  # token expired or IMDS restarted: get a new one once
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


class Aws:
    """Just the calls the agent makes, signed with Signature Version 4."""

    RETRIES = 5

    def __init__(self, region, imds, clock, endpoint_url=None, timeout=10.0):
        self.region, self.imds, self.clock = region, imds, clock
        self.endpoint_url, self.timeout = endpoint_url, timeout
        self._credentials = None

    def credentials(self):
        if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            return {
                "AccessKeyId": os.environ["AWS_ACCESS_KEY_ID"],
                "SecretAccessKey": os.environ["AWS_SECRET_ACCESS_KEY"],
                "Token": os.environ.get("AWS_SESSION_TOKEN"),
            }
        cached = self._credentials
        if cached and parse_time(cached["Expiration"]) - self.clock.now() > datetime.timedelta(minutes=5):
            return cached
        roles = (self.imds.get("meta-data/iam/security-credentials/") or "").split()
        if not roles:
            raise AgentError(
                "the instance has no IAM instance profile; it needs one (see the instance_agent role's README)"
            )
        self._credentials = json.loads(self.imds.require("meta-data/iam/security-credentials/" + roles[0]))
        return self._credentials

    def endpoint(self, service):
        return self.endpoint_url or f"https://{service}.{self.region}.amazonaws.com"

    def sign(self, service, url, body, headers, credentials, moment):
        return sign_v4("POST", url, self.region, service, body, headers, credentials, moment)

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
                retryable = (
                    exc.code >= 500 or exc.code == 429 or "Throttl" in detail or "RequestLimitExceeded" in detail
                )
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
        raw = self._post(
            "events", body, {"content-type": "application/x-amz-json-1.1", "x-amz-target": "AWSEvents.PutEvents"}
        )
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
                volumes.append(
                    {
                        "VolumeId": item.findtext("volumeId"),
                        "AvailabilityZone": item.findtext("availabilityZone"),
                        "State": item.findtext("status"),
                        "SnapshotId": item.findtext("snapshotId") or "",
                        "Attachments": [
                            {
                                "InstanceId": a.findtext("instanceId"),
                                "Device": a.findtext("device"),
                                "State": a.findtext("status"),
                            }
                            for a in item.findall("./attachmentSet/item")
                        ],
                        "Tags": {t.findtext("key"): t.findtext("value") or "" for t in item.findall("./tagSet/item")},
                    }
                )
            token = root.findtext("nextToken")
            if not token:
                return volumes

    def snapshot_tags(self, snapshot_id):
        """The tags of one snapshot, or None when it is gone (a restored volume outlives its snapshot)."""
        try:
            root = self.query("ec2", EC2_API_VERSION, {"Action": "DescribeSnapshots", "SnapshotId.1": snapshot_id})
        except AgentError as exc:
            if "InvalidSnapshot.NotFound" in str(exc):
                return None
            raise
        items = root.findall("./snapshotSet/item")
        if not items:
            return None
        return {t.findtext("key"): t.findtext("value") or "" for t in items[0].findall("./tagSet/item")}

    def describe_addresses(self, tags):
        params = {"Action": "DescribeAddresses"}
        for index, (key, value) in enumerate(sorted(tags.items()), 1):
            params[f"Filter.{index}.Name"] = f"tag:{key}"
            params[f"Filter.{index}.Value.1"] = value
        root = self.query("ec2", EC2_API_VERSION, params)
        return [
            {
                "AllocationId": item.findtext("allocationId"),
                "PublicIp": item.findtext("publicIp"),
                "InstanceId": item.findtext("instanceId"),
            }
            for item in root.findall("./addressesSet/item")
        ]

    def associate_address(self, allocation_id, instance_id):
        self.query(
            "ec2",
            EC2_API_VERSION,
            {
                "Action": "AssociateAddress",
                "AllocationId": allocation_id,
                "InstanceId": instance_id,
                "AllowReassociation": "true",
            },
        )

    def register_target(self, target_group_arn, instance_id):
        """RegisterTargets of one instance: registering a registered target changes nothing (idempotent)."""
        self.query(
            "elasticloadbalancing",
            ELB_API_VERSION,
            {"Action": "RegisterTargets", "TargetGroupArn": target_group_arn, "Targets.member.1.Id": instance_id},
        )

    def deregister_target(self, target_group_arn, instance_id):
        self.query(
            "elasticloadbalancing",
            ELB_API_VERSION,
            {"Action": "DeregisterTargets", "TargetGroupArn": target_group_arn, "Targets.member.1.Id": instance_id},
        )


# ---- block devices and filesystems ------------------------------------------------------------


def run(argv, timeout=600, check=True):
    LOG.debug("run %s", " ".join(shlex.quote(a) for a in argv))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AgentError(f"{argv[0]} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[:400]}")
    return result


# The blank check reads at most this much, so that it stays under 2 s on a gp3 volume's baseline
# throughput (125 MiB/s: EBS user guide, "General Purpose SSD volumes"): 192 MiB -> 1.54 s modeled.
# A device no larger than the budget is read whole.
BLANK_CHECK_EDGE = 16 * 1024 * 1024  # the first and last 16 MiB: partition tables, superblocks, LVM/LUKS headers
BLANK_CHECK_STRATA = 256  # plus one sample at the start of every 1/256th of the device
BLANK_CHECK_BUDGET = 192 * 1024 * 1024
BLANK_CHECK_MIN_SAMPLE = 64 * 1024
# Where ext2/3/4 keep backup superblocks (block groups 1, 3^n, 5^n, 7^n) for 1, 2 and 4 KiB blocks:
# a filesystem whose head was wiped still has them, and a 4 KiB read each finds them on any size.
EXT_BACKUP_GROUPS = (1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343, 625, 729, 2187, 2401, 3125)
MARKER_MAX_BYTES = 64 * 1024
BLKROGET = 0x125E  # <linux/fs.h>: _IO(0x12, 94), read-only flag of a block device
BLKGETSIZE64 = 0x80081272  # <linux/fs.h>: _IOR(0x12, 114, size_t), size in bytes
EXT_FAMILY = ("ext2", "ext3", "ext4")


def blank_check_regions(size):
    """(offset, length) regions the blank check reads on a device of ``size`` bytes, in order, merged."""
    if size <= BLANK_CHECK_BUDGET:
        return [(0, size)] if size else []
    regions = [(0, BLANK_CHECK_EDGE), (size - BLANK_CHECK_EDGE, BLANK_CHECK_EDGE)]
    sample = max(
        BLANK_CHECK_MIN_SAMPLE, (BLANK_CHECK_BUDGET - 2 * BLANK_CHECK_EDGE) // BLANK_CHECK_STRATA // 4096 * 4096
    )
    stride = size // BLANK_CHECK_STRATA
    regions += [(index * stride, min(sample, size - index * stride)) for index in range(BLANK_CHECK_STRATA)]
    for block in (1024, 2048, 4096):
        for group in EXT_BACKUP_GROUPS:
            offset = group * 8 * block * block + (1024 if block == 1024 else 0)
            if offset + 4096 <= size:
                regions.append((offset, 4096))
    merged = []
    for offset, length in sorted(regions):
        if merged and offset <= merged[-1][0] + merged[-1][1]:
            last_offset, last_length = merged[-1]
            merged[-1] = (last_offset, max(last_length, offset + length - last_offset))
        else:
            merged.append((offset, length))
    return merged


def mountinfo():
    """[(major:minor, mount point, source)] of every mount on the host (/proc/self/mountinfo)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split()
        if len(fields) > 6 and "-" in fields:
            separator = fields.index("-")
            mounts.append((fields[2], unescape_mount_path(fields[4]), fields[separator + 2]))
    return mounts


def unescape_mount_path(text):
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    return text.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def mounted_source(mount_point):
    """The device mounted at ``mount_point`` (from /proc/self/mountinfo), or None."""
    target = os.path.realpath(mount_point)
    found = None
    for unused_dev, path, source in mountinfo():
        if path == target:
            found = source  # the last mount on top wins
    return found


def unique_keys(pairs):
    keys = [key for key, unused in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise ValueError(f"duplicate keys {', '.join(duplicated)}")
    return dict(pairs)


def open_beneath(name, flags, dir_fd, refusal, shown=None):
    """A read-only descriptor of ``name`` in ``dir_fd``, never through a symbolic link; None when it is absent."""
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MarkerUnreadable(f"{shown or name} {refusal} ({exc.strerror})") from exc


def read_marker_at(root):
    """``(marker, entries)`` read from a mounted filesystem at ``root``: the marker (None when absent) and the
    names at the filesystem's top. Links are never followed: a marker or a ``.ec2spot`` that is a symbolic link
    would read a file of the host, not of the volume. ``MarkerUnreadable`` when it cannot be trusted."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries = set(os.listdir(root_fd))
        directory, name = MARKER.split("/")
        directory_fd = open_beneath(directory, os.O_DIRECTORY, root_fd, "is not a directory")
        if directory_fd is None:
            return None, entries
        try:
            marker_fd = open_beneath(name, os.O_NONBLOCK, directory_fd, "cannot be opened as a file", MARKER)
            if marker_fd is None:
                return None, entries
            try:
                status = os.fstat(marker_fd)
                if not stat.S_ISREG(status.st_mode):
                    raise MarkerUnreadable(f"{MARKER} is not a regular file")
                if status.st_size > MARKER_MAX_BYTES:
                    raise MarkerUnreadable(
                        f"{MARKER} is {status.st_size} bytes, more than a marker's {MARKER_MAX_BYTES}"
                    )
                raw = os.read(marker_fd, MARKER_MAX_BYTES + 1)
            finally:
                os.close(marker_fd)
        finally:
            os.close(directory_fd)
    finally:
        os.close(root_fd)
    try:
        marker = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys)
    except ValueError as exc:
        raise MarkerUnreadable(f"{MARKER} is not a JSON document ({exc})") from exc
    if not isinstance(marker, dict):
        raise MarkerUnreadable(f"{MARKER} is not a JSON object")
    return marker, entries


class MarkerUnreadable(Exception):
    """The marker exists but cannot be trusted (a link, not a file, too large, not JSON)."""


class Disk:
    """A real block device. Every probe here reads and never writes: blkid -p, ioctls, sysfs, plain reads
    and a read-only mount that replays nothing. Only ``make_filesystem``, ``check`` and ``mount`` write,
    and the agent calls them after the marker proved the data is the lineage's."""

    def __init__(self, path):
        self.path = path

    def device_number(self):
        status = os.stat(self.path)
        if not stat.S_ISBLK(status.st_mode):
            raise Refused(f"{self.path} is not a block device; nothing was done to it")
        return status.st_rdev

    def device_key(self):
        number = self.device_number()
        return f"{os.major(number)}:{os.minor(number)}"

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

    def read_only(self):
        with open(self.path, "rb") as handle:
            flag = fcntl.ioctl(handle.fileno(), BLKROGET, b"\0\0\0\0")
        return int.from_bytes(flag, sys.byteorder) != 0

    def size(self):
        with open(self.path, "rb") as handle:
            return int.from_bytes(fcntl.ioctl(handle.fileno(), BLKGETSIZE64, b"\0" * 8), sys.byteorder)

    def mount_points(self):
        key = self.device_key()
        return [path for dev, path, unused in mountinfo() if dev == key]

    def holders(self):
        """Kernel users stacked on the device (device-mapper, md RAID, bcache): /sys/dev/block/M:m/holders."""
        try:
            return sorted(os.listdir(f"/sys/dev/block/{self.device_key()}/holders"))
        except OSError:
            return []

    def claimed(self):
        """Whether the kernel holds the device (mounted, swap, device-mapper, md): an O_EXCL open fails with EBUSY."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_EXCL)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return True
            raise
        os.close(descriptor)
        return False

    def first_non_zero(self):
        """``(offset or None, bytes read)``: the first sampled non-zero byte (blank_check_regions)."""
        read = 0
        with open(self.path, "rb", buffering=0) as handle:
            for offset, length in blank_check_regions(self.size()):
                position = offset
                while position < offset + length:
                    chunk = os.pread(handle.fileno(), min(4 * 1024 * 1024, offset + length - position), position)
                    if not chunk:
                        break
                    read += len(chunk)
                    if chunk.count(0) != len(chunk):
                        return position + next(i for i, byte in enumerate(chunk) if byte), read
                    position += len(chunk)
        return None, read

    def needs_recovery(self, filesystem):
        """Whether the journal (ext3/4) holds writes not yet in place: the instance stopped uncleanly."""
        if filesystem not in EXT_FAMILY:
            return False
        result = run(["dumpe2fs", "-h", self.path], check=False)
        features = next((line for line in result.stdout.splitlines() if line.startswith("Filesystem features:")), "")
        return "needs_recovery" in features.split()

    def read_marker(self, filesystem, probe_point):
        """The marker and the top-level names, through a mount that cannot write: ext ``ro,noload`` (no journal
        replay), xfs ``ro,norecovery``, never executing or honouring devices from the volume."""
        options = {"xfs": "ro,norecovery", "ext2": "ro"}.get(filesystem, "ro,noload") + ",nosuid,nodev,noexec"
        os.makedirs(probe_point, mode=0o700, exist_ok=True)
        result = run(["mount", "-t", filesystem, "-o", options, self.path, probe_point], check=False)
        if result.returncode != 0:
            raise MarkerUnreadable(
                f"a read-only mount (-o {options}) failed: {(result.stderr or result.stdout).strip()[:300]}"
            )
        try:
            return read_marker_at(probe_point)
        finally:
            run(["umount", probe_point], check=False)

    def make_filesystem(self, filesystem, label):
        if filesystem == "xfs":
            run(["mkfs.xfs", "-q", "-L", label[:12], self.path])
        else:
            run(["mkfs.ext4", "-q", "-L", label[:16], self.path])

    def check(self, filesystem):
        """Check the filesystem before it is mounted read-write. ``e2fsck -p`` replays the journal and fixes only
        what is safe unattended; xfs is only examined (``xfs_repair -n``) and its log replayed by the mount.
        Damage that needs a repair is refused: repairing data we protect is a human's decision."""
        if filesystem == "xfs":
            result = run(["xfs_repair", "-n", self.path], check=False)
            if result.returncode == 2:  # a dirty log xfs_repair -n will not read: the mount replays it
                return "xfs_repair -n: the log needs replay; the mount replays it"
            if result.returncode != 0:
                raise Refused(
                    f"xfs_repair -n {self.path} exited {result.returncode}: the filesystem is damaged and "
                    f"needs a repair, which is a human's decision on data we protect (snapshot the volume, "
                    f"then xfs_repair it by hand, or restore from a backup). "
                    f"{(result.stderr or result.stdout).strip()[-300:]}"
                )
            return "xfs_repair -n: clean"
        result = run(["e2fsck", "-p", self.path], check=False)
        # e2fsck: 0 clean, 1 errors corrected, 2 corrected and a reboot advised (not for a data disk); 4 left
        # uncorrected; 8 operational error; 16 usage; 32 cancelled; 128 shared-library error.
        if result.returncode & 4:
            raise Refused(
                f"e2fsck -p {self.path} exited {result.returncode}: the filesystem has errors it will not fix "
                f"unattended; a repair is a human's decision (snapshot the volume, then e2fsck -f it by hand, "
                f"or restore from a backup). {result.stdout.strip()[:300]}"
            )
        if result.returncode >= 8:
            raise AgentError(
                f"e2fsck -p {self.path} could not check the filesystem (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[:300]}"
            )
        return f"e2fsck -p: exit {result.returncode}"

    def mount(self, mount_point, filesystem, options):
        run(["mount", "-t", filesystem, "-o", options, self.path, mount_point])


class DirectoryDisk(Disk):
    """A directory standing in for a block device where loop devices are unavailable (tests, sandbox).

    The "signature" is ``.ec2spot-superblock`` (TYPE, UUID, LABEL); the filesystem is ``data/`` and
    mounting it is a bind mount. Never used unless the configuration says ``allow_directory_devices: true``.
    """

    SUPERBLOCK = ".ec2spot-superblock"

    def device_key(self):
        return None

    def probe(self):
        superblock = os.path.join(self.path, self.SUPERBLOCK)
        if os.path.exists(superblock):
            with open(superblock, encoding="utf-8") as handle:
                return json.load(handle)
        return {} if not os.listdir(self.path) else {"TYPE": "unknown-directory-content"}

    def read_only(self):
        return not os.access(self.path, os.W_OK)

    def mount_points(self):
        return []

    def holders(self):
        return []

    def claimed(self):
        return False

    def first_non_zero(self):
        return (None if not os.listdir(self.path) else 0), 0

    def needs_recovery(self, filesystem):
        return False

    def read_marker(self, filesystem, probe_point):
        return read_marker_at(os.path.join(self.path, "data"))

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
        self.seen = {}  # the volume and device a boot found: said in a failure report

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
        """Find the lineage's volume, prove with read-only probes that its data is the lineage's current data,
        and only then check it and mount it read-write. A device refused at any step is left as it was found."""
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
        self.seen["volume-id"] = volume["VolumeId"]
        phases["volume_attached"] = stamp(self.clock.now())
        generation = self.check_generation(volume)
        device = self.wait_for_device(volume, deadline)
        self.seen["device"] = device
        phases["device_found"] = stamp(self.clock.now())
        source = mounted_source(mount_point)
        if source:
            raise Refused(
                f"{mount_point} already has {source} mounted; refusing to mount the lineage volume "
                f"{volume['VolumeId']} over it. Nothing was done to {device}; unmount {mount_point} first"
            )
        disk = disk_for(device)
        self.refuse_busy_device(volume, disk)
        signature = disk.probe()
        initialised = False
        if not signature:
            self.refuse_unless_brand_new(volume, disk, generation)
            LOG.info("formatting brand-new volume %s (%s) as %s", volume["VolumeId"], device, config["filesystem"])
            disk.make_filesystem(config["filesystem"], config["fs_label"])
            signature = disk.probe()
            initialised = True
            phases["formatted"] = stamp(self.clock.now())
        filesystem = signature.get("TYPE")
        if filesystem not in EXT_FAMILY + ("xfs",):
            what = filesystem or (f"a {signature['PTTYPE']} partition table" if signature.get("PTTYPE") else signature)
            raise self.refusal(
                volume,
                disk,
                f"it holds {what} rather than a filesystem this agent mounts (ext4, xfs)",
                "Look at it by hand (blkid -p, lsblk); if the data is the lineage's, copy it onto a volume of its own",
            )
        proven = {"reason": "new", "marker": None, "snapshot_tags": None}
        if not initialised:
            self.refuse_twins(volume, disk, signature.get("UUID"))
            proven = self.prove_marker(volume, generation, disk, filesystem, signature, adopt)
            phases["proven"] = stamp(self.clock.now())
        check = disk.check(filesystem)  # the first write to a device that held data: after the proof
        phases["checked"] = stamp(self.clock.now())
        os.makedirs(mount_point, exist_ok=True)
        disk.mount(mount_point, filesystem, config["mount_options"])
        try:
            reason = self.confirm_marker(volume, generation, signature, proven)
        except AgentError:
            run(["umount", mount_point], check=False)
            raise
        phases["mounted"] = stamp(self.clock.now())
        state = {
            "volume_id": volume["VolumeId"],
            "generation": generation,
            "device": device,
            "filesystem": filesystem,
            "uuid": signature.get("UUID"),
            "check": check,
            "initialised": initialised,
            "mounted": True,
            "proof": reason,
            "mount_point": mount_point,
            "instance_id": identity["instance_id"],
            "phases": phases,
        }
        write_json(self.state_path("boot.json"), state)
        LOG.info(
            "mounted %s (lineage %s, generation %s, %s) at %s",
            volume["VolumeId"],
            config["lineage"],
            generation,
            reason,
            mount_point,
        )
        return state

    def refusal(self, volume, disk, saw, can_do, written=False):
        """A refusal that says what the agent saw, what it left alone and what a person can do."""
        touched = (
            ""
            if written
            else f" Nothing was written to {disk.path}: it was not checked, formatted or mounted read-write."
        )
        return Refused(
            f"refusing {volume['VolumeId']} ({disk.path}) for lineage {self.config['lineage']}: {saw}."
            f"{touched} {can_do}. The application was not started."
        )

    def refuse_busy_device(self, volume, disk):
        """A device that is mounted, held by the kernel, or read-only is refused for exactly that reason."""
        mounted = disk.mount_points()
        if mounted:
            raise self.refusal(
                volume,
                disk,
                f"the device is already mounted at {', '.join(mounted)}",
                "A filesystem is mounted once: find who mounted it (findmnt) and unmount it there",
            )
        holders = disk.holders()
        if holders or disk.claimed():
            raise self.refusal(
                volume,
                disk,
                "the device is in use by the kernel"
                + (f" (held by {', '.join(holders)})" if holders else " (mounted, swap or stacked elsewhere)"),
                "Find what holds it (lsblk, dmsetup ls, swapon) and release it",
            )
        if disk.read_only():
            raise self.refusal(
                volume,
                disk,
                "the device is read-only at the block layer",
                "Make it writable (blockdev --setrw, or check the attachment) if this volume should be "
                "mounted; the agent mounts the lineage's data read-write or not at all",
            )

    def refuse_unless_brand_new(self, volume, disk, generation):
        """A device with no signature is formatted only if every sampled byte is zero, the volume is tagged new
        and it was not made from a snapshot."""
        tags, lineage = volume["Tags"], self.config["lineage"]
        offset, read = disk.first_non_zero()
        LOG.info("blank check of %s: %d bytes read", disk.path, read)
        if offset is not None:
            raise self.refusal(
                volume,
                disk,
                f"it has no recognisable signature but is not blank (a non-zero byte at "
                f"offset {offset}): it holds data this agent does not understand, such as a filesystem "
                f"whose first blocks were wiped",
                "Look at it by hand before anything formats it; it is never formatted, whatever its tags say",
            )
        if tags.get(FRESH_TAG) != "true":
            raise self.refusal(
                volume,
                disk,
                f"it is blank, but it is not tagged {FRESH_TAG}=true: a volume of lineage "
                f"{lineage} (generation {generation}) that reads blank is the wrong volume or lost data",
                f"Restore the lineage from a snapshot (restore.yml); if this really is a new lineage, tag "
                f"the volume {FRESH_TAG}=true",
            )
        if volume.get("SnapshotId"):
            raise self.refusal(
                volume,
                disk,
                f"it is tagged {FRESH_TAG}=true but EC2 made it from snapshot "
                f"{volume['SnapshotId']}: a volume restored from a snapshot is never new, and a blank one "
                f"means the snapshot holds no data",
                f"Remove the {FRESH_TAG} tag and restore the lineage from a backup that holds its data (restore.yml)",
            )

    def block_devices(self):
        """The block devices this instance has (path -> major:minor): the kernel's list (sys_block_dir) and the
        lineage-relevant names under by_id_dir (in the sandbox, instances share the host's kernel and only the
        by-id names are theirs)."""
        found = {}
        sys_block = self.config["sys_block_dir"]
        for name in sorted(os.listdir(sys_block)) if os.path.isdir(sys_block) else []:
            try:
                with open(os.path.join(sys_block, name, "size"), encoding="ascii") as handle:
                    if int(handle.read().strip() or 0) == 0:
                        continue  # an unused loop device or an empty drive: nothing to compare
                with open(os.path.join(sys_block, name, "dev"), encoding="ascii") as handle:
                    key = handle.read().strip()
            except (OSError, ValueError):
                continue
            path = os.path.join("/dev", name)
            if os.path.exists(path):
                found[path] = key
        by_id = self.config["by_id_dir"]
        for name in sorted(os.listdir(by_id)) if os.path.isdir(by_id) else []:
            path = os.path.realpath(os.path.join(by_id, name))
            if path not in found and os.path.exists(path) and not os.path.isdir(path):
                status = os.stat(path)
                if stat.S_ISBLK(status.st_mode):
                    found[path] = f"{os.major(status.st_rdev)}:{os.minor(status.st_rdev)}"
        return found

    def refuse_twins(self, volume, disk, uuid):
        """One filesystem, one mount: refuse when another block device carries the same filesystem UUID (a
        block-level copy, a snapshot restored beside its original), mounted or not."""
        if not uuid or isinstance(disk, DirectoryDisk):
            return
        own = disk.device_key()
        mounts = mountinfo()
        twins = []
        for path, key in self.block_devices().items():
            if key == own:
                continue
            try:
                if Disk(path).probe().get("UUID") != uuid:
                    continue
            except AgentError:
                continue
            where = [mount_path for dev, mount_path, unused in mounts if dev == key]
            twins.append(f"{path} ({'mounted at ' + ', '.join(where) if where else 'not mounted'})")
        if twins:
            raise self.refusal(
                volume,
                disk,
                f"filesystem {uuid} is also on {', '.join(twins)}: two devices carry one "
                f"filesystem (a block-level copy or a snapshot restored beside its original), and mounting "
                f"either would fork the data or corrupt the one already mounted",
                "Detach the copy that is "
                "not the lineage's current data (or give it a new UUID with tune2fs -U / xfs_admin -U after "
                "checking which is which), then boot again",
            )

    def prove_marker(self, volume, generation, disk, filesystem, signature, adopt):
        """Read the marker through a read-only mount and judge it (generations.judge_marker). Returns the proof."""
        lineage, uuid = self.config["lineage"], signature.get("UUID")
        try:
            marker, entries = disk.read_marker(filesystem, os.path.join(self.config["run_dir"], "probe"))
        except MarkerUnreadable as exc:
            raise self.refusal(
                volume,
                disk,
                f"its lineage marker cannot be read safely: {exc}",
                "Look at the filesystem by hand (mount -o ro,noload) before anything mounts it",
            ) from exc
        replay = disk.needs_recovery(filesystem)
        journal = (
            " Its journal has not been replayed (the last holder stopped uncleanly), so what a read-only mount "
            "shows may be older than the data."
            if replay
            else ""
        )
        if marker is None:
            new = volume["Tags"].get(FRESH_TAG) == "true" and entries <= {"lost+found"} and not volume.get("SnapshotId")
            if new:  # formatted, then the instance died before the marker: finish the job
                return {"reason": "new", "marker": None, "snapshot_tags": None}
            if adopt:
                return {"reason": "adopted", "marker": None, "snapshot_tags": None}
            raise self.refusal(
                volume,
                disk,
                f"it has a {filesystem} filesystem ({uuid}) but no lineage marker ({MARKER}): "
                f"nothing says it holds lineage {lineage}.{journal}",
                "If it does (a volume made before this "
                "agent), check its data and run `ec2spot-agent mount --adopt` once",
            )
        if marker.get("uuid") and uuid and marker.get("uuid") != uuid:
            raise self.refusal(
                volume,
                disk,
                f"the marker was written on filesystem {marker.get('uuid')} but this filesystem "
                f"is {uuid}: the marker was copied, so it proves nothing about this data",
                "Find the volume that holds the lineage's filesystem; this one needs a human's inspection",
            )
        snapshot_tags = None
        restored_from = volume["Tags"].get(RESTORED_FROM_TAG)
        if restored_from and restored_from == volume.get("SnapshotId"):
            snapshot_tags = self.aws.snapshot_tags(restored_from)
        accepted, reason = judge_marker(
            lineage, volume["VolumeId"], volume["Tags"], volume.get("SnapshotId"), marker, snapshot_tags
        )
        if accepted or (reason == "older" and adopt):
            return {"reason": reason if accepted else "adopted", "marker": marker, "snapshot_tags": snapshot_tags}
        held = marker.get("generation")
        explained = {
            "other-lineage": (
                f"its data belongs to lineage {marker.get('lineage')!r} ({MARKER})",
                "Refusing to mount another service's data: attach the right volume, or fix the volume's "
                f"{LINEAGE_TAG} tag if it was tagged by mistake",
            ),
            "malformed-marker": (
                f"its marker's generation {held!r} is not a generation",
                "The marker was not written by this agent; inspect the volume by hand",
            ),
            "malformed-tag": (
                f"its {GENERATION_TAG} tag {volume['Tags'].get(GENERATION_TAG)!r} is not a generation",
                "Fix the tag (the collection writes a whole number) after checking which copy is current",
            ),
            "newer": (
                f"it is tagged generation {generation} but its data already reached generation {held}: its tags "
                f"are older than its data",
                "Reconcile the tags with the data by hand (lineage_info shows every "
                "copy); the data may be the newest copy",
            ),
            "older": (
                f"its data is generation {held} but it is tagged {generation}, and nothing on the volume explains "
                f"the gap (a move records {PREVIOUS_HOLDER_TAG}, a restore {RESTORED_FROM_TAG}): it is a stale "
                f"copy.{journal}",
                "Restore the lineage's current data instead; if a human checked that this is "
                "the current data (it moved more than once without being mounted), run `ec2spot-agent mount "
                "--adopt` once",
            ),
        }
        saw, can_do = explained[reason]
        raise self.refusal(volume, disk, saw, can_do)

    def confirm_marker(self, volume, generation, signature, proven):
        """On the read-write mount: the marker must still be what the proof read (a journal replay may have
        brought a newer one), then it records this generation, volume and instance."""
        config = self.config
        try:
            marker, unused_entries = read_marker_at(config["mount_point"])
        except MarkerUnreadable as exc:
            raise Refused(
                f"{volume['VolumeId']}: after the check and the read-write mount its marker cannot be read "
                f"safely ({exc}); unmounted, the application was not started"
            ) from exc
        if marker != proven["marker"]:  # the check replayed a journal: judge what it brought
            if marker is None:
                raise Refused(
                    f"{volume['VolumeId']}: its marker was there before the check and is gone after it; the "
                    f"filesystem is unmounted and the application was not started. Inspect it by hand"
                )
            accepted, reason = judge_marker(
                config["lineage"],
                volume["VolumeId"],
                volume["Tags"],
                volume.get("SnapshotId"),
                marker,
                proven["snapshot_tags"],
            )
            if not accepted and not (reason == "older" and proven["reason"] == "adopted"):
                raise Refused(
                    f"{volume['VolumeId']}: replaying its journal brought a marker for generation "
                    f"{marker.get('generation')!r} of lineage {marker.get('lineage')!r} ({reason}), which its "
                    f"tags (generation {generation}) do not allow; the filesystem was checked (its journal "
                    f"replayed) but it is unmounted and the application was not started. Reconcile the tags "
                    f"with the data by hand"
                )
        if marker is None:
            marker = {
                "lineage": config["lineage"],
                "uuid": signature.get("UUID"),
                "created": stamp(self.clock.now()),
                "created_on": volume["VolumeId"],
            }
        marker.update(
            generation=generation,
            last_volume=volume["VolumeId"],
            last_instance=self.identity()["instance_id"],
            last_mounted=stamp(self.clock.now()),
        )
        directory = os.path.join(config["mount_point"], os.path.dirname(MARKER))
        if os.path.islink(directory):
            raise Refused(f"{directory} is a symbolic link; refusing to write the marker through it")
        write_json(os.path.join(config["mount_point"], MARKER), marker)
        return proven["reason"]

    def _attached_lineage_volumes(self, instance_id, lineage):
        """The volumes of ``lineage`` attached (not attaching) to ``instance_id``."""
        return [
            v
            for v in self.aws.describe_volumes(
                {
                    "attachment.instance-id": [instance_id],
                    f"tag:{LINEAGE_TAG}": [lineage],
                    "tag-key": [GENERATION_TAG],
                }
            )
            if any(a["InstanceId"] == instance_id and a["State"] == "attached" for a in v["Attachments"])
        ]

    def event_entry(self, detail_type, detail):
        """One PutEvents entry of the agent's own source on the configured bus (the control plane's rules match it)."""
        return {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "EventBusName": self.config["event_bus"],
            "Resources": [],
        }

    def put_event(self, detail_type, detail, what):
        """Put one event (``event_entry``); True once EventBridge took it. A failure or a rejected entry is logged as
        ``what`` and answered False: the caller decides whether to try again."""
        try:
            answer = self.aws.put_events([self.event_entry(detail_type, detail)])
        except AgentError as exc:
            LOG.error("could not put %s on the event bus: %s", what, exc)
            return False
        if answer.get("FailedEntryCount"):
            LOG.error("%s was rejected by the event bus: %s", what, answer.get("Entries"))
            return False
        return True

    def announce_ready(self, instance_id):
        """Tell the control plane, once per boot, that this instance is up and waiting for its data (``REPLACEMENT_READY``):
        the cut-over can move the data now rather than when the old instance is reclaimed. Best effort: a failure is
        logged and tried again at the next look, and the wait goes on either way."""
        path = self.state_path("ready.json")
        if not self.config["report_boot"] or read_json(path) is not None:
            return False
        waiting_since = stamp(self.clock.now())
        detail = {
            "instance-id": instance_id,
            "lineage": self.config["lineage"],
            "service": self.config["service"],
            "waiting-since": waiting_since,
        }
        if not self.put_event(REPLACEMENT_READY, detail, "the readiness for the data"):
            return False
        os.makedirs(self.config["run_dir"], exist_ok=True)
        write_json(path, {"waiting-since": waiting_since})
        return True

    def wait_for_attachment(self, instance_id, deadline):
        """The lineage volume attached to this instance (the control plane attaches it during Pending:Wait)."""
        lineage = self.config["lineage"]

        def attached_volume():
            attached = self._attached_lineage_volumes(instance_id, lineage)
            if len(attached) > 1:
                raise Refused(
                    f"{len(attached)} volumes of lineage {lineage} are attached to {instance_id} "
                    f"({', '.join(v['VolumeId'] for v in attached)}); which one is current is for a human to decide"
                )
            if not attached:
                self.announce_ready(instance_id)
                return None
            return attached[0]

        looks = {"devices": None, "asked": None}

        def attached_once_ready():
            # Once it has said it is ready, the cut-over may give it the data any second, and each second until the
            # application starts is downtime: look at this instance's own EBS devices every READY_DEVICE_LOOK (no
            # API call), and ask EC2 when a new one appears, or every READY_ASK_EVERY in any case.
            if read_json(self.state_path("ready.json")) is None:
                return attached_volume()
            devices, now = self.ebs_devices(), self.clock.now()
            if (
                looks["devices"] is None
                or devices != looks["devices"]
                or (now - looks["asked"]).total_seconds() >= READY_ASK_EVERY
            ):
                looks["devices"], looks["asked"] = devices, now
                return attached_volume()
            return None

        return self.poll_until(
            attached_once_ready,
            deadline,
            0.5,
            lambda: READY_DEVICE_LOOK if read_json(self.state_path("ready.json")) is not None else 5.0,
            lambda: (
                f"no volume of lineage {lineage} was attached to {instance_id} within {self.config['device_wait_seconds']} s; "
                f"is the control plane running and the group's launch hook in place? The application was not started"
            ),
        )

    def ebs_devices(self):
        """The names of this instance's EBS devices as udev lists them (NVMe serials), or its Xen ``xvd*`` devices."""
        names = set()
        for directory, prefixes in (
            (self.config["by_id_dir"], ("nvme-Amazon_Elastic_Block_Store_",)),
            (self.config["dev_dir"], ("xvd",)),
        ):
            try:
                names.update(name for name in os.listdir(directory) if name.startswith(prefixes))
            except OSError:
                continue
        return frozenset(names)

    def poll_until(self, probe, deadline, first_delay, max_delay, timed_out):
        """``probe()`` until it returns something, backing off x1.5 up to ``max_delay`` (seconds, or a function giving
        them at each look); ``TimedOut`` at the deadline."""
        delay = first_delay
        while True:
            found = probe()
            if found is not None:
                return found
            if self.clock.now() >= deadline:
                raise TimedOut(timed_out())
            cap = max_delay() if callable(max_delay) else max_delay
            delay = min(delay, cap)
            self.clock.sleep(delay)
            delay = min(delay * 1.5, cap)

    def check_generation(self, volume):
        """Refuse a volume that is not the lineage's one current copy (generations.rank_copies, as the core decides)."""
        lineage, volume_id = self.config["lineage"], volume["VolumeId"]
        generation = parse_generation(volume["Tags"].get(GENERATION_TAG))
        if generation is None:
            raise Refused(
                f"{volume_id} has a malformed {GENERATION_TAG} tag "
                f"({volume['Tags'].get(GENERATION_TAG)!r}); refusing to guess which copy of lineage {lineage} "
                f"is current. Nothing was done to it"
            )
        copies = {
            v["VolumeId"]: v["Tags"].get(GENERATION_TAG)
            for v in self.aws.describe_volumes(
                {
                    f"tag:{LINEAGE_TAG}": [lineage],
                    "tag-key": [GENERATION_TAG],
                    "status": ["creating", "available", "in-use"],
                }
            )
        }
        copies[volume_id] = volume["Tags"].get(GENERATION_TAG)
        verdict, detail = rank_copies(sorted(copies.items()))
        if verdict == "malformed":
            raise Refused(
                f"volumes of lineage {lineage} carry a {GENERATION_TAG} tag that is not a generation "
                f"({', '.join(detail)}): no copy can be called current, so {volume_id} is not mounted. Nothing "
                f"was done to it; fix or remove those tags"
            )
        if verdict == "fork":
            top, tied = detail
            raise Refused(
                f"{volume_id} holds generation {generation} of lineage {lineage}, but "
                f"{', '.join(v for v in tied if v != volume_id)} holds the same or a newer one (generation {top}): "
                f"this copy is stale or the lineage forked; refusing to mount it. Nothing was done to it"
            )
        if detail[0] != volume_id:
            raise Refused(
                f"{volume_id} holds generation {generation} of lineage {lineage}, but {detail[0]} holds the same "
                f"or a newer one (generation {detail[1]}): this copy is stale; refusing to mount it. Nothing "
                f"was done to it"
            )
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

        return self.poll_until(
            present_device,
            deadline,
            0.2,
            2.0,
            lambda: (
                f"{volume['VolumeId']} is attached but no device for it appeared ({', '.join(self.device_candidates(volume))}) "
                f"within {self.config['device_wait_seconds']} s; the application was not started"
            ),
        )

    # -- application and report
    def run_commands(self, commands, deadline=None):
        for command in commands:
            timeout = self.config["command_timeout_seconds"]
            if deadline is not None:
                timeout = max(1.0, min(timeout, (deadline - self.clock.now()).total_seconds()))
            LOG.info("running: %s", command)
            try:
                result = subprocess.run(
                    ["/bin/sh", "-c", command],
                    cwd=self.config["app_directory"] or None,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise TimedOut(f"`{command}` did not finish within {timeout:.0f} s") from exc
            if result.returncode != 0:
                raise AgentError(
                    f"`{command}` failed ({result.returncode}): {(result.stderr or result.stdout).strip()[:400]}"
                )

    def start_app(self):
        state = read_json(self.state_path("boot.json"))
        mount_point = self.config["mount_point"]
        if not state or not state.get("mounted") or not mounted_source(mount_point):
            raise Refused(
                f"the lineage volume is not mounted at {mount_point} (run `ec2spot-agent mount` first); "
                f"the application must never start on an empty directory"
            )
        phases = state["phases"]
        if "app_started" not in phases:
            self.run_commands(self.config["app_start_commands"])
            phases["app_started"] = stamp(self.clock.now())
            write_json(self.state_path("boot.json"), state)
        if self.config["target_group_arns"] and "registered" not in phases:
            self.register_targets(state)
            write_json(self.state_path("boot.json"), state)
        if self.config["address_tags"] and "address" not in phases:
            state["address"] = self.associate_address()
            phases["address"] = stamp(self.clock.now())
            write_json(self.state_path("boot.json"), state)
        if self.config["report_boot"] and "reported" not in phases:
            self.report(state)
        return state

    def register_targets(self, state):
        """Join the fleet's target groups, now that the application answers: the load balancer's first health check
        then finds it serving, and one passing check makes the target healthy (ALB user guide, "Health checks for
        Application Load Balancer target groups": "After your target is registered, it must pass one health check to
        be considered healthy"). Registered earlier, the checks would fail while the application starts, and an
        unhealthy target needs HealthyThresholdCount passes (default 5 x 30 s) to come back. Never called before the
        start commands succeeded. A failure is recorded (``registration_errors``; the next start-app tries again) and
        told in the boot report, never fatal: the application keeps running, and Auto Scaling registers the instance
        in the group's target groups itself when it enters InService."""
        phases, registered, errors = state["phases"], [], []
        try:
            instance_id = self.identity()["instance_id"]
        except AgentError as exc:
            instance_id = None
            errors.append(f"identity: {exc}")
        for arn in self.config["target_group_arns"] if instance_id else []:
            try:
                self.aws.register_target(arn, instance_id)
                registered.append(arn)
            except AgentError as exc:  # the application is up: a failed registration must not take it down
                errors.append(f"register {arn}: {exc}")
        state["registered"] = registered
        state["registration_errors"] = errors
        if errors:
            LOG.error("the application runs, but the instance did not join every target group: %s", errors)
        else:
            phases["registered"] = stamp(self.clock.now())
        return registered

    def associate_address(self):
        instance_id = self.identity()["instance_id"]
        found = self.aws.describe_addresses(self.config["address_tags"])
        if len(found) != 1:
            raise AgentError(
                f"{len(found)} Elastic IPs carry tags {self.config['address_tags']}; exactly one is needed"
            )
        if found[0]["InstanceId"] != instance_id:
            self.aws.associate_address(found[0]["AllocationId"], instance_id)
        return found[0]["PublicIp"]

    def mount_or_report(self, adopt=False):
        """``mount``; when it refuses or times out, the control plane is told at once (a boot report with the
        ``status``, the reason and what the agent saw), so the operator hears why instead of nothing."""
        try:
            return self.mount(adopt=adopt)
        except (Refused, TimedOut) as exc:
            if self.config["report_boot"]:
                self.report_failure("refused" if isinstance(exc, Refused) else "timed-out", str(exc))
            raise

    def report_failure(self, status, reason):
        """One boot report per boot saying the data was not mounted (``status`` refused or timed-out)."""
        path = self.state_path("failure.json")
        if read_json(path) is not None:
            return False
        try:
            detail = {
                "instance-id": self.identity()["instance_id"],
                "lineage": self.config["lineage"],
                "service": self.config["service"],
                "status": status,
                "reason": reason[:2000],
                **{key: value for key, value in self.seen.items() if value},
            }
        except AgentError as exc:
            LOG.error("could not tell the control plane that the data was not mounted: %s", exc)
            return False
        if not self.put_event(BOOT_REPORT, detail, "the report that the data was not mounted"):
            return False
        write_json(path, {"status": status, "reported": stamp(self.clock.now())})
        return True

    def report(self, state):
        """Tell the control plane the boot finished (it clears ec2spot:fresh and sends the success message)."""
        phases = state["phases"]
        reported_at = stamp(self.clock.now())
        detail = {
            "instance-id": state["instance_id"],
            "lineage": self.config["lineage"],
            "service": self.config["service"],
            "volume-id": state["volume_id"],
            "generation": state["generation"],
            "initialised": state["initialised"],
            "phases": dict(phases, reported=reported_at),
        }
        if self.config["target_group_arns"]:
            detail["target-groups"] = {
                "registered": state.get("registered", []),
                "errors": state.get("registration_errors", []),
            }
        entry = self.event_entry(BOOT_REPORT, detail)
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
            fcntl.flock(
                lock, fcntl.LOCK_EX
            )  # a concurrent stop (SSM, systemd, watcher) waits here, then reads its record
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
        record = {
            "reason": reason,
            "started": stamp(started),
            "deadline": stamp(deadline) if deadline else None,
            "errors": [],
        }
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
            except AgentError as exc:  # keep going: a failed deregistration must not keep the app from stopping
                record["errors"].append(f"deregister {arn}: {exc}")
        record["deregistered"] = deregistered
        drain = config["drain_seconds"] if deregistered else 0
        if deadline is not None:  # leave the stop its reserve before the instance goes away
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
        record["outcome"] = (
            "stopped"
            if "app_stopped" in record and not (config["unmount_on_stop"] and mounted_source(mount_point))
            else "incomplete"
        )
        return record

    # -- watch
    def poll_once(self):
        """One look at IMDS. Returns what was acted on: 'interruption' (terminate or stop: the application is stopped),
        'notice' (a terminate notice with ``notice_stop: before-reclaim`` and the reclaim not yet near: recorded, the
        application serves on), 'hibernate' (recorded, nothing stopped), 'rebalance' or None."""
        try:
            action = self.imds.get("meta-data/spot/instance-action")
        except TransientError as exc:  # never act on an error: a false stop is an outage of its own
            LOG.warning("IMDS unavailable, will retry: %s", exc)
            return None
        if action:
            done = read_json(self.state_path("stop.json"))
            if done and done.get("outcome") == "stopped":
                return "interruption"
            try:
                notice = json.loads(action)
                deadline = parse_time(notice["time"])
            except (ValueError, KeyError, TypeError, AttributeError):
                LOG.error("unreadable instance-action %r; stopping with the documented two-minute lead", action[:200])
                notice, deadline = {"action": "unknown"}, self.clock.now() + datetime.timedelta(seconds=120)
            if notice.get("action") == "hibernate":
                # Hibernation keeps memory: the application resumes as it was. Stopping it would lose that for nothing
                # (EC2 user guide, "Behavior of Spot Instance interruptions"). Recorded once, never stopped.
                path = self.state_path("hibernate.json")
                if read_json(path) is None:
                    write_json(path, {"notice": notice, "seen": stamp(self.clock.now())})
                    LOG.warning(
                        "Spot hibernation at %s: the application keeps running and resumes from memory", stamp(deadline)
                    )
                return "hibernate"
            if self.config["notice_stop"] == "before-reclaim" and notice.get("action") == "terminate":
                # Make-before-break: the control plane stops the application at its cut-over, once the replacement
                # is up (or at its deadline). The agent stops it itself only when the reclaim is closer than its
                # reserve and one more look, in case the control plane never came.
                left = (deadline - self.clock.now()).total_seconds()
                if left > self.config["stop_reserve_seconds"] + self.config["poll_seconds"]:
                    path = self.state_path("notice.json")
                    if read_json(path) is None:
                        write_json(path, {"notice": notice, "seen": stamp(self.clock.now())})
                        LOG.warning(
                            "Spot interruption at %s: serving until the control plane's cut-over (the agent stops the "
                            "application itself %s s before the reclaim if nothing has)",
                            stamp(deadline),
                            self.config["stop_reserve_seconds"],
                        )
                    return "notice"
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
                write_json(
                    path, {"notice": rebalance, "seen": stamp(self.clock.now()), "action": self.config["on_rebalance"]}
                )
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

        previous = (
            signal.signal(signal.SIGTERM, end_between_polls)
            if threading.current_thread() is threading.main_thread()
            else None
        )
        try:
            self._watch(max_polls)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def check_maintenance(self):
        """EC2's scheduled events for this instance (IMDS ``events/maintenance/scheduled``): each active one is told
        to the control plane once (``EC2Spot Scheduled Maintenance``), which checks it with EC2 and plans the hand-off
        (AWS Health delivers the same news best effort). Returns the event ids reported now."""
        try:
            listed = self.imds.get("meta-data/events/maintenance/scheduled")
        except TransientError as exc:
            LOG.warning("IMDS unavailable, will retry: %s", exc)
            return []
        try:
            scheduled = json.loads(listed or "[]")
        except ValueError:
            LOG.error("unreadable events/maintenance/scheduled %r", (listed or "")[:200])
            return []
        path = self.state_path("maintenance.json", persistent=True)
        known = read_json(path) or {}
        reported = []
        for item in scheduled if isinstance(scheduled, list) else []:
            if not isinstance(item, dict) or item.get("State") != "active" or item.get("Code") not in MAINTENANCE_CODES:
                continue
            event_id = str(item.get("EventId", ""))[:64]
            if not event_id or event_id in known:
                continue
            try:
                not_before = datetime.datetime.strptime(str(item.get("NotBefore")), "%d %b %Y %H:%M:%S %Z").replace(
                    tzinfo=datetime.timezone.utc
                )
            except ValueError:
                LOG.error("scheduled event %s has an unreadable NotBefore %r", event_id, item.get("NotBefore"))
                continue
            detail = {
                "instance-id": self.identity()["instance_id"],
                "lineage": self.config["lineage"],
                "service": self.config["service"],
                "code": item["Code"],
                "event-id": event_id,
                "not-before": stamp(not_before),
            }
            answer = self.aws.put_events([self.event_entry(MAINTENANCE_REPORT, detail)])
            if answer.get("FailedEntryCount"):
                LOG.warning("scheduled event %s not reported: %s", event_id, answer.get("Entries"))
                continue
            LOG.warning("EC2 scheduled %s for %s; told the control plane", item["Code"], stamp(not_before))
            known[event_id] = {
                "code": item["Code"],
                "not_before": stamp(not_before),
                "reported": stamp(self.clock.now()),
            }
            write_json(path, known)
            reported.append(event_id)
        return reported

    def _watch(self, max_polls):
        polls = 0
        next_maintenance = self.clock.now()
        while (max_polls is None or polls < max_polls) and not self.terminating:
            try:
                self.poll_once()
                if self.config["report_boot"] and self.clock.now() >= next_maintenance:
                    next_maintenance = self.clock.now() + datetime.timedelta(
                        seconds=self.config["maintenance_poll_seconds"]
                    )
                    self.check_maintenance()
            except AgentError as exc:
                LOG.error("%s", exc)
            polls += 1
            if (max_polls is None or polls < max_polls) and not self.terminating:
                self.clock.sleep(self.config["poll_seconds"])


# ---- command line -----------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="ec2spot-agent", description=(__doc__ or "ec2spot-agent").split("\n\n", maxsplit=1)[0]
    )
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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="ec2spot-agent %(levelname)s %(message)s",
    )
    try:
        config = load_config(args.config)
        agent = Agent(config)
        if args.command == "check-config":
            print(json.dumps(config, indent=2, sort_keys=True))
        elif args.command == "mount":
            agent.mount_or_report(adopt=args.adopt)
        elif args.command == "start-app":
            agent.start_app()
        elif args.command == "boot":
            agent.mount_or_report()
            agent.start_app()
        elif args.command == "stop":
            print(json.dumps(agent.stop(args.reason, parse_time(args.deadline) if args.deadline else None), indent=2))
        elif args.command == "watch":
            agent.watch(args.max_polls)
        elif args.command == "status":
            print(
                json.dumps(
                    {
                        "boot": read_json(agent.state_path("boot.json")),
                        "stop": read_json(agent.state_path("stop.json")),
                        "rebalance": read_json(agent.state_path("rebalance.json")),
                    },
                    indent=2,
                    sort_keys=True,
                )
            )
    except AgentError as exc:
        LOG.error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
