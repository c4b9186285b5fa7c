"""The price core (``fleet/pricing.py``): reading GetProducts' PriceList, the newest Spot price, the arithmetic.

The PriceList documents have the shape AWS's Price List Query API returns (GetProducts, FormatVersion
aws_v1: each item a JSON string with ``product``, ``terms.OnDemand`` and ``terms.Reserved``); the
Spot side runs against moto in-process with the sandbox's rules.
"""

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from ansible_collections.ec2spot.autorecover.plugins.module_utils.fleet import pricing as p
from sandbox import rules as sandbox_rules
from sandbox.rules import pricing as sandbox_pricing

sandbox_rules.install()


def price_list_item(
    instance_type="m5.large", usd="0.0960000000", usagetype=None, reserved_hourly="0.0540000000", unit="Hrs"
):
    """A GetProducts item as AWS returns it (attributes abridged), with a Reserved term beside the OnDemand one."""
    sku = "2WTMTR9HDDT7AA73"
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "sku": sku,
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": "us-east-1",
                    "location": "US East (N. Virginia)",
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                    "licenseModel": "No License required",
                    "usagetype": usagetype or f"BoxUsage:{instance_type}",
                    "operation": "RunInstances",
                    "marketoption": "OnDemand",
                    "vcpu": "2",
                    "memory": "8 GiB",
                },
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": unit,
                                "endRange": "Inf",
                                "beginRange": "0",
                                "appliesTo": [],
                                "description": f"$0.096 per On Demand Linux {instance_type} Instance Hour",
                                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2025-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                },
                "Reserved": {
                    f"{sku}.38NPMPTW36": {
                        "priceDimensions": {
                            f"{sku}.38NPMPTW36.2TG2D8R56U": {
                                "unit": "Quantity",
                                "description": "Upfront Fee",
                                "pricePerUnit": {"USD": "473"},
                            },
                            f"{sku}.38NPMPTW36.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "description": "reserved instance applied",
                                "pricePerUnit": {"USD": reserved_hourly},
                            },
                        },
                        "sku": sku,
                        "offerTermCode": "38NPMPTW36",
                        "termAttributes": {
                            "LeaseContractLength": "1yr",
                            "OfferingClass": "standard",
                            "PurchaseOption": "Partial Upfront",
                        },
                    }
                },
            },
            "version": "20251101000000",
            "publicationDate": "2025-11-01T00:00:00Z",
        }
    )


# ---- GetProducts -----------------------------------------------------------------------------------
def test_the_on_demand_hourly_price_ignores_reserved_terms_and_upfront_fees():
    assert p.hourly_on_demand([price_list_item()]) == 0.096


def test_price_list_items_may_be_parsed_documents():
    assert p.hourly_on_demand([json.loads(price_list_item(usd="0.1920000000"))]) == 0.192


def test_box_usage_wins_over_other_products_then_the_lowest_price():
    items = [
        price_list_item(usd="0.0100000000", usagetype="UnusedBox:m5.large"),
        price_list_item(usd="0.0960000000"),
        price_list_item(usd="0.1100000000"),
    ]
    assert p.hourly_on_demand(items) == 0.096


def test_no_product_zero_prices_and_other_units_give_no_price():
    assert p.hourly_on_demand([]) is None
    assert p.hourly_on_demand([price_list_item(usd="0.0000000000")]) is None
    assert p.hourly_on_demand([price_list_item(unit="Quantity")]) is None


def test_the_filters_name_one_linux_shared_product_in_the_region():
    filters = {f["Field"]: f["Value"] for f in p.on_demand_filters("m6i.large", "eu-west-1")}
    assert all(f["Type"] == "TERM_MATCH" for f in p.on_demand_filters("m6i.large", "eu-west-1"))
    assert filters == {
        "instanceType": "m6i.large",
        "regionCode": "eu-west-1",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }


def test_the_sandbox_catalogue_answers_the_filters_with_one_product():
    answer = sandbox_pricing.get_products(
        {"ServiceCode": "AmazonEC2", "Filters": p.on_demand_filters("m5.xlarge", "us-east-1")},
        sandbox_pricing.catalogue(),
    )
    assert len(answer["PriceList"]) == 1 and p.hourly_on_demand(answer["PriceList"]) == 0.192  # seed 003's figure


