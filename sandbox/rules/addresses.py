"""Addresses follow their instance's end as AWS does.

AWS (EC2 user guide, "Elastic IP addresses": "when you terminate an instance, its Elastic IP
address is disassociated"; the address stays allocated to the account). moto 5.2.5 keeps the
address associated with the terminated instance, so a failover would look like it takes the
address from a live holder.

A terminated instance's private IP goes back to its subnet's pool (AWS releases the network
interface it deleted on termination). moto 5.2.5 keeps it taken until the instance object is
garbage-collected, so a group that keeps replacing instances (a launch hook nobody answers)
exhausts a /24 within minutes of modeled time.
"""

from __future__ import annotations

from .. import instance_lifecycle as lifecycle


def install(context):
    """Register at ``instance-terminated`` (before the EC2 events rule announces it: instance_lifecycle.ORDER)."""

    def terminated(instance, unused_before):
        for address in list(instance.ec2_backend.addresses):
            holder = address.instance or (address.eni.instance if address.eni is not None else None)
            if holder is instance:
                instance.ec2_backend.disassociate_address(address=address.public_ip)
                context.record(
                    "addresses_released_by_termination", {"public_ip": address.public_ip, "instance_id": instance.id}
                )
        for nic in list(instance.nics.values()):
            subnet = getattr(nic, "subnet", None)
            if subnet is not None and nic.private_ip_address:
                subnet.del_subnet_ip(nic.private_ip_address)

    lifecycle.register("addresses", {lifecycle.INSTANCE_TERMINATED: terminated})
