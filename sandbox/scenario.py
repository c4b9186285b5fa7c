"""A managed service in the sandbox, for tests and benchmarks that drive the handler directly.

A Spot Auto Scaling group of one instance with launch and terminate hooks, its instance managed by
SSM, the lineage's volume attached, an Elastic IP, an SNS topic whose messages land in an SQS queue,
and the handler configured for it on the core's modeled clock. Events are built as EventBridge
delivers them. Works in-process (moto with ``sandbox.fidelity`` installed, clients from boto3's
default endpoint) or against a sandbox server (``endpoint_url``).
"""

import json
import uuid

import boto3

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG

from . import world as sandbox_world
from .context import CONTEXT, CoreClock

LINEAGE, GROUP = "pgdata", "pg-fleet"


def envelope(source, detail_type, detail, when=None):
    return json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source,
                       "account": "123456789012", "time": (when or CONTEXT.now()).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "region": "us-east-1", "resources": [], "detail": detail})


def warning(instance_id, when=None, action="terminate"):
    return envelope("aws.ec2", "EC2 Spot Instance Interruption Warning",
                    {"instance-id": instance_id, "instance-action": action}, when)


class World:
    def __init__(self, seeded, lineage=LINEAGE, group=GROUP, name="pg", zone="us-east-1a", endpoint_url=None, clock=None,
                 kms_key_id=None):
        self.lineage, self.group, self.name = lineage, group, name
        extra = {"endpoint_url": endpoint_url, "aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"} if endpoint_url else {}
        self.clients = {service: boto3.client(service, region_name="us-east-1", config=RETRY_CONFIG, **extra)
                        for service in ("ec2", "autoscaling", "ssm", "sns", "sqs", "cloudwatch", "iam", "sts")}
        self.seeded = seeded
        ec2, iam, sns, sqs = (self.clients[n] for n in ("ec2", "iam", "sns", "sqs"))
        sandbox_world.managed_instance_profile(iam, f"{name}-instance")
        ec2.create_launch_template(LaunchTemplateName=f"{group}-template", LaunchTemplateData={
            "ImageId": seeded["image_id"], "InstanceType": "t3.micro", "IamInstanceProfile": {"Name": f"{name}-instance"},
            "MetadataOptions": {"HttpTokens": "required"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": t.LINEAGE, "Value": lineage}]}]})
        self.topic = sns.create_topic(Name=f"{name}-recovery")["TopicArn"]
        self.inbox = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=inbox_arn)
        self.address = ec2.allocate_address(Domain="vpc", TagSpecifications=[
            {"ResourceType": "elastic-ip", "Tags": [{"Key": "Service", "Value": name}]}])
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group, MinSize=1, MaxSize=2, DesiredCapacity=1,
            LaunchTemplate={"LaunchTemplateName": f"{group}-template"}, VPCZoneIdentifier=seeded["subnets"][zone],
            LifecycleHookSpecificationList=[
                {"LifecycleHookName": "launch", "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                 "HeartbeatTimeout": 600, "DefaultResult": "ABANDON"},
                {"LifecycleHookName": "terminate", "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                 "HeartbeatTimeout": 300, "DefaultResult": "CONTINUE"}])
        self.first = self.pending_launches()[0]["instance_id"]
        self.complete(self.first)
        volume_tags = {t.LINEAGE: lineage, t.GENERATION: 1, t.DEVICE: "/dev/sdf", t.HOLDER: self.first}
        self.volume = ec2.create_volume(AvailabilityZone=zone, Size=20, VolumeType="gp3", Encrypted=True,
                                        **({"KmsKeyId": kms_key_id} if kms_key_id else {}),
                                        TagSpecifications=[{"ResourceType": "volume", "Tags": t.as_list(volume_tags)}])["VolumeId"]
        ec2.attach_volume(VolumeId=self.volume, InstanceId=self.first, Device="/dev/sdf")
        ec2.associate_address(AllocationId=self.address["AllocationId"], InstanceId=self.first)
        CONTEXT.advance(5)
        self.config = handler_config.parse({"topic_arn": self.topic, "services": [{
            "name": name, "lineage": lineage, "group": group, "stop_commands": ["echo stopping > app.stopped"],
            "address": {"tags": {"Service": name}}, "device_name": "/dev/sdf"}]})
        # The function's own account and region, as the Lambda entry point reads them from its context.
        self.handler = recovery.Handler(self.config, recovery.Clients(lambda name: self.clients[name]), clock=clock or CoreClock(),
                                        account=CONTEXT.account_id, region=CONTEXT.region)

    @property
    def autoscaling(self):
        return self.clients["autoscaling"]

    def pending_launches(self):
        return [a for a in CONTEXT.call_control("autoscaling/actions", {"group": self.group})["actions"]
                if a["transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"]

    def complete(self, instance_id):
        self.autoscaling.complete_lifecycle_action(AutoScalingGroupName=self.group, LifecycleHookName="launch",
                                                   InstanceId=instance_id, LifecycleActionResult="CONTINUE")

    def launch_event(self, action):
        return envelope("aws.autoscaling", "EC2 Instance-launch Lifecycle Action", {
            "LifecycleActionToken": action["token"], "AutoScalingGroupName": self.group, "LifecycleHookName": "launch",
            "EC2InstanceId": action["instance_id"], "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING"})

    def messages(self):
        found = []
        while True:
            answer = self.clients["sqs"].receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10)
            if not answer.get("Messages"):
                return found
            for message in answer["Messages"]:
                found.append(json.loads(json.loads(message["Body"])["Message"]))
                self.clients["sqs"].delete_message(QueueUrl=self.inbox, ReceiptHandle=message["ReceiptHandle"])

    def instance(self, instance_id):
        return self.clients["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def volume_state(self, volume_id):
        described = self.clients["ec2"].describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        return described["State"], [(a["InstanceId"], a["State"]) for a in described["Attachments"]]

    def ssm_commands(self):
        return CONTEXT.records.get("ssm_commands", [])
