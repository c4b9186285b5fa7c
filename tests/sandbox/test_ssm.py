"""Rule 5: AWS Systems Manager Run Command as AWS runs it (sandbox/rules/ssm.py)."""

import json
import os
import uuid
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT

from .conftest import error_code, unique

CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
EC2_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


@pytest.fixture
def ssm(aws):
    return aws("ssm")


@pytest.fixture
def iam(aws):
    return aws("iam")


@pytest.fixture
def profile(iam):
    """``profile(managed=True)``: a new instance profile whose role has (or lacks) the SSM core policy."""

    def _profile(managed=True):
        name = unique("ssm-test")
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=EC2_TRUST)
        if managed:
            iam.attach_role_policy(RoleName=name, PolicyArn=CORE_POLICY)
        iam.create_instance_profile(InstanceProfileName=name)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        return name

    return _profile


def wait_running(ec2, box, instance_id, limit=120):
    """Let a launch finish booting if the sandbox models boot time (moto alone starts instances running)."""
    waited = 0
    while waited <= limit:
        state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
        if state == "running":
            return instance_id
        box.advance(1)
        waited += 1
    raise AssertionError(f"{instance_id} did not reach running")


@pytest.fixture
def managed(ec2, box, launch, profile):
    """``managed(**run_instances kwargs)``: a running instance with the SSM core policy on its role."""

    def _managed(**extra):
        return wait_running(ec2, box, launch(IamInstanceProfile={"Name": profile()}, **extra))

    return _managed


def shell(ssm, instance_ids=None, commands=("true",), **extra):
    kwargs = {
        "DocumentName": "AWS-RunShellScript",
        "Parameters": {"commands": list(commands), **extra.pop("parameters", {})},
    }
    if instance_ids is not None:
        kwargs["InstanceIds"] = list(instance_ids)
    kwargs.update(extra)
    return ssm.send_command(**kwargs)["Command"]


def invocation(ssm, command_id, instance_id):
    return ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)


def status(ssm, command_id, instance_id):
    answer = invocation(ssm, command_id, instance_id)
    return answer["Status"], answer["StatusDetails"]


def statuses_after(ssm, box, command_id, instance_id, *advances):
    """The invocation's ``(Status, StatusDetails)`` after each of ``advances`` modeled seconds, one after another."""
    found = []
    for seconds in advances:
        box.advance(seconds)
        found.append(status(ssm, command_id, instance_id))
    return found


def command_of(ssm, command_id):
    return ssm.list_commands(CommandId=command_id)["Commands"][0]


def stand_in(instance_id, *parts):
    return os.path.join(CONTEXT.instance_root(instance_id), *parts)


# ---- who can be sent a command --------------------------------------------------------------
def test_unknown_instance_is_refused(ssm, box):
    """moto 5.2.5 accepts a command for an instance that does not exist; AWS refuses it."""
    with pytest.raises(ClientError) as refused:
        shell(ssm, ["i-0123456789abcdef0"])
    assert error_code(refused) == "InvalidInstanceId"
    assert (
        refused.value.response["Error"]["Message"]
        == "Instances [[i-0123456789abcdef0]] not in a valid state for account 123456789012"
    )
    assert not box.records("ssm_commands")


def test_instance_without_the_ssm_policy_is_refused(ec2, ssm, box, launch, profile):
    """moto 5.2.5 runs commands on any instance; AWS only on managed ones (role with AmazonSSMManagedInstanceCore)."""
    bare = wait_running(ec2, box, launch())
    unmanaged_role = wait_running(ec2, box, launch(IamInstanceProfile={"Name": profile(managed=False)}))
    for instance_id in (bare, unmanaged_role):
        with pytest.raises(ClientError) as refused:
            shell(ssm, [instance_id])
        assert error_code(refused) == "InvalidInstanceId"
        assert (
            refused.value.response["Error"]["Message"]
            == f"Instances [[{instance_id}]] not in a valid state for account 123456789012"
        )
    assert not box.records("ssm_commands")


def test_one_unmanaged_instance_refuses_the_whole_command(ssm, box, managed, launch):
    """moto 5.2.5 accepts the command; AWS refuses it and names the instance that is not valid."""
    good, bad = managed(), launch()
    with pytest.raises(ClientError) as refused:
        shell(ssm, [good, bad])
    assert (
        refused.value.response["Error"]["Message"]
        == f"Instances [[{bad}]] not in a valid state for account 123456789012"
    )
    assert not box.records("ssm_commands")


