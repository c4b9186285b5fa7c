# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tag keys that carry a lineage's identity and state, and helpers to read and write tags.

Tags are the lineage's only state store: they travel with the resources, survive the
loss of any one instance, need no table of their own, and are visible to an operator in
the console. Keys share the ``ec2spot:`` prefix (``aws:`` is reserved by AWS).
"""

from __future__ import annotations

from . import generations

PREFIX = "ec2spot:"

# A volume or snapshot holds a lineage's data only when it carries BOTH ``LINEAGE`` and
# ``GENERATION``. Instances carry ``LINEAGE`` too (the lineage they serve), and launch
# templates and ``ec2_instance`` propagate instance tags to root volumes: those carry
# ``LINEAGE`` but never ``GENERATION``, and must never be mistaken for the data.
# The keys the generation rules read are defined with those rules (generations.py, which the
# instance agent carries a copy of).
LINEAGE = generations.LINEAGE_TAG  # the service's data identity, e.g. "pgdata"
GENERATION = generations.GENERATION_TAG  # increases each time the data moves volume or instance
DEVICE = PREFIX + "device"  # preferred device name on the instance, e.g. /dev/sdf
HOLDER = generations.HOLDER_TAG  # the instance the generation was issued for
PREVIOUS_HOLDER = generations.PREVIOUS_HOLDER_TAG  # on a moved volume: the instance it was moved from
SUPERSEDED_BY = PREFIX + "superseded-by"  # on an old volume: the newer volume that replaced it
RESTORED_FROM = generations.RESTORED_FROM_TAG  # on a restored volume: its snapshot
FRESH = PREFIX + "fresh"  # "true" on a brand-new volume never initialised (agent formats it)
MANAGED_BY = PREFIX + "managed-by"  # retention touches only resources carrying this
BACKUP_SET = PREFIX + "backup-set"  # name shared by the snapshots and AMI of one backup
KIND = PREFIX + "kind"  # "volume" (CreateSnapshots) or "image" (an AMI's own snapshot)
SOURCE_INSTANCE = PREFIX + "source-instance"
SOURCE_VOLUME = PREFIX + "source-volume"
VOLUME_TYPE = PREFIX + "volume-type"
VOLUME_IOPS = PREFIX + "volume-iops"
VOLUME_THROUGHPUT = PREFIX + "volume-throughput"

MANAGER = "ec2spot.autorecover"
AUTO_BACKUP = "AutoBackup"  # seed 001's tag on backup AMIs, kept for operators used to it

# State tags that describe one resource and must not be copied onto another.
STATE_KEYS = frozenset(
    {
        GENERATION,
        HOLDER,
        PREVIOUS_HOLDER,
        SUPERSEDED_BY,
        RESTORED_FROM,
        FRESH,
        BACKUP_SET,
        KIND,
        SOURCE_INSTANCE,
        SOURCE_VOLUME,
        VOLUME_TYPE,
        VOLUME_IOPS,
        VOLUME_THROUGHPUT,
    }
)


def as_dict(tag_list):
    """``[{'Key': k, 'Value': v}]`` -> ``{k: v}`` (None-safe)."""
    return {tag["Key"]: tag["Value"] for tag in tag_list or []}


def as_list(tag_dict):
    """``{k: v}`` -> ``[{'Key': k, 'Value': v}]`` in key order (stable for diffs)."""
    return [{"Key": key, "Value": str(value)} for key, value in sorted(tag_dict.items())]


def holds_lineage_data(tag_dict, lineage):
    """Whether a volume's or snapshot's tags mark it as data of ``lineage`` (see LINEAGE)."""
    return tag_dict.get(LINEAGE) == lineage and GENERATION in tag_dict


def generation_of(tag_dict):
    """The generation recorded in tags; 0 when absent or malformed (generations.parse_generation).

    For ordering and numbering only: which volume is current is ``generations.rank_copies``'s
    decision, which refuses a malformed generation instead of reading it as 0.
    """
    return generations.parse_generation(tag_dict.get(GENERATION)) or 0


def copyable(tag_dict):
    """User tags worth carrying to a new copy of the data (not AWS's, not per-resource state)."""
    return {k: v for k, v in tag_dict.items() if not k.startswith("aws:") and k not in STATE_KEYS}


def filters(tag_dict):
    """EC2 ``Filters`` matching every tag in ``tag_dict``."""
    return [{"Name": f"tag:{key}", "Values": [str(value)]} for key, value in sorted(tag_dict.items())]
