#!/usr/bin/env python
"""Describe what no amazon.aws or community.aws info module describes for a fleet: the launch template's
user data (base64, gzipped or not) decoded as cloud-init reads it, the group's scaling policies,
scheduled actions and alarms, and its notification configurations.

``notifications_supported`` says whether the endpoint implements the Auto Scaling notification API
(moto 5.2.5 answers 500 to PutNotificationConfiguration and DescribeNotificationConfigurations; AWS
implements both): the notifications are described only then.

Prints one JSON document. Run by the scenario with the controller's Python (boto3), inside the sandbox.
"""

import argparse
import base64
import gzip
import json

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import yaml

ONE_ATTEMPT = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})


def notifications_supported(autoscaling):
    try:
        autoscaling.describe_notification_configurations(AutoScalingGroupNames=["ec2spot-probe"])
    except (botocore.parsers.ResponseParserError, botocore.exceptions.ClientError):
        return False
    return True


def user_data(encoded):
    raw = base64.b64decode(encoded)
    gzipped = raw[:2] == b"\x1f\x8b"
    text = (gzip.decompress(raw) if gzipped else raw).decode()
    document = yaml.safe_load(text) if text.startswith("#cloud-config") else None
    files = (document or {}).get("write_files") or []
    config = [json.loads(item["content"]) for item in files if item["path"].endswith("/config.json")]
    return {
        "bytes": len(raw),
        "gzipped": gzipped,
        "first_line": text.split("\n", 1)[0],
        "text": text if len(text) < 2000 else None,
        "files": [item["path"] for item in files],
        "agent_config": config[0] if config else None,
    }


def template(ec2, name):
    versions = ec2.describe_launch_template_versions(LaunchTemplateName=name)["LaunchTemplateVersions"]
    latest = max(versions, key=lambda version: version["VersionNumber"])
    data = latest["LaunchTemplateData"]
    (described,) = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    return {
        "tags": {tag["Key"]: tag["Value"] for tag in described.get("Tags", [])},
        "versions": len(versions),
        "default": [v["VersionNumber"] for v in versions if v["DefaultVersion"]],
        "latest": latest["VersionNumber"],
        "metadata": data.get("MetadataOptions"),
        "block_devices": data.get("BlockDeviceMappings"),
        "instance_type": data.get("InstanceType"),
        "profile": data.get("IamInstanceProfile"),
        "tag_specifications": {
            spec["ResourceType"]: {tag["Key"]: tag["Value"] for tag in spec["Tags"]}
            for spec in data.get("TagSpecifications", [])
        },
        "user_data": user_data(data["UserData"]),
    }


def scaling(autoscaling, cloudwatch, group, with_notifications):
    result = {
        "policies": {
            policy["PolicyName"]: policy
            for policy in autoscaling.describe_policies(AutoScalingGroupName=group)["ScalingPolicies"]
        },
        "scheduled": {
            action["ScheduledActionName"]: action
            for action in autoscaling.describe_scheduled_actions(AutoScalingGroupName=group)[
                "ScheduledUpdateGroupActions"
            ]
        },
        "alarms": {
            alarm["AlarmName"]: {
                "actions": alarm["AlarmActions"],
                "dimensions": alarm["Dimensions"],
                "threshold": alarm["Threshold"],
                "metric": alarm["MetricName"],
            }
            for alarm in cloudwatch.describe_alarms(AlarmNamePrefix=group + "-")["MetricAlarms"]
        },
    }
    if with_notifications:
        result["notifications"] = [
            {"topic": item["TopicARN"], "type": item["NotificationType"]}
            for item in autoscaling.describe_notification_configurations(AutoScalingGroupNames=[group])[
                "NotificationConfigurations"
            ]
        ]
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", action="append", default=[], help="fleet_name (also the launch template's name)")
    args = parser.parse_args()
    session = boto3.session.Session()
    autoscaling = session.client("autoscaling", config=ONE_ATTEMPT)
    supported = notifications_supported(autoscaling)
    ec2, cloudwatch = session.client("ec2"), session.client("cloudwatch")
    fleets = {
        group: dict(template=template(ec2, group), **scaling(autoscaling, cloudwatch, group, supported))
        for group in args.group
    }
    print(json.dumps({"notifications_supported": supported, "fleets": fleets}, default=str))


if __name__ == "__main__":
    main()