def test_stopped_managed_instance_is_refused(ec2, ssm, box, managed):
    """moto 5.2.5 sends commands to stopped instances; AWS refuses: the agent is not online."""
    instance_id = managed()
    ec2.stop_instances(InstanceIds=[instance_id])
    box.advance(60)
    with pytest.raises(ClientError) as refused:
        shell(ssm, [instance_id])
    assert error_code(refused) == "InvalidInstanceId"


def test_policy_attached_after_launch_makes_the_instance_managed(ec2, ssm, iam, box, launch, profile):
    """moto 5.2.5 has no AWS managed policies to attach (without loading all); the sandbox keeps the SSM ones."""
    name = profile(managed=False)
    instance_id = wait_running(ec2, box, launch(IamInstanceProfile={"Name": name}))
    with pytest.raises(ClientError):
        shell(ssm, [instance_id])
    iam.attach_role_policy(RoleName=name, PolicyArn=CORE_POLICY)
    assert shell(ssm, [instance_id])["Status"] == "Pending"


def test_instance_from_a_launch_template_with_a_profile_is_managed(ec2, ssm, box, seeded, profile):
    """moto 5.2.5 ignores a launch template's IamInstanceProfile; AWS launches the instance with it."""
    template = ec2.create_launch_template(
        LaunchTemplateName=unique("ssm-test"),
        LaunchTemplateData={
            "ImageId": seeded["image_id"],
            "InstanceType": "t3.micro",
            "IamInstanceProfile": {"Name": profile()},
        },
    )["LaunchTemplate"]
    instance_id = ec2.run_instances(
        MinCount=1,
        MaxCount=1,
        SubnetId=seeded["subnets"]["us-east-1a"],
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"]},
    )["Instances"][0]["InstanceId"]
    wait_running(ec2, box, instance_id)
    command = shell(ssm, [instance_id], ["touch from-template"])
    box.advance(3)
    assert status(ssm, command["CommandId"], instance_id) == ("Success", "Success")
    assert os.path.exists(stand_in(instance_id, "from-template"))


# ---- which instances a command reaches ------------------------------------------------------
def test_command_targets_exactly_the_given_instances(ssm, box, managed):
    """moto 5.2.5 with only InstanceIds also targets every other instance in the region; AWS targets those given."""
    first, second, bystander = managed(), managed(), managed()
    command = shell(ssm, [first, second], ["touch touched"])
    assert command["InstanceIds"] == [first, second]
    box.advance(3)
    invocations = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert sorted(i["InstanceId"] for i in invocations) == sorted([first, second])
    assert command_of(ssm, command["CommandId"])["TargetCount"] == 2
    assert os.path.exists(stand_in(first, "touched")) and os.path.exists(stand_in(second, "touched"))
    assert not os.path.exists(stand_in(bystander, "touched"))
    with pytest.raises(ClientError) as missing:
        invocation(ssm, command["CommandId"], bystander)
    assert error_code(missing) == "InvocationDoesNotExist"


def test_tag_targets_resolve_to_matching_managed_instances(ec2, ssm, box, managed, launch):
    """moto 5.2.5 targets every instance with the tag, managed or not, and nothing runs; AWS only managed ones."""
    role = unique("app")
    tagged = [{"ResourceType": "instance", "Tags": [{"Key": "Role", "Value": role}]}]
    app_a, app_b = managed(TagSpecifications=tagged), managed(TagSpecifications=tagged)
    other = managed()
    wait_running(ec2, box, launch(TagSpecifications=tagged))  # tagged but not managed
    command = shell(ssm, None, ["echo hi"], Targets=[{"Key": "tag:Role", "Values": [role]}])
    assert command["InstanceIds"] == []
    box.advance(3)
    described = command_of(ssm, command["CommandId"])
    invocations = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert sorted(i["InstanceId"] for i in invocations) == sorted([app_a, app_b])
    assert (described["Status"], described["TargetCount"], described["CompletedCount"]) == ("Success", 2, 2)
    assert other not in box.records("ssm_commands")[-1]["instance_ids"]


