"""Amazon S3 under IAM enforcement (issue 19): each request's operation read from its method, path and query, and
authorised as the S3 API Reference's "Permissions" sections and the Service Authorization Reference say.

Unit tables first (``sandbox.iam.s3``: where the bucket and key are, which actions a request asks, on which ARN,
with which keys), then the server: the fleet's upload of the agent's program as the operator (docs/iam's deploy
policy), the instance's fetch of it as its role (the rendered ``instance-policy.json.j2``), each refused outside its
scope, an unsigned request and an unknown key refused, and the shape of S3's denial.
"""

import hashlib
import json
import urllib.parse
import uuid
from xml.etree import ElementTree

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from moto.s3 import utils as moto_s3_utils
from moto.s3bucket_path import utils as moto_path_utils

from sandbox.clock import CONTEXT
from sandbox.iam import catalogue, s3
from sandbox.iam.project_policies import documented_policies, rendered_policies
from sandbox.iam.requests import decide

ACCOUNT = "123456789012"
PATH_STYLE = "http://127.0.0.1:5000"


def actions(method, key, query=None, headers=None, body=b"", bucket="b"):
    return [(o.action, o.bucket, o.key) for o in s3.operations(method, bucket, key, query or {}, headers, body)]


@pytest.mark.parametrize(
    "url, raw_path, virtual_host, expected",
    [
        (f"{PATH_STYLE}/", "/", False, ("", None)),  # ListBuckets
        (f"{PATH_STYLE}/bucket", "/bucket", False, ("bucket", None)),
        (f"{PATH_STYLE}/bucket/", "/bucket/", False, ("bucket", None)),
        (f"{PATH_STYLE}/bucket/key", "/bucket/key", False, ("bucket", "key")),
        (f"{PATH_STYLE}/bucket/a/b/c.py", "/bucket/a/b/c.py", False, ("bucket", "a/b/c.py")),
        (f"{PATH_STYLE}/bucket/dir/", "/bucket/dir/", False, ("bucket", "dir/")),
        # URL-encoded keys are decoded once, as S3 (and moto) read them: an encoded slash is a slash of the key
        (f"{PATH_STYLE}/bucket/a%20b%2Fc", "/bucket/a%20b%2Fc", False, ("bucket", "a b/c")),
        (f"{PATH_STYLE}/bucket/%252F", "/bucket/%252F", False, ("bucket", "%2F")),
        (f"{PATH_STYLE}/bucket/..%2F..%2Fother", "/bucket/..%2F..%2Fother", False, ("bucket", "../../other")),
        (f"{PATH_STYLE}/bucket/a?b", "/bucket/a", False, ("bucket", "a")),  # the query is not the key
        # the bucket in the host (virtual-hosted style): the whole path is the key
        ("https://bucket.s3.us-east-1.amazonaws.com/", "/", True, ("bucket", None)),
        ("https://bucket.s3.us-east-1.amazonaws.com/key", "/key", True, ("bucket", "key")),
        ("https://bucket.s3.amazonaws.com/a/b%2Fc", "/a/b%2Fc", True, ("bucket", "a/b/c")),
        ("https://my.dotted.bucket.s3.eu-west-1.amazonaws.com/k", "/k", True, ("my.dotted.bucket", "k")),
        ("https://bucket.s3.amazonaws.com//k", "//k", True, ("bucket", "/k")),
        ("http://bucket.localhost.localstack.cloud:4566/k", "/k", True, ("bucket", "k")),
    ],
)
def test_the_bucket_and_key_are_where_moto_reads_them(url, raw_path, virtual_host, expected):
    assert s3.locate(url, raw_path, virtual_host) == expected
    bucket, key = expected
    # moto's own readings (the bucket from the URL as it arrived, the key from the path decoded once) agree
    if virtual_host:
        assert moto_s3_utils.bucket_name_from_url(url) == bucket
    else:
        assert (moto_path_utils.bucket_name_from_url(url) or "") == bucket
        if key is not None:
            assert moto_path_utils.parse_key_name(urllib.parse.unquote(raw_path)) == key


