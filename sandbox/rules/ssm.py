"""AWS Systems Manager Run Command as AWS runs it.

AWS (Systems Manager API reference SendCommand, GetCommandInvocation, ListCommands,
ListCommandInvocations, CancelCommand, DescribeInstanceInformation; user guide "Setting up
managed nodes", "Understanding command statuses", "Understanding command timeout values";
the SSM Agent's runShellScript plugin):

* a command runs only on **managed** instances: an instance is managed while it exists, is
  ``running`` and its instance profile's role lets the agent register
  (``ssm:UpdateInstanceInformation``, which ``AmazonSSMManagedInstanceCore`` grants). The
  profile comes from the instance's association or, for instances moto launched from a launch
  template (Auto Scaling), from the template's ``IamInstanceProfile``. ``SendCommand`` to any
  other instance raises ``InvalidInstanceId`` "Instances [[i-...]] not in a valid state for
  account 123456789012". moto keeps no AWS managed policies unless told to load all of them,
  so this rule keeps the SSM ones (``AWS_MANAGED_POLICIES_KEPT``) attachable;
* ``InstanceIds`` targets exactly those instances; ``Targets`` resolve ``tag:<key>``,
  ``tag-key`` and ``InstanceIds`` (``*`` for all) to running managed instances (several
  targets must all match); targets matching nothing make the command ``Failed`` /
  ``NoInstancesInTag``;
* every invocation is ``Pending`` for ``ssm_pending`` modeled seconds, then ``InProgress``,
  then final after ``ssm_command`` (``Success``, or ``Failed`` with the exit status as
  ``ResponseCode``); ``executionTimeout`` ends it ``TimedOut`` / ``ExecutionTimedOut``; a
  command not delivered within ``TimeoutSeconds`` + ``executionTimeout`` (``ExpiresAfter``)
  ends ``TimedOut`` / ``DeliveryTimedOut``; an instance that is not running at delivery makes
  it ``Failed`` / ``Undeliverable``; an instance gone while the command runs never reports,
  so the invocation stays ``InProgress`` until ``ExpiresAfter``;
* the command's own status aggregates its invocations with ``MaxErrors`` (``Success``,
  ``Failed``, ``TimedOut``, ``Incomplete``); its counts fill as invocations finish (the
  ``SendCommand`` answer has them at 0 and ``Status`` ``Pending``, as AWS's does);
* output is shown only once an invocation is final: ``StandardOutputContent`` (first 24,000
  characters), ``StandardErrorContent`` (first 8,000, with the agent's "failed to run
  commands: exit status N"), and with ``ListCommandInvocations(Details=True)`` the plugin
  ``Output`` (first 2,500 characters, stderr after "----------ERROR-------");
* ``CancelCommand``, ``ListCommandInvocations`` and ``DescribeInstanceInformation`` exist.

What the command does: ``AWS-RunShellScript`` runs its ``commands`` with ``bash`` in the
instance's stand-in directory (``CONTEXT.instance_root``) when the invocation starts, with
``EC2SPOT_INSTANCE_ID`` and ``EC2SPOT_INSTANCE_ROOT`` set and no way to reach AWS; stdout,
stderr and the exit status become the invocation's. It may run for at most ``REAL_RUN_CAP``
real seconds. Other documents are refused with ``InvalidDocument`` naming the limitation.

Tests script outcomes per instance with ``POST /_sandbox/ssm/script`` (``instance_id``,
``outcome`` ``Success`` | ``Failed`` | ``TimedOut`` | ``Undeliverable`` | ``DeliveryTimedOut``,
``output``, ``error``, ``exit_code``, ``duration``, ``times``); a scripted invocation does
not run its commands. Scripts queue per instance: one with ``times`` applies to that many
following commands, one without applies to every following command until another script
replaces it. ``POST /_sandbox/ssm/reset`` forgets scripts. Every accepted command is recorded
(``records`` name ``ssm_commands``) and every final invocation too (``ssm_invocations``).

moto 5.2.5 answers ``SendCommand`` at once with ``Success`` for any instance id, even an
unknown one, with empty output; with only ``InstanceIds`` it also targets every other
instance in the region; nothing runs, fails or times out; ``ListCommandInvocations``,
``CancelCommand`` and ``DescribeInstanceInformation`` are not implemented.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

RUN_SHELL_SCRIPT = "AWS-RunShellScript"
PLUGIN_NAME = "aws:runShellScript"
REGISTRATION_ACTION = "ssm:UpdateInstanceInformation"
AWS_MANAGED_POLICIES_KEPT = [
    "AmazonSSMManagedInstanceCore",
    "AmazonSSMFullAccess",
    "AmazonEC2RoleforSSM",
    "AmazonSSMManagedEC2InstanceDefaultPolicy",
]
SHELL_PARAMETERS = ("commands", "workingDirectory", "executionTimeout")
DEFAULT_TIMEOUT_SECONDS = 3600
DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_EXECUTION_TIMEOUT = 172800
REAL_RUN_CAP = 10.0  # real seconds a stand-in command may take (it runs under the sandbox lock)
KILLED_EXIT_CODE = 137  # the agent's CommandStoppedPreemptivelyExitCode on Linux
STDOUT_LIMIT, STDERR_LIMIT, PLUGIN_OUTPUT_LIMIT = 24000, 8000, 2500
OUTCOMES = ("Success", "Failed", "TimedOut", "Undeliverable", "DeliveryTimedOut")
TERMINAL = ("Success", "Failed", "TimedOut", "Cancelled")
NO_NOTIFICATION = {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""}
NO_CLOUDWATCH_OUTPUT = {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}
UNREACHABLE_AWS = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _iso(moment):
    """AWS's string timestamps in GetCommandInvocation: 2024-05-01T10:00:00.123Z."""
    if moment is None:
        return ""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, (str, dict)) else list(value)


