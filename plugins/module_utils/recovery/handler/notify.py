# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the handler tells the operator: one SNS message per outcome, and CloudWatch metrics.

Every message is JSON with an ``event`` (``interruption-warning``, ``recovered``, ``failed``...) and a ``summary``
sentence, and carries ``event`` and ``service`` as message attributes so that subscriptions can filter on them.
Without a topic the summary is logged. A metric that cannot be published is logged, never a failed recovery; a
message that cannot be published is an AWS failure like any other (the event is retried). The workflows call these
through ``Handler.publish`` and ``Handler.metric``.
"""

from __future__ import annotations

import json
import logging

from ..aws import call
from ..errors import AwsApiError

LOG = logging.getLogger("ec2spot.autorecover.handler")
SUBJECT_LIMIT = 100  # SNS: a subject has at most 100 characters


def publish(clients, topic_arn, service, subject, message):
    """Publish ``message`` (a dict with ``event`` and ``summary``) about ``service`` to ``topic_arn``."""
    if not topic_arn:
        LOG.info("no topic configured: %s", message.get("summary"))
        return
    call(
        clients["sns"],
        "publish",
        TopicArn=topic_arn,
        Subject=f"[ec2spot] {subject}"[:SUBJECT_LIMIT],
        Message=json.dumps(message, default=str, sort_keys=True),
        MessageAttributes={
            "event": {"DataType": "String", "StringValue": message["event"]},
            "service": {"DataType": "String", "StringValue": service.name},
        },
    )


def put_metric(clients, namespace, service, name, value, unit, phase=None):
    """One data point of ``name`` with the dimension ``Service`` (and ``Phase`` when given)."""
    dimensions = [{"Name": "Service", "Value": service.name}] + ([{"Name": "Phase", "Value": phase}] if phase else [])
    try:
        call(
            clients["cloudwatch"],
            "put_metric_data",
            Namespace=namespace,
            MetricData=[{"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit}],
        )
    except AwsApiError as exc:  # a lost metric must not fail a recovery
        LOG.warning("metric %s not published: %s", name, exc.message)
