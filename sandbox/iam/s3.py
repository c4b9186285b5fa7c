"""Amazon S3 under IAM: from one REST request (method, bucket, key, query, headers) to the authorisations AWS makes.

S3 is a REST service: moto answers it through ``S3Response``'s own dispatch (``bucket_response``, ``key_response``),
not the ``BaseResponse.call_action`` the other services go through, and no request names its operation. The
operation is read from the request as S3 reads it: the method, whether the path names an object (a key) or only
a bucket, and the subresource in the query (``?tagging``, ``?acl``, ``?uploads``...). Each operation's IAM action is
what the S3 API Reference's "Permissions" section of that operation says (the tables below, one line per
operation, with that operation's name); the resource type the action is authorised on (``bucket``,
``arn:aws:s3:::<bucket>``, or ``object``, ``arn:aws:s3:::<bucket>/<key>``), its ARN and the condition keys each
action takes are the Service Authorization Reference's (``catalogue``), never typed here.

Some operations ask more than one action (each API reference page says so): ``CopyObject`` and ``UploadPartCopy``
read the source (``s3:GetObject``, ``s3:GetObjectVersion`` for a version) and write the target (``s3:PutObject``);
``PutObject`` with ``x-amz-tagging`` also asks ``s3:PutObjectTagging``, with an ACL header ``s3:PutObjectAcl``;
``CreateBucket`` with ``x-amz-object-ownership`` also asks ``s3:PutBucketOwnershipControls``, with an ACL header
``s3:PutBucketAcl``, with object lock ``s3:PutBucketObjectLockConfiguration`` and ``s3:PutBucketVersioning``;
``DeleteObjects`` (``POST ?delete``) asks ``s3:DeleteObject`` on each key its body names (S3 answers a refused key
in the result; here the whole request is refused). A query naming several subresources asks every action they
name (S3 routes on one; moto on another: both are asked, so no order lets one through unjudged). A request whose
operation is not in the tables (an unknown method, a browser ``POST`` form upload) is ``UnknownOperation``: the
caller refuses it.

Condition keys: the bucket's tags as ``aws:ResourceTag/<key>`` and ``s3:BucketTag/<key>`` (the reference's
``bucket`` and ``object`` types list both), an existing object's tags as ``s3:ExistingObjectTag/<key>``, the tags a
``PutObject`` (``x-amz-tagging``) or ``PutObjectTagging`` (its body) sets as ``s3:RequestObjectTag/<key>`` and
``s3:RequestObjectTagKeys``, ``s3:prefix``, ``s3:delimiter`` and ``s3:max-keys`` of a listing, ``s3:x-amz-acl``,
``s3:x-amz-server-side-encryption`` (and its KMS key id), ``s3:locationconstraint`` of a ``CreateBucket``, and
``s3:versionid``; each reaches the context only where the action's row lists it (``requests``).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from xml.etree import ElementTree

from . import catalogue
from .requests import AuthorizationRequest, Resource


class UnknownOperation(ValueError):
    """A request whose S3 operation the tables do not know: refused, never authorised on a guess."""


# Bucket operations: method -> {subresource in the query: the action that operation's "Permissions" asks}. Each line
# names the S3 API Reference operation it follows.
BUCKET_SUBRESOURCES = {
    "GET": {
        "acl": "GetBucketAcl",  # GetBucketAcl
        "accelerate": "GetAccelerateConfiguration",  # GetBucketAccelerateConfiguration
        "analytics": "GetAnalyticsConfiguration",  # Get/ListBucketAnalyticsConfiguration(s)
        "cors": "GetBucketCORS",  # GetBucketCors
        "encryption": "GetEncryptionConfiguration",  # GetBucketEncryption
        "intelligent-tiering": "GetIntelligentTieringConfiguration",  # Get/ListBucketIntelligentTieringConfiguration(s)
        "inventory": "GetInventoryConfiguration",  # Get/ListBucketInventoryConfiguration(s)
        "lifecycle": "GetLifecycleConfiguration",  # GetBucketLifecycleConfiguration
        "location": "GetBucketLocation",  # GetBucketLocation
        "logging": "GetBucketLogging",  # GetBucketLogging
        "metrics": "GetMetricsConfiguration",  # Get/ListBucketMetricsConfiguration(s)
        "notification": "GetBucketNotification",  # GetBucketNotificationConfiguration
        "object-lock": "GetBucketObjectLockConfiguration",  # GetObjectLockConfiguration
        "ownershipControls": "GetBucketOwnershipControls",  # GetBucketOwnershipControls
        "policy": "GetBucketPolicy",  # GetBucketPolicy
        "policyStatus": "GetBucketPolicyStatus",  # GetBucketPolicyStatus
        "publicAccessBlock": "GetBucketPublicAccessBlock",  # GetPublicAccessBlock
        "replication": "GetReplicationConfiguration",  # GetBucketReplication
        "requestPayment": "GetBucketRequestPayment",  # GetBucketRequestPayment
        "tagging": "GetBucketTagging",  # GetBucketTagging
        "uploads": "ListBucketMultipartUploads",  # ListMultipartUploads
        "versioning": "GetBucketVersioning",  # GetBucketVersioning
        "versions": "ListBucketVersions",  # ListObjectVersions
        "website": "GetBucketWebsite",  # GetBucketWebsite
    },
    "PUT": {
        "acl": "PutBucketAcl",  # PutBucketAcl
        "accelerate": "PutAccelerateConfiguration",  # PutBucketAccelerateConfiguration
        "analytics": "PutAnalyticsConfiguration",  # PutBucketAnalyticsConfiguration
        "cors": "PutBucketCORS",  # PutBucketCors
        "encryption": "PutEncryptionConfiguration",  # PutBucketEncryption
        "intelligent-tiering": "PutIntelligentTieringConfiguration",  # PutBucketIntelligentTieringConfiguration
        "inventory": "PutInventoryConfiguration",  # PutBucketInventoryConfiguration
        "lifecycle": "PutLifecycleConfiguration",  # PutBucketLifecycleConfiguration
        "logging": "PutBucketLogging",  # PutBucketLogging
        "metrics": "PutMetricsConfiguration",  # PutBucketMetricsConfiguration
        "notification": "PutBucketNotification",  # PutBucketNotificationConfiguration
        "object-lock": "PutBucketObjectLockConfiguration",  # PutObjectLockConfiguration
        "ownershipControls": "PutBucketOwnershipControls",  # PutBucketOwnershipControls
        "policy": "PutBucketPolicy",  # PutBucketPolicy
        "publicAccessBlock": "PutBucketPublicAccessBlock",  # PutPublicAccessBlock
        "replication": "PutReplicationConfiguration",  # PutBucketReplication
        "requestPayment": "PutBucketRequestPayment",  # PutBucketRequestPayment
        "tagging": "PutBucketTagging",  # PutBucketTagging
        "versioning": "PutBucketVersioning",  # PutBucketVersioning
        "website": "PutBucketWebsite",  # PutBucketWebsite
    },
    "DELETE": {
        "analytics": "PutAnalyticsConfiguration",  # DeleteBucketAnalyticsConfiguration
        "cors": "PutBucketCORS",  # DeleteBucketCors
        "encryption": "PutEncryptionConfiguration",  # DeleteBucketEncryption
        "intelligent-tiering": "PutIntelligentTieringConfiguration",  # DeleteBucketIntelligentTieringConfiguration
        "inventory": "PutInventoryConfiguration",  # DeleteBucketInventoryConfiguration
        "lifecycle": "PutLifecycleConfiguration",  # DeleteBucketLifecycle
        "metrics": "PutMetricsConfiguration",  # DeleteBucketMetricsConfiguration
        "ownershipControls": "PutBucketOwnershipControls",  # DeleteBucketOwnershipControls
        "policy": "DeleteBucketPolicy",  # DeleteBucketPolicy
        "publicAccessBlock": "PutBucketPublicAccessBlock",  # DeletePublicAccessBlock
        "replication": "PutReplicationConfiguration",  # DeleteBucketReplication
        "tagging": "PutBucketTagging",  # DeleteBucketTagging
        "website": "DeleteBucketWebsite",  # DeleteBucketWebsite
    },
    "POST": {
        "delete": "DeleteObject",  # DeleteObjects: s3:DeleteObject on each key of the body
    },
}
# A bucket request without a subresource.
BUCKET_DEFAULTS = {
    "GET": "ListBucket",  # ListObjects, ListObjectsV2 (?list-type=2)
    "HEAD": "ListBucket",  # HeadBucket
    "PUT": "CreateBucket",  # CreateBucket
    "DELETE": "DeleteBucket",  # DeleteBucket
}
# Object operations, as above.
OBJECT_SUBRESOURCES = {
    "GET": {
        "acl": "GetObjectAcl",  # GetObjectAcl
        "attributes": "GetObjectAttributes",  # GetObjectAttributes
        "legal-hold": "GetObjectLegalHold",  # GetObjectLegalHold
        "retention": "GetObjectRetention",  # GetObjectRetention
        "tagging": "GetObjectTagging",  # GetObjectTagging
        "torrent": "GetObjectTorrent",  # GetObjectTorrent
        "uploadId": "ListMultipartUploadParts",  # ListParts
    },
    "PUT": {
        "acl": "PutObjectAcl",  # PutObjectAcl
        "legal-hold": "PutObjectLegalHold",  # PutObjectLegalHold
        "retention": "PutObjectRetention",  # PutObjectRetention
        "tagging": "PutObjectTagging",  # PutObjectTagging
        "uploadId": "PutObject",  # UploadPart (?partNumber&uploadId)
    },
    "DELETE": {
        "tagging": "DeleteObjectTagging",  # DeleteObjectTagging
        "uploadId": "AbortMultipartUpload",  # AbortMultipartUpload
    },
    "POST": {
        "restore": "RestoreObject",  # RestoreObject
        "select": "GetObject",  # SelectObjectContent
        "uploadId": "PutObject",  # CompleteMultipartUpload
        "uploads": "PutObject",  # CreateMultipartUpload
    },
}
OBJECT_DEFAULTS = {
    "GET": "GetObject",  # GetObject
    "HEAD": "GetObject",  # HeadObject
    "PUT": "PutObject",  # PutObject
    "DELETE": "DeleteObject",  # DeleteObject
}
# With ?versionId, an object operation on that version asks the action's version form (each operation's page).
VERSIONED = {
    "GetObject": "GetObjectVersion",
    "GetObjectAcl": "GetObjectVersionAcl",
    "GetObjectAttributes": "GetObjectVersionAttributes",
    "GetObjectTagging": "GetObjectVersionTagging",
    "GetObjectTorrent": "GetObjectVersionTorrent",
    "PutObjectAcl": "PutObjectVersionAcl",
    "PutObjectTagging": "PutObjectVersionTagging",
    "DeleteObject": "DeleteObjectVersion",
    "DeleteObjectTagging": "DeleteObjectVersionTagging",
}
ACL_HEADERS = ("x-amz-acl", "x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp",
               "x-amz-grant-write", "x-amz-grant-write-acp")  # fmt: skip
# Request headers S3 puts in the context as ``s3:<header>`` where the action's row lists that key.
REQUEST_HEADER_KEYS = ("x-amz-acl", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id")
_AMAZONAWS_BUCKET = re.compile(r"(.+)\.s3(.*)\.amazonaws\.com")
_PATH_STYLE_OBJECT = re.compile(r"^/([^/]+/.+|/.*)$", re.DOTALL)


@dataclass(frozen=True)
class Operation:
    """One authorisation of an S3 request: the action, the bucket (None: the account, for ``ListAllMyBuckets``),
    the key (None: the bucket itself) and the condition keys the request brings for it."""

    action: str
    bucket: str | None
    key: str | None = None
    keys: dict = field(default_factory=dict)
    request_tags: dict | None = None


def locate(url, raw_path, virtual_host):
    """``(bucket, key)`` of a request as moto's ``S3Response`` reads them, so that what is authorised is what moto
    acts on: ``url`` the URL as it arrived (a path-style bucket is its path's first segment, not decoded), ``raw_path``
    the path as it arrived (the key is the path after the bucket, percent-decoded once; ``""`` names an empty key),
    ``virtual_host`` whether the bucket is in the host (``<bucket>.s3.<region>.amazonaws.com``). The key is None when
    the request names only the bucket (``/bucket``, ``/bucket/``; ``/`` of a virtual host); the bucket is empty when
    it names none (``GET /``: ``ListBuckets``)."""
    parsed = urllib.parse.urlsplit(url)
    raw_path = raw_path or "/"
    decoded = urllib.parse.unquote(raw_path)
    if virtual_host:
        host = parsed.netloc.split("@")[-1].removeprefix("www.")
        found = _AMAZONAWS_BUCKET.search(host) if "amazonaws.com" in host else None
        bucket = found.group(1) if found else (host.split(".")[0] if "." in host else "")
        # moto's routes: "/" is the bucket, any longer path an object.
        return bucket, (None if raw_path == "/" else decoded[1:])
    bucket = parsed.path.lstrip("/").split("/")[0]
    # moto's routes (matched on the path as it arrived): /<bucket>/<something> and //<something> name an object.
    if not _PATH_STYLE_OBJECT.match(raw_path):
        return bucket, None
    return bucket, "/".join(decoded.split("/")[2:])


def _first(query, name):
    value = query.get(name)
    if isinstance(value, (list, tuple)):
        return value[0] if value else ""
    return value


def _header(headers, name):
    return headers.get(name) if headers is not None else None


def _tags_of_header(value):
    """``x-amz-tagging`` (``k1=v1&k2=v2``, URL-encoded)."""
    return dict(urllib.parse.parse_qsl(value or "", keep_blank_values=True))


def _tags_of_body(body):
    """The ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...`` of a tagging call's body; {} when unreadable."""
    try:
        root = ElementTree.fromstring(body or b"<x/>")
    except ElementTree.ParseError:
        return {}
    tags = {}
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Tag":
            fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in element}
            if "Key" in fields:
                tags[fields["Key"]] = fields.get("Value", "")
    return tags


