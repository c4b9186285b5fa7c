"""IAM enforcement in front of moto's handlers: each call authorised against its caller's policies, refused as AWS
refuses it.

moto authorises nothing by default (its own ``INITIAL_NO_AUTH_ACTION_COUNT`` check knows neither resource-level
permissions nor condition keys), so ``install()`` wraps ``BaseResponse.call_action``, the one method every
query, JSON and CBOR service handler the project calls goes through once moto has parsed the request (so the action,
the parameters, the region and the headers are known, and moto's state can be read: the server holds the sandbox
lock around each request). For each call, when enforcing:

- the principal (``principals``): the sandbox's ``sandbox`` key passes unrestricted; an unsigned request or an
  unknown key is refused with the service's error (EC2 ``AuthFailure`` 401, the query services'
  ``InvalidClientTokenId`` 403, the JSON services' ``UnrecognizedClientException`` 400;
  ``MissingAuthenticationToken`` when unsigned); ``sts:GetCallerIdentity`` is always allowed, as in AWS;
- the authorisation (``resources.resolve`` then ``requests.decide``): refused as the service answers a denial (EC2
  ``UnauthorizedOperation`` 403 with an encoded authorization failure message, the query services'
  ``AccessDenied`` 403, the JSON services' ``AccessDeniedException`` 400, the REST-JSON ones' 403); each refusal is
  recorded (``CONTEXT.records["iam_denied"]``);
- Amazon S3, which moto answers through ``S3Response``'s own dispatch and not ``call_action``: its
  ``bucket_response`` and ``key_response`` are wrapped (``authorise_s3``; the operation, resources and keys from
  ``s3``), refused with S3's 403 XML ``AccessDenied`` (``InvalidAccessKeyId`` for an unknown key);
- an action with resource types the resolver does not model yet is authorised on ``*`` and recorded
  (``CONTEXT.records["iam_unmodelled"]``): a test lists them, and none is ever allowed on a real ARN it did not
  resolve.

Every server ``python -m sandbox`` starts (``run``, ``start``: the module tests, the molecule scenarios, ``make demo``)
enforces: it starts with ``EC2SPOT_SANDBOX_IAM=enforce`` unless the caller's environment says ``off``
(``enforce_from_environment``). The in-thread servers of the sandbox's own tests and of the benchmarks start with it
off unless that variable says ``enforce``; the control ``POST /_sandbox/iam {"enforce": true|false}`` switches it at
run time.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import warnings

from moto.core.exceptions import ServiceException

from ..clock import CONTEXT
from . import principals, resources, s3
from .evaluator import Decision, evaluate
from .requests import AccessDenied, Check, decide

ENVIRONMENT_VARIABLE = "EC2SPOT_SANDBOX_IAM"
# moto's service names that differ from the IAM prefix.
IAM_PREFIXES = {"awslambda": "lambda", "elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing"}
# The JSON protocol services (their errors are ...Exception); SQS and CloudWatch speak JSON or CBOR too but keep their
# query protocol's error codes. The REST-JSON ones (Lambda, FIS, EventBridge Scheduler) answer AccessDeniedException
# with HTTP 403 (each API reference's "Errors": "HTTP Status Code: 403"), the AWS JSON 1.1 ones with 400.
JSON_SERVICES = frozenset({"ssm", "events", "logs", "kms", "lambda", "fis", "scheduler"})
REST_JSON_SERVICES = frozenset({"lambda", "fis", "scheduler"})
ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})
INVALID_TOKEN = "The security token included in the request is invalid."

_STATE = {"enforcing": False}
_INSTALLED = {}


def enforcing():
    """Whether the sandbox authorises each call (see the module's docstring)."""
    return _STATE["enforcing"]


def set_enforcing(on):
    _STATE["enforcing"] = bool(on)


def enforce_from_environment(environ=None):
    """Switch enforcement on when ``EC2SPOT_SANDBOX_IAM=enforce``; any other value but empty is an error."""
    value = (environ if environ is not None else os.environ).get(ENVIRONMENT_VARIABLE, "")
    if value not in ("", "off", "enforce"):
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={value!r}: use 'enforce' or 'off'")
    set_enforcing(value == "enforce")
    return enforcing()


@CONTEXT.control("iam")
def _iam_control(payload):
    """``{"enforce": true|false}`` switches enforcement; ``{}`` only reports. Answers the switch, the actions
    authorised unmodelled and the refusals recorded since the last reset."""
    if "enforce" in payload:
        set_enforcing(payload["enforce"])
    return {
        "enforce": enforcing(),
        "unmodelled": sorted(set(CONTEXT.records.get("iam_unmodelled", []))),
        "denied": list(CONTEXT.records.get("iam_denied", [])),
    }


class Refusal(ServiceException):
    """A call refused before moto handles it: the error code, the HTTP status and AWS's message. moto's serializer
    writes it in the service's protocol (EC2's, query, JSON, CBOR); being defined outside moto, it is looked up in
    the service's own error shapes only."""

    def __init__(self, code, status, message):
        super().__init__(code, message)
        self.status = status


def _credential_refusal(prefix, unsigned):
    if prefix == "ec2":
        return Refusal("AuthFailure", 401, "AWS was not able to validate the provided access credentials")
    json_service = prefix in JSON_SERVICES
    if unsigned:
        if json_service:
            return Refusal("MissingAuthenticationTokenException", 400, "Missing Authentication Token")
        return Refusal("MissingAuthenticationToken", 403, "Request is missing Authentication Token")
    if json_service:
        return Refusal("UnrecognizedClientException", 403 if prefix == "lambda" else 400, INVALID_TOKEN)
    return Refusal("InvalidClientTokenId", 403, INVALID_TOKEN)


def encoded_failure(principal, check, result):
    """EC2's "encoded authorization failure message": what ``sts:DecodeAuthorizationMessage`` would decode."""
    document = {
        "allowed": False,
        "explicitDeny": result.decision is Decision.EXPLICIT_DENY,
        "matchedStatements": {"items": [result.statement] if result.statement else []},
        "context": {
            "principal": {"arn": principal.arn},
            "action": check.action,
            "resource": check.resource,
            "conditions": {"items": [{"key": k, "values": v} for k, v in sorted(check.context.items())]},
        },
    }
    return base64.urlsafe_b64encode(json.dumps(document, default=str).encode()).decode().rstrip("=")


def _denial(principal, check, result):
    denied = AccessDenied(check.action, check.resource, principal.arn, result)
    message = denied.message
    if denied.code == "UnauthorizedOperation":
        message += f" Encoded authorization failure message: {encoded_failure(principal, check, result)}"
    status = 400 if denied.code == "AccessDeniedException" and denied.service not in REST_JSON_SERVICES else 403
    return Refusal(denied.code, status, message)


def _params(response):
    """The request's parameters as moto parsed them (``resources.Params``)."""
    parsed = getattr(response, "params", None)
    if getattr(response, "automated_parameter_parsing", False) and isinstance(parsed, dict):
        return resources.Params(tree=parsed)
    content_type = (response.headers.get("Content-Type") or "").lower()
    if "json" in content_type and response.body:
        try:
            document = json.loads(response.body)
        except (TypeError, ValueError):
            document = None
        if isinstance(document, dict):
            return resources.Params(tree=document)
    return resources.Params(flat=response.querystring)


def authorise(response):
    """Authorise the call ``response`` (a moto ``BaseResponse`` after ``setup_class``); ``Refusal`` when refused."""
    prefix = IAM_PREFIXES.get(response.service_name, response.service_name)
    action = response._get_action()
    try:
        credentials = principals.credentials_of(response.headers, response.querystring)
    except principals.MissingCredentials:
        raise _record(None, _credential_refusal(prefix, unsigned=True)) from None
    try:
        principal = principals.principal_of(credentials)
    except principals.UnknownCredentials:
        raise _record(credentials.access_key_id, _credential_refusal(prefix, unsigned=False)) from None
    full_name = f"{prefix}:{action}"
    if principal.unrestricted or full_name in ALWAYS_ALLOWED:
        return principal
    resolved = resources.resolve(prefix, action, _params(response), response.current_account, response.region,
                                 response.partition, path=getattr(response, "path", None))  # fmt: skip
    if resolved is None:
        CONTEXT.record("iam_unmodelled", full_name)
        result = evaluate(principal.policies, full_name, "*", {})
        if not result.allowed:
            raise _record(principal, _denial(principal, Check(full_name, None, "*", {}), result))
        return principal
    for request in resolved:
        verdict = decide(principal.policies, request)
        if not verdict.allowed:
            check, result = verdict.refusal
            raise _record(principal, _denial(principal, check, result))
    return principal


def _record(principal, refusal):
    """Remember a refusal (``principal``: a Principal, the unknown access key id, or None when unsigned)."""
    who = principal.arn if isinstance(principal, principals.Principal) else principal
    CONTEXT.record("iam_denied", {"principal": who, "code": refusal.code, "message": refusal.message})
    return refusal


# S3's answers to a request it cannot attribute (Amazon S3 API Reference, "Error responses": an anonymous request
# to a private bucket is AccessDenied; an access key no account has is InvalidAccessKeyId; both HTTP 403).
S3_ANONYMOUS = ("AccessDenied", 403, "Access Denied")
S3_UNKNOWN_KEY = ("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")


def authorise_s3(request, full_url, object_level):
    """Authorise one S3 request (a moto ``Request``; ``full_url`` as it arrived; ``object_level``: moto routed it to
    ``key_response``) before moto's ``S3Response`` handles it; ``Refusal`` when refused. ``OPTIONS`` (a CORS
    preflight, which S3 answers unauthenticated) passes; a request whose operation ``s3`` does not know is refused and
    recorded under ``iam_unmodelled``."""
    from moto.iam.models import get_account_id_from
    from moto.s3.responses import S3Response

    method = (request.method or "").upper()
    if method == "OPTIONS":
        return None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(full_url).query, keep_blank_values=True)
    try:
        credentials = principals.credentials_of(request.headers, query)
    except principals.MissingCredentials:
        raise _record(None, Refusal(*S3_ANONYMOUS)) from None
    try:
        principal = principals.principal_of(credentials)
    except principals.UnknownCredentials:
        raise _record(credentials.access_key_id, Refusal(*S3_UNKNOWN_KEY)) from None
    if principal.unrestricted:
        return principal
    raw_path = getattr(request, "raw_path", None) or urllib.parse.urlsplit(full_url).path
    bucket, key = s3.locate(full_url, raw_path, S3Response.subdomain_based_buckets(request))
    key = (key if key is not None else "") if object_level else None
    reads_body = (method == "POST" and "delete" in query) or (method == "PUT" and ("tagging" in query or key is None))
    body = request.data if reads_body else b""
    account = os.environ.get("MOTO_ACCOUNT_ID") or get_account_id_from(credentials.access_key_id)
    try:
        found = s3.operations(method, bucket, key, query, request.headers, body)
        authorisations = s3.authorization_requests(found, "aws", *s3.moto_tags(account))
    except s3.UnknownOperation as unknown:
        CONTEXT.record("iam_unmodelled", f"s3:{method} {'object' if object_level else 'bucket'} {sorted(query)}")
        raise _record(principal, Refusal("AccessDenied", 403, f"Access Denied ({unknown})")) from None
    for one in authorisations:
        verdict = decide(principal.policies, one)
        if not verdict.allowed:
            check, result = verdict.refusal
            raise _record(principal, Refusal("AccessDenied", 403, _denial(principal, check, result).message))
    return principal


