# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Elastic IP moves: find the address (allocation id, public IP or tags) and put it on a target.

An address already associated with another instance or interface is moved only when the
caller allows reassociation: taking an address from a live server is a decision, never a
side effect.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field

from .aws import call
from .errors import Ambiguous, Conflict, InvalidInput, NotFound, missing_as_not_found
from .instances import describe_instance, state_of
from . import tags as t


@dataclass
class AddressMove:
    changed: bool
    allocation_id: str
    public_ip: str
    instance_id: str
    previous_instance_id: str | None = None
    previous_network_interface_id: str | None = None
    association_id: str | None = None
    actions: list = field(default_factory=list)

    def to_dict(self):
        return asdict(self)


def find_address(ec2, allocation_id=None, public_ip=None, address_tags=None):
    """Exactly one Elastic IP by allocation id, public IP or tags."""
    given = [
        name
        for name, value in (("allocation_id", allocation_id), ("public_ip", public_ip), ("tags", address_tags))
        if value
    ]
    if len(given) != 1:
        raise InvalidInput(
            f"name the Elastic IP by exactly one of allocation_id, public_ip or tags (got {given or 'none'})"
        )
    if public_ip:
        try:
            ipaddress.IPv4Address(public_ip)
        except ValueError as exc:
            raise InvalidInput(f"{public_ip!r} is not an IPv4 address") from exc
    if allocation_id:
        query, label = {"AllocationIds": [allocation_id]}, f"allocation id {allocation_id}"
    elif public_ip:
        query, label = {"PublicIps": [public_ip]}, f"public IP {public_ip}"
    else:
        query, label = {"Filters": t.filters(address_tags)}, f"tags {address_tags}"
    with missing_as_not_found(
        ("InvalidAllocationID.NotFound", "InvalidAddress.NotFound", "InvalidParameterValue"),
        f"no Elastic IP with {label}",
    ):
        found = call(ec2, "describe_addresses", **query)["Addresses"]
    if not found:
        raise NotFound(f"no Elastic IP with {label}")
    if len(found) > 1:
        raise Ambiguous(
            f"{len(found)} Elastic IPs match {label} "
            f"({', '.join(a['AllocationId'] for a in found)}); name one by allocation id"
        )
    address = found[0]
    if address.get("Domain") != "vpc":
        raise InvalidInput(f"Elastic IP {address['PublicIp']} is not a VPC address")
    return address


def move_address(ec2, address, instance_id, allow_reassociation=False, dry_run=False, only_from_lineage=None):
    """Associate ``address`` with ``instance_id`` (its primary interface). Idempotent.

    With ``only_from_lineage``, an associated address is taken only from an instance of that lineage (the
    service's previous holder): an address on anything else is someone else's service, and taking it silently
    would break theirs. ``Conflict`` names the holder."""
    target = describe_instance(ec2, instance_id)
    if state_of(target) not in ("running", "pending", "stopped", "stopping"):
        raise InvalidInput(f"target instance {instance_id} is {state_of(target)}; an Elastic IP cannot move to it")
    move = AddressMove(
        changed=False,
        allocation_id=address["AllocationId"],
        public_ip=address["PublicIp"],
        instance_id=instance_id,
        previous_instance_id=address.get("InstanceId") or None,
        previous_network_interface_id=address.get("NetworkInterfaceId") or None,
        association_id=address.get("AssociationId") or None,
    )
    if address.get("InstanceId") == instance_id:
        return move

    holder = address.get("InstanceId") or address.get("NetworkInterfaceId")
    if holder and allow_reassociation and only_from_lineage is not None:
        holder_lineage = _lineage_of_holder(ec2, address)
        if holder_lineage != only_from_lineage:
            raise Conflict(
                f"Elastic IP {address['PublicIp']} ({address['AllocationId']}) is associated with {holder}, "
                f"which is {'of lineage ' + holder_lineage if holder_lineage else 'not an instance of any lineage'}, "
                f"not of {only_from_lineage}: not taken. Free it, or allow taking it from any instance "
                f"(the service's address_take_from_any)",
                allocation_id=address["AllocationId"],
                holder=holder,
            )
    if holder and not allow_reassociation:
        raise Conflict(
            f"Elastic IP {address['PublicIp']} ({address['AllocationId']}) is associated with {holder}; "
            f"set allow_reassociation to move it to {instance_id}",
            allocation_id=address["AllocationId"],
            holder=holder,
        )
    move.changed = True
    move.actions.append(f"associate {address['PublicIp']} with {instance_id}" + (f" (from {holder})" if holder else ""))
    if not dry_run:
        response = call(
            ec2,
            "associate_address",
            AllocationId=address["AllocationId"],
            InstanceId=instance_id,
            AllowReassociation=bool(holder),
        )
        move.association_id = response.get("AssociationId")
    return move


def _lineage_of_holder(ec2, address):
    """The ``ec2spot:lineage`` of the instance an address is on (through its interface when it names one), or None."""
    instance_id = address.get("InstanceId")
    if not instance_id and address.get("NetworkInterfaceId"):
        interfaces = call(ec2, "describe_network_interfaces", NetworkInterfaceIds=[address["NetworkInterfaceId"]])
        instance_id = ((interfaces.get("NetworkInterfaces") or [{}])[0].get("Attachment") or {}).get("InstanceId")
    if not instance_id:
        return None
    try:
        return t.as_dict(describe_instance(ec2, instance_id).get("Tags")).get(t.LINEAGE)
    except NotFound:
        return None
