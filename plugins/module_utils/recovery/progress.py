# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a recovery's progress lives: tags on the instances it concerns.

Why tags and not a table: they live with the resources the recovery is about (the
interrupted instance stays describable for about an hour after it terminates, the
replacement for as long as it lives), they survive a crashed handler, they need no table
to provision, secure or clean up, an operator sees them in the console, and ``CreateTags``
is idempotent, so recording a step twice is harmless. Each step writes one tag
``ec2spot:progress:<step>`` whose value starts with the modeled time it completed (ISO 8601)
and may carry a short outcome after a space. A step whose tag exists is never redone, which
makes duplicate, late and redelivered events do nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from .aws import call
from .tags import PREFIX

PROGRESS = PREFIX + "progress:"


def read(instance):
    """``{step: value}`` of the progress tags of a described instance."""
    return {tag["Key"][len(PROGRESS):]: tag["Value"] for tag in instance.get("Tags", []) if tag["Key"].startswith(PROGRESS)}


def record(ec2, instance_id, step, when, outcome=""):
    value = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z" + (f" {outcome}" if outcome else "")
    call(ec2, "create_tags", Resources=[instance_id], Tags=[{"Key": PROGRESS + step, "Value": value[:255]}])
    return value


# The instance agent's boot phases kept as progress (boot-<phase>): the drill and the console read them.
BOOT_PHASES = ("mounted", "app_started")


def record_boot(ec2, instance_id, phases):
    """Keep the agent's reported boot phases (ISO 8601 stamps) as ``boot-<phase>`` steps, in one call.

    Stamps that do not parse are left out: they come from the instance, not from us."""
    kept = []
    for phase in BOOT_PHASES:
        stamp = phases.get(phase) if isinstance(phases, dict) else None
        try:
            time_of(str(stamp))
        except ValueError:
            continue
        kept.append({"Key": f"{PROGRESS}boot-{phase}", "Value": str(stamp)[:40]})
    if kept:
        call(ec2, "create_tags", Resources=[instance_id], Tags=kept)
    return {tag["Key"][len(PROGRESS):]: tag["Value"] for tag in kept}


def outcome_of(value):
    """The outcome part of a progress value (``"ok"``, ``"failed: ..."``), or ``""``."""
    return value.split(" ", 1)[1] if value and " " in value else ""


def stamp_of(value):
    """The timestamp part of a progress value (ISO 8601, ``Z``)."""
    return value.split(" ", 1)[0]


def time_of(value):
    return datetime.fromisoformat(stamp_of(value).replace("Z", "+00:00"))
