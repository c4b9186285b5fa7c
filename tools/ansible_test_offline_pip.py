"""Give ansible-test the pip bootstrap script it would otherwise download.

ansible-test bootstraps pip in each virtualenv it creates by running
``~/.ansible/test/cache/get_pip_<version>.py`` and downloads that script from
ci-files.testing.ansible.com when it is missing. That host is unreachable here,
so this writes a stand-in that installs pip with ``ensurepip`` and then runs
``pip install`` with the arguments ansible-test passes (minus the get-pip-only
``--no-setuptools`` / ``--no-wheel`` flags).

The pinned pip version is read from the installed ansible-test, so the file name
follows ansible-core upgrades.
"""

import os
import pathlib
import re
import sys

import ansible_test

STAND_IN = '''"""Offline stand-in for get-pip.py, written by tools/ansible_test_offline_pip.py."""
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + [a for a in sys.argv[1:] if a not in GET_PIP_ONLY])
'''


def pinned_pip_version():
    source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    match = re.search(r"pip='([0-9.]+)'", source.read_text())
    if not match:
        sys.exit(f"cannot find the pinned pip version in {source}; ansible-test changed, update this tool")
    return match.group(1)


def main():
    version = pinned_pip_version()
    cache = pathlib.Path(os.path.expanduser("~/.ansible/test/cache")) / f"get_pip_{version.replace('.', '_')}.py"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not cache.exists() or cache.read_text() != STAND_IN:
        cache.write_text(STAND_IN)
    print(f"ansible-test pip {version} bootstrap: {cache}")


if __name__ == "__main__":
    main()
