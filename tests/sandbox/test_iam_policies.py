"""The project's real policies, as the roles render them, against the calls the code makes: each scope holds.

The handler's role (function-policy.json.j2), the instance profile (instance-policy.json.j2) and the FIS role
(fis-policy.json.j2) are rendered by sandbox.iam.project_policies for the example variables and the molecule
scenarios; each call is built as the code makes it (plugins/module_utils/recovery/, the instance agent) and
authorised the way AWS does (sandbox.iam.requests: every resource type the reference lists, the context AWS builds,
tagging on create). Positive: every action the handler calls on its own lineage's resources is allowed. Negative:
the handler cannot detach, snapshot, delete or retag a resource of another lineage or an untagged one, cannot
create an unencrypted volume, cannot delete a backup without the managed-by tag; the instance cannot attach volumes
or move addresses (but the tag-scoped seed 002 variant, only its service's address to its lineage); the FIS role
cannot interrupt another lineage.

A call the policy refuses although the code makes it is a finding about the policy, not about the test: it is kept
here as a strict xfail naming the evidence, so that the day the policy is fixed the marker has to go.
"""

import json
import pathlib

import pytest

from benchmarks.iam import render_function_policies
from sandbox.iam.project_policies import KEY_ID, MOLECULE_REGION, rendered_policies
from sandbox.iam.requests import AuthorizationRequest, Resource, decide

LINEAGE_TAG, MANAGED_BY_TAG, MANAGER = "ec2spot:lineage", "ec2spot:managed-by", "ec2spot.autorecover"
# The handler's role with its lineages and groups named by pattern (control_plane_lineage_patterns,
# control_plane_group_patterns): every option on, as in function/example-every-option.
PATTERN_SERVICES = [
    {"name": "shop-pg", "lineage": "shop-pgdata", "group": "shop-pg", "standby": {"ready_timeout": 300},
     "watchdog": {"mode": "handler", "threshold": 95}},
    {"name": "shop-cache", "lineage": "shop-cachedata", "watchdog": {"mode": "alarm-reboot", "threshold": 95}},
]  # fmt: skip
PATTERN_VARIABLES = {"control_plane_lineage_patterns": ["shop-*"], "control_plane_group_patterns": ["shop-*"]}


@pytest.fixture(scope="module")
def rendered():
    (patterns,) = render_function_policies([("shop-cp", MOLECULE_REGION, PATTERN_SERVICES, PATTERN_VARIABLES)])
    return {**rendered_policies(), "function/patterns": patterns}


class World:
    """Resources of one rendered policy's account and region, and the verdicts on calls about them."""

    def __init__(self, entry):
        self.entry, self.facts, self.document = entry, entry["facts"], entry["document"]
        self.account, self.region, self.partition = (self.facts[k] for k in ("account", "region", "partition"))

    def resource(self, service, type_name, *ids, tags=None, keys=None, created=False):
        return Resource.of(service, type_name, self.partition, self.region, self.account, *ids,
                           tags=tags or {}, keys=keys or {}, created=created)  # fmt: skip

    def ec2(self, type_name, *ids, **fields):
        return self.resource("ec2", type_name, *ids, **fields)

    def allowed(self, request):
        return decide([self.document], request).allowed

    def refusal(self, request):
        verdict = decide([self.document], request)
        return None if verdict.allowed else verdict.refusal[0]


def lineage(name, **more):
    return {LINEAGE_TAG: name, **more}


def managed(name):
    return lineage(name, **{MANAGED_BY_TAG: MANAGER})


# ---- the handler ------------------------------------------------------------------------------------------------
# Each call the handler makes on the resources of lineage ``mine``, as the core makes it (module: line).
def detach(w, mine):  # volumes.py _release_from_holder: detach_volume(VolumeId, InstanceId)
    return AuthorizationRequest("ec2:DetachVolume", (w.ec2("volume", "vol-1", tags=lineage(mine)),
                                                     w.ec2("instance", "i-1", tags=lineage(mine))))  # fmt: skip


def attach(w, mine, volume_tags=None, instance_tags=None):  # volumes.py attach_volume
    return AuthorizationRequest("ec2:AttachVolume", (
        w.ec2("volume", "vol-1", tags=lineage(mine) if volume_tags is None else volume_tags),
        w.ec2("instance", "i-2", tags=lineage(mine) if instance_tags is None else instance_tags)))  # fmt: skip


def restore(w, mine, encrypted=True, request_lineage=None, snapshot_tags=None):
    """volumes.py _restore_in_zone: create_volume(SnapshotId, Encrypted=True, TagSpecifications=[volume])."""
    keys = {} if encrypted is None else {"ec2:Encrypted": encrypted}
    tags = {LINEAGE_TAG: request_lineage or mine, "ec2spot:generation": "4", "ec2spot:holder": "i-2",
            "ec2spot:restored-from": "snap-1", MANAGED_BY_TAG: MANAGER}  # fmt: skip
    snapshot = w.ec2("snapshot", "snap-1", tags=managed(mine) if snapshot_tags is None else snapshot_tags,
                     keys={"ec2:Encrypted": True})  # fmt: skip
    return AuthorizationRequest("ec2:CreateVolume", (w.ec2("volume", created=True, keys=keys), snapshot),
                                request_tags=tags)  # fmt: skip


def blank_copy(w, mine):  # volumes.py _blank_copy: a fresh volume without a snapshot
    tags = {LINEAGE_TAG: mine, "ec2spot:generation": "2", "ec2spot:fresh": "true", MANAGED_BY_TAG: MANAGER}
    volume = w.ec2("volume", created=True, keys={"ec2:Encrypted": True})
    return AuthorizationRequest("ec2:CreateVolume", (volume,), request_tags=tags)


