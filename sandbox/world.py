"""Seed a realistic world into an AWS endpoint (the sandbox's moto, or moto in-process).

A VPC with one subnet in each of three availability zones, a security group, and an AMI
to launch from. Returns the ids as a dict that tests, molecule and the demo read.
"""

from __future__ import annotations

REGION = "us-east-1"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
WORLD_TAG = {"Key": "ec2spot:sandbox", "Value": "world"}


def _tagged(resource_type, name):
    return [{"ResourceType": resource_type, "Tags": [{"Key": "Name", "Value": name}, WORLD_TAG]}]


def seed(ec2):
    """Create the world once; on an already seeded endpoint return the existing ids."""
    existing = ec2.describe_vpcs(Filters=[{"Name": "tag:ec2spot:sandbox", "Values": ["world"]}])["Vpcs"]
    if existing:
        return describe(ec2, existing[0]["VpcId"])
    vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=_tagged("vpc", "sandbox"))["Vpc"]["VpcId"]
    for index, zone in enumerate(ZONES):
        ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=f"10.42.{index}.0/24",
            AvailabilityZone=zone,
            TagSpecifications=_tagged("subnet", f"sandbox-{zone}"),
        )
    group_id = ec2.create_security_group(
        GroupName="sandbox-app",
        Description="sandbox application",
        VpcId=vpc_id,
        TagSpecifications=_tagged("security-group", "sandbox-app"),
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.42.0.0/16"}]}
        ],
    )
    # A registered image of our own (no builder instance): the application image the fleet launches.
    ec2.register_image(
        Name="sandbox-al2023-app",
        Description="sandbox application image",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}],
        TagSpecifications=_tagged("image", "sandbox-al2023-app"),
    )
    return describe(ec2, vpc_id)


def launch(ec2, world, zone="us-east-1a", tags=None, instance_type="t3.micro", **extra):
    """One instance (a t3.micro unless ``instance_type`` says) of the seeded image in ``zone``'s subnet of ``world``
    (``seed``'s answer), with ``tags`` (a dict) and ``extra`` RunInstances parameters; returns its id."""
    if tags:
        extra["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": key, "Value": str(value)} for key, value in tags.items()]}
        ]
    return ec2.run_instances(
        ImageId=world["image_id"],
        MinCount=1,
        MaxCount=1,
        InstanceType=instance_type,
        SubnetId=world["subnets"][zone],
        **extra,
    )["Instances"][0]["InstanceId"]


def group(ec2, autoscaling, world, name, zones=None, tags=None, max_size=1):
    """An Auto Scaling group ``name`` of one t3.micro of the seeded image, across ``zones`` (every zone of ``world``
    by default), launched from a template of the same name whose instances carry ``tags`` (a dict); returns its
    first instance's id (the sandbox's group launches at once)."""
    data = {"ImageId": world["image_id"], "InstanceType": "t3.micro"}
    if tags:
        data["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": key, "Value": str(value)} for key, value in tags.items()]}
        ]
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=1,
        MaxSize=max_size,
        DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": name},
        VPCZoneIdentifier=",".join(world["subnets"][zone] for zone in zones or sorted(world["subnets"])),
    )
    [member] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "Instances"
    ]
    return member["InstanceId"]


def lineage_volume(ec2, lineage, zone, size, tags=None):
    """A lineage's first data volume as deploy.yml makes it (encrypted gp3 at generation 1) in ``zone``, with ``tags``
    (a dict) beside the lineage's; returns its id."""
    from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t

    return ec2.create_volume(
        AvailabilityZone=zone,
        Size=size,
        VolumeType="gp3",
        Encrypted=True,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": t.as_list({t.LINEAGE: lineage, t.GENERATION: 1, **(tags or {})})}
        ],
    )["VolumeId"]


def managed_instance_profile(iam, name):
    """An instance profile whose role has ``AmazonSSMManagedInstanceCore``: instances launched
    with it are managed by SSM (the sandbox runs Run Command on them, as AWS would)."""
    import json

    iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    iam.attach_role_policy(RoleName=name, PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return name


def describe(ec2, vpc_id):
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["sandbox-app"]}]
    )
    image = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["sandbox-al2023-app"]}])[
        "Images"
    ][0]
    return {
        "region": REGION,
        "vpc_id": vpc_id,
        "subnets": {s["AvailabilityZone"]: s["SubnetId"] for s in sorted(subnets, key=lambda s: s["AvailabilityZone"])},
        "security_group_id": groups["SecurityGroups"][0]["GroupId"],
        "image_id": image["ImageId"],
    }
