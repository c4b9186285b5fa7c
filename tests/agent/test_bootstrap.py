"""The bootstrap the user data carries: it runs the agent the launch template names, fetched from S3, or nothing.

The real program in a subprocess, against the sandbox's S3 (moto behind the sandbox server, path-style at its
endpoint, as the bootstrap addresses it when ``aws_endpoint_url`` is set), with the instance's configuration.
"""

import datetime
import hashlib
import json
import os
import subprocess
import sys
from unittest import mock

import pytest

from tests.agent.conftest import AGENT_PATH, REPO

BOOTSTRAP = os.path.join(REPO, "roles", "instance_agent", "files", "ec2spot_bootstrap.py")
BUCKET = "ec2spot-agent-123456789012-us-east-1"


@pytest.fixture(scope="module")
def s3(aws):
    client = aws("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def stored_agent(s3):
    with open(AGENT_PATH, "rb") as handle:
        program = handle.read()
    digest = hashlib.sha256(program).hexdigest()
    s3.put_object(Bucket=BUCKET, Key=f"ec2spot-agent/{digest}.py", Body=program)
    return {"bucket": BUCKET, "key": f"ec2spot-agent/{digest}.py", "sha256": digest, "region": "us-east-1"}


def run_bootstrap(tmp_path, endpoint, source, *arguments):
    config = {
        "service": "pg",
        "lineage": "pgdata",
        "aws_endpoint_url": endpoint,
        "state_dir": str(tmp_path / "state"),
        "imds_endpoint": "http://127.0.0.1:9",
        "agent_source": source,
        "agent_fetch_seconds": 3,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    environment = {"PATH": os.environ["PATH"], "AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
    return subprocess.run(
        [sys.executable, "-I", BOOTSTRAP, "--config", str(path), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_fetches_checks_keeps_and_runs_the_named_agent(tmp_path, endpoint, stored_agent, s3):
    done = run_bootstrap(tmp_path, endpoint, stored_agent, "check-config")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agent_source"] == stored_agent  # the agent itself answered
    kept = tmp_path / "state" / "agent" / f"{stored_agent['sha256']}.py"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == stored_agent["sha256"]
    assert kept.stat().st_mode & 0o777 == 0o700

    s3.delete_object(Bucket=BUCKET, Key=stored_agent["key"])  # kept: later calls need no S3
    again = run_bootstrap(tmp_path, endpoint, stored_agent, "check-config")
    assert again.returncode == 0, again.stderr


def test_an_object_with_other_bytes_is_never_run(tmp_path, endpoint, stored_agent, s3):
    s3.put_object(Bucket=BUCKET, Key=stored_agent["key"], Body=b"import os\nos.system('touch /tmp/pwned')\n")

    done = run_bootstrap(tmp_path, endpoint, stored_agent, "check-config")

    assert done.returncode == 1
    assert f"not the {stored_agent['sha256']} the launch template names: refusing to run it" in done.stderr
    assert not (tmp_path / "state" / "agent").exists() or not os.listdir(tmp_path / "state" / "agent")


def test_a_kept_program_that_was_altered_is_fetched_again(tmp_path, endpoint, stored_agent):
    kept = tmp_path / "state" / "agent" / f"{stored_agent['sha256']}.py"
    kept.parent.mkdir(parents=True)
    kept.write_text("raise SystemExit(42)\n")

    done = run_bootstrap(tmp_path, endpoint, stored_agent, "check-config")

    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == stored_agent["sha256"]


def test_a_missing_object_fails_at_once_with_the_reason(tmp_path, endpoint, stored_agent):
    source = dict(stored_agent, key="ec2spot-agent/" + "1" * 64 + ".py", sha256="1" * 64)
    done = run_bootstrap(tmp_path, endpoint, source, "check-config")
    assert done.returncode == 1
    assert "S3 answered 404" in done.stderr and "s3:GetObject" in done.stderr


@pytest.mark.parametrize(
    "source, words",
    [
        (None, "has no agent_source"),
        ({"bucket": "Bad_Bucket", "key": "k", "sha256": "0" * 64}, "agent_source.bucket"),
        ({"bucket": BUCKET, "key": "../../etc/passwd", "sha256": "0" * 64}, "agent_source.key"),
        ({"bucket": BUCKET, "key": "k", "sha256": "ABC"}, "agent_source.sha256"),
    ],
)
def test_a_bad_source_is_refused_before_any_call(tmp_path, source, words):
    done = run_bootstrap(tmp_path, "http://127.0.0.1:9", source, "check-config")
    assert done.returncode == 1 and words in done.stderr


def test_the_s3_get_signature_matches_botocore():
    """The signer both programs share (sign_v4), on the GET the bootstrap sends, against botocore's S3 signer."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from tests.agent.conftest import agent_module

    moment = datetime.datetime(2026, 12, 7, 1, 2, 3, tzinfo=datetime.timezone.utc)
    url = f"https://{BUCKET}.s3.us-east-1.amazonaws.com/ec2spot-agent/{'a' * 64}.py"
    ours = agent_module.sign_v4(
        "GET",
        url,
        "us-east-1",
        "s3",
        b"",
        {},
        {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "secret", "Token": "session"},
        moment,
    )
    request = AWSRequest(method="GET", url=url, headers={})
    request.context["payload_signing_enabled"] = True
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)):
        S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret", "session"), "s3", "us-east-1").add_auth(request)
    assert ours["Authorization"].split("Signature=")[1] == request.headers["Authorization"].split("Signature=")[1]
