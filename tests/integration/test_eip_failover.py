"""eip_failover through ansible-playbook: targets, idempotence, check mode and refusals."""

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t

from sandbox import world as sandbox_world

from .conftest import failing, refusals, task
from .helpers import Fixtures


def address(ec2, allocation_id):
    return ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]


def allocate(ec2, service):
    """A service's address, tagged with its lineage as the fleet role tags it: the operator's policy
    (docs/iam/modules-policy.json) moves only lineage addresses to lineage instances."""
    tags = [{"Key": "Service", "Value": service}, {"Key": t.LINEAGE, "Value": service}]
    return ec2.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": tags}])


def lineage(service):
    return {t.LINEAGE: service}


def test_move_by_tag_check_mode_then_twice(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    first, second = (
        world.instance("us-east-1a", tags=lineage("it-eip-tag")),
        world.instance("us-east-1b", tags=lineage("it-eip-tag")),
    )
    eip = allocate(ec2, "it-eip-tag")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=first)
    move = task("eip_failover", address_tags={"Service": "it-eip-tag"}, instance_id=second, allow_reassociation=True)

    checked = playbook([move], check=True, diff=True)
    assert checked.last["changed"]
    assert checked.last["diff"] == {"before": {"instance_id": first}, "after": {"instance_id": second}}
    assert address(ec2, eip["AllocationId"])["InstanceId"] == first

    moved = playbook([move])
    assert moved.returncode == 0 and moved.last["changed"] and moved.last["previous_instance_id"] == first
    assert address(ec2, eip["AllocationId"])["InstanceId"] == second
    assert not playbook([move]).last["changed"]


def test_reassociation_must_be_allowed(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    holder, other = world.instance(tags=lineage("it-eip-held")), world.instance(tags=lineage("it-eip-held"))
    eip = allocate(ec2, "it-eip-held")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=holder)
    run = playbook([failing("eip_failover", public_ip=eip["PublicIp"], instance_id=other)])
    assert run.last["failed"]
    assert f"is associated with {holder}; set allow_reassociation to move it to {other}" in run.last["msg"]
    assert address(ec2, eip["AllocationId"])["InstanceId"] == holder


def test_standby_is_started_then_receives_the_address(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    standby = world.instance("us-east-1b", state="stopped", tags=lineage("it-eip-standby"))
    eip = allocate(ec2, "it-eip-standby")
    move = task("eip_failover", allocation_id=eip["AllocationId"], standby_instance_id=standby)

    checked = playbook([move], check=True)
    assert checked.last["changed"] and checked.last["standby_started"]
    assert (
        ec2.describe_instances(InstanceIds=[standby])["Reservations"][0]["Instances"][0]["State"]["Name"] == "stopped"
    )

    run = playbook([move])
    assert run.last["changed"] and run.last["standby_started"], run.last
    assert (
        ec2.describe_instances(InstanceIds=[standby])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    )
    assert address(ec2, eip["AllocationId"])["InstanceId"] == standby
    again = playbook([move])
    assert not again.last["changed"] and not again.last["standby_started"]


def test_group_target_is_its_healthy_instance(sandbox, ec2, autoscaling, playbook):
    world = sandbox["world"]
    member = sandbox_world.group(ec2, autoscaling, world, "it-eip-fleet", tags=lineage("it-eip-group"))
    eip = allocate(ec2, "it-eip-group")
    run = playbook([task("eip_failover", allocation_id=eip["AllocationId"], auto_scaling_group="it-eip-fleet")])
    assert run.last["changed"] and run.last["instance_id"] == member
    assert address(ec2, eip["AllocationId"])["InstanceId"] == member


def test_bad_input_fails_clearly_and_changes_nothing(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    target = world.instance(tags=lineage("it-eip-bad"))
    eip = allocate(ec2, "it-eip-bad")
    allocation_id = eip["AllocationId"]
    refusals(
        playbook,
        "eip_failover",
        [
            (
                {"allocation_id": "eipalloc-0000000000000dead", "instance_id": target},
                "no Elastic IP with allocation id eipalloc-0000000000000dead",
            ),
            (
                {"address_tags": {"Service": "nobody"}, "instance_id": target},
                "no Elastic IP with tags {'Service': 'nobody'}",
            ),
            (
                {"allocation_id": allocation_id, "instance_id": "i-0000000000000dead"},
                "instance i-0000000000000dead does not exist",
            ),
            (
                {"allocation_id": allocation_id, "auto_scaling_group": "no-such-group"},
                "Auto Scaling group no-such-group does not exist",
            ),
            (
                {"allocation_id": allocation_id, "public_ip": eip["PublicIp"], "instance_id": target},
                "mutually exclusive: allocation_id|public_ip|address_tags",
            ),
            (
                {"allocation_id": allocation_id},
                "one of the following is required: instance_id, auto_scaling_group, standby_instance_id",
            ),
            (
                {"allocation_id": allocation_id, "instance_id": target, "allow_reassociation": "maybe"},
                ("allow_reassociation", "bool"),
            ),
        ],
    )
    assert not address(ec2, eip["AllocationId"]).get("InstanceId")
