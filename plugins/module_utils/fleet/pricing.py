# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a fleet's instances cost: the current Spot price against the on-demand price (seed 003's argument).

* Spot: EC2 ``DescribeSpotPriceHistory`` with ``StartTime`` now and product ``Linux/UNIX``, which
  answers the price in effect now per instance type and availability zone (paginated; the newest
  record of each pair wins). A type with no record in a zone has no Spot offering there.
* On-demand: the AWS Price List Query API (``pricing:GetProducts``), served only from a few regions
  (``us-east-1`` for the commercial partition, ``cn-northwest-1`` for China), filtered to one product:
  Linux, shared tenancy, no pre-installed software, capacity used, no license. Its ``PriceList``
  holds JSON documents; the hourly USD price is in ``terms.OnDemand.*.priceDimensions.*``.
* Savings per hour and per month; a month is ``HOURS_PER_MONTH`` (730 h: 8,760 h a year / 12, the
  hour count AWS's own pricing calculator uses).

On-demand prices are a comparison, not the job: when ``GetProducts`` is denied or unreachable the
report keeps the Spot prices, sets the on-demand figures to ``None`` and says why in ``warnings``.
No Ansible: every AWS call goes through the core's ``call``/``paginate`` (an AWS error is ``AwsApiError``), wrong
input (an unknown instance type or subnet) raises ``PricingError`` (an ``InvalidInput``): one error dialect with
the recovery core.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ..recovery.aws import HAS_BOTO3, call, paginate
from ..recovery.errors import AwsApiError, InvalidInput

if HAS_BOTO3:
    import botocore.config

    # The price comparison must not hold up a deploy: few retries and short timeouts for the Price List API
    # (merged over the core's retry configuration by core_adapter.client).
    PRICING_CONFIG = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20
    )
else:  # pragma: no cover - the module reports the missing library
    PRICING_CONFIG = None

HOURS_PER_MONTH = 730
CURRENCY = "USD"
PRODUCT_DESCRIPTION = "Linux/UNIX"
# The regions that serve the Price List Query API, per partition (AWS Price List user guide).
PRICING_REGIONS = {"aws": "us-east-1", "aws-cn": "cn-northwest-1"}
# GetProducts filters that leave one product per instance type and region: Linux, no SQL Server or
# other pre-installed software, shared tenancy, no license, capacity actually used (not an unused reservation).
ON_DEMAND_ATTRIBUTES = (
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
    ("licenseModel", "No License required"),
)
DESCRIBE_TYPES_BATCH = 100


class PricingError(InvalidInput):
    """Input AWS cannot price: an unknown instance type or subnet, a malformed weight. Nothing was changed."""


def partition_of(region):
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso"):
        return "aws-iso-b" if region.startswith("us-isob") else "aws-iso"
    return "aws"


def pricing_region(region):
    """The region whose endpoint serves the Price List Query API for ``region``'s partition (or None)."""
    return PRICING_REGIONS.get(partition_of(region))


def normalize_types(instance_types):
    """Instance types as the fleet role takes them (names, or dicts with ``type`` and ``weight``) ->
    ordered unique ``[(type, weight)]``, weight 1 when not given."""
    seen = {}
    for item in instance_types or []:
        if isinstance(item, dict):
            name, weight = item.get("type") or item.get("instance_type"), item.get("weight", 1)
        else:
            name, weight = item, 1
        if not isinstance(name, str) or not name.strip():
            raise PricingError(f"instance type {item!r} is neither a type name nor a dict with a type")
        try:
            weight = int(weight if weight is not None else 1)
        except (TypeError, ValueError):
            raise PricingError(f"instance type {name}: weight {weight!r} is not a whole number")
        if weight < 1:
            raise PricingError(f"instance type {name}: weight {weight} must be 1 or more")
        seen.setdefault(name.strip(), weight)
    if not seen:
        raise PricingError("no instance types to price")
    return list(seen.items())


def check_instance_types(ec2, names):
    """Refuse names EC2 does not know (``DescribeInstanceTypes`` names them), before pricing anything."""
    for start in range(0, len(names), DESCRIBE_TYPES_BATCH):
        batch = names[start : start + DESCRIBE_TYPES_BATCH]
        try:
            call(ec2, "describe_instance_types", InstanceTypes=batch)
        except AwsApiError as error:
            if (error.aws_code or "").startswith("InvalidInstanceType"):
                raise PricingError(f"unknown instance type in {', '.join(batch)}: {error.message}") from error
            raise


def zones_of_subnets(ec2, subnet_ids):
    """The availability zones of the subnets, in the subnets' order, each once."""
    try:
        subnets = call(ec2, "describe_subnets", SubnetIds=list(subnet_ids))["Subnets"]
    except AwsApiError as error:
        if error.aws_code == "InvalidSubnetID.NotFound":
            raise PricingError(f"subnets {', '.join(subnet_ids)}: {error.message}") from error
        raise
    zone_of = dict((s["SubnetId"], s["AvailabilityZone"]) for s in subnets)
    return unique(zone_of[s] for s in subnet_ids if s in zone_of)


