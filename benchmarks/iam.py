"""The benchmarks under IAM as AWS enforces it: the handler as its function role, and what the report says of it.

The sandbox enforces IAM in every server the benchmarks start, as in every server ``python -m sandbox`` starts
(``EC2SPOT_SANDBOX_IAM=off`` turns it off; sandbox/README.md, "IAM"). Where a benchmark runs the handler, the handler
signs as the Lambda runner makes it sign (sandbox/lambda_runner/environments.py ``function_credentials``): with the
temporary credentials of its execution role, assumed through moto's STS and named after the function, the role
carrying the handler's real policy (roles/control_plane/templates/function-policy.json.j2, rendered for the
benchmark's services by ``sandbox.iam.project_policies.function_policy``). With enforcement off it signs as the
sandbox's administrator, as the runner does.

``summary()`` is what the report states: whether IAM was enforced, the refusals recorded (0 when the policies hold)
and the actions authorised unmodelled on ``*``.
"""

from __future__ import annotations

import functools
import json
import os

import boto3

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from sandbox.clock import ACCOUNT_ID, CONTEXT, REGION
from sandbox.iam import enforce, principals
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


def create_function_role(iam, control_plane_name, services):
    """The handler's execution role for ``services`` (the handler configuration's service entries), as the
    control_plane role creates it: ``<name>-function`` trusting Lambda, with the rendered function policy; its ARN."""
    role_name = f"{control_plane_name}-function"
    document = _rendered(control_plane_name, json.dumps(services, sort_keys=True))
    arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role_name, PolicyName=role_name, PolicyDocument=json.dumps(document))
    return arn


@functools.cache
def _rendered(control_plane_name, services_json):
    # Rendered once per process for the same services (a child process of Ansible's templating each time).
    return function_policy(control_plane_name, REGION, json.loads(services_json))["document"]


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
