"""Prices: EC2 Spot price history and the AWS Price List API answer with realistic, fixed figures.

AWS (EC2 API reference, DescribeSpotPriceHistory): one record per price change per instance type,
availability zone and product description, newest first; with ``StartTime`` the answer starts with
the price in effect at that time; ``InstanceTypes``, ``ProductDescriptions``, ``AvailabilityZone``
and the ``availability-zone``, ``instance-type`` and ``product-description`` filters narrow it;
``MaxResults`` (default and maximum 1000) pages it with ``NextToken``. A type with no Spot offering
in a zone has no record there.

moto 5.2.5 answers every offered type and zone with ``SpotPrice`` ``0.00001``, product
``Linux/UNIX (Amazon VPC)`` and a timestamp of 2006, ignores ``StartTime``, ``ProductDescriptions``
and paging, and returns nothing at all when a ``product-description`` filter is given.

AWS (Price List Query API, GetProducts, endpoint ``api.pricing.us-east-1.amazonaws.com``; JSON
protocol, target ``AWSPriceListService.GetProducts``): the products of ``ServiceCode`` whose
attributes match every filter (``TERM_MATCH``: equal), each as a JSON document (``product``,
``terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD``) in ``PriceList``, at most
``MaxResults`` (1-100, default 100) per page with ``NextToken``. moto 5.2.5 has no Pricing API.

The figures (``ON_DEMAND_LARGE``): published us-east-1 Linux, shared-tenancy on-demand prices of the
``large`` size per family (aws.amazon.com/ec2/pricing/on-demand, as read in 2025; seed 003's
m5.xlarge $0.192/h agrees); other sizes scale by ``SIZES`` (AWS prices these families linearly in
size). Only us-east-1 has on-demand products here: another region's ``GetProducts`` finds none.
The Spot price of a type in a zone is a fixed fraction of its on-demand price, 0.30 to 0.46 by a
hash of (type, zone) (seed 003: m5.xlarge $0.058/h on average, 0.30 of on-demand), so zones differ
and every run sees the same figures. Each pool has two records: the previous price (2 points
higher) six hours before the current one, which took effect 5 to 54 minutes before the current hour
began (modeled clock), so it stays the same within an hour. Types of a family not
in the table, and types moto does not offer in a zone, have no Spot offering there.

Control ``pricing``: ``{"deny": true}`` makes ``GetProducts`` answer ``AccessDeniedException`` (an
account or SCP without ``pricing:GetProducts``), ``{}`` restores it; every GetProducts request is
recorded (``pricing_requests``).
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timedelta, timezone

# $/h, us-east-1, Linux, shared tenancy, size "large" (aws.amazon.com/ec2/pricing/on-demand, 2025).
ON_DEMAND_LARGE = {
    "t3": 0.0832,
    "t3a": 0.0752,
    "m5": 0.096,
    "m5a": 0.086,
    "m6i": 0.096,
    "m6a": 0.0864,
    "m7i": 0.1008,
    "c5": 0.085,
    "c6i": 0.085,
    "c7i": 0.08925,
    "r5": 0.126,
    "r6i": 0.126,
    "r7i": 0.1323,
}
SIZES = {
    "nano": 1 / 16,
    "micro": 1 / 8,
    "small": 1 / 4,
    "medium": 1 / 2,
    "large": 1,
    "xlarge": 2,
    "2xlarge": 4,
    "4xlarge": 8,
    "8xlarge": 16,
    "12xlarge": 24,
    "16xlarge": 32,
    "24xlarge": 48,
}
PRICED_REGION = "us-east-1"
LOCATION = "US East (N. Virginia)"
# Windows products exist beside Linux ones (as in AWS), so a request that forgets the OS filter gets both.
WINDOWS_FACTOR = 1.92
PRODUCTS = ("Linux/UNIX", "Windows")
PREVIOUS_AGE = timedelta(hours=6)
PAGE_MAX = 1000
PRICING_PAGE_MAX = 100
TARGET_PREFIX = "AWSPriceListService."


def on_demand(instance_type):
    """The table's Linux on-demand price of a type, ``None`` when the table has no figure for it."""
    family, size = instance_type.split(".", 1) if "." in instance_type else (instance_type, "")
    if family not in ON_DEMAND_LARGE or size not in SIZES:
        return None
    return round(ON_DEMAND_LARGE[family] * SIZES[size], 6)


def spot_fraction(instance_type, zone):
    return 0.30 + (zlib.crc32(f"{instance_type}|{zone}".encode()) % 17) / 100


def spot_price(instance_type, zone, product="Linux/UNIX", previous=False):
    price = on_demand(instance_type)
    if price is None:
        return None
    if product == "Windows":
        price *= WINDOWS_FACTOR
    return round(price * (spot_fraction(instance_type, zone) + (0.02 if previous else 0.0)), 4)


