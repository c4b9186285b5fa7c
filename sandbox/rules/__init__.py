"""The sandbox's AWS rules, one module per area. Each module has ``install(context)``."""

from importlib import import_module

RULE_MODULES = ("ebs", "snapshots", "addresses", "autoscaling", "ec2_events", "ssm", "eventbridge", "schedules",
                "fis", "kms", "pricing", "alarms", "cloudwatch", "scheduled_events", "speed")


def install_all(context):
    for name in RULE_MODULES:
        import_module(f"{__name__}.{name}").install(context)
