"""awx/job_templates.yml and playbooks/specs: every survey is valid by the controller's rules, every survey
variable is an option of its playbook's argument spec with a compatible type, and the specs accept the
example variables file (and refuse bad input) as ansible.builtin.validate_argument_spec would."""

import copy
import json
import re
import subprocess

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from .common import (
    PLAYBOOKS,
    REPO,
    VARIABLES_FILE_OPTIONS,
    example_variables,
    job_templates,
    load,
    playbook_of,
    rendered_survey,
    spec_options,
)
from .controller import SURVEY_TYPES, survey_errors

SERVICES = [service["name"] for service in example_variables()["ec2spot_services"]]
TEMPLATES = {playbook_of(template): template for template in job_templates()}
BOOLEAN_STRINGS = {"true", "false"}
# Spec types a survey answer of each controller type converts to without loss (validate_argument_spec's conversions).
COMPATIBLE = {
    "text": {"str", "path", "raw"},
    "textarea": {"str", "raw"},
    "password": {"str", "raw"},
    "integer": {"int", "float", "raw"},
    "float": {"float", "raw"},
    "multiselect": {"list", "raw"},
}
JOB_TEMPLATE_FIELDS = {
    "name",
    "description",
    "playbook",
    "job_type",
    "ask_job_type_on_launch",
    "ask_diff_mode_on_launch",
    "survey",
}


def valid_input(playbook, **answers):
    return dict(copy.deepcopy(example_variables()), **answers)


def spec_errors(playbook, values):
    options = spec_options(playbook)
    result = ArgumentSpecValidator(options).validate({key: value for key, value in values.items() if key in options})
    return result.error_messages


def test_a_job_template_and_a_spec_for_every_playbook():
    assert sorted(TEMPLATES) == sorted(PLAYBOOKS)
    for playbook, template in TEMPLATES.items():
        assert template["playbook"] == f"playbooks/{playbook}.yml"
        assert set(template) == JOB_TEMPLATE_FIELDS, template["name"]
        assert template["job_type"] == "run"
        # A dry run is the controller's check job type, prompted at launch (a survey cannot turn check mode on).
        assert template["ask_job_type_on_launch"] is True
        assert (REPO / "playbooks" / "specs" / f"{playbook}.yml").is_file()


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_surveys_are_valid_by_the_controllers_rules(playbook):
    template = TEMPLATES[playbook]
    if not template["survey"]:
        assert playbook == "deploy"  # everything deploy.yml takes is in the variables file
        return
    survey = rendered_survey(template, SERVICES)
    assert survey_errors(survey) == []
    for question in survey["spec"]:
        assert question["type"] in SURVEY_TYPES
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", question["variable"])
        assert question["question_name"] and question["question_description"]
        if question["type"] == "multiplechoice":
            assert question["choices"] and question.get("default", "") in [""] + list(question["choices"])
        if question["type"] in ("text", "textarea", "integer", "float"):
            assert (
                isinstance(question["min"], int)
                and isinstance(question["max"], int)
                and question["min"] <= question["max"]
            )


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"type": "boolean"}, "not one of the allowed question types"),
        (
            {"type": "multiplechoice", "choices": ["a", "b"], "default": "c"},
            "Default choice must be answered from the choices",
        ),
        ({"type": "multiplechoice", "default": "a"}, "must specify choices"),
        ({"type": "integer", "default": "900"}, "expected to be int"),
        ({"type": "integer", "default": 5, "min": 10, "max": 20}, "not between 10 and 20"),
        ({"type": "text", "default": "x" * 70, "min": 0, "max": 64}, "not between 0 and 64 characters"),
        ({"type": "text", "min": "0"}, "limit in survey question 0 expected to be integer"),
        ({"required": "yes"}, "expected to be boolean"),
    ],
)
def test_the_survey_rules_refuse_what_the_controller_refuses(broken, message):
    question = dict({"question_name": "Q", "variable": "v", "type": "text", "required": False}, **broken)
    if broken.get("type") == "multiplechoice" and "choices" not in broken:
        question.pop("choices", None)
    errors = survey_errors({"name": "t", "description": "", "spec": [question]})
    assert any(message in error for error in errors), errors


def test_the_survey_rules_refuse_duplicates_and_empty_surveys():
    question = {"question_name": "Q", "variable": "v", "type": "text", "required": False}
    assert "duplicated" in survey_errors({"name": "t", "description": "", "spec": [question, question]})[0]
    assert survey_errors({"name": "t", "description": "", "spec": []}) == ["'spec' doesn't contain any items."]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_survey_variable_is_a_compatible_option_of_the_playbooks_spec(playbook):
    options = spec_options(playbook)
    for question in TEMPLATES[playbook]["survey"]:
        option = options.get(question["variable"])
        assert option, f"{question['variable']} is not in playbooks/specs/{playbook}.yml"
        name = question["variable"]
        if question.get("ec2spot_choices") == "services":
            assert (question["type"], option["type"]) == ("multiplechoice", "str"), name
            # An unanswered optional service question must mean what the playbook's default means.
            assert question["required"] or option.get("default") == question.get("default"), name
        elif question["type"] == "multiplechoice":
            choices = set(question["choices"])
            if option["type"] == "bool":
                assert choices == BOOLEAN_STRINGS, name
                assert question["default"] == str(option["default"]).lower(), name
            else:
                assert option["type"] == "str", name
                assert not option.get("choices") or choices <= set(option["choices"]), name
                assert question.get("default", "") == "" or question["default"] == option.get("default"), name
        else:
            assert option["type"] in COMPATIBLE[question["type"]], name
            assert question.get("default", "") in ("", option.get("default")), name
        # What the playbook needs, the survey asks for.
        assert question["required"] or not option.get("required"), name


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_survey_answer_passes_the_playbooks_spec(playbook):
    """Each question's default and each of its choices, sent as the controller sends them, is valid input."""
    required = {
        q["variable"]: SERVICES[0] for q in TEMPLATES[playbook]["survey"] if q["required"] and q.get("ec2spot_choices")
    }
    for question in rendered_survey(TEMPLATES[playbook], SERVICES)["spec"]:
        answers = list(question.get("choices", [])) + (
            [question["default"]] if question.get("default", "") != "" else []
        )
        for answer in answers:
            assert (
                spec_errors(playbook, valid_input(playbook, **dict(required, **{question["variable"]: answer}))) == []
            ), (question["variable"], answer)


