"""AWS FIS ``aws:ec2:send-spot-instance-interruptions``: an experiment interrupts its Spot targets.

AWS (FIS user guide, "Amazon EC2 actions", "Targets for AWS FIS", "Tutorial: Test Spot Instance
interruptions"): starting an experiment resolves each target (``resourceType``
``aws:ec2:spot-instance``, by ``resourceArns`` or ``resourceTags`` and ``filters``, then
``selectionMode`` ``ALL``, ``COUNT(n)`` or ``PERCENT(n)``) and runs the action on what it found:
each instance gets a rebalance recommendation at once when ``durationBeforeInterruption`` is
over two minutes, the interruption notice two minutes before the interruption, and is then
interrupted (terminated: the action requires ``InstanceInterruptionBehavior`` terminate). The
duration is ``PT2M`` to ``PT15M``. With nothing resolved and ``emptyTargetResolutionMode``
``fail`` (the default) the experiment fails.

FIS acts as the template's role (FIS user guide, "IAM roles for AWS FIS experiments": the experiment
role grants FIS the permissions to act on the targets; "Amazon EC2 actions": the action needs
``ec2:SendSpotInstanceInterruptions`` on the instances, and resolving targets by tags
``ec2:DescribeInstances``). While the sandbox enforces IAM (``sandbox.iam.enforce``), an experiment
assumes that role through moto's STS and authorises what it does as that principal, with the
sandbox's one evaluator (``sandbox.iam.resources`` builds the calls, ``sandbox.iam.requests``
decides): a role that may not describe the instances or interrupt one of the chosen targets fails
the experiment (``failed``, its reason the refusal in AWS's words), and nothing is interrupted (the
action is one ``SendSpotInstanceInterruptions`` call on every target, refused as a whole). With
enforcement off, FIS acts unrestricted, as before.

moto 5.2.5 stores templates and experiments, resolves only ``resourceArns`` and does nothing to
the instances. The notice, the event and the reclaim are the EC2 events rule's
(``ec2_events.interrupt``), on the modeled clock; experiments and their resolved targets are
recorded as ``fis_experiments``.
"""

from __future__ import annotations

import re

ACTION = "aws:ec2:send-spot-instance-interruptions"
RESOURCE_TYPE = "aws:ec2:spot-instance"
NOTICE_LEAD = 120.0
DURATION = re.compile(r"^PT(?:(\d+)M)?(?:(\d+)S)?$")
RESOLVED = "_sandbox_resolved"
REASON = "_sandbox_reason"
# How long FIS's session as the experiment role lasts (an experiment of this action ends within 15 minutes).
ROLE_SESSION_SECONDS = 3600


def _invalid(message):
    from moto.fis.exceptions import FISException

    error = FISException("ValidationException", message)
    error.code = 400
    return error


def _seconds(duration):
    match = DURATION.match(duration or "")
    if not match or not any(match.groups()):
        raise _invalid(f"durationBeforeInterruption {duration!r} is not an ISO 8601 duration such as PT2M")
    seconds = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    if not 120 <= seconds <= 900:
        raise _invalid(f"durationBeforeInterruption {duration} must be between PT2M and PT15M")
    return float(seconds)


def _validate(actions, targets):
    """AWS checks the action's parameters and target type when the template is created."""
    for name, action in (actions or {}).items():
        if action.get("actionId") != ACTION:
            continue
        _seconds((action.get("parameters") or {}).get("durationBeforeInterruption", "PT2M"))
        for target_name in (action.get("targets") or {}).values():
            if ((targets or {}).get(target_name) or {}).get("resourceType") != RESOURCE_TYPE:
                raise _invalid(f"action {name} needs a target of resource type {RESOURCE_TYPE}")


def _matches(instance, target):
    tags = {tag["key"]: tag["value"] for tag in instance.get_tags()}
    for key, value in (target.get("resourceTags") or {}).items():
        if tags.get(key) != value:
            return False
    for spec in target.get("filters") or []:
        path, values = spec.get("path"), spec.get("values") or []
        actual = {
            "State.Name": instance.state,
            "Placement.AvailabilityZone": instance.placement,
            "InstanceType": instance.instance_type,
            "SubnetId": instance.subnet_id,
        }.get(path)
        if actual not in values:
            return False
    return True


