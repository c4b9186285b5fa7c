"""The recovery package's map (its docstring) names every module of the package, and nothing that is not one."""

import pathlib
import re

from ansible_collections.ec2spot.autorecover.plugins.module_utils import recovery

PACKAGE = pathlib.Path(recovery.__file__).parent


def test_the_package_map_lists_every_module_and_only_those():
    listed = set(re.findall(r"^``([a-z_]+)``", recovery.__doc__, flags=re.MULTILINE))
    present = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert listed == present, {"not listed": sorted(present - listed), "listed, not there": sorted(listed - present)}
