"""playbooks/awx.yml run as a user runs it, against a double of the controller's API on 127.0.0.1:
check mode writes nothing, the first run creates what awx/job_templates.yml describes (with the surveys the
controller accepts), a second run changes nothing, a changed variables file updates only what it touches,
and bad input fails clearly before anything is written."""

import copy
import json
import os
import subprocess

import pytest
import yaml

from sandbox import scenario

from .common import REPO, example_variables, job_templates, rendered_survey
from .controller import Controller, survey_errors

IMAGE = "registry.example.com/ec2spot-autorecover-ee:0.1.0"


def run(controller_url, tmp_path, variables, *options, **env):
    path = tmp_path / "vars.yml"
    path.write_text(yaml.safe_dump(variables))
    environment = dict(
        os.environ,
        NO_PROXY="127.0.0.1",
        CONTROLLER_HOST=controller_url,
        CONTROLLER_USERNAME="admin",
        CONTROLLER_PASSWORD="secret",
    )
    environment.update(env)
    report, returncode, _stderr = scenario.ansible_playbook(
        [
            "playbooks/awx.yml",
            "-e",
            f"@{path}",
            "-e",
            "awx_aws_credential='AWS prod'",
            "-e",
            f"awx_execution_environment_image={IMAGE}",
            *options,
        ],
        environment,
        REPO,
    )
    report["rc"] = report.get("rc", returncode)
    return report


def stats(report):
    return report["stats"]["localhost"]


def failure(report):
    for task in report["plays"][0]["tasks"]:
        result = task["hosts"].get("localhost", {})
        if result.get("failed"):
            return result.get("msg", "")
    return ""


@pytest.fixture(scope="module")
def controller():
    double = Controller(
        playbooks=[f"playbooks/{p.name}" for p in (REPO / "playbooks").glob("*.yml")], credentials=["AWS prod"]
    )
    url = double.start()
    yield double, url
    double.stop()


@pytest.fixture(scope="module")
def runs(controller, tmp_path_factory):
    """check mode, first run, second run, then a run with a service added: what each reported and sent."""
    double, url = controller
    tmp_path = tmp_path_factory.mktemp("awx")
    recorded = {}
    variables = example_variables()
    grown = copy.deepcopy(variables)
    grown["ec2spot_services"].append(dict(grown["ec2spot_services"][0], name="redis", lineage="redisdata"))
    for name, given, options in (
        ("check", variables, ["--check"]),
        ("first", variables, []),
        ("second", variables, []),
        ("grown-check", grown, ["--check"]),
        ("grown", grown, []),
    ):
        before = len(double.requests)
        report = run(url, tmp_path, given, *options)
        recorded[name] = (report, double.requests[before:], double.snapshot())
    return recorded


def writes(requests):
    return [(r["method"], r["path"]) for r in requests if r["method"] != "GET"]


