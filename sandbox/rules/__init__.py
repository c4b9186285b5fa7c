"""The sandbox's AWS rules, one module per area, and ``install``, which puts them all into moto.

moto is the store of state; each rule module (``install(context)``) makes it answer as AWS does where it does not,
and adds the time moto lacks through the one modeled clock of ``sandbox/clock.py``. ``install`` runs in the server's
process before it serves, and in-process for the core's unit tests, so both see one AWS. The collection's code is
never changed to suit the sandbox: sandbox/README.md lists every rule with the AWS documentation it follows and the
moto behaviour it corrects.

Where several rules act on one instance's launch, start, stop, termination or reboot, the order is not the install
order below but the table of ``sandbox/instance_lifecycle.py`` (``ORDER``), where each of them registers.
"""

from importlib import import_module

from ..clock import CONTEXT, install_moto_clock

# The install order matters only where a rule wraps what another rule patched: capacity wraps the group launches of
# autoscaling (and reads its RULES at install), sqs_metrics the alarm puts that cloudwatch checks first, target_health
# the put_events that eventbridge patched (it reads the agent's boot report there).
RULE_MODULES = (
    "ebs",
    "snapshots",
    "images",
    "addresses",
    "autoscaling",
    "scaling_activities",
    "ec2_events",
    "capacity",
    "spot_pools",
    "ssm",
    "eventbridge",
    "schedules",
    "fis",
    "kms",
    "launch_templates",
    "pricing",
    "alarms",
    "cloudwatch",
    "sqs_metrics",
    "scheduled_events",
    "speed",
    "target_health",
)


_INSTALLED = []


def install(context=CONTEXT):
    """Patch moto with the modeled clock and every rule, in ``RULE_MODULES`` order (once); returns ``context``."""
    if not _INSTALLED:
        install_moto_clock()
        for name in RULE_MODULES:
            import_module(f"{__name__}.{name}").install(context)
        _INSTALLED.append(True)
    return context


def model_list(model, attribute):
    """The list a rule keeps on a moto model object under ``attribute`` (moto has no place for it), made on first use."""
    if not hasattr(model, attribute):
        setattr(model, attribute, [])
    return getattr(model, attribute)