def test_the_variables_file_is_described_alike_in_every_spec():
    first = {name: spec_options("deploy")[name] for name in VARIABLES_FILE_OPTIONS}
    for playbook in PLAYBOOKS:
        options = spec_options(playbook)
        assert {name: options[name] for name in VARIABLES_FILE_OPTIONS} == first, playbook
        spec = load(f"playbooks/specs/{playbook}.yml")["argument_specs"]["main"]
        assert spec["short_description"] and spec["description"]
        for name, option in options.items():
            assert option.get("description") and option.get("type"), (playbook, name)


@pytest.mark.parametrize(
    "playbook, answers",
    [
        ("deploy", {}),
        ("backup", {}),
        ("backup", {"backup_service": "pg", "backup_wait": "true"}),
        ("drill", {"drill_service": "pg"}),
        ("drill", {"drill_service": "pg", "drill_wait_timeout": 600}),
        ("restore", {"restore_service": "pg"}),
        (
            "restore",
            {
                "restore_service": "pg",
                "restore_target": "standalone",
                "restore_market": "spot",
                "restore_source": "current",
                "restore_instance_type": "m6i.large",
                "restore_subnet_id": "subnet-0123",
                "restore_fence": "true",
            },
        ),
        ("restore", {"restore_service": "pg", "restore_target": "group", "restore_before": "2026-11-20T00:00:00Z"}),
    ],
)
def test_the_specs_accept_the_example_variables_file(playbook, answers):
    assert spec_errors(playbook, valid_input(playbook, **answers)) == []


@pytest.mark.parametrize(
    "playbook, change, message",
    [
        ("deploy", {"ec2spot_region": None}, "ec2spot_region"),
        ("deploy", {"ec2spot_services": [{"name": "pg"}]}, "lineage"),
        ("backup", {"ec2spot_services": [{"name": "pg", "lineage": "pgdata", "bakup": {}}]}, "bakup"),
        ("drill", {}, "drill_service"),
        ("drill", {"drill_service": "pg", "drill_wait_timeout": "soon"}, "drill_wait_timeout"),
        ("restore", {"restore_service": "pg", "restore_market": "reserved"}, "restore_market"),
        ("restore", {"restore_service": "pg", "restore_target": "somewhere"}, "restore_target"),
    ],
)
def test_the_specs_refuse_bad_input(playbook, change, message):
    values = {k: v for k, v in valid_input(playbook, **change).items() if v is not None}
    errors = spec_errors(playbook, values)
    assert errors and any(message in error for error in errors), errors


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_spec_defaults_are_the_playbooks_defaults(playbook):
    """A variable the playbook sets in its play `vars` (its default) has the same default in the spec."""
    path = REPO / "playbooks" / f"{playbook}.yml"
    assert path.exists(), f"playbooks/{playbook}.yml has a survey but is not in the collection"
    options = spec_options(playbook)
    for name, value in (load(f"playbooks/{playbook}.yml")[0].get("vars") or {}).items():
        if isinstance(value, str) and "{{" in value:
            continue  # derived from other variables, not input
        assert name in options, f"{name} (set in {playbook}.yml) is not in its spec"
        if options[name].get("required"):
            assert value in ("", None), f"{name} is required by the spec but {playbook}.yml defaults it to {value!r}"
        else:
            assert options[name].get("default") == value, name


def test_validate_argument_spec_takes_the_spec_files_as_their_comment_says(tmp_path):
    """A real ansible-playbook run: ansible.builtin.validate_argument_spec with each spec file, as the playbooks will."""
    tasks = [
        {
            "name": f"Validate the input of {playbook}.yml",
            "ansible.builtin.validate_argument_spec": {
                "argument_spec": "{{ (lookup('ansible.builtin.file', '%s') | from_yaml).argument_specs.main.options }}"
                % (REPO / "playbooks" / "specs" / f"{playbook}.yml")
            },
        }
        for playbook in PLAYBOOKS
    ]
    play = tmp_path / "validate.yml"
    play.write_text(
        yaml.safe_dump(
            [{"name": "validate", "hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
        )
    )
    answers = {"restore_service": "pg", "drill_service": "pg", "backup_wait": "true", "restore_fence": "false"}
    command = ["ansible-playbook", str(play), "-e", f"@{REPO / 'playbooks' / 'vars' / 'deploy.example.yml'}"]
    good = subprocess.run(command + ["-e", json.dumps(answers)], cwd=REPO, capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok=4" in good.stdout
    bad = subprocess.run(
        command + ["-e", json.dumps(dict(answers, restore_market="reserved"))],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    assert "value of restore_market must be one of: on-demand, spot, got: reserved" in bad.stdout