def region_zones(ec2):
    """Every available availability zone of the region (not Local or Wavelength Zones)."""
    found = call(
        ec2,
        "describe_availability_zones",
        Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}, {"Name": "state", "Values": ["available"]}],
    )
    return sorted(z["ZoneName"] for z in found["AvailabilityZones"])


def check_zones(ec2, zones):
    """Refuse zone names the region does not have (AWS answers InvalidParameterValue for them)."""
    try:
        known = set(
            z["ZoneName"] for z in call(ec2, "describe_availability_zones", ZoneNames=list(zones))["AvailabilityZones"]
        )
    except AwsApiError as error:
        if error.aws_code == "InvalidParameterValue":
            raise PricingError(f"availability zones {', '.join(zones)}: {error.message}") from error
        raise
    missing = [zone for zone in zones if zone not in known]
    if missing:
        raise PricingError(f"availability zones {', '.join(missing)} do not exist in this region")


def unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _stamp(value):
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def newest_spot_prices(records, zones=None):
    """``{(type, zone): {"price": float, "timestamp": datetime}}``: the newest record of each pair."""
    newest = {}
    for record in records:
        zone = record["AvailabilityZone"]
        if zones is not None and zone not in zones:
            continue
        key = (record["InstanceType"], zone)
        stamp = _stamp(record["Timestamp"])
        if key not in newest or stamp > newest[key]["timestamp"]:
            newest[key] = {"price": float(record["SpotPrice"]), "timestamp": stamp}
    return newest


def current_spot_prices(ec2, names, zones, now=None):
    """The Spot price in effect now of each type in each zone (pairs without an offering are absent)."""
    records = list(
        paginate(
            ec2,
            "describe_spot_price_history",
            "SpotPriceHistory",
            InstanceTypes=list(names),
            ProductDescriptions=[PRODUCT_DESCRIPTION],
            StartTime=now or datetime.now(timezone.utc),
            Filters=[{"Name": "availability-zone", "Values": list(zones)}],
        )
    )
    return newest_spot_prices(records, zones=set(zones))


def on_demand_filters(instance_type, region):
    attributes = (("instanceType", instance_type), ("regionCode", region)) + ON_DEMAND_ATTRIBUTES
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in attributes]


def hourly_on_demand(price_list):
    """The hourly USD on-demand price in a ``GetProducts`` ``PriceList`` (JSON strings or dicts), or None.

    With several products left (a catalogue change the filters did not foresee), the one whose usage
    type is ``BoxUsage`` wins, then the lowest non-zero price.
    """
    candidates = []
    for item in price_list or []:
        document = json.loads(item) if isinstance(item, str) else item
        attributes = (document.get("product") or {}).get("attributes") or {}
        for term in ((document.get("terms") or {}).get("OnDemand") or {}).values():
            for dimension in (term.get("priceDimensions") or {}).values():
                if dimension.get("unit") not in ("Hrs", "Hours"):
                    continue
                try:
                    price = float((dimension.get("pricePerUnit") or {}).get(CURRENCY))
                except (TypeError, ValueError):
                    continue
                if price > 0:
                    box = "BoxUsage" in attributes.get("usagetype", "")
                    candidates.append((not box, price))
    return min(candidates)[1] if candidates else None


def on_demand_price(pricing, instance_type, region):
    return hourly_on_demand(
        list(
            paginate(
                pricing,
                "get_products",
                "PriceList",
                ServiceCode="AmazonEC2",
                FormatVersion="aws_v1",
                Filters=on_demand_filters(instance_type, region),
            )
        )
    )


def on_demand_prices(pricing, names, region):
    """``({type: price or None}, warnings)``; a denied or unreachable Price List API is a warning, not an error."""
    if pricing is None:
        return dict((name, None) for name in names), [
            f"on-demand prices unavailable: the {partition_of(region)} partition has no Price List API endpoint; "
            "showing Spot prices only"
        ]
    prices, warnings = {}, []
    for name in names:
        try:
            prices[name] = on_demand_price(pricing, name, region)
        except AwsApiError as error:  # denied, throttled past the retries, unreachable: a warning
            return dict((n, None) for n in names), [
                f"on-demand prices unavailable (pricing:{error.message}); showing Spot prices only"
            ]
        if prices[name] is None:
            warnings.append(f"no on-demand Linux price published for {name} in {region}")
    return prices, warnings


def _money(value, digits=6):
    return None if value is None else round(value, digits)


