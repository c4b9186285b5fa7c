# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Standby failover (seed 002, pattern 1): a primary instance and a warm or stopped standby.

When the primary stops, is stopping or goes away (``EC2 Instance State-change Notification``),
or one of its alarms goes to ``ALARM`` (status check failed, CPU pinned), ``fail_over``:

1. finds the standby (by instance id or by tags; it must carry the service's lineage tag, which
   is what the handler's IAM policy allows it to start) and starts it when it is stopped;
2. waits, bounded and by polling, until it is ``running`` and **both** status checks are ``ok``
   (``DescribeInstanceStatus``); a standby that fails a check or does not pass them in time gets
   nothing: ``StandbyNotReady`` is raised before the address moves;
3. moves the service's Elastic IP to it with ``addresses.move_address`` (the logic of the
   ``eip_failover`` module), from the primary or from no one, never from a third instance;
4. hands the lineage's data volume over when the volume and the standby are in one availability
   zone, through ``volumes.move_lineage_volume`` and its fence: the primary must be stopped or
   gone (a ``stopping`` primary is waited for). A running primary keeps its volume: the refusal is
   part of the result and the report, never forced. Another zone: not handed over (restoring a
   snapshot there is an explicit ``volume_reattach``).

Failing back is never automatic: the handler records the failover on the primary and on the
standby (``progress`` tags) and acts on no further event for that primary until the failback
(``roles/standby`` with ``standby_failback: true``) moved the address and data back and cleared
the marks (``FAILOVER_STEP``, ``TOOK_OVER_STEP``). So an address moved back by hand stays where
the operator put it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from . import tags as t
from .addresses import find_address, move_address
from .aws import SYSTEM_CLOCK, call, wait_until
from .errors import (
    AwsApiError,
    Conflict,
    FenceViolation,
    InvalidInput,
    NotFound,
    RecoveryError,
    WaitTimeout,
    exactly_one,
    optional_name,
    require_section,
)
from .fence import QUIESCENT_STATES
from .instances import GONE_STATES, describe_instance, ensure_running, find_instances, state_of, wait_for_state
from .lineage import current_volume
from .volumes import move_lineage_volume

# Progress steps (``progress.py``): on the primary, that it failed over and to which standby; on the standby,
# which primary it took over from. Cleared by the explicit failback only.
FAILOVER_STEP = "standby-failover"
TOOK_OVER_STEP = "standby-took-over"
# Primary states that trigger a failover.
TRIGGER_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})
DEFAULT_READY_TIMEOUT = 600
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
SECTION_KEYS = frozenset(
    {"instance_id", "tags", "primary_tags", "primary_instance_id", "alarm_prefix", "ready_timeout", "move_volume"}
)


class StandbyNotReady(RecoveryError):
    """The standby did not become running with both status checks ok: nothing was moved to it."""

    code = "StandbyNotReady"


@dataclass(frozen=True)
class StandbySettings:
    """A service's ``standby`` section (see ``config.py``)."""

    instance_id: str | None = None
    tags: dict | None = None
    primary_tags: dict | None = None
    primary_instance_id: str | None = None
    alarm_prefix: str | None = None
    ready_timeout: int = DEFAULT_READY_TIMEOUT
    move_volume: bool = True


@dataclass
class FailoverResult:
    primary_id: str
    standby_id: str
    standby_started: bool = False
    ready_seconds: float = 0.0
    address: str | None = None
    address_moved: bool = False
    volume: str = "not configured"
    volume_moved: bool = False
    actions: list = field(default_factory=list)

    def to_dict(self):
        return asdict(self)


def _tag_dict(value, where):
    if (
        not isinstance(value, dict)
        or not value
        or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in value.items())
    ):
        raise InvalidInput(f"{where} must be a non-empty mapping of tag keys to string values")
    return dict(value)


