"""What the AWX tests share: the repository's files, loaded."""

import pathlib

import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
PLAYBOOKS = ("deploy", "restore", "backup", "drill")
VARIABLES_FILE_OPTIONS = ("ec2spot_region", "ec2spot_control_plane", "ec2spot_services")


def load(relative):
    return yaml.safe_load((REPO / relative).read_text(encoding="utf-8"))


def job_templates():
    return load("awx/job_templates.yml")["awx_job_templates"]


def spec_options(playbook):
    return load(f"playbooks/specs/{playbook}.yml")["argument_specs"]["main"]["options"]


def example_variables():
    return load("playbooks/vars/deploy.example.yml")


def playbook_of(job_template):
    """deploy for playbooks/deploy.yml."""
    return pathlib.PurePath(job_template["playbook"]).stem


def rendered_survey(job_template, service_names):
    """The survey spec playbooks/awx.yml sends for a job template (service questions get the services as choices)."""
    questions = []
    for question in job_template["survey"]:
        asked = {key: value for key, value in question.items() if key != "ec2spot_choices"}
        if question.get("ec2spot_choices") == "services":
            asked["choices"] = list(service_names)
        questions.append(asked)
    return {"name": job_template["name"], "description": job_template["description"], "spec": questions}
