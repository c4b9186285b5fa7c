"""The prices rule (sandbox/rules/pricing.py): Spot price history and the Price List API as AWS answers them."""

import json
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT
from sandbox.rules import pricing as rule

from .conftest import error_code


@pytest.fixture(scope="module")
def price_list(aws):
    return aws("pricing")


def test_start_time_now_gives_the_price_in_effect_per_type_and_zone(ec2, box):
    answer = ec2.describe_spot_price_history(
        InstanceTypes=["m5.large", "m6i.large"],
        ProductDescriptions=["Linux/UNIX"],
        StartTime=CONTEXT.now(),
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a", "us-east-1b"]}],
    )
    records = answer["SpotPriceHistory"]
    assert sorted((r["InstanceType"], r["AvailabilityZone"]) for r in records) == [
        ("m5.large", "us-east-1a"),
        ("m5.large", "us-east-1b"),
        ("m6i.large", "us-east-1a"),
        ("m6i.large", "us-east-1b"),
    ]
    assert all(r["ProductDescription"] == "Linux/UNIX" and r["Timestamp"] <= CONTEXT.now() for r in records)
    for r in records:
        assert float(r["SpotPrice"]) == rule.spot_price(r["InstanceType"], r["AvailabilityZone"])
        assert 0.30 <= float(r["SpotPrice"]) / rule.on_demand(r["InstanceType"]) <= 0.47
    # zones differ
    assert len({r["SpotPrice"] for r in records if r["InstanceType"] == "m5.large"}) == 2


def test_without_start_time_the_history_has_the_previous_price_too_newest_first(ec2, box):
    records = ec2.describe_spot_price_history(
        InstanceTypes=["c5.large"], AvailabilityZone="us-east-1c", ProductDescriptions=["Linux/UNIX"]
    )["SpotPriceHistory"]
    assert len(records) == 2 and records[0]["Timestamp"] > records[1]["Timestamp"]
    assert float(records[1]["SpotPrice"]) == rule.spot_price("c5.large", "us-east-1c", previous=True)
    # an hour before the current price took effect, the previous one is the price in effect
    earlier = ec2.describe_spot_price_history(
        InstanceTypes=["c5.large"],
        AvailabilityZone="us-east-1c",
        ProductDescriptions=["Linux/UNIX"],
        StartTime=records[0]["Timestamp"] - timedelta(hours=1),
        EndTime=records[0]["Timestamp"] - timedelta(minutes=1),
    )["SpotPriceHistory"]
    assert [r["SpotPrice"] for r in earlier] == [records[1]["SpotPrice"]]


def test_the_product_description_filter_narrows_rather_than_empties(ec2, box):
    records = ec2.describe_spot_price_history(
        InstanceTypes=["m5.large"],
        StartTime=CONTEXT.now(),
        Filters=[
            {"Name": "product-description", "Values": ["Windows"]},
            {"Name": "availability-zone", "Values": ["us-east-1a"]},
        ],
    )["SpotPriceHistory"]
    assert [(r["ProductDescription"], float(r["SpotPrice"])) for r in records] == [
        ("Windows", rule.spot_price("m5.large", "us-east-1a", "Windows"))
    ]


def test_no_record_where_the_type_has_no_spot_offering(ec2, box):
    assert (
        ec2.describe_spot_price_history(
            InstanceTypes=["m6i.large"], AvailabilityZone="us-east-1e", StartTime=CONTEXT.now()
        )["SpotPriceHistory"]
        == []
    )


def test_max_results_pages_with_next_token(ec2, box):
    pages = list(
        ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=["t3.micro", "t3.small"], PaginationConfig={"PageSize": 4}
        )
    )
    records = [r for page in pages for r in page["SpotPriceHistory"]]
    assert len(pages) > 1 and all(len(page["SpotPriceHistory"]) <= 4 for page in pages)
    # 2 types x 5 offered zones x 2 products x 2 records, each once
    assert (
        len(records)
        == 40
        == len({(r["InstanceType"], r["AvailabilityZone"], r["ProductDescription"], r["Timestamp"]) for r in records})
    )


def test_get_products_filters_to_one_linux_product_with_its_on_demand_price(price_list, box):
    filters = [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in (
            ("instanceType", "m5.xlarge"),
            ("regionCode", "us-east-1"),
            ("operatingSystem", "Linux"),
            ("tenancy", "Shared"),
            ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"),
            ("licenseModel", "No License required"),
        )
    ]
    answer = price_list.get_products(ServiceCode="AmazonEC2", Filters=filters, FormatVersion="aws_v1")
    [document] = [json.loads(item) for item in answer["PriceList"]]
    [term] = document["terms"]["OnDemand"].values()
    [dimension] = term["priceDimensions"].values()
    assert (dimension["unit"], dimension["pricePerUnit"]["USD"]) == ("Hrs", "0.1920000000")  # seed 003's m5.xlarge
    # without the OS and capacity filters there are more products (Windows, unused reservations), as in AWS
    loose = price_list.get_products(ServiceCode="AmazonEC2", Filters=filters[:2])
    assert len(loose["PriceList"]) == 3


def test_get_products_pages_and_other_regions_have_no_product(price_list, box):
    pages = list(
        price_list.get_paginator("get_products").paginate(
            ServiceCode="AmazonEC2",
            Filters=[{"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"}],
            PaginationConfig={"PageSize": 50},
        )
    )
    assert len(pages) > 1 and all(len(page["PriceList"]) <= 50 for page in pages)
    assert (
        price_list.get_products(
            ServiceCode="AmazonEC2", Filters=[{"Type": "TERM_MATCH", "Field": "regionCode", "Value": "eu-west-1"}]
        )["PriceList"]
        == []
    )


def test_the_pricing_control_denies_get_products(price_list, box):
    box.call("pricing", deny=True)
    try:
        with pytest.raises(ClientError) as excinfo:
            price_list.get_products(ServiceCode="AmazonEC2")
        assert error_code(excinfo) == "AccessDeniedException"
        assert "pricing:GetProducts" in str(excinfo.value)
    finally:
        box.call("pricing")
    assert price_list.get_products(ServiceCode="AmazonEC2", MaxResults=1)["PriceList"]
