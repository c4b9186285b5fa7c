"""What the module tests share: resources set up directly with boto3 in the sandbox, and readers of
ansible-playbook's JSON report."""

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from sandbox.scenario import eventually


class Fixtures:
    def __init__(self, ec2, world):
        self.ec2, self.world = ec2, world

    def instance(self, zone="us-east-1a", state="running", tags=None, **launch):
        """A t3.micro of the seeded image in ``zone`` with ``tags`` (RunInstances' ``launch`` parameters added)."""
        spec = [{"ResourceType": "instance", "Tags": t.as_list(tags)}] if tags else []
        instance_id = self.ec2.run_instances(
            ImageId=self.world["image_id"],
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            SubnetId=self.world["subnets"][zone],
            TagSpecifications=spec,
            **launch,
        )["Instances"][0]["InstanceId"]
        if state == "stopped":
            self.ec2.stop_instances(InstanceIds=[instance_id])
        return instance_id

    def volume(self, zone, lineage, attach_to=None, generation=1, device="/dev/sdf"):
        """A lineage's volume at ``generation``, available, or attached to ``attach_to`` and held by it."""
        volume_id = self.ec2.create_volume(
            AvailabilityZone=zone,
            Size=10,
            VolumeType="gp3",
            Encrypted=True,
            TagSpecifications=[
                {
                    "ResourceType": "volume",
                    "Tags": t.as_list({t.LINEAGE: lineage, t.GENERATION: generation, t.DEVICE: device}),
                }
            ],
        )["VolumeId"]
        self.wait_volume(volume_id, "available")
        if attach_to:
            self.ec2.attach_volume(VolumeId=volume_id, InstanceId=attach_to, Device=device)
            self.wait_attached(volume_id)
            self.ec2.create_tags(Resources=[volume_id], Tags=t.as_list({t.HOLDER: attach_to}))
        return volume_id

    def wait_volume(self, volume_id, state):
        self._wait(volume_id, lambda v: v["State"] == state, state)

    def wait_attached(self, volume_id):
        self._wait(volume_id, lambda v: [a["State"] for a in v["Attachments"]] == ["attached"], "attached")

    def _wait(self, volume_id, done, what):
        eventually(
            f"{volume_id} to become {what}", lambda: done(self.describe_volume(volume_id)), timeout=10, interval=0.05
        )

    def snapshot(self, volume_id):
        volume = self.describe_volume(volume_id)
        snapshot_id = self.ec2.create_snapshot(
            VolumeId=volume_id,
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": t.as_list(
                        {**self.tags(volume), t.KIND: "volume", t.SOURCE_VOLUME: volume_id, t.MANAGED_BY: t.MANAGER}
                    ),
                }
            ],
        )["SnapshotId"]
        self._wait_snapshot(snapshot_id)  # AWS (and the sandbox) keep it pending for a while
        return snapshot_id

    def _wait_snapshot(self, snapshot_id):
        eventually(
            f"{snapshot_id} to complete",
            lambda: self.ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "completed",
            timeout=20,
            interval=0.05,
        )

    def describe_volume(self, volume_id):
        return self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]

    @staticmethod
    def tags(resource):
        return t.as_dict(resource.get("Tags"))


def task_results(report):
    """``(task name, localhost's result)`` of each task of an ``ansible-playbook`` JSON report, in order."""
    return [
        (task["task"]["name"], task["hosts"].get("localhost", {})) for play in report["plays"] for task in play["tasks"]
    ]


def failed_tasks(report):
    """``(task name, message)`` of each task that failed."""
    return [(name, result.get("msg")) for name, result in task_results(report) if result.get("failed")]


def changed_tasks(report):
    """The name of each task that reported a change."""
    return [name for name, result in task_results(report) if result.get("changed")]