def snapshots(w, mine, instance_tags=None):
    """backups.py backup_instance: create_snapshots(InstanceSpecification, TagSpecifications=[snapshot])."""
    return AuthorizationRequest("ec2:CreateSnapshots", (
        w.ec2("instance", "i-1", tags=lineage(mine) if instance_tags is None else instance_tags),
        w.ec2("volume", "vol-1", tags=lineage(mine)),
        w.ec2("snapshot", created=True)),
        request_tags={"ec2spot:backup-set": "pg-interruption", "ec2spot:kind": "volume",
                      MANAGED_BY_TAG: MANAGER})  # fmt: skip


def image(w, mine, instance_tags=None):  # backups.py: create_image(NoReboot, TagSpecifications=[image, snapshot])
    return AuthorizationRequest("ec2:CreateImage", (
        w.ec2("instance", "i-1", tags=lineage(mine) if instance_tags is None else instance_tags),
        w.ec2("image", created=True), w.ec2("snapshot", created=True)),
        request_tags={"ec2spot:backup-set": "pg-interruption", LINEAGE_TAG: mine, "AutoBackup": "true"})  # fmt: skip


def retag(w, type_name, tags, new_tags):
    """progress.py record (instances), volumes.py (holder, superseded-by, the moved generation), backups.py (a
    snapshot's source volume): create_tags on an existing resource."""
    return AuthorizationRequest("ec2:CreateTags", (w.ec2(type_name, "x-1", tags=tags),), request_tags=new_tags)


def untag(w, type_name, tags, keys):  # handler/ (progress, ec2spot:fresh), volumes.py (previous holder)
    return AuthorizationRequest("ec2:DeleteTags", (w.ec2(type_name, "x-1", tags=tags),), tag_keys=tuple(keys))


def prune(w, action, type_name, tags):  # retention.py: delete_snapshot, deregister_image
    return AuthorizationRequest(action, (w.ec2(type_name, "x-1", tags=tags),))


def associate(w, mine, address_tags=None, instance_tags=None):
    """addresses.py move_address: associate_address(AllocationId, InstanceId), through the instance's interface
    (the fleet tags interfaces like instances)."""
    instance_tags = lineage(mine) if instance_tags is None else instance_tags
    return AuthorizationRequest("ec2:AssociateAddress", (
        w.ec2("elastic-ip", "eipalloc-1", tags=lineage(mine) if address_tags is None else address_tags),
        w.ec2("instance", "i-2", tags=instance_tags),
        w.ec2("network-interface", "eni-2", tags=instance_tags)))  # fmt: skip


def on_instance(action, tags):
    return lambda w, mine: AuthorizationRequest(action, (w.ec2("instance", "i-1", tags=tags(mine)),))


def group(w, action, name):  # handler/: the lifecycle hooks, health and the suspended launches of a group
    return AuthorizationRequest(action, (w.resource("autoscaling", "autoScalingGroup", "0f1e-uuid", name),))


def stop_command(w, mine, instance_tags=None, document="AWS-RunShellScript"):
    """commands.py run_shell: send_command(InstanceIds, DocumentName="AWS-RunShellScript"). An AWS-owned document's
    ARN has no account."""
    return AuthorizationRequest("ssm:SendCommand", (
        Resource("document", f"arn:{w.partition}:ssm:{w.region}::document/{document}"),
        w.resource("ssm", "instance", "i-1",
                   tags=lineage(mine) if instance_tags is None else instance_tags)))  # fmt: skip


def named(service, type_name, name_of):
    def build(w, action):
        return AuthorizationRequest(action, (w.resource(service, type_name, *name_of(w)),))

    return build


TOPIC = named("sns", "topic", lambda w: [w.facts["name"]])
QUEUE = named("sqs", "queue", lambda w: [w.facts["name"] + "-events"])
KEY = named("kms", "key", lambda w: [KEY_ID])
LOG_STREAM = named("logs", "log-stream", lambda w: [f"/aws/lambda/{w.facts['name']}", "2026/01/01/[$LATEST]0f"])
READS = ["ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeVolumes", "ec2:DescribeSnapshots",
         "ec2:DescribeImages", "ec2:DescribeAddresses", "ec2:DescribeLaunchTemplates",
         "ec2:DescribeLaunchTemplateVersions", "autoscaling:DescribeAutoScalingGroups",
         "autoscaling:DescribeScalingActivities", "ssm:DescribeInstanceInformation",
         "ssm:GetCommandInvocation", "ec2:DescribeSubnets"]  # fmt: skip