def test_tag_targets_matching_nothing_fail_as_no_instances_in_tag(ssm, box):
    """moto 5.2.5 reports Success; AWS reports the command Failed with NoInstancesInTag."""
    command = shell(ssm, None, ["true"], Targets=[{"Key": "tag:Role", "Values": [unique("none")]}])
    box.advance(3)
    described = command_of(ssm, command["CommandId"])
    assert (described["Status"], described["StatusDetails"], described["TargetCount"]) == (
        "Failed",
        "NoInstancesInTag",
        0,
    )


# ---- time: Pending -> InProgress -> final -------------------------------------------------
def test_invocation_passes_pending_in_progress_then_success(ssm, box, managed):
    """moto 5.2.5 reports Success at once with no output; AWS goes Pending, InProgress, then Success with the output."""
    instance_id = managed()
    command = shell(ssm, [instance_id], ["touch app.stopped", "echo stopped $EC2SPOT_INSTANCE_ID"])
    assert (command["Status"], command["TargetCount"], command["CompletedCount"]) == ("Pending", 0, 0)
    command_id = command["CommandId"]
    assert status(ssm, command_id, instance_id) == ("Pending", "Pending")
    pending = invocation(ssm, command_id, instance_id)
    assert (pending["ResponseCode"], pending["ExecutionStartDateTime"], pending["StandardOutputContent"]) == (
        -1,
        "",
        "",
    )
    assert command_of(ssm, command_id)["Status"] == "Pending"
    assert not os.path.exists(stand_in(instance_id, "app.stopped"))

    box.advance(0.6)
    running = invocation(ssm, command_id, instance_id)
    assert (running["Status"], running["StatusDetails"], running["ResponseCode"]) == ("InProgress", "InProgress", -1)
    assert running["ExecutionStartDateTime"] and running["StandardOutputContent"] == ""
    assert command_of(ssm, command_id)["Status"] == "InProgress"
    assert os.path.exists(stand_in(instance_id, "app.stopped"))  # the command runs while InProgress

    box.advance(1.8)
    assert status(ssm, command_id, instance_id) == ("InProgress", "InProgress")
    box.advance(0.2)
    done = invocation(ssm, command_id, instance_id)
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("Success", "Success", 0)
    assert done["StandardOutputContent"] == f"stopped {instance_id}\n"
    assert done["ExecutionElapsedTime"].startswith("PT2.") and done["ExecutionEndDateTime"]
    described = command_of(ssm, command_id)
    assert (described["Status"], described["CompletedCount"], described["ErrorCount"]) == ("Success", 1, 0)


def test_failing_command_reports_its_exit_status(ssm, box, managed):
    """moto 5.2.5 cannot fail a command; AWS reports Failed with the exit status and the agent's error line."""
    instance_id = managed()
    command = shell(ssm, [instance_id], ["echo partial", "echo broken >&2", "exit 3"])
    box.advance(3)
    failed = invocation(ssm, command["CommandId"], instance_id)
    assert (failed["Status"], failed["StatusDetails"], failed["ResponseCode"]) == ("Failed", "Failed", 3)
    assert failed["StandardOutputContent"] == "partial\n"
    assert failed["StandardErrorContent"] == "broken\nfailed to run commands: exit status 3"
    described = command_of(ssm, command["CommandId"])
    assert (described["Status"], described["StatusDetails"], described["ErrorCount"]) == ("Failed", "Failed", 1)


def test_execution_timeout_ends_the_invocation_timed_out(ssm, box, managed):
    """moto 5.2.5 cannot time out; AWS kills a command that outlives executionTimeout and reports TimedOut."""
    instance_id = managed()
    command = shell(
        ssm, [instance_id], ["echo started", "sleep 30", "touch finished"], parameters={"executionTimeout": ["1"]}
    )
    assert statuses_after(ssm, box, command["CommandId"], instance_id, 1.4, 0.2) == [
        ("InProgress", "InProgress"),
        ("TimedOut", "ExecutionTimedOut"),
    ]
    timed_out = invocation(ssm, command["CommandId"], instance_id)
    assert timed_out["StandardOutputContent"] == "started\n"
    assert not os.path.exists(stand_in(instance_id, "finished"))
    assert command_of(ssm, command["CommandId"])["Status"] == "TimedOut"


def test_timeouts_are_reported_and_set_expires_after(ssm, box, managed):
    """moto 5.2.5 sets ExpiresAfter from TimeoutSeconds only; AWS adds executionTimeout, and echoes TimeoutSeconds."""
    instance_id = managed()
    command = shell(ssm, [instance_id], TimeoutSeconds=60, parameters={"executionTimeout": ["120"]})
    assert command["TimeoutSeconds"] == 60
    assert command["ExpiresAfter"] - command["RequestedDateTime"] == timedelta(seconds=180)
    assert command_of(ssm, command["CommandId"])["TimeoutSeconds"] == 60


