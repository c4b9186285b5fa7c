"""Sandbox rule tests: boto3 against the sandbox server (in a thread), on the manual clock.

The server runs in this process so a test can both call AWS through HTTP, as the code
under test does, and read the sandbox's own state. Time moves only when a test advances
it (``box.advance``): nothing here sleeps.

The pieces several rule tests are built of are here once: a client of each service, names of their own (the server
is shared by the session), fresh queues and rules that are removed afterwards, a queue behind a rule, reading a
queue empty, and an Auto Scaling group of the seeded world.
"""

import json
import uuid
from typing import NamedTuple

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox import server, world
from sandbox.clock import CONTEXT, LATENCY
from sandbox.control import Sandbox


@pytest.fixture(scope="session")
def endpoint():
    url, stop = server.start_in_thread(scale=0.0)
    yield url
    stop()


@pytest.fixture(scope="session")
def session():
    return boto3.session.Session(aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name="us-east-1")


@pytest.fixture(scope="session")
def aws(endpoint, session):
    """``aws("ec2")``: a client of the sandbox server."""
    return lambda service: session.client(service, endpoint_url=endpoint)


def service_client(service):
    """A session fixture named ``service``: the sandbox server's client of that service."""

    @pytest.fixture(scope="session", name=service)
    def client(aws):
        return aws(service)

    return client


ec2, autoscaling, cloudwatch, events, sns, sqs = (
    service_client(service) for service in ("ec2", "autoscaling", "cloudwatch", "events", "sns", "sqs")
)


@pytest.fixture(scope="session")
def seeded(ec2):
    return world.seed(ec2)


@pytest.fixture
def box(endpoint):
    """The sandbox's control API; each test starts with default latencies and no records."""
    CONTEXT.latency.update(LATENCY)
    CONTEXT.records.clear()
    CONTEXT.emitted.clear()
    return Sandbox(endpoint)


@pytest.fixture
def enforcing(box):
    """IAM enforced for the test's requests (the sandbox's default for its servers), off again after it."""
    box.call("iam", enforce=True)
    yield box
    box.call("iam", enforce=False)


@pytest.fixture
def launch(ec2, seeded):
    def _launch(zone="us-east-1a", **extra):
        return world.launch(ec2, seeded, zone, **extra)

    return _launch


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def unique(prefix):
    """A name of its own: the server, and what tests leave in it, is shared by the session."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Queue(NamedTuple):
    """A queue the ``queue`` fixture made: unpacks as ``url, arn``."""

    url: str
    arn: str

    @property
    def name(self):
        return self.arn.rsplit(":", 1)[-1]


@pytest.fixture
def queue(sqs):
    """``queue(**attributes)``: a fresh SQS queue with those attributes, as ``(url, arn)`` (and ``.name``)."""

    def make_queue(**attributes):
        url = sqs.create_queue(QueueName=unique("q"), Attributes=attributes)["QueueUrl"]
        return Queue(url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    return make_queue


@pytest.fixture
def subscribed_topic(sns, queue):
    """``subscribed_topic(raw=False)``: a fresh SNS topic with a fresh queue subscribed to it (``raw``: raw message
    delivery, the body is the message itself), as ``(topic arn, queue)``."""

    def make_topic(raw=False):
        topic = sns.create_topic(Name=unique("topic"))["TopicArn"]
        inbox = queue()
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=inbox.arn,
            **({"Attributes": {"RawMessageDelivery": "true"}} if raw else {}),
        )
        return topic, inbox

    return make_topic


@pytest.fixture
def rule(events):
    """``rule(*targets, pattern=None, schedule=None, name=None)``: a fresh EventBridge rule on the default bus with an
    event pattern (a dict), a schedule expression or both, and those targets (ids ``t0``, ``t1``... unless a target
    names its own); returns its name. Its targets and the rule are removed afterwards (a scheduled one would fire
    on)."""
    made = []

    def make_rule(*targets, pattern=None, schedule=None, name=None):
        name = name or unique("rule")
        events.put_rule(
            Name=name,
            **({"ScheduleExpression": schedule} if schedule else {}),
            **({"EventPattern": json.dumps(pattern)} if pattern else {}),
        )
        targets = [dict(target, Id=target.get("Id", f"t{index}")) for index, target in enumerate(targets)]
        events.put_targets(Rule=name, Targets=targets)
        made.append((name, [target["Id"] for target in targets]))
        return name

    yield make_rule
    for name, ids in made:
        events.remove_targets(Rule=name, Ids=ids)
        events.delete_rule(Name=name)


def drain(sqs, url):
    """Every message body in the queue, oldest first; each is deleted once read."""
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def drain_documents(sqs, url):
    """``drain``, each body decoded from JSON."""
    return [json.loads(body) for body in drain(sqs, url)]


class Caught:
    """A queue behind an EventBridge rule: every event the rule matched, as delivered."""

    def __init__(self, sqs, url):
        self.sqs, self.url = sqs, url

    def drain(self):
        """The events delivered since the last call, oldest first."""
        return drain_documents(self.sqs, self.url)


@pytest.fixture
def catch(sqs, queue, rule):
    """``catch(pattern)``: a fresh queue receiving what a fresh rule with ``pattern`` matches."""

    def make_catch(pattern):
        url, arn = queue()
        rule({"Arn": arn}, pattern=pattern)
        return Caught(sqs, url)

    return make_catch


@pytest.fixture
def template(ec2, seeded):
    """``template(**LaunchTemplateData)``: a fresh launch template of the seeded image (t3.micro, the seeded security
    group) with that data added; returns its name."""

    def make_template(**data):
        name = unique("lt")
        ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={
                "ImageId": seeded["image_id"],
                "InstanceType": "t3.micro",
                "SecurityGroupIds": [seeded["security_group_id"]],
                **data,
            },
        )
        return name

    return make_template


@pytest.fixture
def group(autoscaling, seeded, template):
    """``group(desired=1, hooks=(), template_data=None, zones=("us-east-1a",), **CreateAutoScalingGroup params)``: a
    fresh group in the seeded subnets of ``zones``, launching from a fresh template with ``template_data`` (a
    ``MixedInstancesPolicy`` without a launch template specification gets it there); returns its name. Deleted
    afterwards unless the test did."""
    created = []

    def make_group(desired=1, hooks=(), template_data=None, zones=("us-east-1a",), **extra):
        name = unique("asg")
        params = {
            "AutoScalingGroupName": name,
            "MinSize": 0,
            "MaxSize": 4,
            "DesiredCapacity": desired,
            "VPCZoneIdentifier": ",".join(seeded["subnets"][zone] for zone in zones),
            **extra,
        }
        mixed = extra.get("MixedInstancesPolicy")
        if mixed is None:
            params["LaunchTemplate"] = {"LaunchTemplateName": template(**(template_data or {}))}
        elif "LaunchTemplateSpecification" not in mixed["LaunchTemplate"]:
            mixed["LaunchTemplate"]["LaunchTemplateSpecification"] = {
                "LaunchTemplateName": template(**(template_data or {}))
            }
        if hooks:
            params["LifecycleHookSpecificationList"] = list(hooks)
        autoscaling.create_auto_scaling_group(**params)
        created.append(name)
        return name

    yield make_group
    for name in created:
        try:
            autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        except ClientError:  # the test deleted it
            pass