@pytest.mark.parametrize(
    "method, key, query, headers, expected",
    [
        ("GET", None, {}, None, ["s3:ListBucket"]),  # ListObjects
        ("GET", None, {"list-type": ["2"], "prefix": ["ec2spot-agent/"]}, None, ["s3:ListBucket"]),  # ListObjectsV2
        ("HEAD", None, {}, None, ["s3:ListBucket"]),  # HeadBucket
        ("GET", None, {"versions": [""]}, None, ["s3:ListBucketVersions"]),
        ("GET", None, {"uploads": [""]}, None, ["s3:ListBucketMultipartUploads"]),
        ("GET", None, {"location": [""]}, None, ["s3:GetBucketLocation"]),
        ("GET", None, {"tagging": [""]}, None, ["s3:GetBucketTagging"]),
        ("GET", None, {"versioning": [""]}, None, ["s3:GetBucketVersioning"]),
        ("GET", None, {"acl": [""]}, None, ["s3:GetBucketAcl"]),
        ("GET", None, {"policy": [""]}, None, ["s3:GetBucketPolicy"]),
        ("GET", None, {"policyStatus": [""]}, None, ["s3:GetBucketPolicyStatus"]),
        ("GET", None, {"publicAccessBlock": [""]}, None, ["s3:GetBucketPublicAccessBlock"]),
        ("GET", None, {"encryption": [""]}, None, ["s3:GetEncryptionConfiguration"]),
        ("GET", None, {"lifecycle": [""]}, None, ["s3:GetLifecycleConfiguration"]),
        ("GET", None, {"ownershipControls": [""]}, None, ["s3:GetBucketOwnershipControls"]),
        ("PUT", None, {}, None, ["s3:CreateBucket"]),
        (
            "PUT",
            None,
            {},
            {"x-amz-object-ownership": "BucketOwnerEnforced"},
            ["s3:CreateBucket", "s3:PutBucketOwnershipControls"],
        ),
        ("PUT", None, {"tagging": [""]}, None, ["s3:PutBucketTagging"]),
        ("PUT", None, {"versioning": [""]}, None, ["s3:PutBucketVersioning"]),
        ("PUT", None, {"policy": [""]}, None, ["s3:PutBucketPolicy"]),
        ("PUT", None, {"publicAccessBlock": [""]}, None, ["s3:PutBucketPublicAccessBlock"]),
        ("PUT", None, {"encryption": [""]}, None, ["s3:PutEncryptionConfiguration"]),
        ("PUT", None, {"lifecycle": [""]}, None, ["s3:PutLifecycleConfiguration"]),
        ("DELETE", None, {}, None, ["s3:DeleteBucket"]),
        ("DELETE", None, {"tagging": [""]}, None, ["s3:PutBucketTagging"]),  # DeleteBucketTagging
        ("DELETE", None, {"encryption": [""]}, None, ["s3:PutEncryptionConfiguration"]),  # DeleteBucketEncryption
        ("DELETE", None, {"policy": [""]}, None, ["s3:DeleteBucketPolicy"]),
        # two subresources: both are asked, whichever the service would route on
        ("PUT", None, {"tagging": [""], "policy": [""]}, None, ["s3:PutBucketPolicy", "s3:PutBucketTagging"]),
        # an unknown query parameter names no operation: the method's default one
        ("GET", None, {"foo": ["bar"]}, None, ["s3:ListBucket"]),
        ("GET", "k", {"foo": [""]}, None, ["s3:GetObject"]),
        ("GET", "k", {}, None, ["s3:GetObject"]),
        ("GET", "", {}, None, ["s3:GetObject"]),  # an empty key is still an object
        ("HEAD", "k", {}, None, ["s3:GetObject"]),  # HeadObject
        ("GET", "k", {"versionId": ["3"]}, None, ["s3:GetObjectVersion"]),
        ("GET", "k", {"tagging": [""]}, None, ["s3:GetObjectTagging"]),
        ("GET", "k", {"tagging": [""], "versionId": ["3"]}, None, ["s3:GetObjectVersionTagging"]),
        ("GET", "k", {"acl": [""]}, None, ["s3:GetObjectAcl"]),
        ("GET", "k", {"uploadId": ["u"]}, None, ["s3:ListMultipartUploadParts"]),  # ListParts
        ("PUT", "k", {}, None, ["s3:PutObject"]),
        ("PUT", "k", {"x-id": ["PutObject"]}, None, ["s3:PutObject"]),  # what boto3 adds names nothing
        ("PUT", "k", {}, {"x-amz-acl": "private"}, ["s3:PutObject", "s3:PutObjectAcl"]),
        ("PUT", "k", {}, {"x-amz-tagging": "a=b"}, ["s3:PutObject", "s3:PutObjectTagging"]),
        ("PUT", "k", {"partNumber": ["1"], "uploadId": ["u"]}, None, ["s3:PutObject"]),  # UploadPart
        ("PUT", "k", {"tagging": [""]}, None, ["s3:PutObjectTagging"]),
        ("PUT", "k", {"acl": [""]}, None, ["s3:PutObjectAcl"]),
        ("POST", "k", {"uploads": [""]}, None, ["s3:PutObject"]),  # CreateMultipartUpload
        ("POST", "k", {"uploadId": ["u"]}, None, ["s3:PutObject"]),  # CompleteMultipartUpload
        ("DELETE", "k", {"uploadId": ["u"]}, None, ["s3:AbortMultipartUpload"]),
        ("DELETE", "k", {}, None, ["s3:DeleteObject"]),
        ("DELETE", "k", {"versionId": ["3"]}, None, ["s3:DeleteObjectVersion"]),
        ("DELETE", "k", {"tagging": [""]}, None, ["s3:DeleteObjectTagging"]),
    ],
)
def test_each_request_asks_the_action_its_operations_permissions_name(method, key, query, headers, expected):
    assert sorted(action for action, _bucket, _key in actions(method, key, query, headers)) == sorted(expected)


