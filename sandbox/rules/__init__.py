"""The sandbox's AWS rules, one module per area. Each module has ``install(context)``."""

from importlib import import_module

# Order matters where rules wrap one another: capacity wraps the launches of autoscaling and ec2_events, sqs_metrics
# the alarm puts that cloudwatch checks first.
RULE_MODULES = ("ebs", "snapshots", "images", "addresses", "autoscaling", "scaling_activities", "ec2_events", "capacity",
                "ssm", "eventbridge", "schedules", "fis", "kms", "pricing", "alarms", "cloudwatch", "sqs_metrics",
                "scheduled_events", "speed")


def install_all(context):
    for name in RULE_MODULES:
        import_module(f"{__name__}.{name}").install(context)
