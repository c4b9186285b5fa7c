"""Elastic IPs are disassociated when their instance terminates (sandbox/rules/addresses.py)."""


def test_termination_disassociates_the_elastic_ip(ec2, box, launch):
    """moto 5.2.5 keeps the address associated with the terminated instance; AWS frees it."""
    instance = launch()
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=instance)
    ec2.terminate_instances(InstanceIds=[instance])
    described = ec2.describe_addresses(AllocationIds=[address["AllocationId"]])["Addresses"][0]
    assert not described.get("InstanceId") and not described.get("AssociationId")
    assert described["PublicIp"] == address["PublicIp"]  # still allocated to the account


def test_a_terminated_instances_private_ip_returns_to_the_subnet(ec2, seeded):
    """The next instance in the subnet can get the address back: a group that keeps replacing never runs dry."""
    subnet = seeded["subnets"]["us-east-1c"]
    released = set()
    for unused_round in range(3):
        instance = ec2.run_instances(
            ImageId=seeded["image_id"], MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet
        )["Instances"][0]
        assert not released or instance["PrivateIpAddress"] in released
        released.add(instance["PrivateIpAddress"])
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    assert len(released) == 1
