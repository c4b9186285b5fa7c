#!/usr/bin/env python
"""Describe the alarms and dashboards the scenario made: amazon.aws has no dashboard info module.

Prints one JSON document: {"alarms": {name: alarm}, "dashboards": {name: parsed body}}, the alarms whose names
start with one of --prefix, the dashboards whose names start with ec2spot-. Run by verify.yml with the controller's
Python (boto3), inside the sandbox.
"""

import argparse
import json

import boto3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", action="append", default=[])
    args = parser.parse_args()
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    alarms = {}
    for prefix in args.prefix:
        for page in cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"]
        ):
            alarms.update({alarm["AlarmName"]: alarm for alarm in page["MetricAlarms"]})
    dashboards = {}
    for page in cloudwatch.get_paginator("list_dashboards").paginate(DashboardNamePrefix="ec2spot-"):
        for entry in page["DashboardEntries"]:
            body = cloudwatch.get_dashboard(DashboardName=entry["DashboardName"])["DashboardBody"]
            dashboards[entry["DashboardName"]] = json.loads(body)
    print(json.dumps({"alarms": alarms, "dashboards": dashboards}, default=str, sort_keys=True))


if __name__ == "__main__":
    main()
