"""spot_price_info through ``ansible-playbook`` against the sandbox, and deploy.yml's price summary.

The sandbox answers DescribeSpotPriceHistory and the Price List API with fixed, published-looking
figures (sandbox/rules/pricing.py): m5.large $0.096/h on demand, m5.xlarge $0.192/h (seed 003), Spot
a fraction of that which differs by zone; moto offers m6i.large nowhere in us-east-1e.
"""

import json
import os

import pytest

from sandbox import world as sandbox_world
from sandbox.rules import pricing as sandbox_pricing

from .conftest import REPO, ansible_playbook, task

PLAYBOOK = os.path.join(REPO, "playbooks", "deploy.yml")


@pytest.fixture
def pricing_denied(box):
    box.call("pricing", deny=True)
    yield
    box.call("pricing")


def pricing_requests(box):
    return box.call("pricing")["requests"]


def pool(result, instance_type, zone):
    [found] = [p for p in result["prices"] if (p["instance_type"], p["availability_zone"]) == (instance_type, zone)]
    return found


def test_prices_in_the_subnets_zones_with_savings(playbook, sandbox):
    subnets = sandbox["world"]["subnets"]
    run = playbook(
        [
            task(
                "spot_price_info",
                instance_types=["m5.large", {"type": "m5.xlarge", "weight": 2}],
                subnet_ids=[subnets["us-east-1a"], subnets["us-east-1b"]],
            )
        ]
    )
    result = run.last
    assert run.returncode == 0 and result["changed"] is False, result
    assert result["availability_zones"] == ["us-east-1a", "us-east-1b"]
    assert (result["currency"], result["hours_per_month"], result["on_demand_available"]) == ("USD", 730, True)
    for zone in ("us-east-1a", "us-east-1b"):
        large, xlarge = pool(result, "m5.large", zone), pool(result, "m5.xlarge", zone)
        # the published on-demand prices (seed 003: m5.xlarge $0.192/h) and the sandbox's Spot figures
        assert (large["on_demand_price"], xlarge["on_demand_price"]) == (0.096, 0.192)
        assert large["spot_price"] == sandbox_pricing.spot_price("m5.large", zone)
        assert xlarge["spot_price"] == sandbox_pricing.spot_price("m5.xlarge", zone)
        assert large["savings_per_hour"] == pytest.approx(0.096 - large["spot_price"])
        assert large["savings_per_month"] == pytest.approx((0.096 - large["spot_price"]) * 730, abs=0.005)
        assert xlarge["spot_price_per_unit"] == pytest.approx(xlarge["spot_price"] / 2)
    # the zones' prices differ, and the cheapest pool is the lowest Spot price per capacity unit
    assert pool(result, "m5.large", "us-east-1a")["spot_price"] != pool(result, "m5.large", "us-east-1b")["spot_price"]
    cheapest = min(result["prices"], key=lambda p: p["spot_price_per_unit"])
    summary = result["summary"]
    assert (summary["cheapest"]["instance_type"], summary["cheapest"]["availability_zone"]) == (
        cheapest["instance_type"],
        cheapest["availability_zone"],
    )
    assert summary["spot_price_min"] == min(p["spot_price"] for p in result["prices"])
    assert (summary["on_demand_price_min"], summary["on_demand_price_max"]) == (0.096, 0.192)
    assert result["price_warnings"] == []


def test_a_type_without_a_spot_offering_in_a_zone_is_reported_as_such(playbook):
    run = playbook(
        [task("spot_price_info", instance_types=["m6i.large"], availability_zones=["us-east-1a", "us-east-1e"])]
    )
    result = run.last
    assert run.returncode == 0, result
    assert pool(result, "m6i.large", "us-east-1a")["spot_offered"] is True
    missing = pool(result, "m6i.large", "us-east-1e")
    assert (missing["spot_offered"], missing["spot_price"], missing["savings_per_hour"]) == (False, None, None)
    assert missing["on_demand_price"] == 0.096
    [by_type] = result["instance_types"]
    assert (by_type["spot_zones"], by_type["no_spot_offering_zones"]) == (["us-east-1a"], ["us-east-1e"])
    assert result["summary"]["pools_without_spot"] == 1


