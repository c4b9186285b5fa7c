"""The README's module table lists every module of plugins/modules/, and says of each what its documentation says
of check mode and diff (the ``attributes`` ansible-doc shows), so neither can drift from the other."""

import ast
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULES = ROOT / "plugins" / "modules"
# How the table words each ``support`` value of a module's documentation.
WORDING = {"full": "yes", "partial": "partly", "none": "no", "N/A": "n/a (read-only)"}


def documented_attributes(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    documentation = next(
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION"
    )
    return yaml.safe_load(documentation)["attributes"]


def readme_rows():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Modules\n") :]
    section = section[: section.index("\n## ", 1)]
    return {
        name: (check_mode, diff)
        for name, check_mode, diff in re.findall(
            r"^\| `ec2spot\.autorecover\.(\w+)` \| ([^|]+?) \| ([^|]+?) \| .+ \|$", section, flags=re.M
        )
    }


def test_the_table_lists_every_module_and_only_those():
    present = {path.stem for path in MODULES.glob("*.py") if path.stem != "__init__"}
    listed = set(readme_rows())
    assert listed == present, {"not in the README": sorted(present - listed), "not a module": sorted(listed - present)}


def test_each_row_says_what_the_module_documents_of_check_mode_and_diff():
    rows = readme_rows()
    assert rows, "the README's module table has no rows"
    for name, (check_mode, diff) in sorted(rows.items()):
        attributes = documented_attributes(MODULES / f"{name}.py")
        documented = (WORDING[attributes["check_mode"]["support"]], WORDING[attributes["diff_mode"]["support"]])
        assert (check_mode, diff) == documented, name


def test_a_module_that_documents_check_mode_declares_it_to_ansible():
    """``supports_check_mode=True`` in the code for every module documenting check mode (else Ansible skips it)."""
    for path in sorted(MODULES.glob("*.py")):
        if documented_attributes(path)["check_mode"]["support"] == "none":
            continue
        source = path.read_text(encoding="utf-8")
        action = ROOT / "plugins" / "action" / path.name
        assert "supports_check_mode=True" in source or action.exists(), path.stem
