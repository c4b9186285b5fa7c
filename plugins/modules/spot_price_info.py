#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: spot_price_info
version_added: 0.1.0
short_description: Current Spot and on-demand prices of instance types in availability zones, and the savings
description:
  - Reads the Spot price in effect now of each instance type in each availability zone (EC2
    C(DescribeSpotPriceHistory) with C(StartTime) now and product C(Linux/UNIX); the newest record per type and
    zone). A type without a Spot offering in a zone is reported with RV(prices[].spot_offered=false).
  - Reads each type's hourly on-demand price from the AWS Price List Query API (C(pricing:GetProducts)) for Linux,
    shared tenancy, no pre-installed software, capacity used, no license, in the region of O(region).
  - Computes what Spot saves per hour and per month. A month is B(730 hours) (8,760 hours a year divided by 12,
    as the AWS Pricing Calculator counts). Prices are in USD per instance-hour.
  - The on-demand price is a comparison only. When C(pricing:GetProducts) is denied, or the Price List API cannot
    be reached, or the partition has none, the module still returns the Spot prices, with the on-demand figures
    V(null) and a warning; it does not fail.
  - Read-only; runs the same in check mode.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  instance_types:
    description:
      - The instance types to price, as the fleet role takes them, names (V(m6i.large)) or dicts with C(type) and
        C(weight) (capacity units). The weight only ranks the cheapest pool per capacity unit
        (RV(summary.cheapest)); prices stay per instance-hour.
      - An instance type EC2 does not know fails the module, naming it.
    type: list
    elements: raw
    required: true
  availability_zones:
    description:
      - The availability zones to price in.
      - Without O(availability_zones) and O(subnet_ids), every available availability zone of the region.
    type: list
    elements: str
  subnet_ids:
    description:
      - Price in the availability zones of these subnets (for example a group's subnets).
    type: list
    elements: str
  on_demand:
    description:
      - Also read the on-demand prices from the Price List Query API. V(false) reads Spot prices only.
    type: bool
    default: true
  pricing_region:
    description:
      - The region whose Price List Query API endpoint to call. The API is served from a few regions only.
      - Defaults to V(us-east-1) in the commercial partition and V(cn-northwest-1) in China; other partitions have
        none (on-demand prices V(null), with a warning).
      - The prices read are always those of O(region).
    type: str
  pricing_endpoint_url:
    description:
      - Endpoint for the Price List Query API, for example a VPC interface endpoint.
      - Defaults to O(endpoint_url) when that is given, else the API's public endpoint in O(pricing_region).
    type: str
notes:
  - IAM permissions needed, C(ec2:DescribeSpotPriceHistory), C(ec2:DescribeInstanceTypes),
    C(ec2:DescribeAvailabilityZones), C(ec2:DescribeSubnets) (with O(subnet_ids)) and, for on-demand prices,
    C(pricing:GetProducts) (see C(docs/iam/modules-policy.json)).
  - Spot prices change over time; the figures are those in effect when the module runs.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only, so the same answer as without check mode.
  diff_mode:
    support: N/A
    details: An info module changes nothing.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
"""

EXAMPLES = r"""
- name: What Spot saves for the database's instance types in its subnets' zones (seed 003's cost argument)
  ec2spot.autorecover.spot_price_info:
    region: eu-west-1
    instance_types: [m6i.large, m5.large, m6a.large, m7i.large]
    subnet_ids: [subnet-0123456789abcdef0, subnet-0fedcba9876543210]
  register: prices

- name: Print the cheapest pool
  ansible.builtin.debug:
    msg: >-
      {{ prices.summary.cheapest.instance_type }} in {{ prices.summary.cheapest.availability_zone }}:
      Spot ${{ prices.summary.cheapest.spot_price }}/h against ${{ prices.summary.cheapest.on_demand_price }}/h
      on demand, ${{ prices.summary.cheapest.savings_per_month }} a month less

- name: Weighted types, named zones, Spot prices only
  ec2spot.autorecover.spot_price_info:
    instance_types:
      - type: m5.large
        weight: 1
      - type: m5.xlarge
        weight: 2
    availability_zones: [us-east-1a, us-east-1b]
    on_demand: false
"""

RETURN = r"""
currency:
  description: The currency of every price.
  returned: always
  type: str
  sample: USD
hours_per_month:
  description: The hours in a month the monthly figures count.
  returned: always
  type: int
  sample: 730
product_description:
  description: The Spot product priced.
  returned: always
  type: str
  sample: Linux/UNIX
availability_zones:
  description: The availability zones priced.
  returned: always
  type: list
  elements: str
  sample: [us-east-1a, us-east-1b]
on_demand_available:
  description: Whether on-demand prices could be read (V(false) when denied, unreachable or not asked for).
  returned: always
  type: bool
  sample: true
prices:
  description: One entry per instance type and availability zone.
  returned: always
  type: list
  elements: dict
  contains:
    instance_type:
      description: The instance type.
      type: str
      sample: m5.large
    availability_zone:
      description: The availability zone.
      type: str
      sample: us-east-1a
    weight:
      description: The type's capacity units (1 unless given).
      type: int
      sample: 1
    spot_offered:
      description: Whether the type has a Spot price in the zone (V(false) means no Spot offering there).
      type: bool
      sample: true
    spot_price:
      description: The Spot price in effect now, per instance-hour; V(null) without a Spot offering.
      type: float
      sample: 0.0346
    spot_price_per_unit:
      description: RV(prices[].spot_price) divided by the weight.
      type: float
      sample: 0.0346
    spot_price_timestamp:
      description: When that Spot price took effect (ISO 8601).
      type: str
      sample: "2026-11-24T19:00:47+00:00"
    on_demand_price:
      description: The type's on-demand price per instance-hour; V(null) when unknown.
      type: float
      sample: 0.096
    savings_per_hour:
      description: On-demand minus Spot, per instance-hour; V(null) when either is unknown.
      type: float
      sample: 0.0614
    savings_per_month:
      description: RV(prices[].savings_per_hour) times RV(hours_per_month), rounded to cents.
      type: float
      sample: 44.82
    savings_percent:
      description: The saving as a percentage of the on-demand price.
      type: float
      sample: 64.0
instance_types:
  description: Per instance type, its on-demand price and its Spot price range over the zones.
  returned: always
  type: list
  elements: dict
  sample: [{"instance_type": "m5.large", "weight": 1, "on_demand_price": 0.096, "spot_price_min": 0.0326,
            "spot_price_max": 0.0346, "cheapest_zone": "us-east-1b", "spot_zones": ["us-east-1a", "us-east-1b"],
            "no_spot_offering_zones": []}]
summary:
  description:
    - Over every pool (type and zone) with a Spot offering, the Spot, on-demand and savings ranges and the cheapest
      pool per capacity unit (RV(summary.cheapest), V(null) when no type has a Spot offering in any zone).
  returned: always
  type: dict
  contains:
    spot_pools:
      description: Pools with a Spot offering.
      type: int
    pools_without_spot:
      description: Pools without one.
      type: int
    spot_price_min:
      description: The lowest Spot price.
      type: float
    spot_price_max:
      description: The highest Spot price.
      type: float
    on_demand_price_min:
      description: The lowest on-demand price of the types.
      type: float
    on_demand_price_max:
      description: The highest on-demand price of the types.
      type: float
    savings_per_hour_min:
      description: The smallest saving per instance-hour over the pools.
      type: float
    savings_per_hour_max:
      description: The largest saving per instance-hour over the pools.
      type: float
    cheapest:
      description: The cheapest pool per capacity unit, with its prices and savings.
      type: dict
  sample: {"spot_pools": 4, "pools_without_spot": 0, "spot_price_min": 0.0326, "spot_price_max": 0.0432,
           "on_demand_price_min": 0.096, "on_demand_price_max": 0.096, "savings_per_hour_min": 0.0528,
           "savings_per_hour_max": 0.0634,
           "cheapest": {"instance_type": "m5.large", "availability_zone": "us-east-1b", "weight": 1, "spot_price": 0.0326,
                        "spot_price_per_unit": 0.0326, "on_demand_price": 0.096, "savings_per_hour": 0.0634,
                        "savings_per_month": 46.28, "savings_percent": 66.0}}
price_warnings:
  description: Why figures are missing (on-demand prices unavailable, types without a Spot offering); also shown as warnings.
  returned: always
  type: list
  elements: str
  sample: ["m6i.large has no Spot offering in us-east-1e"]
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.fleet import pricing
from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run


def pricing_client(module, region):
    """The Price List API client, or None when the partition has no endpoint and none was named."""
    params = module.params
    endpoint_region = params["pricing_region"] or pricing.pricing_region(region)
    if endpoint_region is None:
        return None
    extra = {"region": endpoint_region, "config": pricing.PRICING_CONFIG}
    if params["pricing_endpoint_url"]:
        extra["endpoint"] = params["pricing_endpoint_url"]
    return client(module, "pricing", **extra)


def main():
    argument_spec = dict(
        instance_types=dict(type="list", elements="raw", required=True),
        availability_zones=dict(type="list", elements="str"),
        subnet_ids=dict(type="list", elements="str"),
        on_demand=dict(type="bool", default=True),
        pricing_region=dict(type="str"),
        pricing_endpoint_url=dict(type="str"),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec, supports_check_mode=True, mutually_exclusive=[["availability_zones", "subnet_ids"]]
    )
    params = module.params
    region = module.region
    if not region:
        module.fail_json(msg="spot_price_info needs a region: set region (or AWS_REGION) to the region to price in")
    ec2 = client(module, "ec2")
    prices = pricing_client(module, region) if params["on_demand"] else None
    result = run(
        module,
        lambda: pricing.price_report(
            ec2,
            prices,
            region,
            params["instance_types"],
            zones=params["availability_zones"],
            subnet_ids=params["subnet_ids"],
            on_demand=params["on_demand"],
        ),
    )
    for warning in result["warnings"]:
        module.warn(warning)
    result["price_warnings"] = result.pop("warnings")
    result["on_demand_available"] = any(t["on_demand_price"] is not None for t in result["instance_types"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