def _select(candidates, mode):
    mode = mode or "ALL"
    if mode == "ALL":
        return candidates
    count = re.match(r"^COUNT\((\d+)\)$", mode)
    if count:
        return candidates[: int(count.group(1))]
    percent = re.match(r"^PERCENT\((\d+)\)$", mode)
    if percent:
        return candidates[: max(1, len(candidates) * int(percent.group(1)) // 100)] if candidates else []
    raise ValueError(f"selectionMode {mode!r} is not ALL, COUNT(n) or PERCENT(n)")


def resolve(context, target):
    """The running Spot instances a target names (by ARN, or by tags and filters)."""
    backend = context.backend("ec2")
    instances = [i for reservation in backend.reservations.values() for i in reservation.instances]
    if target.get("resourceArns"):
        wanted = {arn.rsplit("/", 1)[-1] for arn in target["resourceArns"]}
        candidates = [i for i in instances if i.id in wanted]
    else:
        candidates = [i for i in instances if _matches(i, target)]
    # The action works on Spot instances only; a terminated one cannot be interrupted.
    candidates = [i for i in candidates if getattr(i, "lifecycle", None) == "spot" and i.state == "running"]
    return _select(sorted(candidates, key=lambda i: i.id), target.get("selectionMode"))


def refusal_as_role(backend, role_arn, session_name, instance_ids):
    """Why the experiment role may not do what the experiment does (resolve its targets, interrupt
    ``instance_ids``), in AWS's words; None when it may, or while IAM is not enforced."""
    from moto.iam.models import iam_backends

    from ..iam import enforce, principals
    from ..iam.requests import AccessDenied, decide
    from ..iam.resources import Params, resolve

    if not enforce.enforcing():
        return None
    account, region = backend.account_id, backend.region_name
    partition = (role_arn or "arn:aws").split(":")[1]
    try:
        iam_backends[account][partition].get_role_by_arn(role_arn)
    except Exception:  # moto's NoSuchEntity: FIS cannot assume a role that does not exist
        return f"Unable to assume the experiment role {role_arn}: it does not exist"
    credentials = principals.assume_role(account, region, role_arn, session_name, ROLE_SESSION_SECONDS)
    principal = principals.principal_of(principals.Credentials(credentials["AccessKeyId"], credentials["Token"]))
    calls = [("DescribeInstances", Params())]
    if instance_ids:
        calls.append(("SendSpotInstanceInterruptions", Params(tree={"InstanceIds": list(instance_ids)})))
    for action, params in calls:
        for request in resolve("ec2", action, params, account, region, partition):
            verdict = decide(principal.policies, request)
            if not verdict.allowed:
                check, result = verdict.refusal
                return AccessDenied(check.action, check.resource, principal.arn, result).message
    return None


def install(context):
    from moto.fis.models import Experiment, FISBackend, ResolvedTarget

    from . import ec2_events

    moto_start = FISBackend.start_experiment
    moto_create = FISBackend.create_experiment_template
    moto_resolved = Experiment.resolved_targets
    moto_to_dict, moto_summary = Experiment.to_dict, Experiment.to_summary_dict

    def start_experiment(self, client_token, experiment_template_id, experiment_options=None, tags=None):
        with context.lock:
            template = self.experiment_templates.get(experiment_template_id)
            plans = []
            for name, action in ((template.actions or {}) if template else {}).items():
                if action.get("actionId") != ACTION:
                    continue
                lead = _seconds((action.get("parameters") or {}).get("durationBeforeInterruption", "PT2M"))
                for target_name in (action.get("targets") or {}).values():
                    target = (template.targets or {}).get(target_name) or {}
                    plans.append((target_name, lead, resolve(context, target)))
            answer = moto_start(self, client_token, experiment_template_id, experiment_options, tags)
            experiment = self.experiments[answer["id"]]
            now = context.now().timestamp()
            experiment.start_time = experiment.creation_time = now
            resolved = [(target_name, i) for target_name, _lead, chosen in plans for i in chosen]
            setattr(experiment, RESOLVED, [(name, ec2_events.instance_arn(i)) for name, i in resolved])
            empty_fails = (template.experiment_options or {}).get("emptyTargetResolutionMode", "fail") == "fail"
            if plans and not resolved and empty_fails:
                experiment.status = "failed"
            refused = (
                refusal_as_role(self, template.role_arn, experiment.id, [i.id for _name, i in resolved])
                if plans
                else None
            )
            if refused is not None:
                # The role may not act: the experiment fails and nothing is interrupted.
                experiment.status = "failed"
                setattr(experiment, REASON, refused)
                plans = []
            for _target_name, lead, chosen in plans:
                for instance in chosen:
                    if lead > NOTICE_LEAD:
                        ec2_events.rebalance(instance.id, context)
                        context.after(
                            lead - NOTICE_LEAD,
                            lambda i=instance.id: ec2_events.interrupt(i, NOTICE_LEAD, context),
                            f"fis notice {instance.id}",
                        )
                    else:
                        ec2_events.interrupt(instance.id, NOTICE_LEAD, context)
            context.record(
                "fis_experiments",
                {
                    "id": experiment.id,
                    "template": experiment_template_id,
                    "instances": [i.id for _name, i in resolved],
                    "start": context.now().isoformat(),
                    "refused": refused,
                },
            )
            return experiment.to_dict(tags=self.tagger.get_tag_dict_for_resource(experiment.arn))

    def create_experiment_template(self, *args, **kwargs):
        _validate(kwargs.get("actions"), kwargs.get("targets"))
        return moto_create(self, *args, **kwargs)

    def resolved_targets(self):
        chosen = getattr(self, RESOLVED, None)
        if chosen is None:
            return moto_resolved(self)
        return [ResolvedTarget(resource_type=RESOURCE_TYPE, target_name=name, resource_arn=arn) for name, arn in chosen]

    def with_reason(answer, experiment):
        """The failure's reason where moto would say only ``failed``: the experiment's and its actions'."""
        reason = getattr(experiment, REASON, None)
        if reason is not None:
            answer["state"]["reason"] = reason
            for action in (answer.get("actions") or {}).values():
                if isinstance(action.get("state"), dict):
                    action["state"]["reason"] = reason
        return answer

    def to_dict(self, tags=None):
        return with_reason(moto_to_dict(self, tags=tags), self)

    def to_summary_dict(self, tags=None):
        return with_reason(moto_summary(self, tags=tags), self)

    FISBackend.start_experiment = start_experiment
    Experiment.to_dict, Experiment.to_summary_dict = to_dict, to_summary_dict
    FISBackend.create_experiment_template = create_experiment_template
    Experiment.resolved_targets = resolved_targets