# (id, request(world, mine), marks): every call of the handler, on its own lineage, in every rendered variant.
HANDLER_CALLS = [
    *[(action, lambda w, mine, action=action: AuthorizationRequest(action), ()) for action in READS],
    # addresses.py reads the interface an address sits on when it has no instance (was missing: a finding).
    ("ec2:DescribeNetworkInterfaces", lambda w, mine: AuthorizationRequest("ec2:DescribeNetworkInterfaces"), ()),
    ("detach", detach, ()),
    ("attach", attach, ()),
    ("restore from a lineage backup", restore, ()),
    ("blank copy of a never-initialised volume", blank_copy, ()),
    ("snapshot the holder's volumes", snapshots, ()),
    ("image of the holder", image, ()),
    ("record progress on an instance",
     lambda w, m: retag(w, "instance", lineage(m), {"ec2spot:progress:detach": "t"}), ()),
    ("retag a volume", lambda w, m: retag(w, "volume", lineage(m), {"ec2spot:superseded-by": "vol-2"}), ()),
    ("retag a snapshot", lambda w, m: retag(w, "snapshot", managed(m), {"ec2spot:source-volume": "vol-1"}), ()),
    ("forget launch progress",
     lambda w, m: untag(w, "instance", lineage(m), ["ec2spot:progress:a", "ec2spot:progress:b"]), ()),
    ("clear the fresh mark", lambda w, m: untag(w, "volume", lineage(m), ["ec2spot:fresh"]), ()),
    # volumes.py drops an older move's previous holder (the policy allowed only ec2spot:fresh: a finding).
    ("drop an old previous holder", lambda w, m: untag(w, "volume", lineage(m), ["ec2spot:previous-holder"]), ()),
    ("delete a managed snapshot", lambda w, m: prune(w, "ec2:DeleteSnapshot", "snapshot", managed(m)), ()),
    ("deregister a managed image", lambda w, m: prune(w, "ec2:DeregisterImage", "image", managed(m)), ()),
    ("move the service address", associate, ()),
    ("stop the application", stop_command, ()),
    ("publish an alert", lambda w, m: TOPIC(w, "sns:Publish"), ()),
    *[(action, lambda w, m, action=action: QUEUE(w, action), ())
      for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
                     "sqs:ChangeMessageVisibility", "sqs:SendMessage")],
    ("decrypt the queue", lambda w, m: KEY(w, "kms:Decrypt"), ()),
    ("put a metric", lambda w, m: AuthorizationRequest("cloudwatch:PutMetricData",
                                                       keys={"cloudwatch:namespace": "EC2Spot/AutoRecover"}), ()),
    *[(action, lambda w, m, action=action: LOG_STREAM(w, action), ())
      for action in ("logs:CreateLogStream", "logs:PutLogEvents")],
]  # fmt: skip
FUNCTIONS = ["function/example", "function/example-every-option", "function/molecule", "function/patterns"]


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize(
    ("call", "request_of"), [pytest.param(i, r, marks=m, id=i) for i, r, m in HANDLER_CALLS]
)  # fmt: skip
def test_the_handler_may_make_each_call_on_its_own_lineage(rendered, name, call, request_of):
    world = World(rendered[name])
    for mine in world.facts["lineages"]:
        assert world.refusal(request_of(world, mine)) is None, (name, call, mine)


def test_the_molecule_handler_drives_its_groups_lifecycle(rendered):
    world = World(rendered["function/molecule"])
    for action in ("autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat",
                   "autoscaling:SetInstanceHealth", "autoscaling:SuspendProcesses",
                   "autoscaling:UpdateAutoScalingGroup"):  # fmt: skip
        assert world.allowed(group(world, action, "pg-fleet")), action
        assert not world.allowed(group(world, action, "another-group")), action
        assert not world.allowed(group(world, action, "pg-fleet-2")), action


def test_the_example_handler_drives_the_services_group(rendered):
    world = World(rendered["function/example"])  # deploy.yml names each service's group after the service
    assert world.allowed(group(world, "autoscaling:CompleteLifecycleAction", "postgres"))
    assert not world.allowed(group(world, "autoscaling:CompleteLifecycleAction", "cache"))


def test_patterns_scope_the_handler_to_the_lineages_and_groups_they_match(rendered):
    """The trade-off of patterns: a lineage or group that matches is in scope whether configured or not; nothing
    else is."""
    world = World(rendered["function/patterns"])
    assert world.allowed(detach(world, "shop-new"))  # not configured, but matching shop-*
    assert world.allowed(stop_command(world, "shop-new"))
    for outside in ("shop", "shopdata", "other-shop-pgdata", "pgdata"):
        assert not world.allowed(detach(world, outside)), outside
        assert not world.allowed(restore(world, "shop-pgdata", request_lineage=outside)), outside
        assert not world.allowed(stop_command(world, outside)), outside
    assert world.allowed(group(world, "autoscaling:CompleteLifecycleAction", "shop-pg"))
    assert world.allowed(group(world, "autoscaling:SetInstanceHealth", "shop-new"))
    for outside in ("pg-fleet", "shop", "other-shop-pg"):
        assert not world.allowed(group(world, "autoscaling:CompleteLifecycleAction", outside)), outside


def test_patterns_leave_standbys_and_reboots_to_the_lineages_named_for_them(rendered):
    world = World(rendered["function/patterns"])
    start, reboot = on_instance("ec2:StartInstances", lineage), on_instance("ec2:RebootInstances", lineage)
    assert world.allowed(start(world, "shop-pgdata"))
    assert world.allowed(reboot(world, "shop-pgdata"))
    for other in ("shop-cachedata", "shop-new"):
        assert not world.allowed(start(world, other)), other
        assert not world.allowed(reboot(world, other)), other


# Standby and watchdog: only in the variant that has them, only for the lineages that have them.
def test_the_handler_starts_only_standbys_of_standby_lineages(rendered):
    every, plain = World(rendered["function/example-every-option"]), World(rendered["function/example"])
    start = on_instance("ec2:StartInstances", lineage)
    assert every.allowed(start(every, "pgdata"))
    assert not every.allowed(start(every, "cachedata"))  # no standby
    assert not every.allowed(start(every, "other"))
    assert not plain.allowed(start(plain, "pgdata"))  # no service has a standby


def test_the_handler_reboots_only_instances_it_watches(rendered):
    every, plain = World(rendered["function/example-every-option"]), World(rendered["function/example"])
    reboot = on_instance("ec2:RebootInstances", lineage)
    assert every.allowed(reboot(every, "pgdata"))  # watchdog mode handler
    assert not every.allowed(reboot(every, "cachedata"))  # mode alarm-reboot: the alarm reboots, not the handler
    assert not plain.allowed(reboot(plain, "pgdata"))


