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
