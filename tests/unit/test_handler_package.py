"""The handler's Lambda package is built deterministically from the collection's recovery core."""

import base64
import hashlib
import io
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.ec2spot.autorecover.plugins.action import handler_package as hp

RECOVERY = pathlib.Path(__file__).parents[2] / "plugins" / "module_utils" / "recovery"


def test_source_dir_is_the_collections_recovery_core():
    assert pathlib.Path(hp.SOURCE_DIR).resolve() == RECOVERY.resolve()


def test_same_sources_give_same_bytes(tmp_path):
    first, second = tmp_path / "one" / "handler.zip", tmp_path / "two" / "handler.zip"
    first.parent.mkdir()
    second.parent.mkdir()
    data, names = hp.build_package()
    assert hp.write_if_different(str(first), data) is True
    again, names_again = hp.build_package()
    assert hp.write_if_different(str(second), again) is True
    assert first.read_bytes() == second.read_bytes()
    assert names == names_again
    # a second write of the same bytes is no change, and leaves the file alone
    mtime = os.stat(first).st_mtime_ns
    assert hp.write_if_different(str(first), hp.build_package()[0]) is False
    assert os.stat(first).st_mtime_ns == mtime


def test_entries_are_every_python_file_of_the_core_under_recovery_sorted():
    data, names = hp.build_package()
    expected = sorted(
        "recovery/" + p.relative_to(RECOVERY).as_posix() for p in RECOVERY.rglob("*.py") if "__pycache__" not in p.parts
    )
    assert names == expected
    assert "recovery/__init__.py" in names and "recovery/config.py" in names
    # The handler is a subpackage: every module of it is in the zip, and no handler.py is left beside it.
    handler_files = sorted("recovery/handler/" + p.name for p in (RECOVERY / "handler").glob("*.py"))
    assert "recovery/handler/__init__.py" in handler_files and "recovery/handler/intake.py" in handler_files
    assert set(handler_files) <= set(names) and "recovery/handler.py" not in names
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == expected
        for info in archive.infolist():
            assert not info.is_dir()
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.create_system == 3
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert archive.read(info) == (RECOVERY / info.filename[len("recovery/") :]).read_bytes()


def test_the_lambda_handler_name_resolves_in_the_unpacked_zip_alone(tmp_path):
    """What Lambda does: unpack the zip as the task root and import ``recovery.handler.lambda_handler`` from it, with
    nothing of the collection on the path (only the runtime's boto3)."""
    data, unused = hp.build_package()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(tmp_path)
    probe = (
        "import importlib, sys; sys.path[:0] = [sys.argv[1]]; "
        "module, name = 'recovery.handler.lambda_handler'.rsplit('.', 1); "
        "handler = getattr(importlib.import_module(module), name); "
        "print(handler.__module__, importlib.import_module('recovery').__file__.startswith(sys.argv[1]))"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    answer = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=60,
    )
    assert answer.stdout.split() == ["recovery.handler.intake", "True"]