@pytest.mark.parametrize(
    "region, expected",
    [
        ("eu-west-1", "us-east-1"),
        ("us-east-1", "us-east-1"),
        ("ap-south-1", "us-east-1"),
        ("cn-north-1", "cn-northwest-1"),
        ("us-gov-west-1", None),
        ("us-iso-east-1", None),
    ],
)
def test_the_price_list_api_region_per_partition(region, expected):
    assert p.pricing_region(region) == expected


def test_a_partition_without_the_price_list_api_is_a_warning():
    prices, warnings = p.on_demand_prices(None, ["m5.large"], "us-gov-west-1")
    assert prices == {"m5.large": None} and "aws-us-gov partition has no Price List API" in warnings[0]


# ---- Spot price history ----------------------------------------------------------------------------
def record(instance_type, zone, price, minutes_ago, now=datetime(2026, 11, 24, 12, tzinfo=timezone.utc)):
    return {
        "InstanceType": instance_type,
        "AvailabilityZone": zone,
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": f"{price:.6f}",
        "Timestamp": now - timedelta(minutes=minutes_ago),
    }


def test_the_newest_record_of_each_type_and_zone_wins_whatever_the_order():
    records = [
        record("m5.large", "us-east-1a", 0.04, 300),
        record("m5.large", "us-east-1a", 0.0346, 10),
        record("m5.large", "us-east-1b", 0.0326, 20),
        record("m5.large", "us-east-1b", 0.05, 400),
        record("m5.large", "us-east-1d", 0.01, 1),
    ]
    newest = p.newest_spot_prices(records, zones={"us-east-1a", "us-east-1b"})
    assert {k: v["price"] for k, v in newest.items()} == {
        ("m5.large", "us-east-1a"): 0.0346,
        ("m5.large", "us-east-1b"): 0.0326,
    }


def test_iso_timestamps_compare_as_times():
    records = [
        dict(record("c5.large", "us-east-1a", 0.03, 0), Timestamp="2026-11-24T11:00:00.000Z"),
        dict(record("c5.large", "us-east-1a", 0.02, 0), Timestamp="2026-11-24T10:00:00+00:00"),
    ]
    assert p.newest_spot_prices(records)[("c5.large", "us-east-1a")]["price"] == 0.03


@mock_aws
def test_current_spot_prices_read_every_page_and_only_linux():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    types = ["m5.large", "m5.xlarge", "m6i.large", "c5.large", "r5.large", "t3.micro"]
    zones = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"]
    # more records than one page of the paginator: every page is read
    pages = list(
        ec2.get_paginator("describe_spot_price_history").paginate(InstanceTypes=types, PaginationConfig={"PageSize": 5})
    )
    assert len(pages) > 2
    spot = p.current_spot_prices(ec2, types, zones)
    assert spot[("m5.large", "us-east-1a")]["price"] == sandbox_pricing.spot_price("m5.large", "us-east-1a")
    assert all(
        price["price"] == sandbox_pricing.spot_price(t, z) for (t, z), price in spot.items()
    )  # Linux, not Windows
    assert ("m6i.large", "us-east-1e") not in spot and ("m6i.large", "us-east-1a") in spot


# ---- the arithmetic --------------------------------------------------------------------------------
def test_savings_per_hour_month_of_730_hours_and_percent():
    # seed 003: m5.xlarge $0.192/h on demand against $0.058/h Spot on average
    assert p.savings(0.058, 0.192) == {"savings_per_hour": 0.134, "savings_per_month": 97.82, "savings_percent": 69.8}
    assert p.HOURS_PER_MONTH == 730
    assert (
        p.savings(None, 0.192)
        == p.savings(0.058, None)
        == {"savings_per_hour": None, "savings_per_month": None, "savings_percent": None}
    )


def test_types_as_the_fleet_role_takes_them():
    assert p.normalize_types(["m5.large", {"type": "m5.xlarge", "weight": 2}, "m5.large"]) == [
        ("m5.large", 1),
        ("m5.xlarge", 2),
    ]
    for bad, words in (
        ([], "no instance types"),
        ([{"weight": 2}], "neither a type name"),
        ([{"type": "m5.large", "weight": 0}], "must be 1 or more"),
        ([{"type": "m5.large", "weight": "two"}], "not a whole number"),
    ):
        with pytest.raises(p.PricingError, match=words):
            p.normalize_types(bad)


def stamp(minutes_ago):
    return {"timestamp": datetime(2026, 11, 24, 12, tzinfo=timezone.utc) - timedelta(minutes=minutes_ago)}


