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
