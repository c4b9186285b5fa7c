"""spot_drill through ansible-playbook: the FIS template kept idempotently, check mode, refusals.

The full drill (an interruption and its recovery, both zone cases) runs in test_drill_demo.py.
"""

import uuid

from .conftest import failing, task

ROLE = "arn:aws:iam::123456789012:role/it-fis"


def templates(session, sandbox, lineage):
    fis = session.client("fis", endpoint_url=sandbox["endpoint"])
    return [
        s
        for s in fis.list_experiment_templates()["experimentTemplates"]
        if s.get("tags", {}).get("ec2spot:lineage") == lineage
    ]


def test_template_check_mode_create_unchanged_update_delete(sandbox, session, playbook):
    lineage = f"it-drill-{uuid.uuid4().hex[:6]}"
    present = task("spot_drill", lineage=lineage, state="present", role_arn=ROLE)

    checked = playbook([present], check=True)
    assert (
        checked.last["changed"] and checked.last["template_id"] is None and templates(session, sandbox, lineage) == []
    )

    created = playbook([present])
    assert created.returncode == 0 and created.last["changed"]
    [summary] = templates(session, sandbox, lineage)
    assert summary["id"] == created.last["template_id"] and summary["tags"]["ec2spot:drill"] == "spot-interruption"
    fis = session.client("fis", endpoint_url=sandbox["endpoint"])
    template = fis.get_experiment_template(id=summary["id"])["experimentTemplate"]
    assert template["actions"]["interrupt"]["actionId"] == "aws:ec2:send-spot-instance-interruptions"
    assert template["targets"]["SpotInstances"]["resourceTags"] == {"ec2spot:lineage": lineage}
    assert template["targets"]["SpotInstances"]["selectionMode"] == "COUNT(1)"

    assert not playbook([present]).last["changed"]

    longer = task("spot_drill", lineage=lineage, state="present", role_arn=ROLE, duration_before_interruption="PT5M")
    updated = playbook([longer], diff=True)
    assert updated.last["changed"] and updated.last["template_id"] == summary["id"]
    assert updated.last["diff"]["after"]["actions"]["interrupt"]["parameters"] == {"durationBeforeInterruption": "PT5M"}
    assert not playbook([longer]).last["changed"]

    absent = task("spot_drill", lineage=lineage, state="absent")
    assert playbook([absent], check=True).last["changed"] and len(templates(session, sandbox, lineage)) == 1
    assert playbook([absent]).last["deleted_template_ids"] == [summary["id"]]
    assert templates(session, sandbox, lineage) == [] and not playbook([absent]).last["changed"]


def test_a_drill_with_nothing_to_interrupt_fails_clearly(sandbox, session, playbook):
    lineage = f"it-drill-{uuid.uuid4().hex[:6]}"
    run = playbook([failing("spot_drill", lineage=lineage, role_arn=ROLE, wait_timeout=5)])
    assert run.last["failed"] and "no running Spot instance matched" in run.last["msg"]

    checked = playbook([task("spot_drill", lineage=lineage, role_arn=ROLE)], check=True)
    assert checked.last["changed"] and checked.last["would_interrupt"] == []


def test_bad_input_is_refused_before_anything_changes(sandbox, session, playbook):
    lineage = f"it-drill-{uuid.uuid4().hex[:6]}"
    too_short = playbook(
        [failing("spot_drill", lineage=lineage, state="present", role_arn=ROLE, duration_before_interruption="PT1M")]
    )
    assert too_short.last["failed"] and "between PT2M and PT15M" in too_short.last["msg"]
    no_role = playbook([failing("spot_drill", lineage=lineage, state="present")])
    assert no_role.last["failed"] and "role_arn is required" in no_role.last["msg"]
    assert templates(session, sandbox, lineage) == []
