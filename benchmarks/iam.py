"""The benchmarks under IAM as AWS enforces it: the handler as its function role, and what the report says of it.

The sandbox enforces IAM in every server the benchmarks start, as in every server ``python -m sandbox`` starts
(``EC2SPOT_SANDBOX_IAM=off`` turns it off; sandbox/README.md, "IAM"). Where a benchmark runs the handler, the handler
signs as the Lambda runner makes it sign (sandbox/lambda_runner/environments.py ``function_credentials``): with the
temporary credentials of its execution role, assumed through moto's STS and named after the function, the role
carrying the handler's real policy (roles/control_plane/templates/function-policy.json.j2, rendered for the
benchmark's services by ``sandbox.iam.project_policies.function_policy``). With enforcement off it signs as the
sandbox's administrator, as the runner does.

The role is created as the control_plane role would create it, or not at all: IAM does not let a role carry more than
10,240 characters of inline policy (moto does not check it). For services too many to name one by one in that room
(the fleet's 100), the role is rendered as its operator would configure it, with the lineages and the groups named by
their common prefix (``control_plane_lineage_patterns``, ``control_plane_group_patterns``; roles/control_plane/README.md,
"How many services: names or patterns").

``summary()`` is what the report states: whether IAM was enforced, the refusals recorded (0 when the policies hold)
and the actions authorised unmodelled on ``*``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys

import boto3

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from sandbox.clock import ACCOUNT_ID, CONTEXT, REGION
from sandbox.iam import enforce, principals
from sandbox.iam import project_policies
from sandbox.iam.project_policies import function_policy

LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}  # fmt: skip
# As the Lambda runner assumes a function's role (sandbox/lambda_runner/environments.py ROLE_SESSION_SECONDS).
SESSION_SECONDS = 3600
ADMINISTRATOR = {
    "aws_access_key_id": principals.ADMINISTRATOR_KEY,
    "aws_secret_access_key": principals.ADMINISTRATOR_KEY,
}


def enforced_by_default(environ=None):
    """Whether IAM is enforced: yes unless ``EC2SPOT_SANDBOX_IAM=off``, as in every server ``python -m sandbox``
    starts."""
    environ = os.environ if environ is None else environ
    return (environ.get(enforce.ENVIRONMENT_VARIABLE) or "enforce") == "enforce"


# IAM's quota for all the inline policies of one role, whitespace not counted (IAM User Guide, "IAM and AWS STS
# quotas"); the control_plane role refuses a larger function policy (control_plane_role_policy_quota).
ROLE_POLICY_QUOTA = 10240


def policy_size(document):
    """The size IAM counts of a policy document: its JSON's characters, whitespace not counted."""
    return len(re.sub(r"\s", "", json.dumps(document)))


def create_function_role(iam, control_plane_name, services):
    """The handler's execution role for ``services`` (the handler configuration's service entries), as the
    control_plane role creates it: ``<name>-function`` trusting Lambda, with the rendered function policy; its ARN.
    The lineages and groups are named one by one while that fits IAM's quota, else by their common prefix."""
    role_name = f"{control_plane_name}-function"
    document = _rendered(control_plane_name, json.dumps(services, sort_keys=True))
    arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role_name, PolicyName=role_name, PolicyDocument=json.dumps(document))
    return arn


@functools.cache
def _rendered(control_plane_name, services_json):
    # Rendered once per process for the same services (a child process of Ansible's templating each time).
    services = json.loads(services_json)
    document = function_policy(control_plane_name, REGION, services)["document"]
    if policy_size(document) > ROLE_POLICY_QUOTA:
        variables = prefix_patterns(services)
        (entry,) = render_function_policies([(control_plane_name, REGION, services, variables)])
        document = entry["document"]
    if policy_size(document) > ROLE_POLICY_QUOTA:
        raise ValueError(f"the function policy for {len(services)} services has {policy_size(document)} characters, "
                         f"over IAM's {ROLE_POLICY_QUOTA}: the control_plane role would refuse it")  # fmt: skip
    return document


def prefix_patterns(services):
    """The control_plane role's pattern variables naming ``services``' lineages and groups by their common prefix
    (``{"control_plane_lineage_patterns": ["bench-*"], ...}``), as an operator of such a fleet would set them."""
    variables = {}
    for variable, names in (("control_plane_lineage_patterns", [s["lineage"] for s in services]),
                            ("control_plane_group_patterns", [s["group"] for s in services if s.get("group")])):  # fmt: skip
        prefix = os.path.commonprefix(names)
        if names and not prefix:
            raise ValueError(f"{variable}: {names[:3]}... share no prefix to name them by")
        if names:
            variables[variable] = [prefix + "*"]
    return variables


# The control_plane role's template rendered as sandbox.iam.project_policies renders it (the same layering of the
# role's defaults, vars and facts, _function_policy), with role variables of the include on top (the pattern variables).
_RENDER_WITH_VARIABLES = """
import json, sys
from sandbox.iam import project_policies as policies

renderer = policies._Renderer()
plain_role_template = renderer.role_template
rendered = []
for name, region, services, variables in json.load(sys.stdin):
    def role_template(role, template, layers, variables=variables):
        return plain_role_template(role, template, dict(layers, include=dict(layers.get("include", {}), **variables)))
    renderer.role_template = role_template
    rendered.append(policies._function_policy(renderer, name, region, services))
json.dump(renderer.plain(rendered), sys.stdout)
"""


def render_function_policies(requests):
    """The function policy (``{"template", "facts", "document"}``, as ``project_policies.function_policy``) for each
    ``(control_plane_name, region, services, role_variables)`` of ``requests``, all in one child process (Ansible's
    plugin loader changes how ``ansible_collections`` imports resolve for the rest of a process)."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(project_policies.REPO / ".build" / "collections"))
    env.setdefault("ANSIBLE_CONFIG", str(project_policies.REPO / "ansible.cfg"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project_policies.REPO), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _RENDER_WITH_VARIABLES], cwd=project_policies.REPO, env=env,
                          input=json.dumps([list(request) for request in requests]), capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"rendering the function policy failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def handler_session(role_arn, function_name):
    """A boto3 session signing as the handler: the role's temporary credentials while IAM is enforced, else the
    sandbox's administrator key (the Lambda runner's choice)."""
    if not enforce.enforcing():
        return boto3.session.Session(region_name=REGION, **ADMINISTRATOR)
    with CONTEXT.lock:
        assumed = principals.assume_role(ACCOUNT_ID, REGION, role_arn, function_name, SESSION_SECONDS)
    return boto3.session.Session(
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["Token"],
        region_name=REGION,
    )


def handler_client(session, service, endpoint_url=None):
    """A client of ``service`` from ``session``, with the core's retry configuration (as scenario.client)."""
    return session.client(service, config=RETRY_CONFIG, **({"endpoint_url": endpoint_url} if endpoint_url else {}))


def summary():
    """``{"enforced", "refusals", "refused", "unmodelled"}`` since the records were last cleared."""
    denied = list(CONTEXT.records.get("iam_denied", []))
    return {
        "enforced": enforce.enforcing(),
        "refusals": len(denied),
        "refused": [f"{d['principal']}: {d['code']}: {d['message'][:300]}" for d in denied[:5]],
        "unmodelled": sorted(set(CONTEXT.records.get("iam_unmodelled", []))),
    }
