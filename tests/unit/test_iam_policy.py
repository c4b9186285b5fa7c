"""The shipped IAM policies are valid JSON and never grant a destructive action on everything."""

import json
import pathlib

POLICIES = sorted((pathlib.Path(__file__).parents[2] / "docs" / "iam").glob("*.json"))
READ_ONLY_PREFIXES = ("Describe", "Get", "List")


def test_there_are_policies():
    assert POLICIES


def test_no_action_other_than_reads_on_every_resource():
    for path in POLICIES:
        document = json.loads(path.read_text())
        assert document["Version"] == "2012-10-17"
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), (path.name, statement["Sid"])
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if "*" in resources:
                writes = [a for a in actions if not a.split(":")[1].startswith(READ_ONLY_PREFIXES)]
                assert writes == [], f"{path.name} {statement['Sid']} grants {writes} on every resource"


def test_every_delete_is_limited_to_our_resources():
    """EC2 deletes (snapshots, images, volumes) only of resources we tagged; CloudWatch alarms and dashboards,
    which IAM cannot select by tag everywhere, only by our naming (never every resource)."""
    for path in POLICIES:
        for statement in json.loads(path.read_text())["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            deletes = [a for a in actions if a.split(":")[1].startswith(("Delete", "Deregister", "Terminate"))]
            if not deletes:
                continue
            if deletes == ["ec2:DeleteTags"]:
                # Removing tags deletes no resource: only named keys, only on the lineage's resources.
                condition = statement["Condition"]
                assert condition["Null"] == {"aws:ResourceTag/ec2spot:lineage": "false"}, statement["Sid"]
                assert condition["ForAllValues:StringEquals"]["aws:TagKeys"] == ["ec2spot:previous-holder"], statement[
                    "Sid"
                ]
            elif any(a.startswith("ec2:") for a in deletes):
                assert (
                    statement["Condition"]["StringEquals"]["aws:ResourceTag/ec2spot:managed-by"]
                    == "ec2spot.autorecover"
                )
            else:
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                assert all(r.split(":")[-1] not in ("*", "alarm:*", "dashboard/*") and r != "*" for r in resources), (
                    path.name,
                    statement["Sid"],
                )
                assert all(("-monitoring-" in r or "dashboard/ec2spot-" in r) for r in resources), (
                    path.name,
                    statement["Sid"],
                )