def test_check_mode_reads_the_same_prices(playbook):
    params = dict(instance_types=["t3.micro", "c5.large", "r5.large"], availability_zones=["us-east-1c"])
    normal, checked = (
        playbook([task("spot_price_info", **params)]),
        playbook([task("spot_price_info", **params)], check=True),
    )
    assert normal.returncode == 0 and checked.returncode == 0, checked.last
    assert checked.last["changed"] is False

    def figures(result):
        return [{k: v for k, v in p.items() if k != "spot_price_timestamp"} for p in result["prices"]]

    assert figures(checked.last) == figures(normal.last)
    assert {p["instance_type"]: p["on_demand_price"] for p in checked.last["prices"]} == {
        "t3.micro": 0.0104,
        "c5.large": 0.085,
        "r5.large": 0.126,
    }


def test_an_unknown_instance_type_fails_with_its_name(playbook, box):
    before = pricing_requests(box)
    run = playbook(
        [
            dict(
                task("spot_price_info", instance_types=["m5.large", "m5.huge"], availability_zones=["us-east-1a"]),
                ignore_errors=True,
            )
        ]
    )
    assert run.last["failed"] is True
    assert "unknown instance type" in run.last["msg"] and "m5.huge" in run.last["msg"], run.last["msg"]
    assert pricing_requests(box) == before  # refused before anything was priced


def test_an_unknown_zone_fails_with_its_name(playbook):
    run = playbook(
        [
            dict(
                task("spot_price_info", instance_types=["m5.large"], availability_zones=["us-east-1a", "us-east-1z"]),
                ignore_errors=True,
            )
        ]
    )
    assert run.last["failed"] is True and "us-east-1z" in run.last["msg"], run.last["msg"]


def test_denied_pricing_api_keeps_the_spot_prices_and_warns(playbook, pricing_denied):
    run = playbook(
        [task("spot_price_info", instance_types=["m5.large"], availability_zones=["us-east-1a", "us-east-1b"])]
    )
    result = run.last
    assert run.returncode == 0 and not result.get("failed"), result
    assert result["on_demand_available"] is False
    assert sorted((p["instance_type"], p["availability_zone"]) for p in result["prices"]) == [
        ("m5.large", "us-east-1a"),
        ("m5.large", "us-east-1b"),
    ]
    assert all(
        p["spot_price"] > 0 and p["on_demand_price"] is None and p["savings_per_month"] is None
        for p in result["prices"]
    )
    assert (
        "AccessDeniedException" in result["price_warnings"][0]
        and "showing Spot prices only" in result["price_warnings"][0]
    )
    assert any("AccessDeniedException" in w for w in result.get("warnings", []))


