#!/usr/bin/env python
"""Play the control plane's function for a scenario, inside the sandbox: optionally drive an alarm to a state
(SetAlarmState: the sandbox emits its event and runs its actions as AWS does), then receive the messages the
EventBridge rules delivered to the event queue and run the collection's handler (the recovery core, as the
Lambda runs it) on each, with the given handler configuration. With --rules PREFIX, describe the EventBridge
rules named so, with --ssm-commands INSTANCE the Run Command commands sent to it (no amazon.aws module does).

Prints one JSON document: {"outcomes": [...], "events": [[source, detail-type, detail], ...]} or {"rules": {...}}.
"""

import argparse
import json
import os
import sys
import time

import boto3

for path in reversed(os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep)):
    if path:
        sys.path.insert(0, path)

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config  # noqa: E402
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery  # noqa: E402


def describe_rules(prefix):
    events = boto3.client("events")
    rules = {}
    for rule in events.list_rules(NamePrefix=prefix)["Rules"]:
        targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        rules[rule["Name"]] = {
            "state": rule["State"],
            "pattern": json.loads(rule["EventPattern"]),
            "targets": [{"id": t["Id"], "arn": t["Arn"]} for t in targets],
        }
    return {"rules": rules}


def ssm_commands(instance_id):
    commands = boto3.client("ssm").list_commands(InstanceId=instance_id)["Commands"]
    return {
        "commands": [
            {"document": c["DocumentName"], "commands": c["Parameters"].get("commands", []), "status": c["Status"]}
            for c in commands
        ]
    }


def handle(queue, document, expect, alarm, state):
    if alarm:
        boto3.client("cloudwatch").set_alarm_state(
            AlarmName=alarm, StateValue=state, StateReason="molecule: threshold crossed"
        )
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    handler = recovery.Handler(handler_config.parse(document), recovery.Clients())
    outcomes, seen = [], []
    deadline = time.monotonic() + 30
    while len(outcomes) < expect and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(message["Body"])
            seen.append([body.get("source"), body.get("detail-type"), body.get("detail")])
            outcomes.append(handler.handle(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return {"outcomes": outcomes, "events": seen}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules")
    parser.add_argument("--ssm-commands", help="list the Run Command commands sent to this instance")
    parser.add_argument("--queue")
    parser.add_argument("--config", help="the handler configuration (JSON)")
    parser.add_argument("--expect", type=int, default=1, help="messages to wait for (30 s at most)")
    parser.add_argument("--alarm")
    parser.add_argument("--state", default="ALARM")
    args = parser.parse_args()
    if args.rules:
        print(json.dumps(describe_rules(args.rules)))
    elif args.ssm_commands:
        print(json.dumps(ssm_commands(args.ssm_commands), default=str))
    else:
        print(json.dumps(handle(args.queue, json.loads(args.config), args.expect, args.alarm, args.state), default=str))


if __name__ == "__main__":
    main()
