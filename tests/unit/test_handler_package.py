"""The handler's Lambda package is built deterministically from the collection's recovery core."""

import base64
import hashlib
import io
import os
import pathlib
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
    expected = sorted("recovery/" + p.relative_to(RECOVERY).as_posix()
                      for p in RECOVERY.rglob("*.py") if "__pycache__" not in p.parts)
    assert names == expected
    assert "recovery/__init__.py" in names and "recovery/config.py" in names
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == expected
        for info in archive.infolist():
            assert not info.is_dir()
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.create_system == 3
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert archive.read(info) == (RECOVERY / info.filename[len("recovery/"):]).read_bytes()


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