def test_unreachable_pricing_api_keeps_the_spot_prices_and_warns(playbook):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused (after botocore's three attempts).
    run = playbook(
        [
            task(
                "spot_price_info",
                instance_types=["m5.large"],
                availability_zones=["us-east-1a"],
                pricing_endpoint_url="http://127.0.0.1:9",
            )
        ]
    )
    result = run.last
    assert run.returncode == 0 and not result.get("failed"), result
    assert result["prices"][0]["spot_price"] == sandbox_pricing.spot_price("m5.large", "us-east-1a")
    assert result["prices"][0]["on_demand_price"] is None
    assert "on-demand prices unavailable" in result["price_warnings"][0]


def test_spot_only_asks_the_pricing_api_nothing(playbook, box):
    before = pricing_requests(box)
    run = playbook(
        [task("spot_price_info", instance_types=["m5.large"], availability_zones=["us-east-1a"], on_demand=False)]
    )
    assert run.returncode == 0 and run.last["prices"][0]["spot_price"] > 0
    assert run.last["price_warnings"] == [] and pricing_requests(box) == before


# ---- deploy.yml's summary ------------------------------------------------------------------------------
def service(world, name, instance_types):
    return {
        "name": name,
        "lineage": f"{name}-data",
        "image_id": world["image_id"],
        "instance_types": instance_types,
        "subnet_ids": [world["subnets"]["us-east-1a"], world["subnets"]["us-east-1b"]],
        "instance_profile": "it-price-given-instance",
        "data_volume": {"size": 20},
        "agent": {"app_start_commands": ["echo start"]},
    }


def price_vars(world, **extra):
    document = {
        "ec2spot_region": "us-east-1",
        "ec2spot_control_plane": {"name": "it-prices", "log_retention_days": 7},
        "ec2spot_services": [service(world, "it-price-pg", ["m6i.large", "m5.large"])],
    }
    document.update(extra)
    return document


@pytest.fixture(scope="module")
def deploy_check(sandbox, session, tmp_path_factory):
    """deploy.yml in check mode (it creates nothing; the price summary still reads prices)."""
    sandbox_world.managed_instance_profile(
        session.client("iam", endpoint_url=sandbox["endpoint"]), "it-price-given-instance"
    )
    variables = tmp_path_factory.mktemp("prices") / "vars.json"

    def run(**extra):
        variables.write_text(json.dumps(price_vars(sandbox["world"], **extra)))
        return ansible_playbook(sandbox, PLAYBOOK, "-e", f"@{variables}", "--check")

    return run


def price_lines(raw):
    return [
        result.get("msg")
        for play in raw["plays"]
        for entry in play["tasks"]
        if entry["task"]["name"] == "Price summary"
        for result in entry["hosts"].get("localhost", {}).get("results", [])
        if not result.get("skipped") and "skip_reason" not in result
    ]  # the json callback drops "skipped" from items


def test_deploy_summary_prints_spot_against_on_demand_per_service(deploy_check, sandbox):
    # the second service's m5d.large has no Spot offering in the sandbox (its family is not in the price table)
    world = sandbox["world"]
    raw, code = deploy_check(
        ec2spot_services=[
            service(world, "it-price-pg", ["m6i.large", "m5.large"]),
            service(world, "it-price-web", [{"type": "m5d.large", "weight": 1}, {"type": "m5.xlarge", "weight": 2}]),
        ]
    )
    assert code == 0, raw["stats"]
    line, web = price_lines(raw)
    spot = {
        zone: {t: sandbox_pricing.spot_price(t, zone) for t in ("m6i.large", "m5.large")}
        for zone in ("us-east-1a", "us-east-1b")
    }
    prices = [p for zone in spot.values() for p in zone.values()]
    low, high = min(prices), max(prices)
    [(cheap_zone, cheap_type)] = [(z, t) for z, by_type in spot.items() for t, p in by_type.items() if p == low][:1]
    assert line.startswith(
        f"it-price-pg: Spot ${low:.4f}-${high:.4f}/h (m6i.large, m5.large in us-east-1a, us-east-1b)"
    ), line
    assert "against $0.0960/h on demand" in line
    assert f"${0.096 - high:.4f}-${0.096 - low:.4f}/h less" in line
    assert f"${(0.096 - high) * 730:.2f}-${(0.096 - low) * 730:.2f} a month per instance (730 h)" in line
    assert f"cheapest {cheap_type} in {cheap_zone} at ${low:.4f}/h" in line
    assert "no Spot offering" not in line
    xlarge = {zone: sandbox_pricing.spot_price("m5.xlarge", zone) for zone in ("us-east-1a", "us-east-1b")}
    assert web.startswith(f"it-price-web: Spot ${min(xlarge.values()):.4f}-${max(xlarge.values()):.4f}/h"), web
    assert "against $0.1920/h on demand" in web
    assert web.endswith("; no Spot offering for m5d.large in us-east-1a, m5d.large in us-east-1b"), web


def test_deploy_summary_survives_a_denied_pricing_api(deploy_check, pricing_denied):
    raw, code = deploy_check()
    assert code == 0 and raw["stats"]["localhost"]["failures"] == 0, raw["stats"]
    [line] = price_lines(raw)
    assert "on-demand price unavailable" in line and "AccessDeniedException" in line and "cheapest" in line, line


def test_deploy_summary_can_be_turned_off(deploy_check, box):
    before = pricing_requests(box)
    raw, code = deploy_check(ec2spot_price_summary=False)
    assert code == 0, raw["stats"]
    assert price_lines(raw) == [] and pricing_requests(box) == before
