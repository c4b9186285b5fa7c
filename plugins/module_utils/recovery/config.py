# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The interruption handler's configuration: one JSON document, validated before use.

The control-plane role puts it in the function's deployment package, as ``recovery/handler_config.json`` next to
this module (the ``handler_package`` action validates it with ``parse`` and writes it); a package built without one
reads the environment variable ``EC2SPOT_HANDLER_CONFIG`` instead (``load``). Shape (every key but ``services`` has a
default)::

    {
      "topic_arn": "arn:aws:sns:us-east-1:123456789012:pg-recovery",   # warnings, successes, failures
      "metric_namespace": "EC2Spot/AutoRecover",
      "queue_arn": "arn:aws:sqs:us-east-1:123456789012:pg-recovery-events",   # the function's own queue: the
                                              # cut-over's deadline is a delayed message on it (make-before-break)
      "services": [
        {
          "name": "pg",                       # used in messages and as the metric dimension
          "lineage": "pgdata",                # instances tagged ec2spot:lineage=pgdata are managed
          "group": "pg-fleet",                # its Auto Scaling group (optional for standalone instances)
          "stop_commands": ["systemctl stop postgresql"],   # AWS-RunShellScript, run on a warning
          "data_mounts": ["/data"],           # flushed and frozen around the snapshot
          "create_image": false,              # also start an AMI (no reboot) on a warning
          "rebalance_snapshot": true,         # take a fresh snapshot on a rebalance recommendation
          "hibernate_snapshot": false,        # a Spot hibernate notice: also snapshot (crash-consistent; memory is kept)
          "planned_lead": 1800,               # a planned interruption (retirement...): hand off this long before it
          "recovery_deadline": 900,           # an interruption not recovered (boot report) this long after: failed
          "address": {"tags": {"Service": "pg"}},   # or {"allocation_id": ...} / {"public_ip": ...} / null
          "address_take_from_any": false,     # move the address even from an instance of another (or no) lineage
          "device_name": "/dev/sdf",          # where the replacement gets the data (optional)
          "max_data_age": null,               # refuse restores from older data (seconds)
          "stop_timeout": 90,                 # upper bound on the SSM stop; the notice deadline may cut it shorter
          "cutover": "break-before-make",     # or "make-before-break": the old instance serves until its replacement
                                              # is up (or the deadline), then the data moves (handler/cutover.py)
          "cutover_reserve": 40,              # make-before-break: the deadline is this long before the interruption
          "keep_data_zone": true,             # make-before-break: the group launches the replacement in the data's
                                              # zone until the cut-over (handler/steering.py)
          "avoid_interrupted_pool": 300,      # make-before-break: the group's overrides leave out the interrupted
                                              # instance type this long (seconds, 0: never; handler/steering.py)
          "standby": null,                    # standby failover (standby.py), e.g.
                                              #   {"tags": {"ec2spot:role": "standby"},   # or {"instance_id": "i-..."}
                                              #    "primary_tags": {"ec2spot:role": "primary"},   # optional
                                              #    "alarm_prefix": "ec2spot-autorecover-standby-pg",   # its alarms
                                              #    "ready_timeout": 600, "move_volume": true}
          "watchdog": null                    # CPU watchdog (watchdog.py), e.g.
                                              #   {"mode": "handler",                    # or "alarm-reboot"
                                              #    "commands": ["docker-compose up -d"], "cooldown": 600,
                                              #    "max_reboots_per_hour": 2, "ready_timeout": 600, "command_timeout": 120,
                                              #    "alarm_prefix": "ec2spot-autorecover-watchdog-pg"}
        }
      ]
    }

An instance is managed when it carries ``ec2spot:lineage`` with the lineage of a configured
service; every other instance's events are dropped without side effects (the queue may be
shared by mistake; Karpenter documents why that matters).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from .errors import InvalidInput, require_section
from .lineage import validate_name
from . import standby as standby_settings
from . import watchdog as watchdog_settings