def test_the_handler_moves_and_disables_only_its_watchdog_alarms(rendered):
    every, plain = World(rendered["function/example-every-option"]), World(rendered["function/example"])
    alarm = named("cloudwatch", "alarm", lambda w: [f"{w.facts['name']}-watchdog-postgres-i-1"])
    cache_alarm = named("cloudwatch", "alarm", lambda w: [f"{w.facts['name']}-watchdog-cache-i-1"])
    other = named("cloudwatch", "alarm", lambda w: [f"{w.facts['name']}-monitoring-postgres-cpu"])
    for action in ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"):
        assert every.allowed(alarm(every, action)), action
        assert not every.allowed(other(every, action)), action
        assert not plain.allowed(alarm(plain, action)), action
    assert every.allowed(cache_alarm(every, "cloudwatch:DisableAlarmActions"))
    assert not every.allowed(other(every, "cloudwatch:DisableAlarmActions"))
    assert not plain.allowed(cache_alarm(plain, "cloudwatch:DisableAlarmActions"))


# Refused: (id, request(world, mine)). Every destructive statement, outside its scope.
OTHER, UNTAGGED = lineage("other"), {}
HANDLER_REFUSALS = [
    ("detach another lineage's volume", lambda w, m: attach(w, m, volume_tags=OTHER)),
    ("detach an untagged volume", lambda w, m: AuthorizationRequest("ec2:DetachVolume", (w.ec2("volume", "vol-9"),))),
    ("attach an untagged volume", lambda w, m: attach(w, m, volume_tags=UNTAGGED)),
    ("attach to another lineage's instance", lambda w, m: attach(w, m, instance_tags=OTHER)),
    ("snapshot another lineage's instance", lambda w, m: snapshots(w, m, instance_tags=OTHER)),
    ("snapshot an untagged instance", lambda w, m: snapshots(w, m, instance_tags=UNTAGGED)),
    ("image another lineage's instance", lambda w, m: image(w, m, instance_tags=OTHER)),
    ("image an untagged instance", lambda w, m: image(w, m, instance_tags=UNTAGGED)),
    ("create an unencrypted volume", lambda w, m: restore(w, m, encrypted=False)),
    ("create a volume without saying it is encrypted", lambda w, m: restore(w, m, encrypted=None)),
    ("create a volume for another lineage", lambda w, m: restore(w, m, request_lineage="other")),
    ("restore another lineage's snapshot", lambda w, m: restore(w, m, snapshot_tags=managed("other"))),
    ("restore an untagged snapshot", lambda w, m: restore(w, m, snapshot_tags=UNTAGGED)),
    ("retag another lineage's volume", lambda w, m: retag(w, "volume", OTHER, {"ec2spot:holder": "i-2"})),
    ("retag an untagged volume", lambda w, m: retag(w, "volume", UNTAGGED, {LINEAGE_TAG: m})),
    ("retag another lineage's instance", lambda w, m: retag(w, "instance", OTHER, {"ec2spot:progress:x": "t"})),
    ("retag an untagged instance", lambda w, m: retag(w, "instance", UNTAGGED, {LINEAGE_TAG: m})),
    ("retag another lineage's snapshot", lambda w, m: retag(w, "snapshot", OTHER, {"ec2spot:kind": "volume"})),
    ("retag an image", lambda w, m: retag(w, "image", managed(m), {"ec2spot:kind": "image"})),
    ("untag another lineage's instance", lambda w, m: untag(w, "instance", OTHER, ["ec2spot:progress:a"])),
    ("untag an instance's lineage", lambda w, m: untag(w, "instance", lineage(m), ["ec2spot:lineage"])),
    ("untag progress and more", lambda w, m: untag(w, "instance", lineage(m), ["ec2spot:progress:a", "Name"])),
    ("untag a volume's generation", lambda w, m: untag(w, "volume", lineage(m), ["ec2spot:generation"])),
    ("untag another lineage's volume", lambda w, m: untag(w, "volume", OTHER, ["ec2spot:fresh"])),
    ("delete a backup without managed-by", lambda w, m: prune(w, "ec2:DeleteSnapshot", "snapshot", lineage(m))),
    ("deregister an image without managed-by", lambda w, m: prune(w, "ec2:DeregisterImage", "image", lineage(m))),
    ("delete another lineage's managed backup",
     lambda w, m: prune(w, "ec2:DeleteSnapshot", "snapshot", managed("other"))),
    ("deregister an untagged image", lambda w, m: prune(w, "ec2:DeregisterImage", "image", UNTAGGED)),
    ("move another lineage's address", lambda w, m: associate(w, m, address_tags=OTHER)),
    ("move an address to another lineage", lambda w, m: associate(w, m, instance_tags=OTHER)),
    ("run a command on another lineage", lambda w, m: stop_command(w, m, instance_tags=OTHER)),
    ("run another document", lambda w, m: stop_command(w, m, document="AWS-RunPowerShellScript")),
    ("publish elsewhere", lambda w, m: AuthorizationRequest("sns:Publish", (w.resource("sns", "topic", "other"),))),
    # A cut-over's deadline goes to the function's own queue only (cutover.py _send_deadline).
    ("send to another queue",
     lambda w, m: AuthorizationRequest("sqs:SendMessage", (w.resource("sqs", "queue", "other-events"),))),
    ("put a metric elsewhere",
     lambda w, m: AuthorizationRequest("cloudwatch:PutMetricData", keys={"cloudwatch:namespace": "AWS/EC2"})),
    ("terminate", on_instance("ec2:TerminateInstances", lineage)),
    ("stop an instance", on_instance("ec2:StopInstances", lineage)),
    ("delete a volume",
     lambda w, m: AuthorizationRequest("ec2:DeleteVolume", (w.ec2("volume", "vol-1", tags=lineage(m)),))),
]  # fmt: skip


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize(("call", "request_of"), HANDLER_REFUSALS, ids=[case[0] for case in HANDLER_REFUSALS])
def test_the_handler_is_refused_outside_its_lineages(rendered, name, call, request_of):
    world = World(rendered[name])
    for mine in world.facts["lineages"]:
        assert world.refusal(request_of(world, mine)) is not None, (name, call, mine)


