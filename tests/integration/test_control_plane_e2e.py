"""The control plane end to end in the sandbox: deployed by its role, driven by real events.

An interruption warning is injected the way AWS and FIS deliver it; from there everything is
the real path: EventBridge rule -> encrypted queue -> the sandbox's Lambda runner -> the
handler from the zip the role deployed -> SSM, snapshots, Auto Scaling hooks, EIP -> SNS ->
a webhook on loopback. The sandbox runs 10x (a 120 s notice lasts 12 s).
"""

import json
import os
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta

import boto3
import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from sandbox import __main__ as sandbox_cli
from sandbox import world as sandbox_world
from sandbox.control import Sandbox
from sandbox.scenario import Webhook, eventually

from .conftest import REPO
from .helpers import Fixtures

LINEAGE, GROUP, SCALE = "e2edata", "e2e-fleet", 10.0
SOLO = "e2esolo"
RETIRING = "e2eretiring"


@pytest.fixture(scope="module")
def e2e():
    state_dir = tempfile.mkdtemp(prefix="ec2spot-e2e-")
    record = sandbox_cli.start(state_dir, scale=SCALE)
    env = sandbox_cli.apply_env(sandbox_cli.sandbox_env(record["endpoint"], state_dir))
    webhook = Webhook()
    session = boto3.session.Session(
        aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name="us-east-1"
    )
    with open(env["EC2SPOT_SANDBOX_WORLD"], encoding="utf-8") as handle:
        world = json.load(handle)
    yield {
        "env": env,
        "endpoint": record["endpoint"],
        "world": world,
        "webhook": webhook,
        "aws": lambda name: session.client(name, endpoint_url=record["endpoint"]),
        "box": Sandbox(record["endpoint"]),
    }
    webhook.close()
    sandbox_cli.stop(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


def deploy(e2e, tmp_path):
    play = [
        {
            "name": "deploy the control plane",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "module_defaults": {
                "group/amazon.aws.aws": {"region": "us-east-1"},
                "group/community.aws.aws": {"region": "us-east-1"},
            },
            "roles": [
                {
                    "role": "ec2spot.autorecover.control_plane",
                    "vars": {
                        "control_plane_name": "e2e",
                        "control_plane_webhook_endpoints": [e2e["webhook"].url],
                        "control_plane_package_path": str(tmp_path / "handler.zip"),
                        "control_plane_services": [
                            {
                                "name": "e2e",
                                "lineage": LINEAGE,
                                "group": GROUP,
                                "stop_commands": ["echo stopped > app.stopped"],
                                "address": {"tags": {"Service": "e2e"}},
                                "device_name": "/dev/sdf",
                            },
                            # a standalone persistent Spot instance (interruption behaviour stop/hibernate)
                            {
                                "name": "solo",
                                "lineage": SOLO,
                                "stop_commands": ["echo stopped > app.stopped"],
                                "hibernate_snapshot": True,
                            },
                            {
                                "name": "retiring",
                                "lineage": RETIRING,
                                "stop_commands": ["echo stopped > app.stopped"],
                                "planned_lead": 300,
                            },
                        ],
                        "control_plane_sweep_minutes": 1,
                    },
                }
            ],
        }
    ]
    path = tmp_path / "deploy.yml"
    path.write_text(json.dumps(play))
    done = subprocess.run(
        ["ansible-playbook", str(path)],
        env=dict(e2e["env"], ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg")),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def standalone_holder(e2e, name, lineage, generation, **launch):
    """A standalone instance of ``lineage`` in us-east-1a, managed by SSM (instance profile ``<name>-instance``),
    holding the lineage's volume at ``generation``: ``(instance id, volume id)``."""
    fixtures = Fixtures(e2e["aws"]("ec2"), e2e["world"])
    profile = sandbox_world.managed_instance_profile(e2e["aws"]("iam"), f"{name}-instance")
    instance = fixtures.instance(tags={t.LINEAGE: lineage}, IamInstanceProfile={"Name": profile}, **launch)
    return instance, fixtures.volume("us-east-1a", lineage, attach_to=instance, generation=generation)


@pytest.fixture(scope="module")
def deployed(e2e, tmp_path_factory):
    deploy(e2e, tmp_path_factory.mktemp("control-plane"))
    return e2e


def test_interruption_to_recovered_replacement_in_another_zone(deployed):
    e2e = deployed
    ec2, iam, autoscaling, events = (e2e["aws"](n) for n in ("ec2", "iam", "autoscaling", "events"))
    world = e2e["world"]
    sandbox_world.managed_instance_profile(iam, "e2e-instance")
    ec2.create_launch_template(
        LaunchTemplateName="e2e-template",
        LaunchTemplateData={
            "ImageId": world["image_id"],
            "InstanceType": "t3.micro",
            "IamInstanceProfile": {"Name": "e2e-instance"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": t.LINEAGE, "Value": LINEAGE}]}],
        },
    )
    volume = Fixtures(ec2, world).volume("us-east-1a", LINEAGE)
    # The function may move only an address of its lineage (roles/control_plane: the address carries the lineage's tag).
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [
        {"Key": "Service", "Value": "e2e"}, {"Key": t.LINEAGE, "Value": LINEAGE}]}])  # fmt: skip
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        MinSize=1,
        MaxSize=2,
        DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": "e2e-template"},
        VPCZoneIdentifier=world["subnets"]["us-east-1a"],
        LifecycleHookSpecificationList=[
            {
                "LifecycleHookName": "launch",
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                "HeartbeatTimeout": 600,
            },
            {
                "LifecycleHookName": "terminate",
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                "HeartbeatTimeout": 300,
                "DefaultResult": "CONTINUE",
            },
        ],
    )

    def in_service():
        members = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0][
            "Instances"
        ]
        return [m["InstanceId"] for m in members if m["LifecycleState"] == "InService"]

    # The first instance's launch hook goes through the control plane too: data and address attached, then CONTINUE.
    [first] = eventually("the first instance in service", in_service)
    attached = ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"]
    assert [(a["InstanceId"], a["State"]) for a in attached] == [(first, "attached")]
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=GROUP, VPCZoneIdentifier=world["subnets"]["us-east-1b"])

    e2e["box"].call("spot/interrupt", instance_id=first)

    warning = eventually("the warning at the webhook", lambda: e2e["webhook"].messages("interruption-warning"))
    assert warning[0]["instance_id"] == first
    eventually(
        "the old volume released",
        lambda: ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "available",
    )
    commands = e2e["box"].records("ssm_commands")
    assert [c["instance_ids"] for c in commands] == [[first]] and commands[0]["commands"][
        0
    ] == "echo stopped > app.stopped"
    snaps = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{t.BACKUP_SET}", "Values": ["e2e-interruption"]}]
    )["Snapshots"]
    assert [(s["VolumeId"], t.as_dict(s["Tags"])[t.LINEAGE], t.as_dict(s["Tags"])[t.GENERATION]) for s in snaps] == [
        (volume, LINEAGE, "2")
    ]

    replacement = eventually("a replacement in service", lambda: [i for i in in_service() if i != first], timeout=120)[
        0
    ]
    instance = ec2.describe_instances(InstanceIds=[replacement])["Reservations"][0]["Instances"][0]
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"
    restored = [
        v
        for v in ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [replacement]}])["Volumes"]
        if t.GENERATION in t.as_dict(v.get("Tags"))
    ]
    assert len(restored) == 1 and restored[0]["SnapshotId"] == snaps[0]["SnapshotId"]
    assert ec2.describe_addresses(AllocationIds=[address["AllocationId"]])["Addresses"][0]["InstanceId"] == replacement
    detaches = e2e["box"].records("detaches")
    assert detaches and not [r for r in detaches if r["force"]]

    events.put_events(
        Entries=[
            {
                "Source": "ec2spot.autorecover",
                "DetailType": "EC2Spot Recovery Boot Report",
                "Detail": json.dumps(
                    {"instance-id": replacement, "lineage": LINEAGE, "phases": {"app-started": "now"}}
                ),
            }
        ]
    )
    [success] = eventually("the success message at the webhook", lambda: e2e["webhook"].messages("recovered"))
    assert success["replaced"] == first and success["data_age_seconds"] >= 0 and success["losses"] == []
    assert {"old.warned", "old.stopped", "old.snapshot", "old.released", "new.attached", "new.continued"} <= set(
        success["timeline"]
    )