def _s3_answer(request, refusal):
    """A refusal as S3 answers it: its XML error document (none for ``HEAD``, whose answers have no body)."""
    headers = {"content-type": "application/xml", "x-amz-request-id": "ec2spot-sandbox"}
    body = b"" if (request.method or "").upper() == "HEAD" else s3.error_body(refusal.code, refusal.message)
    return refusal.status, headers, body


def install():
    """Wrap moto's ``BaseResponse.call_action`` and ``S3Response``'s ``bucket_response`` and ``key_response``
    (idempotent); a no-op per call while not enforcing."""
    if _INSTALLED:
        return
    _install_s3()
    from moto.core.responses import ActionResult, BaseResponse

    moto_call_action = BaseResponse.call_action

    def call_action(self):
        if not enforcing():
            return moto_call_action(self)
        try:
            authorise(self)
        except Refusal as refusal:
            with warnings.catch_warnings():
                # moto warns when a code is not one of the service's modelled errors: AWS's auth errors never are.
                warnings.simplefilter("ignore", UserWarning)
                _status, headers, body = self.serialized(ActionResult(refusal))
            return refusal.status, headers, body
        return moto_call_action(self)

    BaseResponse.call_action = call_action
    _INSTALLED["call_action"] = moto_call_action


def _install_s3():
    """S3 bypasses ``call_action``: moto's routes call ``S3Response.bucket_response`` or ``key_response`` (the
    ambiguous route, ``ambiguous_response``, calls one of them), so each is wrapped to authorise first."""
    from moto.s3.responses import S3Response

    for name, object_level in (("bucket_response", False), ("key_response", True)):
        original = getattr(S3Response, name)

        def response(self, request, full_url, headers, _original=original, _object_level=object_level):
            if enforcing():
                try:
                    authorise_s3(request, full_url, _object_level)
                except Refusal as refusal:
                    return _s3_answer(request, refusal)
            return _original(self, request, full_url, headers)

        setattr(S3Response, name, response)
        _INSTALLED[f"s3.{name}"] = original


__all__ = ["authorise", "authorise_s3", "enforce_from_environment", "enforcing", "install", "set_enforcing"]
