"""Every module that calls AWS fails cleanly when its endpoint does not answer: one error dialect (the core's).

One ``ansible-playbook`` run, one task per module, each pointed at a loopback port nothing listens on (connection
refused at once), with ``AWS_MAX_ATTEMPTS=2`` so botocore gives up after one retry. Each task must fail with the
core's message naming the operation and botocore's words, the details under ``error``, the versions and the
traceback (``exception``, with ``ANSIBLE_DISPLAY_TRACEBACK=error``): never ``MODULE FAILURE`` with a traceback as the
message.
"""

import json
import os
import socket

from sandbox import scenario

from .conftest import REPO

MODULES = {
    "spot_backup": {"instance_id": "i-0123456789abcdef0"},
    "volume_reattach": {"lineage": "pgdata", "instance_id": "i-0123456789abcdef0"},
    "eip_failover": {"public_ip": "192.0.2.10", "instance_id": "i-0123456789abcdef0"},
    "autoscaling_group_spot": {"name": "pg-fleet", "state": "absent"},
    "spot_drill": {"lineage": "pgdata", "state": "absent"},
    "launch_from_template": {
        "name": "pg",
        "lineage": "pgdata",
        "launch_template": "pg",
        "subnet_id": "subnet-0123456789abcdef0",
    },
    "lineage_info": {"lineage": "pgdata"},
    "cloudwatch_dashboard": {"name": "pg", "state": "absent"},
    "spot_price_info": {"instance_types": ["m6i.large"], "on_demand": False},
}


def closed_port():
    with socket.socket() as probe:  # bound then released: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_module_fails_cleanly_on_an_endpoint_that_does_not_answer(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "name": module,
                    f"ec2spot.autorecover.{module}": {**args, "endpoint_url": endpoint, "region": "us-east-1"},
                    "ignore_errors": True,
                }
                for module, args in MODULES.items()
            ],
        }
    ]
    (tmp_path / "dead.yml").write_text(json.dumps(play))
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="dead",
        AWS_SECRET_ACCESS_KEY="dead",
        AWS_MAX_ATTEMPTS="2",
        AWS_EC2_METADATA_DISABLED="true",
        ANSIBLE_DISPLAY_TRACEBACK="error",
    )
    raw, _code, _stderr = scenario.ansible_playbook([str(tmp_path / "dead.yml")], env, REPO, timeout=600)
    results = scenario.tasks_by_name(raw)
    assert sorted(results) == sorted(MODULES)
    for module, result in results.items():
        assert result.get("failed") is True, (module, result)
        assert "MODULE FAILURE" not in result["msg"] and "Traceback" not in result["msg"], (module, result["msg"])
        assert "Could not connect to the endpoint URL" in result["msg"], (module, result["msg"])
        assert result["error"]["code"] == "AwsApiError" and result["error"]["operation"], (module, result["error"])
        assert result["error"]["botocore_error"] == "EndpointConnectionError", (module, result["error"])
        assert result["boto3_version"] and result["botocore_version"] and "Traceback" in result["exception"], module