def test_a_refused_restore_names_what_refused_it(rendered):
    world = World(rendered["function/example"])
    assert world.refusal(restore(world, "pgdata", encrypted=False)).resource_type == "volume"
    assert world.refusal(restore(world, "pgdata", snapshot_tags=OTHER)).resource_type == "snapshot"


# ---- the instance profile ---------------------------------------------------------------------------------------
INSTANCES = ["instance/example", "instance/molecule-pg", "instance/molecule-web"]


def put_boot_report(w, source="ec2spot.autorecover", bus="default"):  # the agent's events:PutEvents
    return AuthorizationRequest("events:PutEvents", (w.resource("events", "event-bus", bus),),
                                keys={"events:source": source,
                                      "events:detail-type": "ec2spot boot report"})  # fmt: skip


@pytest.mark.parametrize("name", INSTANCES)
def test_the_instance_reads_and_reports(rendered, name):
    world = World(rendered[name])
    for action in ("ec2:DescribeVolumes", "ec2:DescribeSnapshots"):
        assert world.allowed(AuthorizationRequest(action)), action
    assert world.allowed(put_boot_report(world))
    assert not world.allowed(put_boot_report(world, source="aws.ec2"))
    assert not world.allowed(put_boot_report(world, bus="another-bus"))


@pytest.mark.parametrize("name", INSTANCES)
def test_the_instance_cannot_attach_volumes_nor_write_ec2(rendered, name):
    world = World(rendered[name])
    mine = world.facts["lineage"]
    for request in (attach(world, mine), detach(world, mine), restore(world, mine), snapshots(world, mine),
                    retag(world, "volume", lineage(mine), {"ec2spot:fresh": "false"}),
                    untag(world, "volume", lineage(mine), ["ec2spot:fresh"]),
                    on_instance("ec2:StartInstances", lineage)(world, mine)):  # fmt: skip
        assert world.refusal(request) is not None, request.action


def test_the_agent_fetches_only_its_own_program(rendered):
    world = World(rendered["instance/example"])
    (statement,) = [s for s in world.document["Statement"] if s["Sid"] == "FetchTheAgentProgram"]
    bucket, _slash, key = statement["Resource"].split(":::", 1)[1].partition("/")
    get = named("s3", "object", lambda w: [bucket, key])
    assert world.allowed(get(world, "s3:GetObject"))
    other = named("s3", "object", lambda w: [bucket, "ec2spot-agent/0000.py"])
    assert not world.allowed(other(world, "s3:GetObject"))
    assert not world.allowed(get(world, "s3:PutObject"))


@pytest.mark.parametrize("name", ["instance/example", "instance/molecule-pg"])
def test_the_instance_cannot_move_addresses(rendered, name):
    world = World(rendered[name])
    mine = world.facts["lineage"]
    service = {"ec2spot:service": world.facts["service"], LINEAGE_TAG: mine}
    assert not world.allowed(associate(world, mine, address_tags=service))
    assert not world.allowed(AuthorizationRequest("ec2:DescribeAddresses"))


def test_seed_002_the_instance_moves_only_its_service_address_to_its_lineage(rendered):
    world = World(rendered["instance/molecule-web"])
    mine, service = world.facts["lineage"], world.facts["service"]
    address = {"ec2spot:service": service, LINEAGE_TAG: mine}
    assert world.allowed(AuthorizationRequest("ec2:DescribeAddresses"))
    assert world.allowed(associate(world, mine, address_tags=address))
    assert not world.allowed(associate(world, mine, address_tags={"ec2spot:service": "another", LINEAGE_TAG: mine}))
    assert not world.allowed(associate(world, mine, address_tags={}))
    assert not world.allowed(associate(world, mine, address_tags=address, instance_tags=OTHER))
    assert not world.allowed(associate(world, mine, address_tags=address, instance_tags=UNTAGGED))
    disassociate = AuthorizationRequest(
        "ec2:DisassociateAddress", (world.ec2("elastic-ip", "eipalloc-1", tags=address),)
    )
    assert not world.allowed(disassociate)


def test_seed_002_the_instance_leaves_and_joins_only_its_target_groups(rendered):
    world = World(rendered["instance/molecule-web"])
    (statement,) = [s for s in world.document["Statement"] if s["Sid"] == "LeaveTheFleetsTargetGroups"]
    (arn,) = statement["Resource"]
    name, group_id = arn.rsplit(":", 1)[1].split("/")[1:]
    leave = named("elasticloadbalancing", "targetgroup", lambda w: [name, group_id])
    assert world.allowed(leave(world, "elasticloadbalancing:DeregisterTargets"))
    other = named("elasticloadbalancing", "targetgroup", lambda w: ["other", group_id])
    assert not world.allowed(other(world, "elasticloadbalancing:DeregisterTargets"))
    # JoinTheFleetsTargetGroups: the agent registers its instance once the application has started
    assert world.allowed(leave(world, "elasticloadbalancing:RegisterTargets"))
    assert not world.allowed(other(world, "elasticloadbalancing:RegisterTargets"))


# ---- the FIS role -----------------------------------------------------------------------------------------------
def interrupt(w, tags):  # what AWS FIS does as the role: ec2:SendSpotInstanceInterruptions on the targets
    return AuthorizationRequest("ec2:SendSpotInstanceInterruptions", (w.ec2("instance", "i-1", tags=tags),))


