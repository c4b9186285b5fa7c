"""The project's own identity-based policies, rendered as the roles and playbooks render them.

The policies the evaluator is tested on and the linter reads must be the very documents a deploy sends to IAM, not
copies: each template is rendered by Ansible's own templating with the variables its role sees at that point, i.e.
the role's ``defaults/main.yml`` under the including play's variables, under the role's ``vars/main.yml`` and the
include's own variables, under the facts the role's preflight tasks set (account, partition, region; for the handler,
the queue key's ARN). The including plays' expressions are reused, not rewritten: the services the handler gets are
templated from deploy.yml's "Describe each service to the handler" task, each fleet's variables from
``playbooks/tasks/deploy_fleet.yml``'s include.

Rendered (``rendered_policies()``, name -> ``{"template", "facts", "document"}``):

- ``function/example``: the handler's role (roles/control_plane/templates/function-policy.json.j2) for
  playbooks/vars/deploy.example.yml; ``function/example-every-option``: the same service with a standby and a
  watchdog, plus a second service whose watchdog is an alarm that reboots (every optional statement on);
  ``function/molecule``: the control_plane molecule scenario (services with an Auto Scaling group);
- ``instance/example``: the instance profile (roles/fleet/templates/instance-policy.json.j2) for the example;
  ``instance/molecule-pg`` and ``instance/molecule-web``: the fleet scenario's two fleets (``web`` associates the
  service's address itself, seed 002's pattern, and leaves target groups);
- ``fis/example``: the role AWS FIS assumes for a drill of the example's service
  (playbooks/templates/fis-policy.json.j2); ``fis/sandbox``: the same in the sandbox's region (us-east-1), for the
  experiments the sandbox runs as that role.

``function_policy(name, region, services)`` renders the handler's role for other services (the benchmarks' fleet).

``documented_policies()`` gives each ``docs/iam/*.json`` as it is. Not rendered: the queue's and the key's policies
(resource-based, which the evaluator does not model) and the trust policies.

Ansible's plugin loader must be initialised to find the collection's own filters, and that changes how
``ansible_collections`` imports resolve for the rest of the process; so the rendering runs in a child process
(``python -m sandbox.iam.project_policies`` prints the JSON) and ``rendered_policies()`` returns its answer.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
PARTITION = "aws"
# The region the molecule scenarios' sandbox answers with (their variables leave it to the AWS modules).
MOLECULE_REGION = "us-east-1"
# The queue's key as the control plane's queue tasks find it once created.
KEY_ID = "0123abcd-4567-89ef-0123-456789abcdef"
# What the fleet scenario's prepare.yml finds (molecule_prepared): only the target group reaches the policy.
MOLECULE_TARGET_GROUP_ARN = (
    f"arn:aws:elasticloadbalancing:{MOLECULE_REGION}:{ACCOUNT}:targetgroup/molecule-web/0123456789abcdef"
)


def documented_policies():
    """``{"docs/<file name>": document}`` for every policy in docs/iam/."""
    return {
        f"docs/{path.name}": json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((REPO / "docs" / "iam").glob("*.json"))
    }


@functools.cache
def rendered_policies():
    """Every rendered policy (see the module's docstring), rendered once per process in a child process."""
    return _in_child([])


def function_policy(name, region, services):
    """The handler's role policy (function-policy.json.j2) for a control plane called ``name`` in ``region`` serving
    ``services`` (as the handler's configuration describes them: name, lineage, group...), rendered in a child
    process like ``rendered_policies``."""
    return _in_child(["--function", name, region], json.dumps(services))


def _in_child(arguments, stdin=None):
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.iam.project_policies", *arguments],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rendering the project's policies failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


# ---- the rendering, in the child process ------------------------------------------------------------------------
class _Renderer:
    def __init__(self):
        from ansible import constants
        from ansible.parsing.dataloader import DataLoader
        from ansible.plugins.loader import init_plugin_loader

        init_plugin_loader(constants.COLLECTIONS_PATHS)
        self.loader = DataLoader()

    def load(self, relative):
        """A YAML file of the repository, its strings trusted as templates (as Ansible trusts a role's files)."""
        return self.loader.load_from_file(str(REPO / relative), cache="none", trusted_as_template=True)

    def template(self, text_or_value, variables, basedir=None):
        from ansible.template import Templar, trust_as_template

        self.loader.set_basedir(str(basedir or REPO))
        templar = Templar(loader=self.loader, variables=variables)
        value = trust_as_template(text_or_value) if isinstance(text_or_value, str) else text_or_value
        return templar.template(value)

    def task_vars(self, relative, name):
        """The ``vars`` of the task called ``name`` in a playbook or task file."""
        document = self.load(relative)
        tasks = document[0]["tasks"] if isinstance(document[0], dict) and "tasks" in document[0] else document
        return next(task for task in tasks if task.get("name") == name)["vars"]

    def role_template(self, role, template, variables):
        """``roles/<role>/templates/<template>`` rendered with the variables layered as Ansible layers them: the
        role's defaults, then ``variables["play"]``, the role's vars/main.yml, ``variables["include"]`` (the
        include_role's vars) and ``variables["facts"]`` (set_fact), each over the one before."""
        role_dir = REPO / "roles" / role
        layered = dict(self.load(f"roles/{role}/defaults/main.yml"))
        layered.update(variables.get("play", {}))
        layered.update(self.load(f"roles/{role}/vars/main.yml"))
        layered.update(variables.get("include", {}))
        layered.update(variables.get("facts", {}))
        layered["role_path"] = str(role_dir)
        text = (role_dir / "templates" / template).read_text(encoding="utf-8")
        return json.loads(self.template(text, layered, basedir=role_dir))

    def plain(self, value):
        """A templated value as plain JSON data (Ansible's tagged containers and lazy values resolved)."""
        return json.loads(json.dumps(value, default=str))


def _handler_services(renderer, example, services):
    """The services as deploy.yml describes them to the handler (its own expression, per service)."""
    describe = renderer.task_vars("playbooks/deploy.yml", "Describe each service to the handler")
    name = (example.get("ec2spot_control_plane") or {}).get("name", "ec2spot-autorecover")
    # The play's default cut-over, read from its spec as deploy.yml reads it (relative to the playbook).
    default_cutover = renderer.template(
        renderer.load("playbooks/deploy.yml")[0]["vars"]["deploy_default_cutover"], {}, basedir=REPO / "playbooks"
    )
    described = []
    for service in services:
        variables = dict(
            example, **describe, item=service, deploy_control_plane_name=name, deploy_default_cutover=default_cutover
        )
        described.append(renderer.plain(renderer.template("{{ deploy_handler_service }}", variables)))
    return described


def _function_policy(renderer, name, region, services):
    facts = {
        "control_plane_aws": {"account": ACCOUNT, "partition": PARTITION, "region": region},
        "control_plane_queue_key_arn": f"arn:{PARTITION}:kms:{region}:{ACCOUNT}:key/{KEY_ID}",
    }
    include = {"control_plane_name": name, "control_plane_region": region, "control_plane_services": services}
    document = renderer.role_template("control_plane", "function-policy.json.j2", {"include": include, "facts": facts})
    lineages = [service["lineage"] for service in services]
    return {
        "template": "roles/control_plane/templates/function-policy.json.j2",
        "facts": {"account": ACCOUNT, "partition": PARTITION, "region": region, "name": name, "lineages": lineages},
        "document": document,
    }


def _instance_policy(renderer, region, play, include):
    facts = {"fleet_aws": {"account": ACCOUNT, "partition": PARTITION, "region": region}}
    document = renderer.role_template(
        "fleet", "instance-policy.json.j2", {"play": play, "include": include, "facts": facts}
    )
    resolved = renderer.plain(
        renderer.template(
            "{{ {'service': fleet_service, 'lineage': fleet_lineage} }}",
            dict(renderer.load("roles/fleet/defaults/main.yml"), **play, **include),
        )
    )
    return {
        "template": "roles/fleet/templates/instance-policy.json.j2",
        "facts": {"account": ACCOUNT, "partition": PARTITION, "region": region, **resolved},
        "document": document,
    }


def _render_all():
    renderer = _Renderer()
    example = renderer.load("playbooks/vars/deploy.example.yml")
    region = example["ec2spot_region"]
    name = (example.get("ec2spot_control_plane") or {}).get("name", "ec2spot-autorecover")
    service = example["ec2spot_services"][0]
    rendered = {}

    rendered["function/example"] = _function_policy(
        renderer, name, region, _handler_services(renderer, example, example["ec2spot_services"])
    )
    every_option = [
        dict(copy.deepcopy(service), standby={"ready_timeout": 300}, watchdog={"mode": "handler", "threshold": 95}),
        {"name": "cache", "lineage": "cachedata", "image_id": service["image_id"],
         "instance_types": service["instance_types"], "subnet_ids": service["subnet_ids"],
         "watchdog": {"mode": "alarm-reboot", "threshold": 95}},
    ]  # fmt: skip
    rendered["function/example-every-option"] = _function_policy(
        renderer, name, region, _handler_services(renderer, example, every_option)
    )
    molecule = renderer.load("extensions/molecule/control_plane/vars/main.yml")
    rendered["function/molecule"] = _function_policy(
        renderer,
        molecule["control_plane_name"],
        MOLECULE_REGION,
        renderer.plain(renderer.template("{{ control_plane_services }}", dict(molecule))),
    )

    fleet_include = renderer.load("playbooks/tasks/deploy_fleet.yml")[0]["vars"]
    deploy_topic = f"arn:{PARTITION}:sns:{region}:{ACCOUNT}:{name}"
    rendered["instance/example"] = _instance_policy(
        renderer,
        region,
        dict(example, deploy_service=service, deploy_topic_arn=deploy_topic),
        dict(fleet_include),
    )
    molecule_fleet = dict(renderer.load("extensions/molecule/fleet/vars/main.yml"))
    molecule_fleet["molecule_prepared"] = {"notifications": True, "target_group_arn": MOLECULE_TARGET_GROUP_ARN}
    for fleet in ("pg", "web"):
        play = dict(molecule_fleet, **renderer.load(f"extensions/molecule/fleet/vars/{fleet}.yml"))
        rendered[f"instance/molecule-{fleet}"] = _instance_policy(renderer, MOLECULE_REGION, play, {})

    drilled = dict(service, drill=True)
    fis_variables = {"ec2spot_region": region, "drill_template_account": ACCOUNT, "drill_template_partition": PARTITION,
                     "drill_template_service": drilled}  # fmt: skip
    fis_text = (REPO / "playbooks" / "templates" / "fis-policy.json.j2").read_text(encoding="utf-8")
    for key, fis_region in (("fis/example", region), ("fis/sandbox", MOLECULE_REGION)):
        rendered[key] = {
            "template": "playbooks/templates/fis-policy.json.j2",
            "facts": {"account": ACCOUNT, "partition": PARTITION, "region": fis_region, "lineage": service["lineage"]},
            "document": json.loads(renderer.template(fis_text, dict(fis_variables, ec2spot_region=fis_region),
                                                     basedir=REPO / "playbooks")),
        }  # fmt: skip
    return renderer.plain(rendered)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--function"]:
        _name, _region = sys.argv[2:4]
        _renderer = _Renderer()
        json.dump(_renderer.plain(_function_policy(_renderer, _name, _region, json.load(sys.stdin))), sys.stdout)
    else:
        json.dump(_render_all(), sys.stdout, indent=1)