def test_the_report_ranks_pools_per_capacity_unit_and_reports_missing_offerings():
    spot = {
        ("m5.large", "us-east-1a"): dict(stamp(5), price=0.0346),
        ("m5.large", "us-east-1b"): dict(stamp(5), price=0.0326),
        ("m5.xlarge", "us-east-1a"): dict(stamp(5), price=0.0600),
    }
    result = p.report(
        [("m5.large", 1), ("m5.xlarge", 2)], ["us-east-1a", "us-east-1b"], spot, {"m5.large": 0.096, "m5.xlarge": 0.192}
    )
    summary = result["summary"]
    # m5.xlarge at $0.06 for 2 units ($0.03 a unit) beats m5.large at $0.0326
    assert (summary["cheapest"]["instance_type"], summary["cheapest"]["availability_zone"]) == (
        "m5.xlarge",
        "us-east-1a",
    )
    assert summary["cheapest"]["spot_price_per_unit"] == 0.03 and summary["cheapest"]["savings_per_month"] == 96.36
    assert (summary["spot_price_min"], summary["spot_price_max"]) == (0.0326, 0.06)
    assert (summary["savings_per_hour_min"], summary["savings_per_hour_max"]) == (0.0614, 0.132)
    assert (summary["spot_pools"], summary["pools_without_spot"]) == (3, 1)
    xlarge = [t for t in result["instance_types"] if t["instance_type"] == "m5.xlarge"][0]
    assert (xlarge["spot_zones"], xlarge["no_spot_offering_zones"], xlarge["cheapest_zone"]) == (
        ["us-east-1a"],
        ["us-east-1b"],
        "us-east-1a",
    )
    assert result["hours_per_month"] == 730 and result["currency"] == "USD"


def test_without_on_demand_prices_the_report_keeps_the_spot_figures():
    spot = {("m5.large", "us-east-1a"): dict(stamp(5), price=0.0346)}
    result = p.report([("m5.large", 1)], ["us-east-1a"], spot, {"m5.large": None}, warnings=["denied"])
    assert result["prices"][0]["spot_price"] == 0.0346 and result["prices"][0]["savings_per_hour"] is None
    assert result["summary"]["cheapest"]["spot_price"] == 0.0346 and result["summary"]["on_demand_price_min"] is None
    assert result["warnings"] == ["denied"]


def test_no_spot_offering_anywhere_leaves_no_cheapest_pool():
    result = p.report([("m6i.large", 1)], ["us-east-1e"], {}, {"m6i.large": 0.096})
    assert result["summary"]["cheapest"] is None and result["prices"][0]["spot_offered"] is False


@mock_aws
def test_unknown_types_subnets_and_zones_are_refused_by_name():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    with pytest.raises(p.PricingError, match="m5.huge"):
        p.price_report(ec2, None, "us-east-1", ["m5.large", "m5.huge"], zones=["us-east-1a"])
    with pytest.raises(p.PricingError, match="us-east-1z"):
        p.price_report(ec2, None, "us-east-1", ["m5.large"], zones=["us-east-1z"])
    with pytest.raises(p.PricingError, match="subnet-0123456789abcdef0"):
        p.price_report(ec2, None, "us-east-1", ["m5.large"], subnet_ids=["subnet-0123456789abcdef0"])


@mock_aws
def test_subnets_give_their_zones_in_order():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for i, zone in enumerate(["us-east-1c", "us-east-1a", "us-east-1c"])
    ]
    result = p.price_report(ec2, None, "us-east-1", ["t3.small"], subnet_ids=subnets, on_demand=False)
    assert result["availability_zones"] == ["us-east-1c", "us-east-1a"]
    assert [x["spot_price"] for x in result["prices"]] == [
        sandbox_pricing.spot_price("t3.small", z) for z in ("us-east-1c", "us-east-1a")
    ]


def test_the_modules_policy_allows_every_call_spot_price_info_makes():
    import pathlib

    policy = json.loads((pathlib.Path(__file__).parents[2] / "docs" / "iam" / "modules-policy.json").read_text())
    on_everything = {
        action
        for s in policy["Statement"]
        if s["Effect"] == "Allow" and s["Resource"] == "*" and "Condition" not in s
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert {
        "ec2:DescribeSpotPriceHistory",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeSubnets",
        "pricing:GetProducts",
    } <= on_everything