def _current_age(instance_type, zone):
    return timedelta(minutes=5 + zlib.crc32(f"{zone}|{instance_type}".encode()) % 50)


def _as_datetime(value):
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value)
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def history(offerings, now, start=None, end=None, products=PRODUCTS):
    """Spot price records of the offered (type, zone) pairs, newest first, as AWS pages them."""
    end = end or now
    records = []
    for instance_type, zone in offerings:
        for product in products:
            current = spot_price(instance_type, zone, product)
            if current is None:
                continue
            # A price holds until it changes: the current one took effect a few minutes before the hour began.
            changed = now.replace(minute=0, second=0, microsecond=0) - _current_age(instance_type, zone)
            pool = [
                (changed - PREVIOUS_AGE, spot_price(instance_type, zone, product, previous=True)),
                (changed, current),
            ]
            in_effect = [r for r in pool if start is not None and r[0] <= start]
            wanted = [r for r in pool if (start is None or r[0] > start) and r[0] <= end]
            if in_effect:
                wanted.append(in_effect[-1])
            records += [
                {
                    "InstanceType": instance_type,
                    "ProductDescription": product,
                    "SpotPrice": f"{price:.6f}",
                    "AvailabilityZone": zone,
                    "Timestamp": stamp,
                }
                for stamp, price in wanted
            ]
    records.sort(
        key=lambda r: (-r["Timestamp"].timestamp(), r["InstanceType"], r["AvailabilityZone"], r["ProductDescription"])
    )
    return records


def _page(items, token, size, limit):
    if size is not None and not 1 <= int(size) <= limit:
        raise ValueError(f"MaxResults must be between 1 and {limit}")
    size = int(size) if size is not None else limit
    offset = int(token) if token else 0
    page = items[offset : offset + size]
    following = offset + size if offset + size < len(items) else None
    return page, (str(following) if following is not None else None)


def _ec2_invalid(message):
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError("InvalidParameterValue", message)


def install_spot_history(context):
    from moto.core.responses import ActionResult
    from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS
    from moto.ec2.responses.spot_instances import SpotInstances

    def describe_spot_price_history(self):
        filters = self._filters_from_querystring()
        types = set(self._get_param("InstanceTypes", []) or []) | set(filters.get("instance-type", []))
        zones = set(filters.get("availability-zone", []))
        if self._get_param("AvailabilityZone"):
            zones.add(self._get_param("AvailabilityZone"))
        products = [
            p
            for p in PRODUCTS
            if p in (self._get_param("ProductDescriptions", []) or filters.get("product-description") or PRODUCTS)
        ]
        offered = INSTANCE_TYPE_OFFERINGS["availability-zone"].get(self.ec2_backend.region_name, [])
        pairs = sorted(
            {
                (o["InstanceType"], o["Location"])
                for o in offered
                if (not types or o["InstanceType"] in types) and (not zones or o["Location"] in zones)
            }
        )
        now = context.now()
        records = history(
            pairs,
            now,
            start=_as_datetime(self._get_param("StartTime")),
            end=_as_datetime(self._get_param("EndTime")),
            products=products,
        )
        try:
            page, token = _page(records, self._get_param("NextToken"), self._get_param("MaxResults"), PAGE_MAX)
        except ValueError as exc:
            raise _ec2_invalid(str(exc)) from exc
        result = {"SpotPriceHistory": page}
        if token:
            result["NextToken"] = token
        return ActionResult(result)

    SpotInstances.describe_spot_price_history = describe_spot_price_history


# ---- the Price List Query API -----------------------------------------------------------------
def _product(instance_type, operating_system, price, capacity="Used"):
    family, size = instance_type.split(".", 1) if "." in instance_type else (instance_type, "")
    sku = f"SBX{zlib.crc32(f'{instance_type}|{operating_system}|{capacity}'.encode()):08X}"
    offer, rate = "JRTCKXETXF", "6YS6EN2CT7"
    return {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "servicecode": "AmazonEC2",
                "location": LOCATION,
                "locationType": "AWS Region",
                "regionCode": PRICED_REGION,
                "instanceType": instance_type,
                "instanceFamily": family,
                "currentGeneration": "Yes",
                "operatingSystem": operating_system,
                "tenancy": "Shared",
                "preInstalledSw": "NA",
                "licenseModel": "No License required",
                "capacitystatus": capacity,
                "marketoption": "OnDemand",
                "usagetype": f"BoxUsage:{instance_type}" if capacity == "Used" else f"UnusedBox:{instance_type}",
                "operation": "RunInstances" if operating_system == "Linux" else "RunInstances:0002",
                "vcpu": str(max(2, int(2 * SIZES[size]))),
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                f"{sku}.{offer}": {
                    "priceDimensions": {
                        f"{sku}.{offer}.{rate}": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "beginRange": "0",
                            "appliesTo": [],
                            "rateCode": f"{sku}.{offer}.{rate}",
                            "description": f"${price:.4f} per On Demand {operating_system} {instance_type} Instance Hour",
                            "pricePerUnit": {"USD": f"{price:.10f}"},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2025-11-01T00:00:00Z",
                    "offerTermCode": offer,
                    "termAttributes": {},
                }
            }
        },
        "version": "20251101000000",
        "publicationDate": "2025-11-01T00:00:00Z",
    }