def parse_settings(raw, where):
    """Validate a ``standby`` section; ``InvalidInput`` naming the key otherwise."""
    require_section(raw, where, SECTION_KEYS, "an object with instance_id or tags")
    given = [key for key in ("instance_id", "tags") if raw.get(key)]
    if len(given) != 1:
        raise InvalidInput(
            f"{where} must name the standby by exactly one of instance_id or tags (got {given or 'none'})"
        )
    instance_id, primary_instance_id = raw.get("instance_id"), raw.get("primary_instance_id") or None
    for key, value in (("instance_id", instance_id), ("primary_instance_id", primary_instance_id)):
        if value is not None and (not isinstance(value, str) or not INSTANCE_ID.fullmatch(value)):
            raise InvalidInput(f"{where}.{key} {value!r} is not an EC2 instance id (expected i-0123456789abcdef0)")
    if primary_instance_id and raw.get("primary_tags"):
        raise InvalidInput(f"{where}: tell the primary apart by primary_instance_id or by primary_tags, not both")
    prefix = optional_name(raw, "alarm_prefix", where)
    timeout = raw.get("ready_timeout", DEFAULT_READY_TIMEOUT)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 30 <= timeout <= 900:
        raise InvalidInput(
            f"{where}.ready_timeout must be an integer from 30 to 900 (seconds; the function runs 15 minutes at most)"
        )
    if not isinstance(raw.get("move_volume", True), bool):
        raise InvalidInput(f"{where}.move_volume must be true or false")
    return StandbySettings(
        instance_id=instance_id,
        tags=_tag_dict(raw["tags"], f"{where}.tags") if raw.get("tags") else None,
        primary_tags=_tag_dict(raw["primary_tags"], f"{where}.primary_tags")
        if raw.get("primary_tags") is not None
        else None,
        primary_instance_id=primary_instance_id,
        alarm_prefix=prefix,
        ready_timeout=timeout,
        move_volume=raw.get("move_volume", True),
    )


def _has_tags(instance, wanted):
    have = t.as_dict(instance.get("Tags"))
    return all(have.get(key) == value for key, value in wanted.items())


def is_standby(settings, instance):
    if settings.instance_id:
        return instance["InstanceId"] == settings.instance_id
    return _has_tags(instance, settings.tags)


def is_primary(settings, instance):
    """A managed instance of the lineage that is not the standby: the one ``primary_instance_id`` names, else one
    that carries ``primary_tags`` when given, else any other."""
    if is_standby(settings, instance):
        return False
    if settings.primary_instance_id:
        return instance["InstanceId"] == settings.primary_instance_id
    return not settings.primary_tags or _has_tags(instance, settings.primary_tags)


def classify(ec2, lineage, settings):
    """``{"standby": [ids], "primary": [ids]}`` among the lineage's instances that are not gone: the rule the handler
    acts on, for the standby role's preflight (through ``lineage_info``) to ask instead of re-deriving it."""
    found = {"standby": [], "primary": []}
    for instance in find_instances(ec2, {t.LINEAGE: lineage}):
        if is_standby(settings, instance):
            found["standby"].append(instance["InstanceId"])
        elif is_primary(settings, instance):
            found["primary"].append(instance["InstanceId"])
    return found


def find_standby(ec2, lineage, settings):
    """The standby's description. It must carry ``ec2spot:lineage=<lineage>``: the handler may start
    and tag only instances of its lineages."""
    if settings.instance_id:
        standby = describe_instance(ec2, settings.instance_id)
        if t.as_dict(standby.get("Tags")).get(t.LINEAGE) != lineage:
            raise InvalidInput(
                f"standby {settings.instance_id} does not carry the tag {t.LINEAGE}={lineage}; tag it so "
                f"the handler may start it (its IAM policy is scoped by that tag)",
                instance_id=settings.instance_id,
            )
        if state_of(standby) in GONE_STATES:
            raise NotFound(f"standby {settings.instance_id} is {state_of(standby)}", instance_id=settings.instance_id)
        return standby
    return exactly_one(
        find_instances(ec2, {**settings.tags, t.LINEAGE: lineage}),
        f"no standby instance tagged {settings.tags} and {t.LINEAGE}={lineage} (pending, running, stopping or stopped)",
        lambda several: (
            f"{len(several)} instances match the standby tags {settings.tags} "
            f"({', '.join(i['InstanceId'] for i in several)}); name the standby by instance_id"
        ),
        lineage=lineage,
    )


def status_of(ec2, instance_id):
    """``(instance check, system check)`` statuses: ok, initializing, impaired, insufficient-data, not-applicable."""
    found = call(ec2, "describe_instance_status", InstanceIds=[instance_id], IncludeAllInstances=True)[
        "InstanceStatuses"
    ]
    if not found:
        return "not-applicable", "not-applicable"
    return found[0]["InstanceStatus"]["Status"], found[0]["SystemStatus"]["Status"]