def test_the_fis_role_interrupts_only_its_lineage(rendered):
    world = World(rendered["fis/example"])
    mine = world.facts["lineage"]
    assert world.allowed(AuthorizationRequest("ec2:DescribeInstances"))
    assert world.allowed(interrupt(world, lineage(mine)))
    assert not world.allowed(interrupt(world, OTHER))
    assert not world.allowed(interrupt(world, UNTAGGED))
    assert not world.allowed(on_instance("ec2:TerminateInstances", lineage)(world, mine))
    assert not world.allowed(on_instance("ec2:StopInstances", lineage)(world, mine))


def test_the_fis_role_names_the_callers_partition():
    """arn:aws-cn, arn:aws-us-gov: the template takes the partition from the caller's ARN, as the roles do."""
    text = (pathlib.Path(__file__).resolve().parents[2] / "playbooks/templates/fis-policy.json.j2").read_text()
    assert "arn:aws:" not in text and "arn:{{ drill_template_partition }}:ec2:" in text


def launch(w, tags):
    """ec2:RunInstances as AWS authorises it (sandbox/iam/resources.py): the instance it creates with its tags, the
    image, the subnet, the security group, the interface and the root volume it creates."""
    return AuthorizationRequest("ec2:RunInstances", (
        w.ec2("instance", created=True, keys={"ec2:InstanceType": "t3.micro"}),
        w.resource("ec2", "image", "ami-1"), w.ec2("subnet", "subnet-1"), w.ec2("security-group", "sg-1"),
        w.ec2("network-interface", created=True), w.ec2("volume", created=True, keys={"ec2:Encrypted": True})),
        request_tags=tags)  # fmt: skip


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_handler_launches_nothing_itself(rendered, name):
    """The handler replaces instances through Auto Scaling (unhealthy, then the group launches as its service-linked
    role): its own role may not run an instance, not even one of its lineage."""
    world = World(rendered[name])
    assert world.refusal(launch(world, lineage(world.facts["lineages"][0]))).action == "ec2:RunInstances"


def test_the_fis_role_can_neither_launch_nor_start_experiments(rendered):
    world = World(rendered["fis/example"])
    assert not world.allowed(launch(world, lineage(world.facts["lineage"])))
    template = world.resource("fis", "experiment-template", "EXT1", tags=lineage(world.facts["lineage"]))
    experiment = world.resource("fis", "experiment", created=True)
    assert not world.allowed(AuthorizationRequest("fis:StartExperiment", (template, experiment)))


# ---- the modules' policy (docs/iam/modules-policy.json) -----------------------------------------------------------
MODULES_POLICY = json.loads((pathlib.Path(__file__).resolve().parents[2] / "docs/iam/modules-policy.json").read_text())
OPERATOR = World({"facts": {"account": "123456789012", "region": "eu-west-1", "partition": "aws"},
                  "document": MODULES_POLICY})  # fmt: skip

# (id, request): what spot_backup, volume_reattach, lineage_info and eip_failover call on lineage pgdata's resources.
MODULE_CALLS = [
    *[
        (action, AuthorizationRequest(action))
        for action in (
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
            "ec2:DescribeSnapshots",
            "ec2:DescribeImages",
            "ec2:DescribeAddresses",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeLaunchTemplates",
            "autoscaling:DescribeAutoScalingGroups",
        )
    ],  # fmt: skip
    ("detach", detach(OPERATOR, "pgdata")),
    ("attach", attach(OPERATOR, "pgdata")),
    ("restore from a lineage backup", restore(OPERATOR, "pgdata")),
    ("snapshot the instance's volumes", snapshots(OPERATOR, "pgdata")),
    ("image of the instance", image(OPERATOR, "pgdata")),
    ("retag a volume", retag(OPERATOR, "volume", lineage("pgdata"), {"ec2spot:superseded-by": "vol-2"})),
    # volume_reattach drops an older move's previous holder (the policy had no DeleteTags at all: a finding).
    ("drop an old previous holder", untag(OPERATOR, "volume", lineage("pgdata"), ["ec2spot:previous-holder"])),
    ("delete a managed snapshot", prune(OPERATOR, "ec2:DeleteSnapshot", "snapshot", managed("pgdata"))),
    ("deregister a managed image", prune(OPERATOR, "ec2:DeregisterImage", "image", managed("pgdata"))),
    ("move the service address", associate(OPERATOR, "pgdata")),
    # restore.yml fences a standalone writer of the lineage by stopping it (the policy had no StopInstances: a finding).
    ("fence a lineage instance", on_instance("ec2:StopInstances", lineage)(OPERATOR, "pgdata")),
]
MODULE_REFUSALS = [
    ("attach an untagged volume", attach(OPERATOR, "pgdata", volume_tags={})),
    ("restore unencrypted", restore(OPERATOR, "pgdata", encrypted=False)),
    ("restore from a snapshot we did not make", restore(OPERATOR, "pgdata", snapshot_tags=lineage("pgdata"))),
    ("snapshot an untagged instance", snapshots(OPERATOR, "pgdata", instance_tags={})),
    ("drop the lineage tag", untag(OPERATOR, "volume", lineage("pgdata"), ["ec2spot:lineage"])),
    ("drop a tag of an untagged volume", untag(OPERATOR, "volume", {}, ["ec2spot:previous-holder"])),
    ("delete an unmanaged snapshot", prune(OPERATOR, "ec2:DeleteSnapshot", "snapshot", lineage("pgdata"))),
    ("deregister an untagged image", prune(OPERATOR, "ec2:DeregisterImage", "image", {})),
    (
        "terminate",
        AuthorizationRequest("ec2:TerminateInstances", (OPERATOR.ec2("instance", "i-1", tags=lineage("pgdata")),)),
    ),
    ("stop an untagged instance", AuthorizationRequest("ec2:StopInstances", (OPERATOR.ec2("instance", "i-1"),))),
    (
        "delete a volume",
        AuthorizationRequest("ec2:DeleteVolume", (OPERATOR.ec2("volume", "vol-1", tags=lineage("pgdata")),)),
    ),
]