def _decode(data):
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


# ---- managed instances ------------------------------------------------------------------
def _policy_verdict(document, action):
    """'deny', 'allow' or None: what one policy document says about ``action``."""
    if isinstance(document, str):
        text = unquote(document) if document.lstrip().startswith("%") else document
        try:
            document = json.loads(text)
        except ValueError:
            return None
    verdict = None
    for statement in _as_list((document or {}).get("Statement")):
        patterns = statement.get("NotAction") if "NotAction" in statement else statement.get("Action")
        matched = any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _as_list(patterns))
        if "NotAction" in statement:
            matched = not matched
        if not matched:
            continue
        if statement.get("Effect") == "Deny":
            return "deny"
        if statement.get("Effect") == "Allow":
            verdict = "allow"
    return verdict


def _role_allows(role, action):
    documents = list(getattr(role, "policies", {}).values())
    for policy in getattr(role, "managed_policies", {}).values():
        documents += [v.document for v in policy.versions if v.is_default]
    verdicts = [_policy_verdict(d, action) for d in documents]
    return "deny" not in verdicts and "allow" in verdicts


def _tags(instance):
    return {t["key"]: t["value"] for t in instance.get_tags()}


class Fleet:
    """What SSM knows about EC2 instances: which exist, run and are managed."""

    def __init__(self, account_id, region):
        from moto.ec2.models import ec2_backends
        from moto.iam.models import iam_backends

        self.ec2 = ec2_backends[account_id][region]
        self.iam = iam_backends[account_id][self.ec2.partition]

    def instance(self, instance_id):
        from moto.core.exceptions import ServiceException

        try:
            return self.ec2.get_instance(instance_id)
        except ServiceException:
            return None

    def is_running(self, instance_id):
        instance = self.instance(instance_id)
        return instance is not None and instance.state == "running"

    def profile(self, instance):
        """The instance profile an instance runs with (association, else its launch template's)."""
        from moto.core.exceptions import ServiceException

        association = self.ec2.iam_instance_profile_associations.get(instance.id)
        if association is not None:
            return association.iam_instance_profile
        tags = _tags(instance)
        if "aws:ec2launchtemplate:id" not in tags:
            return None
        try:
            template = self.ec2.get_launch_template(tags["aws:ec2launchtemplate:id"])
            spec = (
                template.get_version(tags.get("aws:ec2launchtemplate:version", "$Default")).data.get(
                    "IamInstanceProfile"
                )
                or {}
            )
            if spec.get("Arn"):
                return self.iam.get_instance_profile_by_arn(spec["Arn"])
            if spec.get("Name"):
                return self.iam.get_instance_profile(spec["Name"])
        except (ServiceException, KeyError, ValueError):
            return None
        return None

    def registered(self, instance):
        """The agent registers when the profile's role may call ssm:UpdateInstanceInformation."""
        if instance is None or instance.state not in ("running", "stopping", "stopped"):
            return False
        profile = self.profile(instance)
        return profile is not None and any(_role_allows(role, REGISTRATION_ACTION) for role in profile.roles)

    def is_managed(self, instance_id):
        instance = self.instance(instance_id)
        return instance is not None and instance.state == "running" and self.registered(instance)

    def managed_running(self):
        return sorted(
            (i for i in self.ec2.all_instances() if i.state == "running" and self.registered(i)), key=lambda i: i.id
        )


# ---- commands ---------------------------------------------------------------------------
class SSMError(Exception):
    """Raised inside the rule; turned into moto's SSMException (serialized as AWS's error) at the API edge."""

    def __init__(self, code, message=""):
        super().__init__(message)
        self.code, self.message = code, message


