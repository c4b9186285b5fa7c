"""100 simultaneous interruption warnings across 10 groups, with EC2 throttling.

The sandbox server runs in this process at scale 1 (modeled time is real time: an SSM stop takes its
2.5 s, a detach its 2 s), so the figures include the sandbox's own contention, as API latency under load
would. Each group has 10 Spot instances, each instance its own lineage and data volume. 100 handlers
run at once (Lambda scales an SQS mapping out to that), each with its own clients, as separate Lambda
environments would, at most ``CONCURRENCY`` at a time: this machine's sandbox (one Python process, one lock,
two cores) serves a few dozen requests a second, and a hundred handlers at once would measure its queue,
not the handler. Every ``THROTTLE_EVERY``-th EC2 request is refused with ``RequestLimitExceeded``:
botocore's standard retry mode (the core's ``RETRY_CONFIG``) must absorb it.

IAM is enforced (``benchmarks/iam.py``): each handler signs as the control plane's function role, whose policy is the
role's template rendered for these 100 services, as a Lambda environment would; the refusals are reported (0 when
the policy holds).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor


from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from sandbox import world
from sandbox.clock import ACCOUNT_ID, REGION
from sandbox.control import Sandbox
from sandbox import scenario
from sandbox.scenario import warning

from . import iam as bench_iam

GROUPS, PER_GROUP, THROTTLE_EVERY, CONCURRENCY = 10, 10, 7, 10
CONTROL_PLANE = "bench-fleet"


def build(endpoint):
    ec2, autoscaling, iam, sns = (scenario.client(s, endpoint) for s in ("ec2", "autoscaling", "iam", "sns"))
    seeded = world.seed(ec2)
    world.managed_instance_profile(iam, "bench-fleet-instance")
    ec2.create_launch_template(
        LaunchTemplateName="bench-fleet",
        LaunchTemplateData={
            "ImageId": seeded["image_id"],
            "InstanceType": "m6i.large",
            "IamInstanceProfile": {"Name": "bench-fleet-instance"},
            "InstanceMarketOptions": {"MarketType": "spot"},
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    topic = sns.create_topic(Name=CONTROL_PLANE)["TopicArn"]
    services, instances = [], []
    for group_index in range(GROUPS):
        group = f"bench-fleet-{group_index}"
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group,
            MinSize=PER_GROUP,
            MaxSize=PER_GROUP * 2,
            DesiredCapacity=PER_GROUP,
            LaunchTemplate={"LaunchTemplateName": "bench-fleet"},
            # As the fleet role sets it up: a terminate hook holds a replaced instance until the handler is done with it.
            LifecycleHookSpecificationList=[
                {
                    "LifecycleHookName": "terminate",
                    "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                    "HeartbeatTimeout": 300,
                    "DefaultResult": "CONTINUE",
                }
            ],
            VPCZoneIdentifier=",".join(seeded["subnets"][z] for z in ("us-east-1a", "us-east-1b")),
        )
        members = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0][
            "Instances"
        ]
        for index, member in enumerate(members):
            lineage = f"bench-{group_index}-{index}"
            ec2.create_tags(Resources=[member["InstanceId"]], Tags=[{"Key": t.LINEAGE, "Value": lineage}])
            volume = world.lineage_volume(ec2, lineage, member["AvailabilityZone"], 20, {t.DEVICE: "/dev/sdf"})
            ec2.attach_volume(VolumeId=volume, InstanceId=member["InstanceId"], Device="/dev/sdf")
            services.append(
                {
                    "name": lineage,
                    "lineage": lineage,
                    "group": group,
                    "stop_commands": ["echo stopped > app.state"],
                    "device_name": "/dev/sdf",
                    "stop_timeout": 60,
                }
            )
            instances.append(member["InstanceId"])
    # The control plane is called after its topic, as the control_plane role names them.
    role = bench_iam.create_function_role(iam, CONTROL_PLANE, services)
    return handler_config.parse({"topic_arn": topic, "services": services}), instances, role


def run(endpoint, scale=1.0):
    box = Sandbox(endpoint)
    config, instances, role = build(endpoint)
    box.settle()  # every attachment attached
    box.call("requests", reset=True)
    box.call("throttle", every=THROTTLE_EVERY, services=["ec2"])

    def handle(instance_id):
        # A Lambda environment of its own: the function role's credentials (the sandbox key when IAM is off).
        session = bench_iam.handler_session(role, CONTROL_PLANE)
        clients = recovery.Clients(lambda service: bench_iam.handler_client(session, service, endpoint))
        began = time.monotonic()
        outcome = recovery.Handler(config, clients, account=ACCOUNT_ID, region=REGION).handle(warning(instance_id))
        return time.monotonic() - began, outcome

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        results = list(pool.map(handle, instances))
    wall = time.monotonic() - began
    throttled = box.call("throttle")["throttled"]
    box.call("throttle")
    requests = box.call("requests")["total"]
    seconds = sorted(duration * scale for duration, _outcome in results)
    stopped = sum(1 for _duration, outcome in results if outcome.endswith("stop ok"))
    released = sum(
        1
        for volume in scenario.client("ec2", endpoint).describe_volumes(
            Filters=[{"Name": "tag-key", "Values": [t.LINEAGE]}]
        )["Volumes"]
        if volume["State"] == "available"
    )
    return {
        "interruptions": len(instances),
        "groups": GROUPS,
        "concurrency": CONCURRENCY,
        "handled": sum(1 for _duration, outcome in results if outcome.startswith("warning handled")),
        "stopped_cleanly": stopped,
        "volumes_released": released,
        "sandbox_requests_per_second": round(requests / wall, 1),
        "throttled_requests": throttled,
        "api_requests": requests,
        "wall_seconds": round(wall, 2),
        "p50_seconds": round(statistics.median(seconds), 2),
        "p99_seconds": round(seconds[int(0.99 * (len(seconds) - 1))], 2),
        "max_seconds": round(seconds[-1], 2),
        "outcomes": sorted({outcome.split(": ", 1)[-1] for _duration, outcome in results}),
        "iam": bench_iam.summary(),
    }
