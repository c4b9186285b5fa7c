"""One table of generation cases, and both deciders held to it: the core (lineage.current_volume, tags.generation_of)
and the instance agent (its copy of generations.py, its check_generation). The copy must be verbatim."""

import datetime
import importlib.util
import pathlib
import subprocess
import sys

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import errors, generations
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import lineage as lineages
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t

ROOT = pathlib.Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location(
    "ec2spot_agent_rules", ROOT / "roles/instance_agent/files/ec2spot_agent.py"
)
agent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agent)

# (tag or marker value, generation or None for "not a generation")
PARSE = [
    ("7", 7),
    ("0", 0),
    ("12", 12),
    (7, 7),
    (0, 0),
    ("007", None),
    (" 7", None),
    ("7 ", None),
    ("7\n", None),
    ("+7", None),
    ("-1", None),
    (-1, None),
    ("1_000", None),
    ("\u0667", None),
    ("7.0", None),
    ("1e3", None),
    ("", None),
    (None, None),
    (True, None),
    (False, None),
    (7.0, None),
    ("9" * 19, None),
    ("9" * 18, 10**18 - 1),
    (10**18, None),
]

# ({volume id: generation tag value}, expected verdict, expected detail)
RANK = [
    ({}, "none", None),
    ({"vol-a": "3"}, "current", ("vol-a", 3)),
    ({"vol-a": "3", "vol-b": "2"}, "current", ("vol-a", 3)),
    ({"vol-a": "2", "vol-b": "10"}, "current", ("vol-b", 10)),  # numbers, not strings: "10" > "2"
    ({"vol-a": "3", "vol-b": "3"}, "fork", (3, ["vol-a", "vol-b"])),
    ({"vol-a": "3", "vol-b": "3", "vol-c": "1"}, "fork", (3, ["vol-a", "vol-b"])),
    ({"vol-a": "3", "vol-b": "03"}, "malformed", ["vol-b"]),  # a look-alike tie is not an order
    ({"vol-a": "3", "vol-b": "x"}, "malformed", ["vol-b"]),
    ({"vol-a": "3", "vol-b": " 4"}, "malformed", ["vol-b"]),
    ({"vol-a": "3", "vol-b": ""}, "malformed", ["vol-b"]),
]

SNAPSHOT = "snap-0123456789abcdef0"
MOVED_TAGS = {t.GENERATION: "6", t.PREVIOUS_HOLDER: "i-0old"}
RESTORED_TAGS = {t.GENERATION: "9", t.RESTORED_FROM: SNAPSHOT}
SNAPSHOT_TAGS = {t.LINEAGE: "pg", t.GENERATION: "3"}
# (volume tags, volume's SnapshotId, marker, snapshot tags, expected (accepted, reason))
MARKERS = [
    ({t.GENERATION: "4"}, "", {"lineage": "pg", "generation": 4}, None, (True, "current")),
    ({t.GENERATION: "4"}, "", {"lineage": "pg", "generation": "4"}, None, (True, "current")),
    ({t.GENERATION: "4"}, "", {"lineage": "billing", "generation": 4}, None, (False, "other-lineage")),
    ({t.GENERATION: "4"}, "", {"generation": 4}, None, (False, "other-lineage")),
    ({t.GENERATION: "4"}, "", {"lineage": "pg", "generation": "four"}, None, (False, "malformed-marker")),
    ({t.GENERATION: "4"}, "", {"lineage": "pg", "generation": True}, None, (False, "malformed-marker")),
    ({t.GENERATION: "4"}, "", ["pg", 4], None, (False, "malformed-marker")),
    ({t.GENERATION: "04"}, "", {"lineage": "pg", "generation": 4}, None, (False, "malformed-tag")),
    ({t.GENERATION: "4"}, "", {"lineage": "pg", "generation": 5}, None, (False, "newer")),
    ({t.GENERATION: "4"}, "", {"lineage": "pg", "generation": 3}, None, (False, "older")),
    # moved: one ahead, the previous holder wrote the marker on this very volume
    (
        MOVED_TAGS,
        "",
        {"lineage": "pg", "generation": 5, "last_instance": "i-0old", "last_volume": "vol-1"},
        None,
        (True, "moved"),
    ),
    (
        MOVED_TAGS,
        "",
        {"lineage": "pg", "generation": 5, "last_instance": "i-0other", "last_volume": "vol-1"},
        None,
        (False, "older"),
    ),
    (
        MOVED_TAGS,
        "",
        {"lineage": "pg", "generation": 5, "last_instance": "i-0old", "last_volume": "vol-2"},
        None,
        (False, "older"),
    ),  # a copy of the volume, not the volume
    (
        MOVED_TAGS,
        "",
        {"lineage": "pg", "generation": 4, "last_instance": "i-0old", "last_volume": "vol-1"},
        None,
        (False, "older"),
    ),  # two generations: no single move explains it
    (MOVED_TAGS, "", {"lineage": "pg", "generation": 5, "last_volume": "vol-1"}, None, (False, "older")),
    # restored: EC2 made the volume from the snapshot its tags name, and the snapshot is the marker's generation
    (RESTORED_TAGS, SNAPSHOT, {"lineage": "pg", "generation": 3}, SNAPSHOT_TAGS, (True, "restored")),
    (RESTORED_TAGS, "", {"lineage": "pg", "generation": 3}, SNAPSHOT_TAGS, (False, "older")),
    (RESTORED_TAGS, "snap-0other", {"lineage": "pg", "generation": 3}, SNAPSHOT_TAGS, (False, "older")),
    (RESTORED_TAGS, SNAPSHOT, {"lineage": "pg", "generation": 2}, SNAPSHOT_TAGS, (False, "older")),
    (
        RESTORED_TAGS,
        SNAPSHOT,
        {"lineage": "pg", "generation": 3},
        {t.LINEAGE: "billing", t.GENERATION: "3"},
        (False, "older"),
    ),
    (RESTORED_TAGS, SNAPSHOT, {"lineage": "pg", "generation": 3}, None, (False, "older")),  # snapshot gone
    (RESTORED_TAGS, SNAPSHOT, {"lineage": "pg", "generation": 10}, SNAPSHOT_TAGS, (False, "newer")),
]

