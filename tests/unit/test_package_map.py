"""The recovery package's map (its docstring) names every module and subpackage of the package, and nothing that is
not one; each subpackage's map (its own docstring) does the same for its modules."""

import importlib
import pathlib
import re

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils import recovery

PACKAGE = pathlib.Path(recovery.__file__).parent
# Every package under recovery/ (recovery itself first), as (dotted name, directory).
PACKAGES = [(recovery.__name__, PACKAGE)] + [
    (recovery.__name__ + "." + ".".join(path.parent.relative_to(PACKAGE).parts), path.parent)
    for path in sorted(PACKAGE.rglob("*/__init__.py"))
    if "__pycache__" not in path.parts
]


def listed_in(package):
    return set(re.findall(r"^``([a-z_]+)``", package.__doc__ or "", flags=re.MULTILINE))


def present_in(directory):
    modules = {path.stem for path in directory.glob("*.py") if path.stem != "__init__"}
    subpackages = {path.parent.name for path in directory.glob("*/__init__.py")}
    return modules | subpackages


def test_there_is_a_subpackage_to_check():
    assert [name for name, unused in PACKAGES][:2] == [recovery.__name__, recovery.__name__ + ".handler"]


@pytest.mark.parametrize("name, directory", PACKAGES, ids=[name.rsplit(".", 1)[-1] for name, unused in PACKAGES])
def test_the_package_map_lists_every_module_and_only_those(name, directory):
    listed, present = listed_in(importlib.import_module(name)), present_in(directory)
    assert present, f"{directory} holds no module"
    assert listed == present, {"not listed": sorted(present - listed), "listed, not there": sorted(listed - present)}