def _keys_of_delete(body):
    """The keys a ``DeleteObjects`` body (``<Delete><Object><Key/>...``) names; UnknownOperation when unreadable."""
    try:
        root = ElementTree.fromstring(body or b"")
    except ElementTree.ParseError as error:
        raise UnknownOperation(f"DeleteObjects with a body that is not XML: {error}") from None
    return [child.text or "" for child in root.iter() if child.tag.rsplit("}", 1)[-1] == "Key"]


def _location(body):
    try:
        root = ElementTree.fromstring(body) if body else None
    except ElementTree.ParseError:
        return None
    found = [e.text for e in (root.iter() if root is not None else ()) if e.tag.endswith("LocationConstraint")]
    return found[0] if found else None


def _copy_source(value):
    """``x-amz-copy-source`` (``/bucket/key?versionId=...`` or ``bucket/key``, URL-encoded): (bucket, key, version)."""
    path, _question, query = value.partition("?")
    bucket, _slash, key = urllib.parse.unquote(path).lstrip("/").partition("/")
    version = dict(urllib.parse.parse_qsl(query)).get("versionId")
    return bucket, key, version


def operations(method, bucket, key, query, headers=None, body=b""):
    """The ``Operation``s one request asks (see the module's docstring); ``UnknownOperation`` for one the tables do
    not know. ``query``: the parsed query (``{name: [value]}`` or ``{name: value}``), ``headers``: a mapping with
    case-insensitive ``get`` (or None)."""
    method = (method or "").upper()
    query = dict(query or {})
    if not bucket:
        if method == "GET" and key is None:
            return [Operation("s3:ListAllMyBuckets", None)]  # ListBuckets
        raise UnknownOperation(f"{method} names no bucket")
    level = "bucket" if key is None else "object"
    tables, defaults = (BUCKET_SUBRESOURCES, BUCKET_DEFAULTS) if key is None else (OBJECT_SUBRESOURCES, OBJECT_DEFAULTS)
    if method not in tables and method not in defaults:
        raise UnknownOperation(f"S3 has no {level} operation for method {method!r}")
    named = [action for name, action in tables.get(method, {}).items() if name in query]
    actions = list(dict.fromkeys(named)) or ([defaults[method]] if method in defaults else [])
    if not actions:
        raise UnknownOperation(f"S3 has no {level} operation {method} without one of {sorted(tables[method])}")
    if key is None and method == "POST":  # DeleteObjects: on each key its body names, not on the bucket
        return _also_asked(method, bucket, key, query, headers, body)
    version = _first(query, "versionId")
    found = []
    for action in actions:
        if version and key is not None:
            action = VERSIONED.get(action, action)
        found.append(Operation(f"s3:{action}", bucket, key))
    found = _with_request_keys(found, method, key, query, headers, body, version)
    return found + _also_asked(method, bucket, key, query, headers, body)