class Invocation:
    def __init__(self, command, instance_id):
        self.command = command
        self.instance_id = instance_id
        self.status = "Pending"
        self.details = "Pending"
        self.response_code = -1
        self.started = None
        self.finished = None
        self.stdout = ""
        self.stderr = ""

    @property
    def terminal(self):
        return self.status in TERMINAL

    def elapsed(self, now):
        if self.started is None:
            return ""
        return f"PT{((self.finished or now) - self.started).total_seconds():.3f}S"

    def plugin_output(self):
        if not self.terminal:
            return ""
        output = self.stdout + (f"\n----------ERROR-------\n{self.stderr}" if self.stderr else "")
        if len(output) > PLUGIN_OUTPUT_LIMIT:
            output = output[:PLUGIN_OUTPUT_LIMIT] + "\n---Output truncated---"
        return output


class RunCommand:
    def __init__(self, command_id, requested, fields):
        self.command_id = command_id
        self.requested = requested
        self.fields = fields  # the request's echo (document, parameters, ...)
        self.requested_instance_ids = fields["InstanceIds"]
        self.targets = fields["Targets"]
        self.timeout_seconds = fields["TimeoutSeconds"]
        self.execution_timeout = fields["executionTimeout"]
        self.invocations = []
        self.cancel_requested = False

    @property
    def instance_ids(self):
        return [i.instance_id for i in self.invocations]

    def invocation(self, instance_id):
        return next((i for i in self.invocations if i.instance_id == instance_id), None)

    def expires_after(self):
        return self.requested + timedelta(seconds=self.timeout_seconds + self.execution_timeout)

    def _error_limit(self):
        text = str(self.fields["MaxErrors"] or "0").strip()
        if text.endswith("%"):
            return int(float(text[:-1]) * len(self.invocations) / 100)
        return int(text)

    def overall(self):
        """(Status, StatusDetails) of the whole command from its invocations."""
        invocations = self.invocations
        if not invocations:
            return ("Failed", "NoInstancesInTag") if self.targets else ("Success", "Success")
        if all(i.status == "Pending" for i in invocations):
            return "Pending", "Pending"
        if not all(i.terminal for i in invocations):
            if self.cancel_requested:
                return "Cancelling", "Cancelling"
            return "InProgress", "InProgress"
        details = [i.details for i in invocations]
        if all(d == "Success" for d in details):
            return "Success", "Success"
        if self.cancel_requested and "Cancelled" in details:
            return "Cancelled", "Cancelled"
        limit = self._error_limit()
        failed, execution_timeouts = details.count("Failed"), details.count("ExecutionTimedOut")
        if failed + execution_timeouts > limit:
            return ("TimedOut", "ExecutionTimedOut") if not failed else ("Failed", "Failed")
        if details.count("DeliveryTimedOut") > limit:
            return "TimedOut", "DeliveryTimedOut"
        return "Failed", "Incomplete"

    def describe(self, at_send=False):
        status, details = ("Pending", "Pending") if at_send else self.overall()
        finished = [i for i in self.invocations if i.terminal]
        described = dict((k, v) for k, v in self.fields.items() if k != "executionTimeout")
        described.update(
            {
                "CommandId": self.command_id,
                "ExpiresAfter": self.expires_after(),
                "RequestedDateTime": self.requested,
                "Status": status,
                "StatusDetails": details,
                "TargetCount": 0 if at_send else len(self.invocations),
                "CompletedCount": 0 if at_send else len(finished),
                "ErrorCount": 0 if at_send else sum(i.details in ("Failed", "ExecutionTimedOut") for i in finished),
                "DeliveryTimedOutCount": 0 if at_send else sum(i.details == "DeliveryTimedOut" for i in finished),
            }
        )
        return described

    def describe_invocation(self, invocation, details, region):
        plugin = {
            "Name": PLUGIN_NAME,
            "Status": invocation.status if invocation.status != "Cancelling" else "InProgress",
            "StatusDetails": invocation.details,
            "ResponseCode": invocation.response_code,
            "Output": invocation.plugin_output(),
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "OutputS3Region": self.fields["OutputS3Region"] or region,
            "OutputS3BucketName": self.fields["OutputS3BucketName"],
            "OutputS3KeyPrefix": self.fields["OutputS3KeyPrefix"],
        }
        if invocation.started is not None:
            plugin["ResponseStartDateTime"] = invocation.started
            if invocation.finished is not None:
                plugin["ResponseFinishDateTime"] = invocation.finished
        return {
            "CommandId": self.command_id,
            "InstanceId": invocation.instance_id,
            "InstanceName": "",
            "Comment": self.fields["Comment"],
            "DocumentName": self.fields["DocumentName"],
            "DocumentVersion": self.fields["DocumentVersion"],
            "RequestedDateTime": self.requested,
            "Status": invocation.status,
            "StatusDetails": invocation.details,
            "TraceOutput": "",
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "CommandPlugins": [plugin] if details else [],
            "ServiceRole": self.fields["ServiceRole"],
            "NotificationConfig": self.fields["NotificationConfig"],
            "CloudWatchOutputConfig": self.fields["CloudWatchOutputConfig"],
        }

    def get_invocation(self, invocation, now):
        terminal = invocation.terminal
        return {
            "CommandId": self.command_id,
            "InstanceId": invocation.instance_id,
            "Comment": self.fields["Comment"],
            "DocumentName": self.fields["DocumentName"],
            "DocumentVersion": self.fields["DocumentVersion"],
            "PluginName": PLUGIN_NAME,
            "ResponseCode": invocation.response_code,
            "ExecutionStartDateTime": _iso(invocation.started),
            "ExecutionElapsedTime": invocation.elapsed(now),
            "ExecutionEndDateTime": _iso(invocation.finished if invocation.started else None),
            "Status": invocation.status,
            "StatusDetails": invocation.details,
            "StandardOutputContent": invocation.stdout[:STDOUT_LIMIT] if terminal else "",
            "StandardOutputUrl": "",
            "StandardErrorContent": invocation.stderr[:STDERR_LIMIT] if terminal else "",
            "StandardErrorUrl": "",
            "CloudWatchOutputConfig": self.fields["CloudWatchOutputConfig"],
        }