@pytest.mark.parametrize(("call", "request_"), MODULE_CALLS, ids=[case[0] for case in MODULE_CALLS])
def test_the_modules_policy_allows_every_call_on_the_lineage(call, request_):
    assert OPERATOR.refusal(request_) is None, call


@pytest.mark.parametrize(("call", "request_"), MODULE_REFUSALS, ids=[case[0] for case in MODULE_REFUSALS])
def test_the_modules_policy_refuses_outside_its_scope(call, request_):
    assert OPERATOR.refusal(request_) is not None, call


# ---- the deploy policies (docs/iam/deploy-policy.json, deploy-fleet-policy.json) ----------------------------------
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs/iam"
OPERATOR_POLICIES = [json.loads((DOCS / name).read_text())
                     for name in ("modules-policy.json", "deploy-policy.json", "deploy-fleet-policy.json")]  # fmt: skip


class Operator(World):
    """The sandbox's operator: the three policies docs/iam/ documents, attached together."""

    def refusal(self, request):
        verdict = decide(OPERATOR_POLICIES, request)
        return None if verdict.allowed else verdict.refusal[0]


DEPLOYER = Operator({"facts": {"account": "123456789012", "region": "eu-west-1", "partition": "aws"},
                     "document": None})  # fmt: skip
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:cp"
DRILL = {"ec2spot:drill": "spot-interruption"}


def mapping_call(action, function=FUNCTION_ARN):  # amazon.aws.lambda_event: the queue's mapping to the handler
    keys = {"lambda:FunctionArn": function} if function else {}
    if action == "lambda:CreateEventSourceMapping":
        return AuthorizationRequest(action, keys=keys)
    return AuthorizationRequest(action, (DEPLOYER.resource("lambda", "eventSourceMapping", "uuid-1"),), keys=keys)


def schedule_key_deletion(aliases):  # destroy.yml: amazon.aws.kms_key state absent, found by its alias
    key = DEPLOYER.resource("kms", "key", "key-1", keys={"kms:ResourceAliases": aliases})
    return AuthorizationRequest("kms:ScheduleKeyDeletion", (key,))


def on_group(action, tags=None, request_tags=None):  # roles/fleet (amazon.aws.autoscaling_group), destroy.yml
    group_ = DEPLOYER.resource("autoscaling", "autoScalingGroup", "*", "pg", tags=tags or {})
    return AuthorizationRequest(action, (group_,), request_tags=request_tags)


def on_template(action, tags):  # spot_drill: the drill template
    return AuthorizationRequest(action, (DEPLOYER.resource("fis", "experiment-template", "EXT1", tags=tags),))


def update_template(tags):  # spot_drill: update_experiment_template(id, actions=...) when the drill's settings change
    return AuthorizationRequest("fis:UpdateExperimentTemplate", (
        DEPLOYER.resource("fis", "experiment-template", "EXT1", tags=tags),
        DEPLOYER.resource("fis", "action", "aws:ec2:send-spot-instance-interruptions")))  # fmt: skip


def create_template(request_tags):  # spot_drill: create_experiment_template(tags=lineage and ec2spot:drill)
    return AuthorizationRequest("fis:CreateExperimentTemplate", (
        DEPLOYER.resource("fis", "action", "aws:ec2:send-spot-instance-interruptions"),
        DEPLOYER.resource("fis", "experiment-template", created=True)), request_tags=request_tags)  # fmt: skip


def on_ec2(action, type_name, tags):  # destroy.yml: amazon.aws.ec2_vol and ec2_eip state absent
    return AuthorizationRequest(action, (DEPLOYER.ec2(type_name, "id-1", tags=tags),))


def on_named(action, service, type_name, name, tags=None):
    return AuthorizationRequest(action, (DEPLOYER.resource(service, type_name, name, tags=tags),))


def on_control_plane(action, tags, name="cp"):  # destroy.yml: the function, its log group, the topic (named <cp>)
    service, type_name, resource = {
        "lambda": ("lambda", "function", name),
        "logs": ("logs", "log-group", f"/aws/lambda/{name}"),
        "sns": ("sns", "topic", name),
    }[action.split(":", 1)[0]]
    return on_named(action, service, type_name, resource, tags=tags)


def on_alarm(action, name, request_tags=None):  # the fleet's step scaling, standby, watchdog and drill alarms
    alarm = DEPLOYER.resource("cloudwatch", "alarm", name)
    return AuthorizationRequest(action, (alarm,), request_tags=request_tags)


def tag_template(tags, request_tags, create_action=None):  # amazon.aws.ec2_launch_template: its tags
    keys = {"ec2:CreateAction": create_action} if create_action else {}
    template = DEPLOYER.ec2("launch-template", "lt-1", tags=tags)
    return AuthorizationRequest("ec2:CreateTags", (template,), request_tags=request_tags, keys=keys)