def test_syntax_check_from_the_repository_and_as_collection_playbook():
    for target in ("playbooks/awx.yml", "ec2spot.autorecover.awx"):
        done = subprocess.run(
            ["ansible-playbook", "--syntax-check", target], cwd=REPO, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_check_mode_reports_changes_and_writes_nothing(runs):
    report, requests = runs["check"][:2]
    assert report["rc"] == 0, failure(report)
    assert stats(report)["changed"] > 0
    assert writes(requests) == []


def test_first_run_creates_everything_the_data_describes(runs):
    report, requests, double = runs["first"]
    assert report["rc"] == 0, failure(report)
    created = [r["path"] for r in requests if r["method"] == "POST"]
    assert created[:3] == ["/api/v2/execution_environments/", "/api/v2/projects/", "/api/v2/inventories/"]
    assert not [r for r in requests if r["method"] == "PATCH"]

    organization = double.by_name("organizations", "Default")["id"]
    environment = double.by_name("execution_environments", "ec2spot-autorecover")
    assert (environment["image"], environment["organization"], environment["pull"]) == (IMAGE, organization, "missing")
    project = double.by_name("projects", "ec2spot-autorecover")
    assert (project["scm_type"], project["scm_url"], project["scm_branch"], project["credential"]) == (
        "git",
        "https://github.com/ec2spot/autorecover.git",
        "main",
        None,
    )
    inventory = double.by_name("inventories", "ec2spot-autorecover")
    variables = example_variables()
    assert json.loads(inventory["variables"]) == {
        key: variables.get(key, {}) for key in ("ec2spot_region", "ec2spot_control_plane", "ec2spot_services")
    }

    services = [service["name"] for service in variables["ec2spot_services"]]
    credential = double.by_name("credentials", "AWS prod")["id"]
    for template in job_templates():
        made = double.by_name("job_templates", template["name"])
        expected = {
            "playbook": template["playbook"],
            "job_type": "run",
            "project": project["id"],
            "inventory": inventory["id"],
            "execution_environment": environment["id"],
            "organization": organization,
            "description": template["description"],
            "ask_job_type_on_launch": True,
            "ask_diff_mode_on_launch": template["ask_diff_mode_on_launch"],
            "survey_enabled": bool(template["survey"]),
        }
        assert {key: made[key] for key in expected} == expected, template["name"]
        assert double.job_template_credentials[made["id"]] == [credential]
        if template["survey"]:
            survey = double.surveys[made["id"]]
            assert survey == rendered_survey(template, services)
            assert survey_errors(survey) == []
            assert "ec2spot_choices" not in json.dumps(survey)
        else:
            assert made["id"] not in double.surveys


def test_service_questions_offer_the_variables_files_services(runs):
    double = runs["first"][2]
    restore = double.by_name("job_templates", "ec2spot restore")
    questions = {q["variable"]: q for q in double.surveys[restore["id"]]["spec"]}
    assert questions["restore_service"]["choices"] == [s["name"] for s in example_variables()["ec2spot_services"]]
    assert questions["restore_target"]["choices"] == ["standalone", "group"]


def test_second_run_changes_nothing(runs):
    report, requests = runs["second"][:2]
    assert report["rc"] == 0, failure(report)
    assert stats(report)["changed"] == 0
    assert writes(requests) == []


def test_a_new_service_updates_the_inventory_and_the_service_questions_only(runs):
    report, requests = runs["grown-check"][:2]
    assert report["rc"] == 0, failure(report)
    assert stats(report)["changed"] > 0 and writes(requests) == []

    report, requests, double = runs["grown"]
    assert report["rc"] == 0, failure(report)
    inventory = double.by_name("inventories", "ec2spot-autorecover")
    survey_paths = [
        f"/api/v2/job_templates/{double.by_name('job_templates', t['name'])['id']}/survey_spec/"
        for t in job_templates()
        if any(q.get("ec2spot_choices") for q in t["survey"])
    ]
    assert sorted(writes(requests)) == sorted(
        [("PATCH", f"/api/v2/inventories/{inventory['id']}/")] + [("POST", p) for p in survey_paths]
    )
    patch = next(r for r in requests if r["method"] == "PATCH")
    assert list(patch["body"]) == ["variables"]
    assert [s["name"] for s in json.loads(inventory["variables"])["ec2spot_services"]] == ["postgres", "redis"]
    drill = double.surveys[double.by_name("job_templates", "ec2spot drill")["id"]]
    assert drill["spec"][0]["choices"] == ["postgres", "redis"]


def test_missing_controller_fails_before_any_request(controller, tmp_path):
    double, url = controller
    before = len(double.requests)
    report = run(url, tmp_path, example_variables(), CONTROLLER_HOST="")
    assert report["rc"] != 0
    assert "awx.yml needs the controller" in failure(report)
    assert len(double.requests) == before


def test_wrong_password_fails_without_writing(controller, tmp_path):
    double, url = controller
    before = len(double.requests)
    report = run(url, tmp_path, example_variables(), CONTROLLER_PASSWORD="wrong")
    assert report["rc"] != 0
    assert "401" in json.dumps(report["plays"][0]["tasks"])
    assert writes(double.requests[before:]) == []