def _with_request_keys(found, method, key, query, headers, body, version):
    """Each operation with the condition keys the request brings for it."""
    common = {}
    for header in REQUEST_HEADER_KEYS:
        if _header(headers, header):
            common[f"s3:{header}"] = _header(headers, header)
    if version:
        common["s3:versionid"] = version
    for name in ("prefix", "delimiter", "max-keys"):
        if key is None and name in query:
            common[f"s3:{name}"] = _first(query, name)
    result = []
    for operation in found:
        keys, tags = dict(common), None
        if operation.action == "s3:PutObject" and _header(headers, "x-amz-tagging") is not None:
            tags = _tags_of_header(_header(headers, "x-amz-tagging"))
        if operation.action in ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"):
            tags = _tags_of_body(body)
        if operation.action == "s3:PutBucketTagging" and method == "PUT":
            result.append(Operation(operation.action, operation.bucket, None, keys, _tags_of_body(body)))
            continue
        if operation.action == "s3:CreateBucket" and _location(body):
            keys["s3:locationconstraint"] = _location(body)
        if tags is not None:
            keys.update({f"s3:RequestObjectTag/{k}": v for k, v in tags.items()})
            keys["s3:RequestObjectTagKeys"] = sorted(tags)
        result.append(Operation(operation.action, operation.bucket, operation.key, keys))
    return result