def test_spot_stop_then_hibernate_keep_the_instance_and_its_data(deployed):
    """A standalone persistent Spot instance: a stop interruption stops the application and snapshots it, a hibernate
    one stops nothing; neither marks, releases or replaces anything, and the instance keeps its volume throughout."""
    e2e = deployed
    ec2 = e2e["aws"]("ec2")
    instance, volume = standalone_holder(
        e2e,
        "solo",
        SOLO,
        3,
        InstanceMarketOptions={
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
        },
    )

    def state():
        return ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]

    def attached():
        return [
            (a["InstanceId"], a["State"]) for a in ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"]
        ]

    def ours():
        return [c for c in e2e["box"].records("ssm_commands") if c["instance_ids"] == [instance]]

    eventually("the volume attached", lambda: attached() == [(instance, "attached")])

    e2e["box"].call("spot/interrupt", instance_id=instance, action="stop")
    [stop] = eventually(
        "the stop interruption at the webhook",
        lambda: e2e["webhook"].messages("interruption-stop", instance_id=instance),
    )
    assert (stop["stop"], stop["snapshot"].endswith(" consistent")) == ("ok", True)
    eventually("the instance stopped at the notice time", lambda: state() == "stopped")
    assert attached() == [(instance, "attached")] and len(ours()) == 1

    e2e["box"].call("spot/capacity", instance_id=instance)  # EC2 starts it again: same instance, same volume
    eventually("the instance running again", lambda: state() == "running")
    e2e["box"].call("spot/interrupt", instance_id=instance, action="hibernate")
    [hibernate] = eventually(
        "the hibernate interruption at the webhook",
        lambda: e2e["webhook"].messages("interruption-hibernate", instance_id=instance),
    )
    assert hibernate["stop"] == "not stopped: hibernation keeps memory" and hibernate["snapshot"].endswith(
        "crash-consistent"
    )
    eventually("the instance hibernated at the notice time", lambda: state() == "stopped")
    assert attached() == [(instance, "attached")] and len(ours()) == 1
    assert not [
        m
        for kind in ("interruption-warning", "missed-warning", "failed")
        for m in e2e["webhook"].messages(kind)
        if m.get("instance_id") == instance
    ]
    tags = t.as_dict(ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Tags"])
    assert (tags[t.GENERATION], tags[t.HOLDER]) == ("3", instance)


def test_a_scheduled_retirement_is_planned_from_aws_health_and_handed_off_by_the_sweep_when_due(deployed):
    """EC2 schedules the retirement of a lineage's holder: AWS Health's event gets a snapshot at once and the
    planned-interruption message; the sweep (every modeled minute) hands the data off planned_lead (300 s) before
    the retirement: the application stopped, a consistent snapshot, the volume released, before NotBefore."""
    e2e = deployed
    ec2 = e2e["aws"]("ec2")
    instance, volume = standalone_holder(e2e, "retiring", RETIRING, 1)

    def volume_state():
        return ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"]

    eventually("the volume attached", lambda: volume_state() == "in-use")

    scheduled = e2e["box"].call("ec2/schedule-event", instance_id=instance, code="instance-retirement", lead=600)

    [planned] = eventually(
        "the planned interruption at the webhook",
        lambda: e2e["webhook"].messages("planned-interruption", instance_id=instance),
    )
    assert planned["code"] == "instance-retirement" and planned["via"] == "AWS Health"
    eventually("the hand-off by the sweep, before the retirement", lambda: volume_state() == "available", timeout=120)
    [stop] = [c for c in e2e["box"].records("ssm_commands") if c["instance_ids"] == [instance]]
    assert stop["commands"][0] == "echo stopped > app.stopped"
    # Not at the Health event (600 s ahead) but once NotBefore is within planned_lead: judged on the sandbox's
    # modeled clock, so a loaded machine that delivers the webhook late cannot make it look early.
    due = datetime.fromisoformat(scheduled["not_before"]) - timedelta(seconds=300)
    assert datetime.fromisoformat(stop["at"]) >= due, (stop["at"], scheduled["not_before"])
    described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert described["State"]["Name"] == "running"  # released before NotBefore, not after
    progress_tags = {k: v for k, v in t.as_dict(described["Tags"]).items() if k.startswith("ec2spot:progress:")}
    assert progress_tags["ec2spot:progress:warned"].endswith("planned instance-retirement")
    assert progress_tags["ec2spot:progress:stopped"].endswith(" ok") and scheduled["event_id"].startswith(
        "instance-event-"
    )
