"""Sandbox rule tests: boto3 against the sandbox server (in a thread), on the manual clock.

The server runs in this process so a test can both call AWS through HTTP, as the code
under test does, and read the sandbox's own state. Time moves only when a test advances
it (``box.advance``): nothing here sleeps.
"""

import boto3
import pytest

from sandbox import server, world
from sandbox.clock import CONTEXT
from sandbox.control import Sandbox


@pytest.fixture(scope="session")
def endpoint():
    url, stop = server.start_in_thread(scale=0.0)
    yield url
    stop()


@pytest.fixture(scope="session")
def session():
    return boto3.session.Session(aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name="us-east-1")


@pytest.fixture(scope="session")
def aws(endpoint, session):
    """``aws("ec2")``: a client of the sandbox server."""
    return lambda service: session.client(service, endpoint_url=endpoint)


@pytest.fixture(scope="session")
def ec2(aws):
    return aws("ec2")


@pytest.fixture(scope="session")
def seeded(ec2):
    return world.seed(ec2)


@pytest.fixture
def box(endpoint):
    """The sandbox's control API; each test starts with default latencies and no records."""
    CONTEXT.latency.update(__import__("sandbox.clock", fromlist=["LATENCY"]).LATENCY)
    CONTEXT.records.clear()
    CONTEXT.emitted.clear()
    return Sandbox(endpoint)


@pytest.fixture
def launch(ec2, seeded):
    def _launch(zone="us-east-1a", **extra):
        return ec2.run_instances(ImageId=seeded["image_id"], MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 SubnetId=seeded["subnets"][zone], **extra)["Instances"][0]["InstanceId"]
    return _launch


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]
