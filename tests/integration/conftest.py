"""Module tests: real ``ansible-playbook`` runs against the sandbox server, checked with boto3."""

import json
import os
import shutil
import tempfile

import boto3
import pytest

from sandbox import __main__ as sandbox_cli
from sandbox import scenario

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# make test runs the files of this directory in parallel (pytest-xdist): each file in one worker, so its module
# fixtures (a deploy, a drill) run once, and the files that boot instances with their volumes on loop devices in
# one worker together, as the kernel has only a few loop devices. xdist's own "loadgroup" cannot do it with pytest 9
# (it renames items through an attribute pytest no longer reads, so every test became its own group and each worker
# repeated the files' deploys); the scheduler below groups by file name itself.
LOOP_DEVICE_FILES = frozenset({"test_drill_demo.py", "test_restore_group.py"})

# The files whose fixtures deploy whole services go first, so that no worker starts one of them near the end
# (longest first; the rest keep their collection order).
HEAVY_FILES = (
    "test_drill_demo.py",
    "test_restore_group.py",
    "test_deploy_playbook.py",
    "test_monitoring.py",
    "test_backup_schedule.py",
    "test_spot_price_info.py",
    "test_fleet_role.py",
)


def file_group(nodeid):
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return "loop-devices" if name in LOOP_DEVICE_FILES else name


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return file_group(nodeid)

    return FileGroupScheduling(config, log)


@pytest.fixture(scope="session")
def sandbox():
    state_dir = tempfile.mkdtemp(prefix="ec2spot-it-")
    record = sandbox_cli.start(state_dir)
    env = sandbox_cli.apply_env(sandbox_cli.sandbox_env(record["endpoint"], state_dir))
    with open(env["EC2SPOT_SANDBOX_WORLD"], encoding="utf-8") as handle:
        world = json.load(handle)
    yield {"env": env, "world": world, "endpoint": record["endpoint"]}
    sandbox_cli.stop(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def box(sandbox):
    """The sandbox's controls (``box.settle()`` finishes snapshots and images under way)."""
    from sandbox.control import Sandbox

    return Sandbox(sandbox["endpoint"])


@pytest.fixture(scope="session")
def session(sandbox):
    return boto3.session.Session(aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name="us-east-1")


@pytest.fixture(scope="session")
def ec2(sandbox, session):
    return session.client("ec2", endpoint_url=sandbox["endpoint"])


@pytest.fixture(scope="session")
def autoscaling(sandbox, session):
    return session.client("autoscaling", endpoint_url=sandbox["endpoint"])


def ansible_playbook(sandbox, *arguments):
    """``ansible-playbook *arguments`` against the sandbox, as a user runs it; ``(the JSON callback's output, exit code)``."""
    report, returncode, _stderr = scenario.ansible_playbook(arguments, sandbox["env"], REPO)
    return report, returncode


class PlaybookRun:
    def __init__(self, raw, returncode):
        self.raw, self.returncode = raw, returncode
        plays = raw.get("plays", [])
        self.results = [task["hosts"]["localhost"] for play in plays for task in play["tasks"]]
        self.stats = raw.get("stats", {}).get("localhost", {})

    @property
    def last(self):
        return self.results[-1]


@pytest.fixture
def playbook(sandbox, tmp_path):
    """Run tasks in a play on localhost, as a user would; returns every task's result."""

    def _run(tasks, check=False, diff=False, extra_vars=None):
        play = [
            {
                "name": "module under test",
                "hosts": "localhost",
                "connection": "local",
                "gather_facts": False,
                # Our action group: region here reaches our modules (and amazon.aws's).
                "module_defaults": {"group/ec2spot.autorecover.aws": {"region": "us-east-1"}},
                "tasks": tasks,
            }
        ]
        path = tmp_path / "play.yml"
        path.write_text(json.dumps(play))
        arguments = [str(path)] + (["--check"] if check else []) + (["--diff"] if diff else [])
        if extra_vars:
            arguments += ["-e", json.dumps(extra_vars)]
        return PlaybookRun(*ansible_playbook(sandbox, *arguments))

    return _run


def task(module, **params):
    return {"name": module, f"ec2spot.autorecover.{module}": params, "register": "result"}


def failing(module, **params):
    return {"name": module, f"ec2spot.autorecover.{module}": params, "ignore_errors": True}


def refusals(playbook, module, cases):
    """Run one play with a task of ``module`` for each of ``cases``, ``(params, expected)`` with ``expected`` a fragment
    of the refusal's message or a tuple of fragments: every task must fail, each with its own fragments in its message.
    Returns the tasks' results, in the order of ``cases``."""
    run = playbook([failing(module, **params) for params, _expected in cases])
    messages = [result.get("msg", "") for result in run.results]
    assert [result.get("failed") for result in run.results] == [True] * len(cases), messages
    for message, (_params, expected) in zip(messages, cases, strict=True):
        for fragment in (expected,) if isinstance(expected, str) else expected:
            assert fragment in message, (fragment, message)
    return run.results