def test_a_copy_reads_its_source_and_writes_its_target():
    assert actions("PUT", "to/k", headers={"x-amz-copy-source": "/src/from/a%20b.py"}) == [
        ("s3:PutObject", "b", "to/k"),
        ("s3:GetObject", "src", "from/a b.py"),
    ]
    versioned = actions("PUT", "k", headers={"x-amz-copy-source": "src/a%3Fb?versionId=7"})
    assert versioned[1] == ("s3:GetObjectVersion", "src", "a?b")


def test_delete_objects_asks_delete_object_on_each_key_of_its_body():
    body = b"<Delete><Object><Key>a/1</Key></Object><Object><Key>b/2</Key></Object></Delete>"
    assert actions("POST", None, {"delete": [""]}, body=body) == [
        ("s3:DeleteObject", "b", "a/1"),
        ("s3:DeleteObject", "b", "b/2"),
    ]
    with pytest.raises(s3.UnknownOperation):
        actions("POST", None, {"delete": [""]}, body=b"<Delete")


@pytest.mark.parametrize(
    "method, bucket, key, query",
    [
        ("POST", "b", None, {}),  # a browser form upload: its policy document is not modelled
        ("PATCH", "b", "k", {}),
        ("TRACE", "b", None, {}),
        ("PUT", "", "k", {}),  # no bucket
        ("DELETE", "", None, {}),
    ],
)
def test_an_operation_the_tables_do_not_know_is_refused(method, bucket, key, query):
    with pytest.raises(s3.UnknownOperation):
        s3.operations(method, bucket, key, query)


def test_the_bucket_listing_is_listallmybuckets_on_every_resource():
    (request,) = s3.authorization_requests(s3.operations("GET", "", None, {}))
    assert [(c.action, c.resource) for c in request.checks()] == [("s3:ListAllMyBuckets", "*")]