def _also_asked(method, bucket, key, query, headers, body):
    """The further authorisations an operation asks (each API reference page's "Permissions")."""
    more = []
    if key is not None and method == "PUT":
        source = _header(headers, "x-amz-copy-source")
        if source:  # CopyObject, UploadPartCopy: read the source
            source_bucket, source_key, source_version = _copy_source(source)
            action = "s3:GetObjectVersion" if source_version else "s3:GetObject"
            more.append(Operation(action, source_bucket, source_key))
        only_object = not any(name in query for name in OBJECT_SUBRESOURCES["PUT"])
        if only_object and _header(headers, "x-amz-tagging") is not None:  # PutObject with tags
            more.append(Operation("s3:PutObjectTagging", bucket, key, {}))
        if only_object and any(_header(headers, name) for name in ACL_HEADERS):  # PutObject with an ACL
            more.append(Operation("s3:PutObjectAcl", bucket, key, {}))
    if key is None and method == "PUT" and not any(name in query for name in BUCKET_SUBRESOURCES["PUT"]):
        if _header(headers, "x-amz-object-ownership"):  # CreateBucket
            more.append(Operation("s3:PutBucketOwnershipControls", bucket))
        if any(_header(headers, name) for name in ACL_HEADERS):
            more.append(Operation("s3:PutBucketAcl", bucket))
        if str(_header(headers, "x-amz-bucket-object-lock-enabled") or "").lower() == "true":
            more += [
                Operation("s3:PutBucketObjectLockConfiguration", bucket),
                Operation("s3:PutBucketVersioning", bucket),
            ]
    if key is None and method == "POST" and "delete" in query:
        return [Operation("s3:DeleteObject", bucket, name) for name in _keys_of_delete(body)]
    return more