# ---- request checks ---------------------------------------------------------------------
def _not_valid(instance_ids, account_id):
    return SSMError(
        "InvalidInstanceId", f"Instances [[{', '.join(instance_ids)}]] not in a valid state for account {account_id}"
    )


def _document_name(name):
    name = name or ""
    if name.startswith("arn:") and ":document/" in name:
        name = name.split(":document/", 1)[1]
    if name != RUN_SHELL_SCRIPT:
        raise SSMError(
            "InvalidDocument",
            f"The sandbox runs only {RUN_SHELL_SCRIPT}; document {name!r} is not modeled (sandbox/rules/ssm.py)",
        )
    return RUN_SHELL_SCRIPT


def _shell_parameters(parameters):
    unknown = sorted(set(parameters) - set(SHELL_PARAMETERS))
    if unknown:
        raise SSMError("InvalidParameters", f"Parameters {unknown} are not defined in document {RUN_SHELL_SCRIPT}.")
    commands = [str(c) for c in _as_list(parameters.get("commands"))]
    if not commands:
        raise SSMError("InvalidParameters", f"Parameter commands is required by document {RUN_SHELL_SCRIPT}.")
    timeout_text = "".join(_as_list(parameters.get("executionTimeout"))).strip() or str(DEFAULT_EXECUTION_TIMEOUT)
    if not re.fullmatch(r"[1-9][0-9]{0,5}", timeout_text) or int(timeout_text) > MAX_EXECUTION_TIMEOUT:
        raise SSMError(
            "InvalidParameters",
            f"Parameter executionTimeout value {timeout_text!r} is not valid: "
            f"it must be an integer from 1 to {MAX_EXECUTION_TIMEOUT}.",
        )
    return commands, int(timeout_text), "".join(_as_list(parameters.get("workingDirectory"))).strip()


def _resolve_targets(fleet, targets, account_id):
    chosen = None
    for target in targets:
        key, values = target.get("Key", ""), [str(v) for v in _as_list(target.get("Values"))]
        managed = fleet.managed_running()
        if key == "InstanceIds":
            if "*" in values:
                matched = [i.id for i in managed]
            else:
                invalid = [v for v in values if not fleet.is_managed(v)]
                if invalid:
                    raise _not_valid(invalid, account_id)
                matched = values
        elif key.startswith("tag:"):
            matched = [i.id for i in managed if _tags(i).get(key[len("tag:") :]) in values]
        elif key == "tag-key":
            matched = [i.id for i in managed if set(values) & set(_tags(i))]
        else:
            raise SSMError(
                "InvalidTarget",
                f"The sandbox resolves only InstanceIds, tag:<key> and tag-key targets, "
                f"not {key!r} (sandbox/rules/ssm.py)",
            )
        chosen = matched if chosen is None else [i for i in chosen if i in matched]
    return list(dict.fromkeys(chosen or []))