def test_every_action_of_the_tables_is_the_references_on_a_bucket_or_an_object():
    for tables, type_name in ((s3.BUCKET_SUBRESOURCES, "bucket"), (s3.OBJECT_SUBRESOURCES, "object")):
        for method, table in tables.items():
            for subresource, action in table.items():
                wanted = "object" if (method, subresource) == ("POST", "delete") else type_name
                assert catalogue.action(f"s3:{action}").resource(wanted) is not None, (method, subresource, action)
    for defaults, type_name in ((s3.BUCKET_DEFAULTS, "bucket"), (s3.OBJECT_DEFAULTS, "object")):
        for action in [*defaults.values(), *(s3.VERSIONED.values() if type_name == "object" else ())]:
            assert catalogue.action(f"s3:{action}").resource(type_name) is not None, action


def test_the_arns_and_keys_are_the_references():
    tags = {"ec2spot:managed-by": "ec2spot.autorecover"}
    listing = s3.operations("GET", "b", None, {"list-type": ["2"], "prefix": ["ec2spot-agent/"], "max-keys": ["5"]})
    (check,) = s3.authorization_requests(listing, bucket_tags=lambda name: tags)[0].checks()
    assert check.resource == "arn:aws:s3:::b"
    assert check.context["s3:prefix"] == "ec2spot-agent/" and check.context["s3:max-keys"] == "5"
    assert check.context["aws:ResourceTag/ec2spot:managed-by"] == "ec2spot.autorecover"
    assert check.context["s3:BucketTag/ec2spot:managed-by"] == "ec2spot.autorecover"
    get = s3.operations("GET", "b", "a/b c.py", {})
    (check,) = s3.authorization_requests(get, object_tags=lambda b, k: {"tier": "gold"})[0].checks()
    assert check.resource == "arn:aws:s3:::b/a/b c.py"
    assert check.context == {"s3:ExistingObjectTag/tier": "gold"}
    put = s3.operations("PUT", "b", "k", {}, {"x-amz-tagging": "team=db&x=%20y",
                                              "x-amz-server-side-encryption": "AES256"})  # fmt: skip
    (check,) = s3.authorization_requests(put[:1])[0].checks()
    assert check.context["s3:RequestObjectTag/team"] == "db" and check.context["s3:RequestObjectTag/x"] == " y"
    assert check.context["s3:RequestObjectTagKeys"] == ["team", "x"]
    assert check.context["s3:x-amz-server-side-encryption"] == "AES256"
    assert "s3:prefix" not in check.context  # s3:PutObject's row does not list it


def test_a_policy_on_the_request_object_tags_is_judged():
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
         "Condition": {"StringEquals": {"s3:RequestObjectTag/team": "db"}}}]}  # fmt: skip
    tagged = s3.authorization_requests(s3.operations("PUT", "b", "k", {}, {"x-amz-tagging": "team=db"}))[0]
    untagged = s3.authorization_requests(s3.operations("PUT", "b", "k", {}))[0]
    assert decide([policy], tagged).allowed
    assert not decide([policy], untagged).allowed


# The server.


@pytest.fixture(scope="module")
def admin_s3(aws):
    return aws("s3")


@pytest.fixture(scope="module")
def operator(aws, endpoint):
    """An IAM user carrying docs/iam/deploy-policy.json, as ``python -m sandbox start`` makes the operator."""
    iam = aws("iam")
    name = f"operator-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    document = json.dumps(documented_policies()["docs/deploy-policy.json"])
    arn = iam.create_policy(PolicyName=f"{name}-deploy", PolicyDocument=document)["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    session = boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                                    region_name="us-east-1")  # fmt: skip
    return session.client("s3", endpoint_url=endpoint)


@pytest.fixture(scope="module")
def instance_policy():
    """The rendered instance role's policy (roles/fleet/templates/instance-policy.json.j2, the example variables)
    and the agent object it names."""
    entry = rendered_policies()["instance/example"]
    (statement,) = [s for s in entry["document"]["Statement"] if s["Sid"] == "FetchTheAgentProgram"]
    bucket, _slash, key = statement["Resource"].split(":::", 1)[1].partition("/")
    return entry["document"], bucket, key


@pytest.fixture(scope="module")
def instance_role(aws, endpoint, instance_policy):
    """An S3 client signed as a role carrying the instance policy (temporary credentials, as IMDS serves them)."""
    document, _bucket, _key = instance_policy
    iam = aws("iam")
    name = f"pg-{uuid.uuid4().hex[:8]}-instance"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}  # fmt: skip
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="instance", PolicyDocument=json.dumps(document))
    credentials = aws("sts").assume_role(RoleArn=arn, RoleSessionName="i-0123456789abcdef0")["Credentials"]
    session = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token=credentials["SessionToken"], region_name="us-east-1")  # fmt: skip
    return session.client("s3", endpoint_url=endpoint)