# Where the deployed configuration is. In the package first: Lambda limits a function's environment variables to
# 4 KB in all (Lambda developer guide, "Lambda quotas"), about 9 services as deploy.yml describes them, and the
# package has no such bound; it also changes with the code's digest exactly when the configuration does, so code and
# configuration deploy together, atomically. The environment variable serves packages built without a configuration.
PACKAGED_FILE = "handler_config.json"
ENV_VAR = "EC2SPOT_HANDLER_CONFIG"
DEFAULT_NAMESPACE = "EC2Spot/AutoRecover"
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
QUEUE_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,80}$")
# How the data moves on a Spot interruption warning (handler/cutover.py): stop at the warning and release the volume
# early (break-before-make, the default), or keep serving until the replacement is up (make-before-break).
BREAK_BEFORE_MAKE = "break-before-make"
MAKE_BEFORE_BREAK = "make-before-break"
CUTOVERS = (BREAK_BEFORE_MAKE, MAKE_BEFORE_BREAK)
# The cut-over's deadline, before the interruption: at least what a stop (notice.MIN_STOP_SECONDS) and the snapshot
# call and detach after it (notice.RESERVE_AFTER_STOP) need; at most what leaves a replacement any time to come up.
CUTOVER_RESERVE_RANGE = (20, 100)
# How long a make-before-break group leaves the interrupted instance type out of its overrides (handler/steering.py),
# at most: far beyond the co-interruptions it is for (> 92 % within 3 minutes), and well within the hour EC2 still
# describes the terminated holder that keeps the record the sweep ends it by.
AVOID_POOL_MAX = 1800


@dataclass(frozen=True)
class Service:
    name: str
    lineage: str
    group: str | None = None
    stop_commands: tuple = ()
    data_mounts: tuple = ()
    create_image: bool = False
    rebalance_snapshot: bool = True
    hibernate_snapshot: bool = False
    address_take_from_any: bool = False
    planned_lead: int = 1800
    recovery_deadline: int = 900
    address: dict | None = None
    device_name: str | None = None
    max_data_age: int | None = None
    stop_timeout: int = 90
    cutover: str = BREAK_BEFORE_MAKE
    cutover_reserve: int = 40
    keep_data_zone: bool = True
    avoid_interrupted_pool: int = 300
    standby: standby_settings.StandbySettings | None = None
    watchdog: watchdog_settings.WatchdogSettings | None = None


@dataclass(frozen=True)
class HandlerConfig:
    services: tuple
    topic_arn: str | None = None
    metric_namespace: str = DEFAULT_NAMESPACE
    queue_arn: str | None = None
    by_lineage: dict = field(default_factory=dict, compare=False)

    def service_for(self, lineage):
        return self.by_lineage.get(lineage)