def test_bytes_do_not_depend_on_file_times_modes_or_listing_order(tmp_path):
    source = tmp_path / "recovery"
    (source / "sub").mkdir(parents=True)
    (source / "b.py").write_text("B = 1\n")
    (source / "a.py").write_text("A = 1\n")
    (source / "sub" / "c.py").write_text("C = 1\n")
    (source / "notes.txt").write_text("not packaged\n")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "a.cpython-312.py").write_text("stale\n")
    first, names = hp.build_package(str(source))
    assert names == ["recovery/a.py", "recovery/b.py", "recovery/sub/c.py"]
    for path in source.rglob("*.py"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
        path.chmod(0o600)
    assert hp.build_package(str(source))[0] == first
    (source / "a.py").write_text("A = 2\n")
    assert hp.build_package(str(source))[0] != first


def test_an_empty_source_is_refused(tmp_path):
    with pytest.raises(ValueError):
        hp.build_package(str(tmp_path))


def test_digests_match_what_lambda_reports():
    data = b"example"
    hex_digest, b64_digest = hp.digests(data)
    assert hex_digest == hashlib.sha256(data).hexdigest()
    assert b64_digest == base64.b64encode(hashlib.sha256(data).digest()).decode()


CONFIG = {
    "topic_arn": "arn:aws:sns:us-east-1:123456789012:pg-recovery",
    "services": [{"name": "pg", "lineage": "pgdata", "stop_commands": ["systemctl stop postgresql"]}],
}


def test_the_configuration_is_packaged_sorted_among_the_sources_and_reproducibly():
    config = hp.packaged_config(CONFIG)
    data, names = hp.build_package(config=config)
    bare, bare_names = hp.build_package()
    assert names == sorted(bare_names + ["recovery/handler_config.json"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == names
        assert archive.read("recovery/handler_config.json") == config
        assert archive.getinfo("recovery/handler_config.json").external_attr >> 16 == 0o100644
    # JSON with sorted keys and no whitespace: the same configuration in another order gives the same package
    assert (
        config
        == b'{"services":[{"lineage":"pgdata","name":"pg","stop_commands":["systemctl stop postgresql"]}],'
        + (b'"topic_arn":"arn:aws:sns:us-east-1:123456789012:pg-recovery"}')
    )
    reordered = {"services": CONFIG["services"], "topic_arn": CONFIG["topic_arn"]}
    assert hp.build_package(config=hp.packaged_config(reordered))[0] == data
    changed = dict(CONFIG, metric_namespace="Other")
    assert hp.build_package(config=hp.packaged_config(changed))[0] != data


@pytest.mark.parametrize(
    "config, refusal",
    [
        ({}, "needs a non-empty 'services' list"),
        (
            {"services": [{"name": "pg", "lineage": "pgdata", "group": "pg", "cutover": "make-before-break"}]},
            "needs queue_arn",
        ),
        ({"services": [{"name": "pg", "lineage": "pgdata"}], "queue_arn": float("nan")}, "not JSON-serializable"),
        ({"services": [{"name": "pg", "lineage": "pgdata"}], "topic_arn": object()}, "not JSON-serializable"),
    ],
)
def test_a_configuration_the_handler_would_refuse_is_not_packaged(config, refusal):
    with pytest.raises(hp.RecoveryError, match=refusal):
        hp.packaged_config(config)


def test_a_configuration_larger_than_lambdas_environment_is_packaged():
    """Lambda's environment variables hold 4 KB in all; the package holds a configuration of any size."""
    services = [
        {"name": f"svc{index:03d}", "lineage": f"lineage-{index:03d}", "group": f"fleet-{index:03d}",
         "stop_commands": ["systemctl stop app"], "data_mounts": ["/data"], "address": {"tags": {"Service": "x"}}}
        for index in range(200)
    ]  # fmt: skip
    config = hp.packaged_config({"services": services})
    assert len(config) > 30000
    assert hp.handler_config.parse(config.decode()).services[-1].lineage == "lineage-199"


def test_the_unpacked_handler_reads_the_packaged_configuration_and_not_a_stale_environment(tmp_path):
    """Lambda's view: the zip unpacked as the task root, nothing of the collection on the path. The packaged file
    wins over an environment variable a function deployed by an earlier version may still carry."""
    data, unused = hp.build_package(config=hp.packaged_config(CONFIG))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(tmp_path)
    probe = (
        "import os, sys; sys.path[:0] = [sys.argv[1]]; from recovery import config; "
        "loaded, source = config.load(os.environ, os.path.dirname(config.__file__)); "
        "print(loaded.services[0].lineage, os.path.relpath(source, sys.argv[1]))"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["EC2SPOT_HANDLER_CONFIG"] = '{"services": [{"name": "old", "lineage": "stale"}]}'
    answer = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, env=environment, check=True
    )
    assert answer.stdout.split() == ["pgdata", "recovery/handler_config.json"]


def test_load_falls_back_to_the_environment_and_refuses_neither_or_a_broken_file(tmp_path):
    load = hp.handler_config.load
    stale = '{"services": [{"name": "old", "lineage": "stale"}]}'
    config, source = load({"EC2SPOT_HANDLER_CONFIG": stale}, str(tmp_path))
    assert (config.services[0].lineage, source) == ("stale", "EC2SPOT_HANDLER_CONFIG")
    with pytest.raises(hp.RecoveryError, match="no handler configuration: the package has no handler_config.json"):
        load({}, str(tmp_path))
    with pytest.raises(hp.RecoveryError, match="no handler configuration"):
        load({"EC2SPOT_HANDLER_CONFIG": ""}, str(tmp_path))
    # a broken packaged file is refused, never replaced by the environment's copy
    (tmp_path / "handler_config.json").write_bytes(b"\xff\xfe")
    with pytest.raises(hp.RecoveryError, match="cannot read the packaged handler configuration"):
        load({"EC2SPOT_HANDLER_CONFIG": stale}, str(tmp_path))
    (tmp_path / "handler_config.json").write_text('{"services": []}')
    with pytest.raises(hp.RecoveryError, match="non-empty 'services'"):
        load({"EC2SPOT_HANDLER_CONFIG": stale}, str(tmp_path))