def savings(spot, on_demand):
    """Per-hour and per-month savings of Spot over on-demand, and the percentage (None when unknown)."""
    if spot is None or on_demand is None:
        return {"savings_per_hour": None, "savings_per_month": None, "savings_percent": None}
    per_hour = on_demand - spot
    return {
        "savings_per_hour": _money(per_hour),
        "savings_per_month": _money(per_hour * HOURS_PER_MONTH, 2),
        "savings_percent": round(100.0 * per_hour / on_demand, 1) if on_demand else None,
    }


def report(types, zones, spot, on_demand, warnings=()):
    """The price report from what was read: ``types`` ``[(type, weight)]``, ``spot`` from
    ``current_spot_prices``, ``on_demand`` ``{type: price or None}``."""
    pools, by_type = [], []
    for name, weight in types:
        offered, missing = [], []
        for zone in zones:
            found = spot.get((name, zone))
            pool = {
                "instance_type": name,
                "availability_zone": zone,
                "weight": weight,
                "spot_offered": found is not None,
                "spot_price": _money(found["price"]) if found else None,
                "spot_price_timestamp": found["timestamp"].isoformat() if found else None,
                "on_demand_price": _money(on_demand.get(name)),
            }
            pool.update(savings(pool["spot_price"], pool["on_demand_price"]))
            pool["spot_price_per_unit"] = _money(pool["spot_price"] / weight) if found else None
            pools.append(pool)
            (offered if found else missing).append(pool)
        prices = [p["spot_price"] for p in offered]
        by_type.append(
            {
                "instance_type": name,
                "weight": weight,
                "on_demand_price": _money(on_demand.get(name)),
                "spot_price_min": min(prices) if prices else None,
                "spot_price_max": max(prices) if prices else None,
                "cheapest_zone": min(offered, key=lambda p: (p["spot_price"], p["availability_zone"]))[
                    "availability_zone"
                ]
                if offered
                else None,
                "spot_zones": [p["availability_zone"] for p in offered],
                "no_spot_offering_zones": [p["availability_zone"] for p in missing],
            }
        )
    return {
        "currency": CURRENCY,
        "hours_per_month": HOURS_PER_MONTH,
        "product_description": PRODUCT_DESCRIPTION,
        "availability_zones": list(zones),
        "prices": pools,
        "instance_types": by_type,
        "summary": summary(pools, on_demand),
        "warnings": list(warnings),
    }


def summary(pools, on_demand):
    """Ranges over the pools with a Spot offering, and the cheapest pool per capacity unit."""
    offered = [p for p in pools if p["spot_offered"]]
    known = [v for v in on_demand.values() if v is not None]
    result = {
        "spot_pools": len(offered),
        "pools_without_spot": len(pools) - len(offered),
        "spot_price_min": min((p["spot_price"] for p in offered), default=None),
        "spot_price_max": max((p["spot_price"] for p in offered), default=None),
        "on_demand_price_min": _money(min(known)) if known else None,
        "on_demand_price_max": _money(max(known)) if known else None,
        "savings_per_hour_min": None,
        "savings_per_hour_max": None,
        "cheapest": None,
    }
    compared = [p["savings_per_hour"] for p in offered if p["savings_per_hour"] is not None]
    if compared:
        result["savings_per_hour_min"], result["savings_per_hour_max"] = min(compared), max(compared)
    if offered:
        best = min(offered, key=lambda p: (p["spot_price_per_unit"], p["instance_type"], p["availability_zone"]))
        result["cheapest"] = dict(
            (key, best[key])
            for key in (
                "instance_type",
                "availability_zone",
                "weight",
                "spot_price",
                "spot_price_per_unit",
                "on_demand_price",
                "savings_per_hour",
                "savings_per_month",
                "savings_percent",
            )
        )
    return result


def price_report(ec2, pricing, region, instance_types, zones=None, subnet_ids=None, on_demand=True, now=None):
    """Read the prices of ``instance_types`` in ``zones`` (or the subnets' zones, or every zone of the region).

    ``pricing`` is a Price List API client (``None`` when the partition has none); with
    ``on_demand=False`` only Spot prices are read.
    """
    types = normalize_types(instance_types)
    names = [name for name, _weight in types]
    check_instance_types(ec2, names)
    if zones:
        zones = unique(zones)
        check_zones(ec2, zones)
    elif subnet_ids:
        zones = zones_of_subnets(ec2, subnet_ids)
    else:
        zones = region_zones(ec2)
    spot = current_spot_prices(ec2, names, zones, now=now)
    warnings = []
    if on_demand:
        od_prices, warnings = on_demand_prices(pricing, names, region)
    else:
        od_prices = dict((name, None) for name in names)
    for name in names:
        if not any((name, zone) in spot for zone in zones):
            warnings.append(f"{name} has no Spot offering in {', '.join(zones)}")
    return report(types, zones, spot, od_prices, warnings)