def _service(raw, index):
    where = f"services[{index}]"
    require_section(raw, where, Service.__dataclass_fields__, "an object")
    name = raw.get("name")
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        raise InvalidInput(f"{where}.name must be 1-63 letters, digits, '.', '_' or '-'")
    validate_name(raw.get("lineage"))
    for key in ("stop_commands", "data_mounts"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise InvalidInput(f"{where}.{key} must be a list of non-empty strings")
    address = raw.get("address")
    if address is not None and (
        not isinstance(address, dict)
        or len(address) != 1
        or next(iter(address)) not in ("allocation_id", "public_ip", "tags")
    ):
        raise InvalidInput(f"{where}.address must be one of {{allocation_id}}, {{public_ip}} or {{tags}}")
    for key in ("create_image", "rebalance_snapshot", "hibernate_snapshot", "address_take_from_any", "keep_data_zone"):
        if key in raw and not isinstance(raw[key], bool):
            raise InvalidInput(f"{where}.{key} must be true or false")
    for key in ("max_data_age", "stop_timeout", "planned_lead", "recovery_deadline"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise InvalidInput(f"{where}.{key} must be a positive integer (seconds)")
    cutover = raw.get("cutover", BREAK_BEFORE_MAKE)
    if cutover not in CUTOVERS:
        raise InvalidInput(f"{where}.cutover must be one of {', '.join(CUTOVERS)}")
    if cutover == MAKE_BEFORE_BREAK and not raw.get("group"):
        raise InvalidInput(
            f"{where}.cutover {MAKE_BEFORE_BREAK} needs the service's group: its launch hook holds the replacement "
            f"until the data moves"
        )
    reserve = raw.get("cutover_reserve", 40)
    low, high = CUTOVER_RESERVE_RANGE
    if not isinstance(reserve, int) or isinstance(reserve, bool) or not low <= reserve <= high:
        raise InvalidInput(
            f"{where}.cutover_reserve must be an integer from {low} to {high} (seconds before the interruption)"
        )
    avoid = raw.get("avoid_interrupted_pool", 300)
    if not isinstance(avoid, int) or isinstance(avoid, bool) or not 0 <= avoid <= AVOID_POOL_MAX:
        raise InvalidInput(
            f"{where}.avoid_interrupted_pool must be an integer from 0 (off) to {AVOID_POOL_MAX} (seconds)"
        )
    return Service(
        name=name,
        lineage=raw["lineage"],
        group=raw.get("group"),
        stop_commands=tuple(raw.get("stop_commands", [])),
        data_mounts=tuple(raw.get("data_mounts", [])),
        create_image=raw.get("create_image", False),
        rebalance_snapshot=raw.get("rebalance_snapshot", True),
        hibernate_snapshot=raw.get("hibernate_snapshot", False),
        planned_lead=raw.get("planned_lead", 1800),
        address_take_from_any=raw.get("address_take_from_any", False),
        recovery_deadline=raw.get("recovery_deadline", 900),
        address=address,
        device_name=raw.get("device_name"),
        max_data_age=raw.get("max_data_age"),
        stop_timeout=raw.get("stop_timeout", 90),
        cutover=cutover,
        cutover_reserve=reserve,
        keep_data_zone=raw.get("keep_data_zone", True),
        avoid_interrupted_pool=avoid,
        standby=standby_settings.parse_settings(raw["standby"], f"{where}.standby")
        if raw.get("standby") is not None
        else None,
        watchdog=watchdog_settings.parse_settings(raw["watchdog"], f"{where}.watchdog")
        if raw.get("watchdog") is not None
        else None,
    )


def serialize(document):
    """The configuration as the package stores it: JSON, keys sorted, no whitespace, so one configuration always
    gives the same bytes (and the package the same digest)."""
    try:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"handler configuration is not JSON-serializable: {exc}") from exc


def load(environ, package_dir):
    """The deployed configuration: ``package_dir``'s ``handler_config.json``, or else ``environ``'s
    ``EC2SPOT_HANDLER_CONFIG``. Returns ``(HandlerConfig, where it came from)``; neither is an error, never a guess."""
    path = os.path.join(package_dir, PACKAGED_FILE)
    try:
        with open(path, "rb") as handle:
            return parse(handle.read().decode("utf-8")), path
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the packaged handler configuration {path}: {exc}") from exc
    if environ.get(ENV_VAR):
        return parse(environ[ENV_VAR]), ENV_VAR
    raise InvalidInput(
        f"no handler configuration: the package has no {PACKAGED_FILE} and {ENV_VAR} is not set "
        f"(deploy with the control_plane role, or build the package with handler_package's config)"
    )


def parse(document):
    """Validate a configuration (a JSON string or an already parsed object)."""
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise InvalidInput(f"handler configuration is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("services"), list) or not document["services"]:
        raise InvalidInput("handler configuration needs a non-empty 'services' list")
    services = tuple(_service(raw, index) for index, raw in enumerate(document["services"]))
    by_lineage = {}
    for service in services:
        if service.lineage in by_lineage:
            raise InvalidInput(f"lineage {service.lineage} is configured twice")
        by_lineage[service.lineage] = service
    queue_arn = document.get("queue_arn")
    if queue_arn is not None and (not isinstance(queue_arn, str) or not QUEUE_ARN.match(queue_arn)):
        raise InvalidInput("queue_arn must be an SQS queue ARN (arn:<partition>:sqs:<region>:<account>:<name>)")
    if queue_arn is None and any(service.cutover == MAKE_BEFORE_BREAK for service in services):
        raise InvalidInput(
            f"cutover {MAKE_BEFORE_BREAK} needs queue_arn, the function's own queue: the cut-over's deadline is a "
            f"delayed message on it"
        )
    return HandlerConfig(
        services=services,
        topic_arn=document.get("topic_arn"),
        metric_namespace=document.get("metric_namespace", DEFAULT_NAMESPACE),
        queue_arn=queue_arn,
        by_lineage=by_lineage,
    )
