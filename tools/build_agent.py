"""Keep the instance side's verbatim copies in step with their one source.

The instance agent (roles/instance_agent/files/ec2spot_agent.py) and its bootstrap
(ec2spot_bootstrap.py) are single standard-library files that run on a bare image, so they cannot
import the collection or each other. Where they need a rule that lives elsewhere they carry a
verbatim copy between ``# ---- BEGIN <name>`` and ``# ---- END <name>`` lines:

- the agent carries plugins/module_utils/recovery/generations.py (from its first rule on), the
  generation rules the recovery core decides with;
- the bootstrap carries the agent's SigV4 signer (``sign_v4``).

Run this after changing a source; ``--check`` changes nothing and exits 1 when a copy is stale
(tests/unit/recovery/test_generations.py runs it).
"""

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = ROOT / "roles" / "instance_agent" / "files"
AGENT = FILES / "ec2spot_agent.py"
BOOTSTRAP = FILES / "ec2spot_bootstrap.py"
RULES = ROOT / "plugins" / "module_utils" / "recovery" / "generations.py"


def between(text, name, first_line_prefix=None):
    """(start, end) of a block's body: after its BEGIN line (and the comment lines that follow it) up to its END line."""
    begin = text.index(f"# ---- BEGIN {name}")
    start = text.index("\n", begin) + 1
    while text.startswith("#", start) and not text.startswith("# ---- END", start):
        start = text.index("\n", start) + 1
    end = text.index(f"# ---- END {name}", start)
    return start, end


def rules_body():
    rules = RULES.read_text(encoding="utf-8")
    # Two blank lines after the last function: the formatter's spacing before the END comment.
    return "\n" + rules[rules.index("LINEAGE_TAG = ") :].rstrip("\n") + "\n\n\n"


def block_body(path, name):
    text = path.read_text(encoding="utf-8")
    start, end = between(text, name)
    return text[start:end]


def replaced(path, name, body):
    text = path.read_text(encoding="utf-8")
    start, end = between(text, name)
    return text[:start] + body + text[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a copy is stale; change nothing")
    args = parser.parse_args(argv)
    stale = []
    for target, name, body in (
        (AGENT, "generations.py", rules_body()),
        (BOOTSTRAP, "sigv4", block_body(AGENT, "sigv4")),
    ):
        wanted = replaced(target, name, body)
        if wanted == target.read_text(encoding="utf-8"):
            continue
        stale.append(f"{target.relative_to(ROOT)} ({name})")
        if not args.check:
            target.write_text(wanted, encoding="utf-8")
    if args.check:
        for entry in stale:
            print(f"{entry}: its copy is stale; run tools/build_agent.py", file=sys.stderr)
        return 1 if stale else 0
    for entry in stale:
        print(f"updated {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