def test_command_runs_in_the_instance_stand_in(ssm, box, managed):
    """moto 5.2.5 runs nothing; the sandbox runs the commands with bash in the instance's stand-in directory."""
    instance_id = managed()
    command = shell(
        ssm, [instance_id], ["pwd", "echo $EC2SPOT_INSTANCE_ID $EC2SPOT_INSTANCE_ROOT", "echo $BASH_VERSION | cut -c1"]
    )
    box.advance(3)
    lines = invocation(ssm, command["CommandId"], instance_id)["StandardOutputContent"].splitlines()
    root = os.path.realpath(CONTEXT.instance_root(instance_id))
    assert os.path.realpath(lines[0]) == root
    assert lines[1] == f"{instance_id} {CONTEXT.instance_root(instance_id)}"
    assert lines[2].isdigit()


def test_list_command_invocations_with_details_gives_plugin_output(ssm, box, managed):
    """moto 5.2.5 does not implement ListCommandInvocations; AWS lists each invocation, with plugin output on Details."""
    instance_id = managed()
    command = shell(ssm, [instance_id], ["echo out", "echo err >&2", "exit 2"])
    listed = ssm.list_command_invocations(CommandId=command["CommandId"], Details=True)["CommandInvocations"]
    assert [(i["InstanceId"], i["Status"]) for i in listed] == [(instance_id, "Pending")]
    assert listed[0]["CommandPlugins"][0]["Output"] == ""
    box.advance(3)
    plain = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"][0]
    assert (plain["Status"], plain["CommandPlugins"]) == ("Failed", [])
    plugin = ssm.list_command_invocations(CommandId=command["CommandId"], Details=True)["CommandInvocations"][0][
        "CommandPlugins"
    ][0]
    assert (plugin["Name"], plugin["Status"], plugin["ResponseCode"]) == ("aws:runShellScript", "Failed", 2)
    assert plugin["Output"] == "out\n\n----------ERROR-------\nerr\nfailed to run commands: exit status 2"
    by_instance = ssm.list_command_invocations(InstanceId=instance_id)["CommandInvocations"]
    assert [i["CommandId"] for i in by_instance] == [command["CommandId"]]


def test_list_commands_filters_by_status_and_instance(ssm, box, managed):
    """moto 5.2.5 ignores ListCommands filters and reports every command Success; AWS filters on the live status."""
    instance_id = managed()
    ok = shell(ssm, [instance_id], ["true"])["CommandId"]
    bad = shell(ssm, [instance_id], ["false"])["CommandId"]
    running = {
        c["CommandId"]
        for c in ssm.list_commands(InstanceId=instance_id, Filters=[{"key": "ExecutionStage", "value": "Executing"}])[
            "Commands"
        ]
    }
    assert running == {ok, bad}
    box.advance(3)
    failed = [
        c["CommandId"]
        for c in ssm.list_commands(InstanceId=instance_id, Filters=[{"key": "Status", "value": "Failed"}])["Commands"]
    ]
    assert failed == [bad]
    assert [c["CommandId"] for c in ssm.list_commands(InstanceId=instance_id)["Commands"]] == [bad, ok]  # newest first


def test_unsupported_document_and_bad_parameters_are_refused(ssm, box, managed):
    """moto 5.2.5 accepts any document and parameters; the sandbox refuses what it does not model, AWS bad parameters."""
    instance_id = managed()
    with pytest.raises(ClientError) as unsupported:
        ssm.send_command(
            InstanceIds=[instance_id], DocumentName="AWS-RunPowerShellScript", Parameters={"commands": ["dir"]}
        )
    assert error_code(unsupported) == "InvalidDocument"
    assert "AWS-RunShellScript" in unsupported.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as no_commands:
        ssm.send_command(InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Parameters={})
    assert error_code(no_commands) == "InvalidParameters"
    with pytest.raises(ClientError) as bad_timeout:
        shell(ssm, [instance_id], parameters={"executionTimeout": ["soon"]})
    assert error_code(bad_timeout) == "InvalidParameters"
    assert not box.records("ssm_commands")


