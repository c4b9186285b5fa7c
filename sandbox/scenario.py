"""A managed service in the sandbox, for tests and benchmarks that drive the handler directly.

A Spot Auto Scaling group of one instance with launch and terminate hooks, its instance managed by
SSM, the lineage's volume attached, an Elastic IP, an SNS topic whose messages land in an SQS queue,
and the handler configured for it on the core's modeled clock. Events are built as EventBridge
delivers them. Works in-process (moto with the sandbox's rules, ``sandbox.rules.install``, clients from
boto3's default endpoint) or against a sandbox server (``endpoint_url``).

The pieces the tests' other worlds (a standby pair, a CPU watchdog) are built of are here too, so that each is
written once: the clients, the handler on them, the operator's inbox, an alarm on an instance and the events the
sandbox emitted. So are the two things the demo and the end-to-end tests share with them: the operator's webhook
(what the control plane's topic posts over HTTP) and waiting, in real time, for what a sandbox server does in its own
threads and processes.
"""

import http.server
import json
import os
import subprocess
import threading
import time
import uuid

import boto3

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG

from . import world as sandbox_world
from .clock import CONTEXT, CoreClock

LINEAGE, GROUP = "pgdata", "pg-fleet"
SERVICES = ("ec2", "autoscaling", "ssm", "sns", "sqs", "cloudwatch", "iam", "sts")
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


