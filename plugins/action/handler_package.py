# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the interruption handler's Lambda deployment package on the controller.

The package holds the collection's recovery core under ``recovery/``: every ``*.py`` under
``plugins/module_utils/recovery/``, its subpackages included (the handler itself is the package
``recovery/handler/``), so the Lambda handler is ``recovery.handler.lambda_handler``, and, when ``config`` is given,
the handler's configuration as ``recovery/handler_config.json``, validated first by the handler's own parser. The zip is
deterministic: entries sorted, one fixed timestamp, fixed permissions, one compression level.
The same sources always give the same bytes, so the package's SHA-256 (what Lambda reports as
``CodeSha256``) changes only when the code or the configuration does, and ``amazon.aws.lambda`` uploads only then.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import io
import os
import tempfile
import zipfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import RecoveryError

SOURCE_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "module_utils", "recovery")
)
ARCHIVE_PREFIX = "recovery/"
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record
FILE_MODE = 0o644
COMPRESS_LEVEL = 9
UNIX = 3  # "made by" system: Unix, whatever the controller, so the permission bits mean the same


def package_sources(source_dir=SOURCE_DIR):
    """``[(archive name, absolute path)]`` of every ``*.py`` under ``source_dir``, in its subdirectories too (not
    ``__pycache__`` or hidden ones), sorted by name."""
    found = []
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in files:
            if name.endswith(".py") and not name.startswith("."):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, source_dir).replace(os.sep, "/")
                found.append((ARCHIVE_PREFIX + relative, path))
    return sorted(found)


CONFIG_ENTRY = ARCHIVE_PREFIX + handler_config.PACKAGED_FILE


def packaged_config(document):
    """The bytes of ``recovery/handler_config.json`` for ``document``, refused (``RecoveryError``, the handler's own
    words) when the handler would refuse it. What is validated is the serialized text, exactly what deploys."""
    text = handler_config.serialize(document)
    handler_config.parse(text)
    return text.encode("utf-8")


def build_package(source_dir=SOURCE_DIR, config=None):
    """The deployment zip as bytes, and the list of its entry names (sorted). ``config``: the bytes of the packaged
    handler configuration (``packaged_config``), or None for a package without one."""
    sources = package_sources(source_dir)
    if not sources:
        raise ValueError(f"no *.py files under {source_dir}")
    entries = [(name, path, None) for name, path in sources]
    if config is not None:
        entries = sorted(entries + [(CONFIG_ENTRY, None, config)], key=lambda entry: entry[0])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path, data in entries:
            if data is None:
                with open(path, "rb") as handle:
                    data = handle.read()
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = UNIX
            info.external_attr = (0o100000 | FILE_MODE) << 16  # a regular file, rw-r--r--
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue(), [entry[0] for entry in entries]


def digests(data):
    """``(hex SHA-256, base64 SHA-256)``: the second is what Lambda reports as ``CodeSha256``."""
    digest = hashlib.sha256(data).digest()
    return digest.hex(), base64.b64encode(digest).decode("ascii")


def write_if_different(dest, data):
    """Write ``data`` to ``dest`` atomically unless it already holds exactly those bytes. Returns changed.

    Missing parent directories are created.
    """
    if os.path.isfile(dest):
        with open(dest, "rb") as handle:
            if handle.read() == data:
                return False
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".handler_package-", suffix=".zip", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, dest)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return True


class ActionModule(ActionBase):
    """Runs on the controller only: it reads the collection's files and writes a local file."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dest", "config"))
    _requires_connection = False

    ARGUMENT_SPEC = {"dest": {"type": "path", "required": True}, "config": {"type": "dict"}}

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp

        dummy, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        dest = args["dest"]
        if os.path.isdir(dest):
            raise AnsibleActionFail(f"dest {dest} is a directory; give the path of the zip file")

        config = None
        if args.get("config") is not None:
            try:
                config = packaged_config(args["config"])
            except RecoveryError as exc:
                raise AnsibleActionFail(f"the interruption handler would refuse this configuration: {exc.message}")
        try:
            data, names = build_package(config=config)
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail(f"cannot build the handler package: {to_native(exc)}")
        hex_digest, b64_digest = digests(data)

        if self._task.check_mode:
            changed = True
            if os.path.isfile(dest):
                with open(dest, "rb") as handle:
                    changed = handle.read() != data
        else:
            try:
                changed = write_if_different(dest, data)
            except OSError as exc:
                raise AnsibleActionFail(f"cannot write {dest}: {to_native(exc)}")

        result.update(
            changed=changed,
            check_mode=bool(self._task.check_mode),
            path=dest,
            sha256=hex_digest,
            base64_sha256=b64_digest,
            size=len(data),
            files=names,
            config_size=len(config) if config is not None else 0,
        )
        return result
