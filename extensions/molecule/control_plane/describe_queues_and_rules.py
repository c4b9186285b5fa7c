#!/usr/bin/env python
"""Describe what no amazon.aws or community.aws info module describes: SQS queue attributes and
EventBridge rules with their targets.

With --route, also put one event per case on the default bus and report, for each, whether it
went all the way: rule -> event queue -> event source mapping -> the deployed function. The
sandbox's Lambda runner plays the mapping and runs the uploaded zip; after each event the
runner is drained (``/_sandbox/lambda/drain``) and the function's runs (``/_sandbox/lambda/runs``)
are compared with those before: a routed event gives one run of one new message, any other none.

Prints one JSON document. Run by verify.yml with the controller's Python (boto3), inside the sandbox.
"""

import argparse
import json
import os
import urllib.request
import uuid

import boto3

TOKEN = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


TRANSITIONS = {"launch": "autoscaling:EC2_INSTANCE_LAUNCHING", "terminate": "autoscaling:EC2_INSTANCE_TERMINATING"}


def lifecycle_action(transition, group, instance_id):
    """An Auto Scaling ``launch`` or ``terminate`` lifecycle action of the control plane's hook (``ec2spot-launch``)."""
    return (
        "aws.autoscaling",
        f"EC2 Instance-{transition} Lifecycle Action",
        {
            "LifecycleHookName": "ec2spot-launch",
            "LifecycleActionToken": TOKEN,
            "AutoScalingGroupName": group,
            "EC2InstanceId": instance_id,
            "LifecycleTransition": TRANSITIONS[transition],
        },
    )


def state_change(state, instance_id):
    return "aws.ec2", "EC2 Instance State-change Notification", {"instance-id": instance_id, "state": state}


def health(service, category, code=None):
    """An AWS Health event about ``service``."""
    return (
        "aws.health",
        "AWS Health Event",
        {"service": service, "eventTypeCategory": category, **({"eventTypeCode": code} if code else {})},
    )


# (case, (source, detail-type, detail), whether the control plane's rules must route it to the queue)
ROUTING_CASES = [
    (
        "spot warning",
        (
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            {"instance-id": "i-0feedface0000001", "instance-action": "terminate"},
        ),
        True,
    ),
    ("rebalance", ("aws.ec2", "EC2 Instance Rebalance Recommendation", {"instance-id": "i-0feedface0000002"}), True),
    ("launch action, configured group", lifecycle_action("launch", "pg-fleet", "i-0feedface0000003"), True),
    ("terminate action, configured group", lifecycle_action("terminate", "pg-fleet", "i-0feedface0000004"), True),
    ("terminated", state_change("terminated", "i-0feedface0000005"), True),
    ("shutting down", state_change("shutting-down", "i-0feedface0000006"), True),
    (
        "boot report",
        ("ec2spot.autorecover", "EC2Spot Recovery Boot Report", {"instance-id": "i-0feedface0000007"}),
        True,
    ),
    (
        "replacement ready",
        ("ec2spot.autorecover", "EC2Spot Replacement Ready", {"instance-id": "i-0feedface000000b"}),
        True,
    ),
    ("launch action, other group", lifecycle_action("launch", "someone-elses-fleet", "i-0feedface0000008"), False),
    ("running", state_change("running", "i-0feedface0000009"), False),
    (
        "scheduled maintenance",
        (
            "ec2spot.autorecover",
            "EC2Spot Scheduled Maintenance",
            {"instance-id": "i-0feedface000000a", "code": "instance-retirement"},
        ),
        True,
    ),
    ("EC2 retirement (AWS Health)", health("EC2", "scheduledChange", "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"), True),
    ("EBS volume lost (AWS Health)", health("EBS", "issue", "AWS_EBS_VOLUME_LOST"), True),
    ("other service", health("RDS", "scheduledChange"), False),
    ("account notification", health("EC2", "accountNotification"), False),
]


def queue_attributes(sqs, name):
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    for key in ("Policy", "RedrivePolicy"):
        if key in attributes:
            attributes[key] = json.loads(attributes[key])
    return attributes


def rules(events, prefix):
    found = {}
    for rule in events.list_rules(NamePrefix=prefix)["Rules"]:
        described = events.describe_rule(Name=rule["Name"])
        found[rule["Name"]] = {
            "state": described["State"],
            "arn": described["Arn"],
            "pattern": json.loads(described["EventPattern"]) if described.get("EventPattern") else None,
            "schedule": described.get("ScheduleExpression"),
            "targets": [
                {"id": t["Id"], "arn": t["Arn"]} for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            ],
        }
    return found


def control(name, **payload):
    request = urllib.request.Request(
        f"{os.environ['EC2SPOT_SANDBOX_ENDPOINT']}/_sandbox/{name}",
        method="POST",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=180) as answer:
        return json.load(answer)


def function_runs(function):
    return [run for run in control("lambda/runs", function=function)["runs"] if run.get("source") == "sqs"]


def route(events, function):
    results = []
    control("lambda/drain", timeout=60)
    for case, (source, detail_type, detail), expected in ROUTING_CASES:
        before = function_runs(function)
        seen = {message for run in before for message in run.get("records", [])}
        answer = events.put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(dict(detail, **{"ec2spot-verify": str(uuid.uuid4())})),
                }
            ]
        )
        control("lambda/drain", timeout=60)
        new_runs = [run for run in function_runs(function)[len(before) :] if set(run.get("records", [])) - seen]
        results.append(
            {
                "case": case,
                "expected": expected,
                "failed_entries": answer["FailedEntryCount"],
                "arrived": bool(new_runs),
                "messages": sum(len(set(run["records"]) - seen) for run in new_runs),
                "errors": [run["error"] for run in new_runs if run.get("error")],
            }
        )
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True, help="control_plane_name")
    parser.add_argument("--route", action="store_true")
    args = parser.parse_args()
    session = boto3.session.Session()
    sqs, events = session.client("sqs"), session.client("events")
    result = {
        "queue": queue_attributes(sqs, f"{args.name}-events"),
        "dlq": queue_attributes(sqs, f"{args.name}-events-dlq"),
        "rules": rules(events, f"{args.name}-"),
    }
    if args.route:
        result["routing"] = route(events, args.name)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