def authorization_requests(found, partition="aws", bucket_tags=None, object_tags=None):
    """The ``AuthorizationRequest`` of each operation: on the reference's ``object`` or ``bucket`` resource type for
    its action (an action whose row has neither, such as ``s3:ListAllMyBuckets``, on ``*``), with the bucket's tags
    (``bucket_tags(bucket)``) and an existing object's (``object_tags(bucket, key)``)."""
    requests = []
    for operation in found:
        entry = catalogue.action(operation.action)
        keys = dict(operation.keys)
        if not entry.resources:
            requests.append(AuthorizationRequest(entry.full_name, keys=keys))
            continue
        type_name = "bucket" if operation.key is None else "object"
        part = entry.resource(type_name)
        if part is None:
            raise UnknownOperation(f"{entry.full_name} is not authorised on an S3 {type_name} in the reference")
        tags = dict(bucket_tags(operation.bucket) if bucket_tags else {})
        keys.update({f"s3:BucketTag/{k}": v for k, v in tags.items()})
        if operation.key is not None and object_tags is not None:
            keys.update(
                {f"s3:ExistingObjectTag/{k}": v for k, v in object_tags(operation.bucket, operation.key).items()}
            )
        ids = (operation.bucket,) if operation.key is None else (operation.bucket, operation.key)
        arn = catalogue.arn_for(part.resource_type, partition, "", "", *ids)
        resource = Resource(part.name, arn, tags=tags)
        requests.append(
            AuthorizationRequest(entry.full_name, (resource,), keys=keys, request_tags=operation.request_tags)
        )
    return requests


def moto_tags(account, partition="aws"):
    """``(bucket_tags, object_tags)`` read from moto's S3 state of ``account``: {} for what does not exist."""
    from moto.s3.models import s3_backends

    backend = s3_backends[account][partition]

    def bucket_tags(name):
        bucket = backend.buckets.get(name)
        return backend.tagger.get_tag_dict_for_resource(bucket.arn) if bucket is not None else {}

    def object_tags(name, key):
        bucket = backend.buckets.get(name)
        found = bucket.keys.get(key) if bucket is not None else None
        return backend.tagger.get_tag_dict_for_resource(found.arn) if found is not None else {}

    return bucket_tags, object_tags


def error_body(code, message, resource=""):
    """S3's error document (``<Error><Code/><Message/><Resource/><RequestId/></Error>``)."""
    from xml.sax.saxutils import escape

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>ec2spot-sandbox</RequestId></Error>"
    ).encode()