def wait_status_ok(ec2, instance_id, timeout, clock=SYSTEM_CLOCK):
    """Wait until the instance runs and both status checks are ``ok``; ``StandbyNotReady`` when a check
    is ``impaired`` (failed), the instance stops or goes away, or the time is up. Returns the seconds waited."""
    started = clock.monotonic()

    def failed(statuses):
        instance_check, system_check = statuses
        if "impaired" in statuses:
            return f"status checks failed on {instance_id} (instance {instance_check}, system {system_check})"
        return None

    try:
        wait_for_state(ec2, instance_id, "running", timeout, clock)
        remaining = max(1.0, timeout - (clock.monotonic() - started))
        wait_until(
            lambda: status_of(ec2, instance_id),
            lambda statuses: statuses == ("ok", "ok"),
            f"both status checks of {instance_id} to be ok",
            remaining,
            clock,
            is_failed=failed,
        )
    except WaitTimeout as exc:
        raise StandbyNotReady(f"{instance_id} is not ready: {exc.message}", instance_id=instance_id) from exc
    except AwsApiError as exc:
        if exc.operation:  # a real AWS error, not a failed check
            raise
        raise StandbyNotReady(f"{instance_id} is not ready: {exc.message}", instance_id=instance_id) from exc
    return round(clock.monotonic() - started, 3)


def _hand_over_volume(ec2, lineage, primary_id, standby, device_name, timeout, clock, result):
    volume = current_volume(ec2, lineage)
    if volume is None:
        result.volume = "no lineage volume"
        return
    zone = standby["Placement"]["AvailabilityZone"]
    holders = [a["InstanceId"] for a in volume.get("Attachments", [])]
    if standby["InstanceId"] in holders:
        result.volume = f"{volume['VolumeId']} already on the standby"
        return
    if volume["AvailabilityZone"] != zone:
        result.volume = (
            f"not handed over: {volume['VolumeId']} is in {volume['AvailabilityZone']}, the standby in {zone} "
            f"(restore a snapshot there with volume_reattach if wanted)"
        )
        return
    if holders and holders[0] != primary_id:
        result.volume = (
            f"not handed over: {volume['VolumeId']} is attached to {holders[0]}, not to the primary {primary_id}"
        )
        return
    if holders:
        primary = describe_instance(ec2, primary_id)
        if state_of(primary) == "stopping":
            primary = wait_for_state(ec2, primary_id, "stopped", timeout, clock)
        if state_of(primary) not in QUIESCENT_STATES:
            result.volume = (
                f"refused: the primary {primary_id} is {state_of(primary)}; its volume {volume['VolumeId']} is "
                f"handed over only once the primary is stopped or gone (fence)"
            )
            return
    try:
        moved = move_lineage_volume(
            ec2,
            lineage,
            standby["InstanceId"],
            device_name=device_name,
            app_stopped=False,
            timeout=timeout,
            clock=clock,
        )
    except FenceViolation as exc:
        result.volume = f"refused: {exc.message}"
        return
    result.volume_moved = moved.changed
    result.volume = f"{moved.volume_id} handed over at {moved.device} (generation {moved.generation})"
    result.actions.extend(moved.actions)


def fail_over(ec2, lineage, primary_id, settings, address=None, device_name=None, clock=SYSTEM_CLOCK):
    """Start the standby, wait for its checks, move the address and (fenced, same zone) the data. See the module docstring."""
    standby = find_standby(ec2, lineage, settings)
    standby_id = standby["InstanceId"]
    if standby_id == primary_id:
        raise InvalidInput(f"{primary_id} is the standby itself; the standby section names the wrong instance")
    result = FailoverResult(primary_id=primary_id, standby_id=standby_id)
    standby, result.standby_started = ensure_running(
        ec2, standby_id, dry_run=False, timeout=settings.ready_timeout, clock=clock
    )
    if result.standby_started:
        result.actions.append(f"start {standby_id}")
    result.ready_seconds = wait_status_ok(ec2, standby_id, settings.ready_timeout, clock)
    if address:
        found = find_address(
            ec2,
            allocation_id=address.get("allocation_id"),
            public_ip=address.get("public_ip"),
            address_tags=address.get("tags"),
        )
        holder = found.get("InstanceId")
        if holder and holder not in (primary_id, standby_id):
            raise Conflict(
                f"Elastic IP {found['PublicIp']} is on {holder}, neither the primary {primary_id} nor the standby "
                f"{standby_id}; not taking it",
                allocation_id=found["AllocationId"],
                holder=holder,
            )
        move = move_address(ec2, found, standby_id, allow_reassociation=True)
        result.address, result.address_moved = move.public_ip, move.changed
        result.actions.extend(move.actions)
    if settings.move_volume:
        _hand_over_volume(ec2, lineage, primary_id, standby, device_name, settings.ready_timeout, clock, result)
    return result