def refused(call):
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_the_operator_uploads_the_agent_and_nothing_elsewhere(admin_s3, operator, enforcing):
    program = b"print('agent')\n"
    bucket, key = f"ec2spot-agent-{ACCOUNT}-us-east-1", f"ec2spot-agent/{hashlib.sha256(program).hexdigest()}.py"
    operator.create_bucket(Bucket=bucket)
    operator.put_object(Bucket=bucket, Key=key, Body=program)
    assert operator.get_object(Bucket=bucket, Key=key)["Body"].read() == program
    assert operator.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    other = f"someone-else-{uuid.uuid4().hex[:8]}"
    enforcing.call("iam", enforce=False)
    admin_s3.create_bucket(Bucket=other)
    enforcing.call("iam", enforce=True)
    assert refused(lambda: operator.put_object(Bucket=other, Key=key, Body=program)) == ("AccessDenied", 403)
    assert refused(lambda: operator.get_object(Bucket=other, Key=key)) == ("AccessDenied", 403)
    assert refused(lambda: operator.create_bucket(Bucket=f"not-ours-{uuid.uuid4().hex[:8]}")) == ("AccessDenied", 403)
    assert refused(lambda: operator.delete_object(Bucket=bucket, Key=key)) == ("AccessDenied", 403)
    assert refused(lambda: operator.put_bucket_policy(Bucket=bucket, Policy="{}")) == ("AccessDenied", 403)
    assert "Contents" not in admin_s3.list_objects_v2(Bucket=other)  # nothing reached moto
    assert admin_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == program


def test_the_instance_fetches_only_its_own_program(admin_s3, instance_role, instance_policy, enforcing):
    _document, bucket, key = instance_policy
    enforcing.call("iam", enforce=False)
    admin_s3.create_bucket(Bucket=bucket)
    admin_s3.put_object(Bucket=bucket, Key=key, Body=b"agent")
    admin_s3.put_object(Bucket=bucket, Key="ec2spot-agent/0000.py", Body=b"another")
    enforcing.call("iam", enforce=True)
    assert instance_role.get_object(Bucket=bucket, Key=key)["Body"].read() == b"agent"
    assert refused(lambda: instance_role.get_object(Bucket=bucket, Key="ec2spot-agent/0000.py")) == (
        "AccessDenied",
        403,
    )
    assert refused(lambda: instance_role.put_object(Bucket=bucket, Key=key, Body=b"evil")) == ("AccessDenied", 403)
    assert refused(lambda: instance_role.head_object(Bucket=bucket, Key="ec2spot-agent/0000.py")) == ("403", 403)
    assert refused(lambda: instance_role.list_objects_v2(Bucket=bucket)) == ("AccessDenied", 403)
    assert admin_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"agent"


def test_a_denial_is_s3s_error_document(endpoint, instance_role, instance_policy, enforcing):
    _document, bucket, _key = instance_policy
    url = f"{endpoint}/{bucket}/ec2spot-agent/elsewhere.py"
    signed = instance_role.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "ec2spot-agent/x.py"})
    for answer in (requests.get(url, timeout=10), requests.get(signed, timeout=10)):
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("application/xml")
        error = ElementTree.fromstring(answer.content)
        assert error.tag == "Error" and error.findtext("Code") == "AccessDenied"
        assert error.findtext("Message")
    denied = CONTEXT.records["iam_denied"][-1]
    assert denied["code"] == "AccessDenied" and "s3:GetObject on resource: arn:aws:s3:::" in denied["message"]
    assert "assumed-role/" in denied["principal"]


