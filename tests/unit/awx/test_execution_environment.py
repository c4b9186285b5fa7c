"""execution-environment.yml: valid for ansible-builder 3 (schema and `ansible-builder create`), and its
dependency lists are the collection's own (galaxy.yml dependencies, requirements.txt)."""

import copy
import importlib.metadata
import json
import shutil
import subprocess
import tarfile

import pytest
import yaml
from ansible_builder.ee_schema import validate_schema
from ansible_builder.exceptions import DefinitionError

from .common import REPO, load

EE = load("execution-environment.yml")
GALAXY = load("galaxy.yml")
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"


def requirement_lines(path):
    lines = (line.split("#", 1)[0].strip() for line in (REPO / path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def test_schema_version_3_is_valid():
    assert EE["version"] == 3
    validate_schema(copy.deepcopy(EE))


@pytest.mark.parametrize(
    "broken",
    [
        {"dependencies": {"galaxy": {"collections": []}, "pythn": ["boto3"]}},
        {"dependencies": {"ansible_core": {"package_system": "ansible-core"}}},
        {"images": {"base_image": "quay.io/fedora/fedora:42", "builder_image": "x"}},
    ],
)
def test_the_schema_check_refuses_what_ansible_builder_refuses(broken):
    with pytest.raises(DefinitionError):
        validate_schema(dict(copy.deepcopy(EE), **broken))


def test_collections_are_this_collection_and_galaxy_dependencies():
    collections = EE["dependencies"]["galaxy"]["collections"]
    local = [c for c in collections if c.get("type") == "file"]
    assert local == [{"name": f"collections/{TARBALL}", "type": "file"}]
    from_galaxy = {c["name"]: c["version"] for c in collections if c.get("type") != "file"}
    assert from_galaxy == GALAXY["dependencies"]
    # The tarball `ansible-galaxy collection build --output-path .build/ee` writes goes into the build context.
    assert EE["additional_build_files"] == [{"src": f".build/ee/{TARBALL}", "dest": "collections"}]
    assert EE["options"]["tags"] == [f"ec2spot-autorecover-ee:{GALAXY['version']}"]


def test_python_requirements_are_requirements_txt():
    assert EE["dependencies"]["python"] == requirement_lines("requirements.txt")
    assert "system" not in EE["dependencies"]
    assert not (REPO / "bindep.txt").exists() and not (REPO / "meta" / "execution-environment.yml").exists()


def test_ansible_core_and_runner_are_pinned_to_what_the_tests_run():
    assert EE["dependencies"]["ansible_core"] == {
        "package_pip": f"ansible-core=={importlib.metadata.version('ansible-core')}"
    }
    assert EE["dependencies"]["ansible_runner"]["package_pip"].startswith("ansible-runner==")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The collection built as the EE file's comment says, and `ansible-builder create` run on a copy of the file."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(REPO / "execution-environment.yml", work / "execution-environment.yml")
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--force", "--output-path", str(work / ".build" / "ee"), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    done = subprocess.run(
        [
            "ansible-builder",
            "create",
            "-f",
            "execution-environment.yml",
            "-c",
            "context",
            "--output-filename",
            "Containerfile",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    return work, done


def test_ansible_builder_creates_the_build_context(built):
    work, done = built
    assert done.returncode == 0, done.stdout + done.stderr
    context = work / "context"
    assert yaml.safe_load((context / "_build" / "requirements.yml").read_text()) == EE["dependencies"]["galaxy"]
    assert requirement_lines(context / "_build" / "requirements.txt") == requirement_lines("requirements.txt")
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/fedora/fedora:42"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    # The collection the image installs is this checkout's, at galaxy.yml's version and dependencies.
    with tarfile.open(context / "_build" / "collections" / TARBALL) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
        names = tar.getnames()
    assert (manifest["version"], manifest["dependencies"]) == (GALAXY["version"], GALAXY["dependencies"])
    assert "playbooks/deploy.yml" in names and "plugins/modules/spot_backup.py" in names
    assert not [n for n in names if n.startswith(("sandbox/", ".venv", ".build"))]


def test_ansible_builder_refuses_an_invalid_file(built):
    work, done = built
    assert done.returncode == 0
    broken = dict(EE, dependencies=dict(EE["dependencies"], ansible_core={"package_system": "ansible-core"}))
    (work / "broken.yml").write_text(yaml.safe_dump(broken))
    refused = subprocess.run(
        ["ansible-builder", "create", "-f", "broken.yml", "-c", "broken-context"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "package_system" in refused.stdout + refused.stderr


def test_the_collection_declares_the_same_python_needs_to_ansible_builder(built, tmp_path):
    """ansible-builder's introspection of the installed collection finds requirements.txt and no system packages."""
    work, done = built
    assert done.returncode == 0
    subprocess.run(
        [
            "ansible-galaxy",
            "collection",
            "install",
            "--no-deps",
            "--force",
            "-p",
            str(tmp_path),
            str(work / ".build" / "ee" / TARBALL),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    found = subprocess.run(["ansible-builder", "introspect", str(tmp_path)], check=True, capture_output=True, text=True)
    data = yaml.safe_load(found.stdout[found.stdout.index("---") :])
    assert [line.split("#")[0].strip() for line in data["python"]] == requirement_lines("requirements.txt")
    assert all(line.endswith("from collection ec2spot.autorecover") for line in data["python"])
    assert data["system"] == []