def ansible_playbook(arguments, env, cwd, timeout=None):
    """``ansible-playbook *arguments`` in ``cwd`` with its ansible.cfg and ansible.posix's JSON callback, as a user
    runs it: ``(the callback's report, exit code, stderr)``. A run that printed no report is an ``AssertionError``
    showing what it printed instead (a crash before the first play)."""
    env = dict(env, ANSIBLE_CONFIG=os.path.join(cwd, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    done = subprocess.run(
        ["ansible-playbook", *arguments], env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
    )
    try:
        return json.loads(done.stdout[done.stdout.index("{") :]), done.returncode, done.stderr
    except ValueError as exc:
        raise AssertionError(f"ansible-playbook produced no JSON report:\n{done.stdout}\n{done.stderr}") from exc


def tasks_by_name(report):
    """``{task name: its result on localhost}`` of every play of an ``ansible_playbook`` report."""
    return {
        task["task"]["name"]: task["hosts"].get("localhost", {}) for play in report["plays"] for task in play["tasks"]
    }


def envelope(source, detail_type, detail, when=None):
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": (when or CONTEXT.now()).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


# A fleet group's hooks as the fleet role makes them: the launch hook holds a replacement until it has its data, the
# terminate hook holds a replaced instance until the handler is done with it.
LIFECYCLE_HOOKS = [
    {
        "LifecycleHookName": "launch",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "HeartbeatTimeout": 600,
        "DefaultResult": "ABANDON",
    },
    {
        "LifecycleHookName": "terminate",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "HeartbeatTimeout": 300,
        "DefaultResult": "CONTINUE",
    },
]


def pending_launches(group):
    """The launch lifecycle actions ``group`` holds (the ``autoscaling/actions`` control's), oldest first."""
    return [
        action
        for action in CONTEXT.call_control("autoscaling/actions", {"group": group})["actions"]
        if action["transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    ]


def launch_event(group, action):
    """The launch hook's event for a pending launch ``action`` (the ``autoscaling/actions`` control's) of ``group``."""
    return envelope(
        "aws.autoscaling",
        "EC2 Instance-launch Lifecycle Action",
        {
            "LifecycleActionToken": action["token"],
            "AutoScalingGroupName": group,
            "LifecycleHookName": "launch",
            "EC2InstanceId": action["instance_id"],
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        },
    )


def warning(instance_id, when=None, action="terminate"):
    return envelope(
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
        {"instance-id": instance_id, "instance-action": action},
        when,
    )


def delivered(detail_type, **detail):
    """The events of ``detail_type`` the sandbox put on the bus whose ``detail`` has those values, oldest first, each
    as the control plane's queue delivers it."""
    return [
        envelope(e["source"], e["detail-type"], e["detail"])
        for e in CONTEXT.emitted
        if e["detail-type"] == detail_type and all(e["detail"].get(k) == v for k, v in detail.items())
    ]


def client(service, endpoint_url=None):
    """A client of ``service``: in-process (moto), or of the sandbox server at ``endpoint_url``. Each from a session
    of its own, so that threads may make clients at the same time."""
    extra = (
        {"endpoint_url": endpoint_url, "aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"}
        if endpoint_url
        else {}
    )
    return boto3.session.Session().client(service, region_name="us-east-1", config=RETRY_CONFIG, **extra)


def clients(endpoint_url=None):
    """A client of each service the handler uses (``client``)."""
    return {service: client(service, endpoint_url) for service in SERVICES}


def handler(config, service_clients, clock=None):
    """The handler with ``config`` on those clients, knowing the function's own account and region as the Lambda entry
    point reads them from its context."""
    return recovery.Handler(
        config,
        recovery.Clients(lambda name: service_clients[name]),
        clock=clock or CoreClock(),
        account=CONTEXT.account_id,
        region=CONTEXT.region,
    )


def instance_alarm(cloudwatch, name, instance_id, actions=(), **settings):
    """An alarm on one instance's metric. By default the CPU watchdog's (seed 004): the average CPU over 5 minutes
    above 95 %, twice running; ``settings`` (PutMetricAlarm's parameters) change it."""
    cloudwatch.put_metric_alarm(
        **{
            "AlarmName": name,
            "Namespace": "AWS/EC2",
            "MetricName": "CPUUtilization",
            "Statistic": "Average",
            "Period": 300,
            "EvaluationPeriods": 2,
            "Threshold": 95.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
            "AlarmActions": list(actions),
            **settings,
        }
    )


def set_alarm(cloudwatch, name, state, reason):
    """SetAlarmState, as a test drives an alarm; returns the state change the sandbox emitted, as the queue delivers it."""
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)
    return delivered(ALARM_STATE_CHANGE, alarmName=name)[-1]


class Inbox:
    """An SNS topic whose messages land in an SQS queue: what the handler publishes, as its subscribers get it."""

    def __init__(self, service_clients, name):
        sns, self.sqs = service_clients["sns"], service_clients["sqs"]
        self.topic = sns.create_topic(Name=f"{name}-recovery")["TopicArn"]
        self.url = self.sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)

    def messages(self):
        """The documents published since the last call, oldest first (read once: they leave the queue)."""
        found = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10)
            if not answer.get("Messages"):
                return found
            for message in answer["Messages"]:
                found.append(json.loads(json.loads(message["Body"])["Message"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


class Webhook:
    """The operator's webhook: an HTTP endpoint on loopback that an SNS topic posts to; keeps every message the topic
    published, as its HTTP subscribers get it. ``close()`` stops it."""

    def __init__(self):
        self.received, self.lock = [], threading.Lock()
        webhook = self

        class Delivery(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if body.get("Type") == "Notification":  # not the subscription's confirmation
                    with webhook.lock:
                        webhook.received.append(json.loads(body["Message"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # quiet
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Delivery)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def messages(self, event, **match):
        """The documents published with that ``event`` whose fields have the ``match`` values, oldest first."""
        with self.lock:
            return [
                m for m in self.received if m.get("event") == event and all(m.get(k) == v for k, v in match.items())
            ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TimedOut(AssertionError):
    """What ``eventually`` waited for did not happen in time."""


def eventually(what, check, timeout=90.0, interval=0.2):
    """``check()``'s first true value, asked every ``interval`` seconds of real time until ``timeout`` has passed (then
    ``TimedOut`` names ``what``): for what a sandbox server does in its own threads and processes (a scaled clock, the
    Lambda runner, an instance's agent) while the caller waits. A bounded poll, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class World:
    def __init__(
        self,
        seeded,
        lineage=LINEAGE,
        group=GROUP,
        name="pg",
        zone="us-east-1a",
        endpoint_url=None,
        clock=None,
        kms_key_id=None,
    ):
        self.lineage, self.group, self.name = lineage, group, name
        self.clients = clients(endpoint_url)
        self.seeded = seeded
        ec2, iam = self.clients["ec2"], self.clients["iam"]
        sandbox_world.managed_instance_profile(iam, f"{name}-instance")
        ec2.create_launch_template(
            LaunchTemplateName=f"{group}-template",
            LaunchTemplateData={
                "ImageId": seeded["image_id"],
                "InstanceType": "t3.micro",
                "IamInstanceProfile": {"Name": f"{name}-instance"},
                "MetadataOptions": {"HttpTokens": "required"},
                "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": t.LINEAGE, "Value": lineage}]}],
            },
        )
        self.inbox = Inbox(self.clients, name)
        self.topic = self.inbox.topic
        self.address = ec2.allocate_address(
            Domain="vpc",
            TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "Service", "Value": name}]}],
        )
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group,
            MinSize=1,
            MaxSize=2,
            DesiredCapacity=1,
            LaunchTemplate={"LaunchTemplateName": f"{group}-template"},
            VPCZoneIdentifier=seeded["subnets"][zone],
            LifecycleHookSpecificationList=LIFECYCLE_HOOKS,
        )
        self.first = self.pending_launches()[0]["instance_id"]
        self.complete(self.first)
        volume_tags = {t.LINEAGE: lineage, t.GENERATION: 1, t.DEVICE: "/dev/sdf", t.HOLDER: self.first}
        self.volume = ec2.create_volume(
            AvailabilityZone=zone,
            Size=20,
            VolumeType="gp3",
            Encrypted=True,
            **({"KmsKeyId": kms_key_id} if kms_key_id else {}),
            TagSpecifications=[{"ResourceType": "volume", "Tags": t.as_list(volume_tags)}],
        )["VolumeId"]
        ec2.attach_volume(VolumeId=self.volume, InstanceId=self.first, Device="/dev/sdf")
        ec2.associate_address(AllocationId=self.address["AllocationId"], InstanceId=self.first)
        CONTEXT.advance(5)
        self.handler = handler(None, self.clients, clock)
        self.configure()

    def configure(self, queue_arn=None, **settings):
        """Configure the handler for this world's service, with ``settings`` (the service's, as the handler
        configuration names them) added to or replacing its own, and the function's own queue (``queue_arn``, where
        a make-before-break cut-over arms its deadline); returns the handler."""
        self.config = handler_config.parse(
            {
                "topic_arn": self.topic,
                **({"queue_arn": queue_arn} if queue_arn else {}),
                "services": [
                    {
                        "name": self.name,
                        "lineage": self.lineage,
                        "group": self.group,
                        "stop_commands": ["echo stopping > app.stopped"],
                        "address": {"tags": {"Service": self.name}},
                        "device_name": "/dev/sdf",
                        **settings,
                    }
                ],
            }
        )
        self.handler.config = self.config
        return self.handler

    @property
    def autoscaling(self):
        return self.clients["autoscaling"]

    def pending_launches(self):
        return pending_launches(self.group)

    def complete(self, instance_id):
        self.autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=self.group,
            LifecycleHookName="launch",
            InstanceId=instance_id,
            LifecycleActionResult="CONTINUE",
        )

    def launch_event(self, action):
        return launch_event(self.group, action)

    def messages(self):
        return self.inbox.messages()

    def instance(self, instance_id):
        return self.clients["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def volume_state(self, volume_id):
        described = self.clients["ec2"].describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        return described["State"], [(a["InstanceId"], a["State"]) for a in described["Attachments"]]

    def ssm_commands(self):
        return CONTEXT.records.get("ssm_commands", [])