def _time_filter(value):
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise SSMError("InvalidFilterValue", f"Invalid timestamp {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _keep(filters, requested, document, status, details, terminal, stages):
    for item in filters or []:
        key, value = item.get("key"), item.get("value", "")
        if key == "InvokedAfter":
            keep = requested >= _time_filter(value)
        elif key == "InvokedBefore":
            keep = requested <= _time_filter(value)
        elif key == "Status":
            keep = value in (status, details)
        elif key == "DocumentName":
            keep = value == document
        elif key == "ExecutionStage" and stages:
            keep = (value == "Complete") == terminal
        else:
            raise SSMError("InvalidFilterKey", f"Invalid filter key {key!r}")
        if not keep:
            return False
    return True


INFORMATION_FILTERS = {
    "InstanceIds": "InstanceId",
    "PingStatus": "PingStatus",
    "PlatformTypes": "PlatformType",
    "ResourceType": "ResourceType",
    "AgentVersion": "AgentVersion",
}


def _information_matches(info, tags, wanted):
    for key, values in wanted.items():
        if key in INFORMATION_FILTERS:
            keep = info[INFORMATION_FILTERS[key]] in values
        elif key.startswith("tag:"):
            keep = tags.get(key[len("tag:") :]) in values
        else:
            keep = bool(values & set(tags))
        if not keep:
            return False
    return True


def _page(items, max_results, next_token):
    start = 0
    if next_token:
        if not str(next_token).isdigit():
            raise SSMError("InvalidNextToken", "The specified token isn't valid.")
        start = int(next_token)
    end = start + int(max_results or 50)
    return items[start:end], (str(end) if end < len(items) else None)


# ---- running a command on an instance's stand-in ----------------------------------------
def run_shell(context, instance_id, commands, working_directory, timeout):
    """Run the commands with bash in the instance's stand-in. Returns (exit_code, stdout, stderr, timed_out)."""
    root = context.instance_root(instance_id)
    cwd = os.path.join(root, working_directory.lstrip("/")) if working_directory else root
    if not os.path.isdir(cwd):
        return 1, "", f"working directory {working_directory} does not exist\n", False
    env = {
        "PATH": f"{root}/usr/local/sbin:{root}/usr/local/bin:" + os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": root,
        "LANG": "C.UTF-8",
        "EC2SPOT_INSTANCE_ID": instance_id,
        "EC2SPOT_INSTANCE_ROOT": root,
    }
    env.update(UNREACHABLE_AWS)
    with subprocess.Popen(
        ["bash", "-c", "\n".join(commands)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
            return process.returncode, _decode(out), _decode(err), False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            return KILLED_EXIT_CODE, _decode(out), _decode(err), True


def _with_line(text, line):
    if text and not text.endswith("\n"):
        text += "\n"
    return text + line


def _failure_text(stderr, exit_code):
    """The agent adds its own line to a failed runShellScript's stderr."""
    return _with_line(stderr, f"failed to run commands: exit status {exit_code}")


def install(context):
    from moto.core.responses import ActionResult
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy, IAMBackend, iam_backends
    from moto.ssm.exceptions import SSMException
    from moto.ssm.responses import SimpleSystemManagerResponse

    # ---- IAM: the AWS managed policies an instance role needs for SSM ------------------
    original_init_aws_policies = IAMBackend._init_aws_policies  # pylint: disable=protected-access

    def init_aws_policies(self):
        policies = original_init_aws_policies(self)
        have = {p.name for p in policies}
        data = json.loads(aws_managed_policies_data)
        return policies + [
            AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data[name])
            for name in AWS_MANAGED_POLICIES_KEPT
            if name in data and name not in have
        ]

    IAMBackend._init_aws_policies = init_aws_policies  # pylint: disable=protected-access
    for account in list(iam_backends.values()):  # backends made before install (rare)
        for backend in list(account.values()):
            for policy in init_aws_policies(backend):
                backend.managed_policies.setdefault(policy.arn, policy)

    # ---- state kept on moto's SSM backend (gone when moto resets) ------------------------
    def state(backend):
        return vars(backend).setdefault("sandbox_run_command", {"commands": [], "scripts": {}})

    def take_script(backend, instance_id):
        queue = state(backend)["scripts"].get(instance_id) or []
        if not queue:
            return None
        script = queue[0]
        if script["times"] is not None:
            script["times"] -= 1
            if script["times"] <= 0:
                queue.pop(0)
        return dict(script)

    def find_command(backend, command_id):
        command = next((c for c in state(backend)["commands"] if c.command_id == command_id), None)
        if command is None:
            raise SSMError("InvalidCommandId", "Invalid command id.")
        return command

    # ---- invocation life cycle (scheduled actions) ----------------------------------------
    def finish(invocation, status, details, code=-1, stdout="", stderr=""):
        if invocation.terminal:
            return
        invocation.status, invocation.details, invocation.response_code = status, details, code
        invocation.stdout, invocation.stderr = stdout, stderr
        invocation.finished = context.now()
        context.record(
            "ssm_invocations",
            {
                "command_id": invocation.command.command_id,
                "instance_id": invocation.instance_id,
                "status": status,
                "details": details,
                "response_code": code,
                "at": invocation.finished.isoformat(),
            },
        )

    def expire_later(command, invocation):
        """At ExpiresAfter an invocation still Pending or InProgress ends DeliveryTimedOut."""

        def expire():
            if invocation.status in ("Pending", "InProgress"):
                finish(invocation, "TimedOut", "DeliveryTimedOut")

        context.after(
            max(0.0, (command.expires_after() - context.now()).total_seconds()),
            expire,
            f"ssm {command.command_id} on {invocation.instance_id} expires",
        )

    def begin(fleet, command, invocation, script, commands, working_directory):
        if invocation.status != "Pending":
            return
        if not fleet.is_running(invocation.instance_id):
            finish(invocation, "Failed", "Undeliverable")
            return
        invocation.status = invocation.details = "InProgress"
        invocation.started = context.now()
        limit = command.execution_timeout
        if script is not None:
            outcome = script["outcome"]
            duration = script["duration"]
            if duration is None:
                duration = limit if outcome == "TimedOut" else context.latency["ssm_command"]
            if outcome == "TimedOut" or duration > limit:
                result = ("TimedOut", "ExecutionTimedOut", KILLED_EXIT_CODE, script["output"], script["error"])
                duration = min(duration, limit)
            elif outcome == "Success":
                result = ("Success", "Success", 0, script["output"], script["error"])
            else:
                code = script["exit_code"]
                result = ("Failed", "Failed", code, script["output"], _failure_text(script["error"], code))
        else:
            code, out, err, timed_out = run_shell(
                context, invocation.instance_id, commands, working_directory, min(float(limit), REAL_RUN_CAP)
            )
            if timed_out:
                if limit > REAL_RUN_CAP:
                    err = _with_line(err, f"sandbox: stopped after {REAL_RUN_CAP:g} s of real time")
                result, duration = ("TimedOut", "ExecutionTimedOut", KILLED_EXIT_CODE, out, err), limit
            elif code == 0:
                result, duration = ("Success", "Success", 0, out, err), context.latency["ssm_command"]
            else:
                result, duration = (
                    ("Failed", "Failed", code, out, _failure_text(err, code)),
                    context.latency["ssm_command"],
                )

        def complete():
            # An instance that stopped or went away meanwhile never reports: the invocation stays
            # InProgress until the command expires.
            if invocation.status != "InProgress":
                return
            if fleet.is_running(invocation.instance_id):
                finish(invocation, *result)
            else:
                expire_later(command, invocation)

        context.after(duration, complete, f"ssm {command.command_id} on {invocation.instance_id}: {result[1]}")

    def schedule(fleet, command, invocation, script, commands, working_directory):
        delivery_limit = command.timeout_seconds + command.execution_timeout
        outcome = script["outcome"] if script else None
        if outcome == "DeliveryTimedOut":
            delay = script["duration"] if script["duration"] is not None else delivery_limit
            context.after(
                delay,
                lambda: finish(invocation, "TimedOut", "DeliveryTimedOut"),
                f"ssm {command.command_id} on {invocation.instance_id}: DeliveryTimedOut",
            )
        elif outcome == "Undeliverable":
            delay = script["duration"] if script["duration"] is not None else context.latency["ssm_pending"]
            context.after(
                delay,
                lambda: finish(invocation, "Failed", "Undeliverable"),
                f"ssm {command.command_id} on {invocation.instance_id}: Undeliverable",
            )
        elif context.latency["ssm_pending"] < delivery_limit:
            context.after(
                context.latency["ssm_pending"],
                lambda: begin(fleet, command, invocation, script, commands, working_directory),
                f"ssm {command.command_id} delivered to {invocation.instance_id}",
            )
        else:
            expire_later(command, invocation)

    # ---- the API -------------------------------------------------------------------------
    def api(method):
        def handler(self):
            try:
                return ActionResult(method(self))
            except SSMError as exc:
                raise SSMException(exc.code, exc.message) from exc

        handler.__name__ = method.__name__
        return handler

    def fleet_of(response):
        return Fleet(response.current_account, response.region)

    @api
    def send_command(self):
        account_id, backend, fleet = self.current_account, self.ssm_backend, fleet_of(self)
        document = _document_name(self._get_param("DocumentName"))
        parameters = self._get_param("Parameters", {}) or {}
        commands, execution_timeout, working_directory = _shell_parameters(parameters)
        timeout_seconds = self._get_int_param("TimeoutSeconds") or DEFAULT_TIMEOUT_SECONDS
        if not 30 <= timeout_seconds <= 2592000:
            raise SSMError(
                "ValidationException",
                f"1 validation error detected: Value '{timeout_seconds}' at 'timeoutSeconds' "
                "failed to satisfy constraint: Member must have value between 30 and 2592000",
            )
        requested_ids = list(dict.fromkeys(self._get_param("InstanceIds", []) or []))
        targets = self._get_param("Targets", []) or []
        if not requested_ids and not targets:
            raise SSMError("ValidationException", "InstanceIds or Targets must be specified.")
        invalid = [i for i in requested_ids if not fleet.is_managed(i)]
        if invalid:
            raise _not_valid(invalid, account_id)
        instance_ids = list(dict.fromkeys(requested_ids + _resolve_targets(fleet, targets, account_id)))
        fields = {
            "DocumentName": document,
            "DocumentVersion": self._get_param("DocumentVersion") or "$DEFAULT",
            "Comment": self._get_param("Comment", "") or "",
            "Parameters": parameters,
            "InstanceIds": requested_ids,
            "Targets": targets,
            "TimeoutSeconds": timeout_seconds,
            "OutputS3Region": self._get_param("OutputS3Region", "") or "",
            "OutputS3BucketName": self._get_param("OutputS3BucketName", "") or "",
            "OutputS3KeyPrefix": self._get_param("OutputS3KeyPrefix", "") or "",
            "MaxConcurrency": self._get_param("MaxConcurrency") or "50",
            "MaxErrors": self._get_param("MaxErrors") or "0",
            "ServiceRole": self._get_param("ServiceRoleArn", "") or "",
            "NotificationConfig": self._get_param("NotificationConfig") or dict(NO_NOTIFICATION),
            "CloudWatchOutputConfig": self._get_param("CloudWatchOutputConfig") or dict(NO_CLOUDWATCH_OUTPUT),
            "executionTimeout": execution_timeout,
        }
        command = RunCommand(str(uuid.uuid4()), context.now(), fields)
        command.invocations = [Invocation(command, i) for i in instance_ids]
        state(backend)["commands"].append(command)
        for invocation in command.invocations:
            schedule(
                fleet, command, invocation, take_script(backend, invocation.instance_id), commands, working_directory
            )
        context.record(
            "ssm_commands",
            {
                "command_id": command.command_id,
                "instance_ids": instance_ids,
                "requested_instance_ids": requested_ids,
                "targets": targets,
                "document": document,
                "commands": commands,
                "parameters": parameters,
                "comment": fields["Comment"],
                "timeout_seconds": timeout_seconds,
                "execution_timeout": execution_timeout,
                "at": command.requested.isoformat(),
            },
        )
        return {"Command": command.describe(at_send=True)}

    @api
    def list_commands(self):
        backend = self.ssm_backend
        command_id, instance_id = self._get_param("CommandId"), self._get_param("InstanceId")
        commands = [find_command(backend, command_id)] if command_id else list(reversed(state(backend)["commands"]))
        if instance_id:
            commands = [c for c in commands if c.invocation(instance_id) is not None]
        filters = self._get_param("Filters")
        chosen = []
        for command in commands:
            status, details = command.overall()
            if _keep(
                filters, command.requested, command.fields["DocumentName"], status, details, status in TERMINAL, True
            ):
                chosen.append(command)
        page, token = _page(chosen, self._get_int_param("MaxResults"), self._get_param("NextToken"))
        answer = {"Commands": [c.describe() for c in page]}
        if token:
            answer["NextToken"] = token
        return answer

    @api
    def list_command_invocations(self):
        backend = self.ssm_backend
        command_id, instance_id = self._get_param("CommandId"), self._get_param("InstanceId")
        details = str(self._get_param("Details", False)).lower() == "true"
        commands = [find_command(backend, command_id)] if command_id else list(reversed(state(backend)["commands"]))
        filters = self._get_param("Filters")
        chosen = []
        for command in commands:
            for invocation in command.invocations:
                if instance_id and invocation.instance_id != instance_id:
                    continue
                if _keep(
                    filters,
                    command.requested,
                    command.fields["DocumentName"],
                    invocation.status,
                    invocation.details,
                    invocation.terminal,
                    False,
                ):
                    chosen.append((command, invocation))
        page, token = _page(chosen, self._get_int_param("MaxResults"), self._get_param("NextToken"))
        answer = {"CommandInvocations": [c.describe_invocation(i, details, self.region) for c, i in page]}
        if token:
            answer["NextToken"] = token
        return answer

    @api
    def get_command_invocation(self):
        command = find_command(self.ssm_backend, self._get_param("CommandId"))
        plugin_name = self._get_param("PluginName")
        if plugin_name and plugin_name != PLUGIN_NAME:
            raise SSMError(
                "InvalidPluginName", f"Plugin {plugin_name} is not in document {command.fields['DocumentName']}"
            )
        invocation = command.invocation(self._get_param("InstanceId"))
        if invocation is None:
            raise SSMError("InvocationDoesNotExist", "")
        return command.get_invocation(invocation, context.now())

    @api
    def cancel_command(self):
        command = find_command(self.ssm_backend, self._get_param("CommandId"))
        instance_ids = self._get_param("InstanceIds", []) or []
        if len(set(instance_ids)) != len(instance_ids):
            raise SSMError("DuplicateInstanceId", "")
        command.cancel_requested = True
        for invocation in command.invocations:
            if instance_ids and invocation.instance_id not in instance_ids:
                continue
            if invocation.status == "Pending":
                finish(invocation, "Cancelled", "Cancelled")
            elif invocation.status == "InProgress":
                invocation.status = invocation.details = "Cancelling"
                context.after(
                    context.latency["ssm_pending"],
                    lambda i=invocation: finish(i, "Cancelled", "Cancelled"),
                    f"ssm {command.command_id} cancelled on {invocation.instance_id}",
                )
        return {}

    @api
    def describe_instance_information(self):
        fleet = fleet_of(self)
        wanted = {}
        for item in self._get_param("InstanceInformationFilterList", []) or []:
            wanted[item.get("key")] = set(item.get("valueSet") or [])
        for item in self._get_param("Filters", []) or []:
            wanted[item.get("Key")] = set(item.get("Values") or [])
        for key in wanted:
            if key not in INFORMATION_FILTERS and not str(key).startswith("tag:") and key != "tag-key":
                raise SSMError("InvalidFilterKey", f"Invalid filter key {key!r}")
        answer = []
        for instance in sorted(fleet.ec2.all_instances(), key=lambda i: i.id):
            if not fleet.registered(instance):
                continue
            tags = _tags(instance)
            info = {
                "InstanceId": instance.id,
                "PingStatus": "Online" if instance.state == "running" else "ConnectionLost",
                "LastPingDateTime": context.now(),
                "AgentVersion": "3.3.1611.0",
                "IsLatestVersion": True,
                "PlatformType": "Linux",
                "PlatformName": "Amazon Linux",
                "PlatformVersion": "2023",
                "ResourceType": "EC2Instance",
                "IPAddress": instance.private_ip or "",
                "ComputerName": f"ip-{(instance.private_ip or '').replace('.', '-')}.ec2.internal",
                "SourceId": instance.id,
                "SourceType": "AWS::EC2::Instance",
            }
            if _information_matches(info, tags, wanted):
                answer.append(info)
        page, token = _page(answer, self._get_int_param("MaxResults"), self._get_param("NextToken"))
        result = {"InstanceInformationList": page}
        if token:
            result["NextToken"] = token
        return result

    for handler in (
        send_command,
        list_commands,
        list_command_invocations,
        get_command_invocation,
        cancel_command,
        describe_instance_information,
    ):
        setattr(SimpleSystemManagerResponse, handler.__name__, handler)

    # ---- controls --------------------------------------------------------------------------
    @context.control("ssm/script")
    def _script(payload):
        """Script the outcome of following commands on one instance (see the module docstring)."""
        instance_id = payload.get("instance_id")
        outcome = payload.get("outcome", "Success")
        if not instance_id:
            raise KeyError("instance_id is required")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        times = payload.get("times")
        if times is not None and int(times) < 1:
            raise ValueError("times must be at least 1")
        duration = payload.get("duration")
        if duration is not None and float(duration) < 0:
            raise ValueError("duration must not be negative")
        script = {
            "outcome": outcome,
            "output": str(payload.get("output", "")),
            "error": str(payload.get("error", "")),
            "exit_code": int(payload.get("exit_code", 1)),
            "duration": None if duration is None else float(duration),
            "times": None if times is None else int(times),
        }
        if outcome == "Failed" and script["exit_code"] == 0:
            raise ValueError("a Failed outcome needs a non-zero exit_code")
        queue = state(context.backend("ssm"))["scripts"].setdefault(instance_id, [])
        queue[:] = [s for s in queue if s["times"] is not None] + [script]
        return {"instance_id": instance_id, "scripts": [dict(s) for s in queue]}

    @context.control("ssm/reset")
    def _reset(payload):
        """Forget scripted outcomes (of one ``instance_id``, or all): commands run for real again."""
        scripts = state(context.backend("ssm"))["scripts"]
        if payload.get("instance_id"):
            cleared = len(scripts.pop(payload["instance_id"], []))
        else:
            cleared = sum(len(q) for q in scripts.values())
            scripts.clear()
        return {"cleared": cleared}