DECIDERS = {"core": generations, "agent": agent}


def test_the_agent_carries_the_rules_verbatim():
    check = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_agent.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("decider", DECIDERS)
@pytest.mark.parametrize("value,expected", PARSE)
def test_parse_generation(decider, value, expected):
    assert DECIDERS[decider].parse_generation(value) == expected
    if isinstance(value, str) or value is None:
        assert t.generation_of({t.GENERATION: value} if value is not None else {}) == (expected or 0)


@pytest.mark.parametrize("decider", DECIDERS)
@pytest.mark.parametrize("copies,verdict,detail", RANK)
def test_rank_copies(decider, copies, verdict, detail):
    assert DECIDERS[decider].rank_copies(sorted(copies.items())) == (verdict, detail)


@pytest.mark.parametrize("decider", DECIDERS)
@pytest.mark.parametrize("volume_tags,snapshot_id,marker,snapshot_tags,expected", MARKERS)
def test_judge_marker(decider, volume_tags, snapshot_id, marker, snapshot_tags, expected):
    assert DECIDERS[decider].judge_marker("pg", "vol-1", volume_tags, snapshot_id, marker, snapshot_tags) == expected


class FakeAws:
    def __init__(self, volumes):
        self.volumes = volumes

    def describe_volumes(self, filters):
        return self.volumes


@pytest.mark.parametrize("copies,verdict,detail", [case for case in RANK if case[0]])
def test_core_and_agent_call_the_same_copy_current(ec2, copies, verdict, detail):
    """lineage.current_volume (against moto) and the agent's check_generation agree on every table case."""
    made = {}
    for name, value in sorted(copies.items()):
        made[name] = ec2.create_volume(
            AvailabilityZone="us-east-1a",
            Size=1,
            TagSpecifications=[
                {
                    "ResourceType": "volume",
                    "Tags": [{"Key": t.LINEAGE, "Value": "pg"}, {"Key": t.GENERATION, "Value": value}],
                }
            ],
        )["VolumeId"]
    if verdict == "current":
        assert lineages.current_volume(ec2, "pg")["VolumeId"] == made[detail[0]]
    else:
        with pytest.raises(errors.Ambiguous):
            lineages.current_volume(ec2, "pg")

    described = [
        {"VolumeId": made[name], "Tags": {t.LINEAGE: "pg", t.GENERATION: value}, "Attachments": [], "State": "in-use"}
        for name, value in sorted(copies.items())
    ]
    config = agent.validate_config({"service": "pg", "lineage": "pg"})
    accepted = []
    for volume in described:
        instance_agent = agent.Agent(config, aws=FakeAws(described))
        try:
            instance_agent.check_generation(volume)
            accepted.append(volume["VolumeId"])
        except agent.Refused:
            pass
    assert accepted == ([made[detail[0]]] if verdict == "current" else [])


def test_a_move_records_the_previous_holder_and_the_agent_accepts_the_data_it_wrote(ec2, launch, data_volume, clock):
    """The core's move writes what generations.judge_marker reads: the marker the old holder wrote is accepted."""
    from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import volumes

    old, new = launch(lineage="pg"), launch(lineage="pg")
    volume_id = data_volume(lineage="pg", generation=3, attach_to=old)
    ec2.stop_instances(InstanceIds=[old])
    moved = volumes.move_lineage_volume(ec2, "pg", new, app_stopped=True, clock=clock)
    tags = t.as_dict(ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Tags"])

    assert (moved.generation, tags[t.GENERATION], tags[t.PREVIOUS_HOLDER], tags[t.HOLDER]) == (4, "4", old, new)
    marker = {
        "lineage": "pg",
        "generation": 3,
        "last_instance": old,
        "last_volume": volume_id,
        "last_mounted": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    assert generations.judge_marker("pg", volume_id, tags, "", marker) == (True, "moved")
