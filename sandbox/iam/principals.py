"""Who signed a request to the sandbox, and the identity-based policies that principal carries.

A request names its principal by the access key id of its SigV4 signature (``Authorization: AWS4-HMAC-SHA256
Credential=<key id>/<date>/<region>/<service>/aws4_request, ...``, or ``X-Amz-Credential`` of a presigned URL) and,
for temporary credentials, by its session token (``X-Amz-Security-Token``). The principals known here:

- the sandbox's own dummy key ``sandbox``: the unrestricted administrator (the tests', the playbooks' and the
  sandbox's own principal in this slice of issue 19);
- temporary credentials moto's STS issued (``AssumeRole``: moto keeps each ``AssumedRole`` with its key id, secret
  and session token in ``sts_backends[account][partition].assumed_roles``): the assumed role, whose policies are its
  inline policies and the default versions of its attached managed policies, read from moto's IAM backend at each
  request (a policy changed after the role was assumed applies at once, as IAM's does within seconds);
- an IAM user's access key (``CreateAccessKey``): the user, with its inline and attached policies and those of its
  groups.

Anything else is refused when IAM is enforced: an unsigned request (``MissingCredentials``), an access key no
principal has, or an assumed role's key presented with another session token (``UnknownCredentials``). Not checked:
the signature itself (moto's secret keys are known, but the sandbox authorises, it does not authenticate), the
expiry of temporary credentials (the modeled clock runs faster than any session lasts), session policies.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field

ADMINISTRATOR_KEY = "sandbox"


class MissingCredentials(LookupError):
    """A request with no SigV4 credential at all."""


class UnknownCredentials(LookupError):
    """A request signed with an access key no principal of the sandbox has (or a wrong session token)."""


@dataclass(frozen=True)
class Principal:
    """One caller: its ARN (``arn:aws:sts::123456789012:assumed-role/<role>/<session>``), whether it is the
    sandbox's unrestricted administrator, and its identity-based policies as ``(name, document)`` pairs."""

    arn: str
    access_key_id: str
    unrestricted: bool = False
    policies: tuple = field(default_factory=tuple)
    role_arn: str | None = None


@dataclass(frozen=True)
class Credentials:
    """What a request presents: the access key id and the session token (None for long-term keys)."""

    access_key_id: str
    session_token: str | None = None


def credentials_of(headers, query=None):
    """The credentials a request was signed with (``headers``: a mapping with case-insensitive ``get``, such as
    werkzeug's; ``query``: the parsed query string, for presigned URLs); ``MissingCredentials`` when unsigned."""
    authorization = headers.get("Authorization") or ""
    key_id = None
    if "Credential=" in authorization:
        key_id = authorization.split("Credential=", 1)[1].split("/", 1)[0].strip()
    elif authorization.startswith("AWS ") and ":" in authorization:
        # S3's signature version 2 (Amazon S3 API Reference, "Signing and authenticating REST requests").
        key_id = authorization[len("AWS ") :].rsplit(":", 1)[0].strip()
    elif query:
        value = _query_value(query, "X-Amz-Credential")
        key_id = value.split("/", 1)[0] if value else _query_value(query, "AWSAccessKeyId")  # SigV4, SigV2 presigned
    if not key_id:
        raise MissingCredentials("the request is not signed")
    token = headers.get("X-Amz-Security-Token")
    if not token and query:
        token = _query_value(query, "X-Amz-Security-Token")
    return Credentials(key_id, token or None)


def _query_value(query, name):
    """A query parameter by name, case-insensitively (S3's presigned URLs write ``x-amz-security-token``)."""
    for key, value in query.items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) else value
    return None


def _document(raw):
    """A policy document as moto stores it (a JSON string, sometimes URL-encoded as IAM's API returns it)."""
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return json.loads(urllib.parse.unquote(raw))


def _managed_document(policy):
    version = next((v for v in policy.versions if v.is_default), None)
    return _document(version.document if version is not None else policy.document)


def _policies_of(holder):
    """``(name, document)`` for a role's, user's or group's inline policies and attached managed policies."""
    found = [(name, _document(raw)) for name, raw in sorted(holder.policies.items())]
    found += [(policy.name, _managed_document(policy)) for _arn, policy in sorted(holder.managed_policies.items())]
    return found


def _assumed_role(access_key_id):
    from moto.sts.models import sts_backends

    for account in list(dict.keys(sts_backends)):
        for partition in list(dict.keys(sts_backends[account])):
            found = sts_backends[account][partition].get_assumed_role_from_access_key(access_key_id)
            if found is not None:
                return found, account, partition
    return None, None, None


def _user(access_key_id):
    from moto.iam.models import iam_backends

    for account in list(dict.keys(iam_backends)):
        for partition in list(dict.keys(iam_backends[account])):
            backend = iam_backends[account][partition]
            user = backend.get_user_from_access_key_id(access_key_id)
            if user is not None:
                return user, backend
    return None, None


def principal_of(credentials):
    """The principal behind ``credentials``; ``UnknownCredentials`` when there is none."""
    if credentials.access_key_id == ADMINISTRATOR_KEY:
        return Principal("arn:aws:iam::123456789012:root", ADMINISTRATOR_KEY, unrestricted=True)
    assumed, account, partition = _assumed_role(credentials.access_key_id)
    if assumed is not None:
        if credentials.session_token != assumed.session_token:
            raise UnknownCredentials("the security token included in the request is invalid")
        from moto.iam.models import iam_backends

        try:
            role = iam_backends[account][partition].get_role_by_arn(assumed.role_arn)
        except Exception:  # moto's NoSuchEntity: a role deleted since, or never created (moto lets one assume it)
            policies = ()
        else:
            policies = tuple(_policies_of(role))
        return Principal(assumed.arn, credentials.access_key_id, policies=policies, role_arn=assumed.role_arn)
    user, backend = _user(credentials.access_key_id)
    if user is not None:
        policies = _policies_of(user)
        for group in backend.get_groups_for_user(user.name):
            policies += _policies_of(group)
        return Principal(user.arn, credentials.access_key_id, policies=tuple(policies))
    raise UnknownCredentials(f"no principal has the access key {credentials.access_key_id!r}")


def assume_role(account, region, role_arn, session_name, seconds):
    """Temporary credentials of ``role_arn`` from moto's STS, as the service that holds the role gets them (Lambda
    for a function's execution role, EC2 for an instance profile's role): ``{AccessKeyId, SecretAccessKey, Token,
    Expiration}``, the shape of IMDS's security-credentials document."""
    from moto.sts.models import sts_backends

    assumed = sts_backends[account]["aws"].assume_role(
        region_name=region,
        role_session_name=session_name,
        role_arn=role_arn,
        policy=None,
        duration=seconds,
        external_id=None,
    )
    return {
        "AccessKeyId": assumed.access_key_id,
        "SecretAccessKey": assumed.secret_access_key,
        "Token": assumed.session_token,
        "Expiration": assumed.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