def test_an_unsigned_request_or_an_unknown_key_is_refused(endpoint, admin_s3, instance_policy, enforcing):
    _document, bucket, key = instance_policy
    enforcing.call("iam", enforce=False)
    admin_s3.create_bucket(Bucket=bucket)
    admin_s3.put_object(Bucket=bucket, Key=key, Body=b"agent")
    enforcing.call("iam", enforce=True)
    for method in ("GET", "PUT", "DELETE"):
        answer = requests.request(method, f"{endpoint}/{bucket}/{key}", data=b"x", timeout=10)
        assert answer.status_code == 403, method
        assert ElementTree.fromstring(answer.content).findtext("Code") == "AccessDenied"
    assert CONTEXT.records["iam_denied"][-1]["principal"] is None
    stranger = boto3.session.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="secret",
                                     region_name="us-east-1").client("s3", endpoint_url=endpoint)  # fmt: skip
    assert refused(lambda: stranger.get_object(Bucket=bucket, Key=key)) == ("InvalidAccessKeyId", 403)
    assert admin_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"agent"  # the administrator passes


def test_s3_is_not_judged_while_enforcement_is_off(box, admin_s3, instance_role, instance_policy):
    _document, bucket, _key = instance_policy
    admin_s3.create_bucket(Bucket=bucket)
    admin_s3.put_object(Bucket=bucket, Key="ec2spot-agent/0000.py", Body=b"another")
    assert instance_role.get_object(Bucket=bucket, Key="ec2spot-agent/0000.py")["Body"].read() == b"another"
    assert box.call("iam")["denied"] == []


def test_a_virtual_hosted_request_is_authorised_on_the_bucket_of_its_host(
    endpoint, admin_s3, instance_role, instance_policy, enforcing
):
    """The bucket in the Host header (``<bucket>.s3.<region>.amazonaws.com``), the key the whole path: as moto routes
    it. The sandbox authorises, it does not authenticate, so the role's key id and token name the principal."""
    _document, bucket, key = instance_policy
    enforcing.call("iam", enforce=False)
    admin_s3.create_bucket(Bucket=bucket)
    admin_s3.put_object(Bucket=bucket, Key=key, Body=b"agent")
    enforcing.call("iam", enforce=True)
    credentials = instance_role._request_signer._credentials.get_frozen_credentials()
    headers = {
        "Host": f"{bucket}.s3.us-east-1.amazonaws.com",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=0",
        "X-Amz-Security-Token": credentials.token,
    }
    mine = requests.get(f"{endpoint}/{urllib.parse.quote(key)}", headers=headers, timeout=10)
    assert (mine.status_code, mine.content) == (200, b"agent")
    other = requests.get(f"{endpoint}/ec2spot-agent/0000.py", headers=headers, timeout=10)
    assert other.status_code == 403
    assert f"arn:aws:s3:::{bucket}/ec2spot-agent/0000.py" in ElementTree.fromstring(other.content).findtext("Message")


@pytest.mark.parametrize(
    "headers, query, expected",
    [
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, Signature=0"}, {},
         ("AKID", None)),
        ({"Authorization": "AWS AKID:c2lnbmF0dXJl", "X-Amz-Security-Token": "tok"}, {}, ("AKID", "tok")),  # SigV2
        ({}, {"X-Amz-Credential": ["AKID/20260101/us-east-1/s3/aws4_request"], "X-Amz-Security-Token": ["tok"]},
         ("AKID", "tok")),  # presigned SigV4
        ({}, {"AWSAccessKeyId": ["AKID"], "Signature": ["c2ln"], "x-amz-security-token": ["tok"]},
         ("AKID", "tok")),  # presigned SigV2, as boto3 presigns S3
    ],
)  # fmt: skip
def test_each_way_s3_signs_names_its_principal(headers, query, expected):
    from sandbox.iam import principals

    credentials = principals.credentials_of(headers, query)
    assert (credentials.access_key_id, credentials.session_token) == expected


def test_an_unsigned_s3_request_has_no_credentials():
    from sandbox.iam import principals

    with pytest.raises(principals.MissingCredentials):
        principals.credentials_of({"Authorization": "Bearer x"}, {"Signature": ["c2ln"]})