def catalogue():
    """Every priced product of the table: Linux and Windows, used and unused-reservation capacity."""
    products = []
    for family in sorted(ON_DEMAND_LARGE):
        for size in SIZES:
            instance_type = f"{family}.{size}"
            if size == "nano" and not family.startswith("t"):
                continue
            price = on_demand(instance_type)
            products.append(_product(instance_type, "Linux", price))
            products.append(_product(instance_type, "Windows", round(price * WINDOWS_FACTOR, 6)))
            products.append(_product(instance_type, "Linux", price, capacity="UnusedCapacityReservation"))
    return products


class PricingError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _matches(attributes, flt):
    kind, field, value = flt.get("Type"), flt.get("Field"), flt.get("Value")
    if not field or value is None:
        raise PricingError("InvalidParameterException", "Each filter needs Type, Field and Value")
    have = attributes.get(field)
    if kind in ("TERM_MATCH", "EQUALS"):
        return have == value
    if kind == "CONTAINS":
        return have is not None and value in have
    if kind == "ANY_OF":
        return have in value.split(",")
    if kind == "NONE_OF":
        return have not in value.split(",")
    raise PricingError("InvalidParameterException", f"Invalid filter type {kind!r}")


def get_products(request, products):
    if request.get("ServiceCode") is None:
        raise PricingError("InvalidParameterException", "ServiceCode is required")
    if request.get("FormatVersion", "aws_v1") != "aws_v1":
        raise PricingError("InvalidParameterException", f"Invalid FormatVersion {request['FormatVersion']!r}")
    found = [
        p
        for p in products
        if p["serviceCode"] == request["ServiceCode"]
        and all(_matches(p["product"]["attributes"], flt) for flt in request.get("Filters") or [])
    ]
    try:
        page, token = _page(found, request.get("NextToken"), request.get("MaxResults"), PRICING_PAGE_MAX)
    except ValueError as exc:
        raise PricingError("InvalidParameterException", str(exc)) from exc
    answer = {"FormatVersion": "aws_v1", "PriceList": [json.dumps(p) for p in page]}
    if token:
        answer["NextToken"] = token
    return answer


def _signing_service(environ):
    try:
        return environ.get("HTTP_AUTHORIZATION", "").split("Credential=", 1)[1].split("/")[3]
    except IndexError:
        return None


def install_pricing_api(context):
    from moto.moto_server import werkzeug_app

    products = catalogue()
    dispatcher = werkzeug_app.DomainDispatcherApplication
    if getattr(dispatcher.__call__, "__sandbox_pricing__", False):
        return
    moto_call = dispatcher.__call__

    def reply(start_response, status, document):
        body = json.dumps(document).encode()
        start_response(
            status,
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", "sandbox-pricing"),
            ],
        )
        return [body]

    def call(self, environ, start_response):
        if _signing_service(environ) != "pricing":
            return moto_call(self, environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        operation = environ.get("HTTP_X_AMZ_TARGET", "")[len(TARGET_PREFIX) :]
        try:
            if operation != "GetProducts":
                raise PricingError(
                    "UnknownOperationException", f"the sandbox's Pricing API has no {operation or 'operation'}"
                )
            context.record("pricing_requests", request)
            if context.controls_state.get("pricing", {}).get("deny"):
                raise PricingError(
                    "AccessDeniedException",
                    f"User: arn:aws:iam::{context.account_id}:user/sandbox is not "
                    "authorized to perform: pricing:GetProducts",
                )
            return reply(start_response, "200 OK", get_products(request, products))
        except PricingError as error:
            return reply(
                start_response, f"{error.status} Bad Request", {"__type": error.code, "message": error.message}
            )

    call.__sandbox_pricing__ = True
    dispatcher.__call__ = call

    @context.control("pricing")
    def _pricing_control(payload):
        """``{"deny": true}``: GetProducts answers AccessDeniedException; ``{}``: it answers again."""
        if payload.get("deny"):
            context.controls_state["pricing"] = {"deny": True}
        else:
            context.controls_state.pop("pricing", None)
        return {
            "pricing": context.controls_state.get("pricing", {}),
            "requests": len(context.records.get("pricing_requests", [])),
        }


def install(context):
    install_spot_history(context)
    install_pricing_api(context)