def test_every_command_sent_is_recorded(ssm, box, managed):
    """moto 5.2.5 keeps no such record; the sandbox records each command so later tests can assert what was sent."""
    instance_id = managed()
    command = shell(ssm, [instance_id], ["echo stopping app", "touch app.stopped"], Comment="graceful stop")
    [record] = box.records("ssm_commands")
    assert record["command_id"] == command["CommandId"]
    assert record["instance_ids"] == [instance_id]
    assert record["document"] == "AWS-RunShellScript"
    assert record["commands"] == ["echo stopping app", "touch app.stopped"]
    assert record["comment"] == "graceful stop"
    box.advance(3)
    assert [
        (r["command_id"], r["instance_id"], r["status"], r["response_code"]) for r in box.records("ssm_invocations")
    ] == [(command["CommandId"], instance_id, "Success", 0)]


# ---- scripted outcomes ----------------------------------------------------------------------
def test_scripted_success_and_failure(ssm, box, managed):
    """moto 5.2.5 always succeeds with empty output; a test can script each instance's outcome."""
    good, bad = managed(), managed()
    box.call("ssm/script", instance_id=good, outcome="Success", output="drained\n", duration=5)
    box.call("ssm/script", instance_id=bad, outcome="Failed", exit_code=4, output="half", times=1)
    command = shell(ssm, [good, bad], ["touch should-not-run"])
    box.advance(3)
    assert status(ssm, command["CommandId"], good) == ("InProgress", "InProgress")
    assert status(ssm, command["CommandId"], bad) == ("Failed", "Failed")
    box.advance(3)
    succeeded = invocation(ssm, command["CommandId"], good)
    assert (succeeded["Status"], succeeded["StandardOutputContent"]) == ("Success", "drained\n")
    failed = invocation(ssm, command["CommandId"], bad)
    assert (failed["ResponseCode"], failed["StandardOutputContent"]) == (4, "half")
    assert not os.path.exists(stand_in(good, "should-not-run"))
    # MaxErrors 0 (the default): one failure fails the command.
    assert command_of(ssm, command["CommandId"])["StatusDetails"] == "Failed"
    # ``times=1`` is used up: the next command on ``bad`` runs for real.
    again = shell(ssm, [bad], ["touch ran"])
    box.advance(3)
    assert status(ssm, again["CommandId"], bad) == ("Success", "Success") and os.path.exists(stand_in(bad, "ran"))


def test_max_errors_leaves_a_partial_failure_incomplete(ssm, box, managed):
    """moto 5.2.5 has no command-level aggregation; AWS reports Incomplete when failures stay within MaxErrors."""
    good, bad = managed(), managed()
    box.call("ssm/script", instance_id=bad, outcome="Failed", exit_code=1)
    command = shell(ssm, [good, bad], ["true"], MaxErrors="1")
    box.advance(3)
    described = command_of(ssm, command["CommandId"])
    assert (described["Status"], described["StatusDetails"], described["ErrorCount"], described["CompletedCount"]) == (
        "Failed",
        "Incomplete",
        1,
        2,
    )
    box.call("ssm/reset", instance_id=bad)


def test_scripted_timeout_and_undeliverable(ssm, box, managed):
    """moto 5.2.5 cannot time out or fail delivery; scripted, AWS's TimedOut and Undeliverable appear."""
    slow, lost = managed(), managed()
    box.call("ssm/script", instance_id=slow, outcome="TimedOut", duration=10)
    box.call("ssm/script", instance_id=lost, outcome="Undeliverable")
    command = shell(ssm, [slow, lost])
    box.advance(1)
    assert status(ssm, command["CommandId"], lost) == ("Failed", "Undeliverable")
    assert invocation(ssm, command["CommandId"], lost)["ExecutionStartDateTime"] == ""
    assert statuses_after(ssm, box, command["CommandId"], slow, 9, 1) == [
        ("InProgress", "InProgress"),
        ("TimedOut", "ExecutionTimedOut"),
    ]
    assert box.call("ssm/reset")["cleared"] >= 2


def test_scripted_success_longer_than_execution_timeout_times_out(ssm, box, managed):
    """A scripted run longer than executionTimeout ends TimedOut at the timeout, as AWS's agent stops it."""
    instance_id = managed()
    box.call("ssm/script", instance_id=instance_id, outcome="Success", duration=600, times=1)
    command = shell(ssm, [instance_id], parameters={"executionTimeout": ["30"]})
    assert statuses_after(ssm, box, command["CommandId"], instance_id, 30.4, 0.2) == [
        ("InProgress", "InProgress"),
        ("TimedOut", "ExecutionTimedOut"),
    ]