DEPLOY_CALLS = [
    ("connect the queue to the handler", mapping_call("lambda:CreateEventSourceMapping")),
    ("update the handler's mapping", mapping_call("lambda:UpdateEventSourceMapping")),
    *(
        (f"{action} of our control plane", on_control_plane(action, managed("pg")))
        for action in (
            "lambda:DeleteFunction",
            "lambda:UntagResource",
            "lambda:TagResource",
            "logs:DeleteLogGroup",
            "logs:UntagLogGroup",
            "logs:DeleteRetentionPolicy",
            "sns:DeleteTopic",
            "sns:UntagResource",
        )
    ),
    # A tag on create needs TagResource (Lambda developer guide, "Using tags on Lambda functions"), and a control
    # plane deployed before the role added ec2spot:managed-by gets it at its next deploy.
    ("tag an untagged function ours", on_control_plane("lambda:TagResource", {})),
    ("delete our launch template", on_ec2("ec2:DeleteLaunchTemplate", "launch-template", managed("pg"))),
    ("tag a launch template as it is created", tag_template({}, managed("pg"), "CreateLaunchTemplate")),
    ("tag a launch template made before it was tagged", tag_template({}, managed("pg"))),
    ("retag our launch template", tag_template(managed("pg"), {"team": "sre"})),
    ("update our launch template", on_ec2("ec2:CreateLaunchTemplateVersion", "launch-template", managed("pg"))),
    *(
        (f"{action} {name}", on_alarm(action, name))
        for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms")
        for name in ("pg-step-scaling-burst", "pg-drill-stop", "cp-standby-pg-status", "cp-watchdog-pg-i-1")
    ),
    ("delete a control plane rule", on_named("events:DeleteRule", "events", "rule-on-default-event-bus", "cp-sweep")),
    ("delete a backup schedule", on_named("events:DeleteRule", "events", "rule-on-default-event-bus", "cp-backup-pg")),
    ("delete a watchdog rule", on_named("events:DeleteRule", "events", "rule-on-default-event-bus", "cp-watchdog-pg")),
    ("delete the handler's role", on_named("iam:DeleteRole", "iam", "role", "cp-function")),
    ("delete the event queue", on_named("sqs:DeleteQueue", "sqs", "queue", "cp-events")),
    ("schedule the queues' key deletion", schedule_key_deletion(["alias/cp-queue"])),
    ("create a group with our tag", on_group("autoscaling:CreateAutoScalingGroup", request_tags=managed("pg"))),
    ("update our group", on_group("autoscaling:UpdateAutoScalingGroup", tags=managed("pg"))),
    ("delete our group", on_group("autoscaling:DeleteAutoScalingGroup", tags=managed("pg"))),
    ("create a drill template", create_template({**DRILL, LINEAGE_TAG: "pg"})),
    ("delete a drill template", on_template("fis:DeleteExperimentTemplate", DRILL)),
    ("update a drill template with its action", update_template(DRILL)),
    ("delete a managed data volume", on_ec2("ec2:DeleteVolume", "volume", managed("pg"))),
    ("release the service's address", on_ec2("ec2:ReleaseAddress", "elastic-ip", managed("pg"))),
]
DEPLOY_REFUSALS = [
    ("map a queue to no function named", mapping_call("lambda:CreateEventSourceMapping", function=None)),
    ("update a mapping of no function", mapping_call("lambda:UpdateEventSourceMapping", function=None)),
    # No playbook deletes the queue's mapping (destroy.yml deletes the function): nothing allows it.
    ("delete the handler's mapping", mapping_call("lambda:DeleteEventSourceMapping")),
    *(
        (f"{action} not ours", on_control_plane(action, tags, "billing"))
        for action in (
            "lambda:DeleteFunction",
            "lambda:UntagResource",
            "logs:DeleteLogGroup",
            "logs:UntagLogGroup",
            "logs:DeleteRetentionPolicy",
            "sns:DeleteTopic",
            "sns:UntagResource",
        )
        for tags in ({}, {"ec2spot:managed-by": "someone-else"})
    ),
    ("delete an untagged launch template", on_ec2("ec2:DeleteLaunchTemplate", "launch-template", {})),
    ("retag a launch template not ours", tag_template({}, {"team": "sre"})),
    ("delete an alarm not ours", on_alarm("cloudwatch:DeleteAlarms", "billing-high")),
    ("delete a step alarm of the old naming", on_alarm("cloudwatch:DeleteAlarms", "pg-burst")),
    ("overwrite an alarm not ours", on_alarm("cloudwatch:PutMetricAlarm", "billing-high")),
    ("delete a rule not ours", on_named("events:DeleteRule", "events", "rule-on-default-event-bus", "billing-alerts")),
    ("delete a role not ours", on_named("iam:DeleteRole", "iam", "role", "Administrator")),
    ("delete a queue not ours", on_named("sqs:DeleteQueue", "sqs", "queue", "orders")),
    ("schedule another key's deletion", schedule_key_deletion(["alias/prod-db"])),
    ("schedule the deletion of a key without alias", schedule_key_deletion([])),
    ("schedule the deletion of a key shared with another alias", schedule_key_deletion(["alias/cp-queue", "alias/db"])),
    ("create an untagged group", on_group("autoscaling:CreateAutoScalingGroup", request_tags={})),
    ("update a group not ours", on_group("autoscaling:UpdateAutoScalingGroup", tags=lineage("pg"))),
    ("delete a group not ours", on_group("autoscaling:DeleteAutoScalingGroup", tags={})),
    ("create a template without the drill tag", create_template(lineage("pg"))),
    ("delete a template not ours", on_template("fis:DeleteExperimentTemplate", lineage("pg"))),
    ("update a template not ours", update_template(lineage("pg"))),
    ("delete an unmanaged volume", on_ec2("ec2:DeleteVolume", "volume", lineage("pg"))),
    ("release an unmanaged address", on_ec2("ec2:ReleaseAddress", "elastic-ip", {})),
    ("delete a dashboard not ours", on_named("cloudwatch:DeleteDashboards", "cloudwatch", "dashboard", "finance")),
]


@pytest.mark.parametrize(("call", "request_"), DEPLOY_CALLS, ids=[case[0] for case in DEPLOY_CALLS])
def test_the_deploy_policies_allow_the_deploys_calls_on_its_own_resources(call, request_):
    assert DEPLOYER.refusal(request_) is None, call


@pytest.mark.parametrize(("call", "request_"), DEPLOY_REFUSALS, ids=[case[0] for case in DEPLOY_REFUSALS])
def test_the_deploy_policies_refuse_deletes_outside_their_scope(call, request_):
    assert DEPLOYER.refusal(request_) is not None, call
