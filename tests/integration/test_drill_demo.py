"""The drill end to end (make demo's code): deploy.yml, canaries, drill.yml --check, then drill.yml with the
replacement in the same zone and in another zone, against the sandbox with its runtime (loop devices with real
filesystems, instances that boot the agent). Asserts what the demo promises, from its JSON report."""

import json

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import MAX_POLL_DELAY
from sandbox.demo.__main__ import Demo

# "volume attached" is when the handler's poll saw the attachment (its progress stamp), which trails the attach itself
# by up to one poll; the agent, watching for its device, may mount within that time.
OBSERVED_AFTER = {("volume attached", "mounted"): MAX_POLL_DELAY}

# The demo's service cuts over make-before-break: the old instance serves until its replacement is ready.
PHASES = [
    "warning",
    "pre-snapshot",
    "replacement running",
    "replacement ready",
    "cut-over",
    "stop sent",
    "app stopped",
    "snapshot requested",
    "volume released",
    "volume attached",
    "EIP moved",
    "mounted",
    "app started",
    "success",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "report.json"
    assert Demo(scale=10.0, report_path=str(path), verbose=False).run() == 0
    return json.loads(path.read_text()), path


def test_both_zone_cases_recover_with_every_canary_and_the_address(report):
    document, _path = report
    assert document["passed"] is True
    assert [case["az_case"] for case in document["cases"]] == ["same-az", "other-az"]
    for case in document["cases"]:
        assert case["canary_intact"] is True and case["canaries_damaged"] == []
        assert case["eip_on_replacement"] is True
        assert case["messages"] == {"interruption-warning": True, "recovered": True}
        assert case["rpo_seconds"] == 0.0 and case["app_stopped_cleanly"] is True
        assert case["replacement_instance_id"] != case["interrupted_instance_id"]
    same, other = document["cases"]
    assert same["zones"]["interrupted"] == same["zones"]["replacement"] and "same volume" in same["data"]
    assert other["zones"]["interrupted"] != other["zones"]["replacement"] and " from snap-" in other["data"]
    # Every canary written before either drill is still there after the second one.
    assert other["canaries_checked"] == 2 * same["canaries_checked"]


def test_the_report_has_the_timeline_in_recovery_order(report):
    document, path = report
    for key in ("rto_seconds", "phases", "canary_intact", "eip_on_replacement", "az_case", "rpo_seconds"):
        assert key in document
    for case in document["cases"]:
        # A same-zone move takes no snapshot on the critical path, but the interruption snapshot is always requested.
        assert set(case["phases"]) == set(PHASES)
        # Each chain of cause and effect is in time order (the address moves beside the boot, not after it).
        for chain in (
            # The pre-snapshot and the replacement's launch run side by side after the warning; the cut-over comes
            # after the pre-snapshot (the replacement's readiness or the deadline triggers it).
            [
                "warning",
                "pre-snapshot",
                "cut-over",
                "stop sent",
                "app stopped",
                "snapshot requested",
                "volume released",
                "volume attached",
                "mounted",
                "app started",
                "success",
            ],
            ["warning", "replacement running", "replacement ready"],
            ["replacement running", "volume attached"],
            # The address moves once the old application is stopped, beside the volume.
            ["app stopped", "EIP moved", "success"],
        ):
            for earlier, later in zip(chain, chain[1:]):
                lag = OBSERVED_AFTER.get((earlier, later), 0.0)
                assert case["phases"][earlier] <= case["phases"][later] + lag, (earlier, later, case["phases"])
        assert 0 < case["rto_seconds"] < case["recovery_seconds"]
        # The old instance served until the cut-over, the replacement from its return: the downtime between.
        serving = case["serving"]
        assert serving["old_until"] == case["phases"]["stop sent"]
        assert serving["replacement_from"] - serving["old_until"] == pytest.approx(case["rto_seconds"], abs=0.11)
    # Restoring in another zone waits for the snapshot to complete: it is the slower case.
    assert document["cases"][1]["rto_seconds"] > document["cases"][0]["rto_seconds"]
    assert path.with_suffix(".txt").read_text().count("RTO") == 2
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