def test_delivery_timeout(ssm, box, managed):
    """moto 5.2.5 delivers at once; AWS reports DeliveryTimedOut once TimeoutSeconds + executionTimeout pass undelivered."""
    instance_id = managed()
    box.call("ssm/script", instance_id=instance_id, outcome="DeliveryTimedOut", times=1)
    command = shell(ssm, [instance_id], TimeoutSeconds=30, parameters={"executionTimeout": ["10"]})
    assert statuses_after(ssm, box, command["CommandId"], instance_id, 39, 1.1) == [
        ("Pending", "Pending"),
        ("TimedOut", "DeliveryTimedOut"),
    ]
    described = command_of(ssm, command["CommandId"])
    assert (described["Status"], described["StatusDetails"], described["DeliveryTimedOutCount"]) == (
        "TimedOut",
        "DeliveryTimedOut",
        1,
    )


def test_script_control_rejects_unknown_outcomes(box):
    """The control refuses outcomes AWS does not have."""
    from sandbox.control import SandboxError

    with pytest.raises(SandboxError):
        box.call("ssm/script", instance_id="i-0123456789abcdef0", outcome="Exploded")


# ---- the instance changes under a command ---------------------------------------------------
def test_instance_terminated_before_delivery_is_undeliverable(ec2, ssm, box, managed):
    """moto 5.2.5 reports Success for a terminated instance; AWS cannot deliver the command."""
    instance_id = managed()
    command = shell(ssm, [instance_id], ["touch late"])
    ec2.terminate_instances(InstanceIds=[instance_id])
    box.advance(3)
    assert status(ssm, command["CommandId"], instance_id) == ("Failed", "Undeliverable")
    assert not os.path.exists(stand_in(instance_id, "late"))


def test_instance_terminated_while_running_never_reports(ec2, ssm, box, managed):
    """moto 5.2.5 reports Success; on AWS an instance gone mid-command never reports, so it expires DeliveryTimedOut."""
    instance_id = managed()
    command = shell(ssm, [instance_id], ["touch started"], TimeoutSeconds=30, parameters={"executionTimeout": ["30"]})
    box.advance(1)
    assert os.path.exists(stand_in(instance_id, "started"))
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert statuses_after(ssm, box, command["CommandId"], instance_id, 2, 58) == [
        ("InProgress", "InProgress"),
        ("TimedOut", "DeliveryTimedOut"),
    ]


def test_cancel_command(ssm, box, managed):
    """moto 5.2.5 does not implement CancelCommand; AWS cancels pending invocations at once, running ones shortly."""
    instance_id = managed()
    pending = shell(ssm, [instance_id], ["touch never"])
    ssm.cancel_command(CommandId=pending["CommandId"])
    assert status(ssm, pending["CommandId"], instance_id) == ("Cancelled", "Cancelled")
    box.advance(3)
    assert not os.path.exists(stand_in(instance_id, "never"))
    assert command_of(ssm, pending["CommandId"])["Status"] == "Cancelled"
    running = shell(ssm, [instance_id])
    box.advance(1)
    ssm.cancel_command(CommandId=running["CommandId"], InstanceIds=[instance_id])
    assert status(ssm, running["CommandId"], instance_id) == ("Cancelling", "Cancelling")
    box.advance(1)
    assert status(ssm, running["CommandId"], instance_id) == ("Cancelled", "Cancelled")
    with pytest.raises(ClientError) as unknown:
        ssm.cancel_command(CommandId=str(uuid.uuid4()))
    assert error_code(unknown) == "InvalidCommandId"


def test_describe_instance_information_lists_managed_instances(ec2, ssm, box, managed, launch):
    """moto 5.2.5 does not implement DescribeInstanceInformation; AWS lists managed nodes with their ping status."""
    online, stopped = managed(), managed()
    unmanaged = wait_running(ec2, box, launch())
    ec2.stop_instances(InstanceIds=[stopped])
    box.advance(60)
    listed = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [online, stopped, unmanaged]}])
    pings = {i["InstanceId"]: i["PingStatus"] for i in listed["InstanceInformationList"]}
    assert pings == {online: "Online", stopped: "ConnectionLost"}
    assert listed["InstanceInformationList"][0]["PlatformType"] == "Linux"
