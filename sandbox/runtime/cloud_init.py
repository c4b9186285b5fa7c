"""User data as cloud-init reads it: the sandbox's part of cloud-init, ``write_files`` from a ``#cloud-config``.

AWS (EC2 user guide, "Run commands when you launch an instance"; cloud-init documentation, ``write_files``): the
instance reads its user data base64-decoded, gunzipped when gzipped; a ``#cloud-config`` document's ``write_files``
are written once per instance, each with its ``encoding`` (plain, ``b64``, ``gz``, ``gz+b64``), ``permissions``
(octal, default ``0644``) and ``append``. The sandbox writes them under the instance's stand-in root and refuses a
path that leads through a link out of it. It runs no scripts: user data that is not a cloud-config document
(a shell script, a MIME multi-part document) is ``UserDataNotRun``, a document it cannot apply ``UserDataError``;
either becomes the boot's outcome (``boot.py``).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import os

from .host import inside


class UserDataError(ValueError):
    """The user data cannot be applied as cloud-init would."""

    outcome = "user-data-error"


class UserDataNotRun(UserDataError):
    """User data cloud-init would run but the sandbox does not (a script, a MIME multi-part document)."""

    outcome = "user-data-not-run"


def user_data_bytes(user_data):
    """The instance's user data as the instance reads it: base64 decoded, gunzipped if gzipped."""
    if user_data is None:
        return None
    if isinstance(user_data, (list, tuple)):
        user_data = user_data[0] if user_data else None
        if user_data is None:
            return None
    encoded = getattr(user_data, "_encoded_string", user_data)
    if isinstance(encoded, bytes):
        encoded = encoded.decode("ascii")
    try:
        raw = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise UserDataError(f"user data is not base64: {exc}") from exc
    if raw[:2] == b"\x1f\x8b":  # cloud-init unpacks gzipped user data
        raw = gzip.decompress(raw)
    return raw


def file_content(entry):
    """A ``write_files`` entry's bytes, decoded as cloud-init does."""
    content = entry.get("content", "")
    data = content if isinstance(content, bytes) else str(content).encode("utf-8")
    encoding = str(entry.get("encoding") or "text/plain").lower()
    try:
        if encoding in ("gz+b64", "gz+base64", "gzip+b64", "gzip+base64"):
            return gzip.decompress(base64.b64decode(data))
        if encoding in ("b64", "base64"):
            return base64.b64decode(data)
        if encoding in ("gz", "gzip"):
            return gzip.decompress(data)
    except (binascii.Error, OSError, EOFError) as exc:
        raise UserDataError(f"write_files {entry.get('path')}: cannot decode {encoding}: {exc}") from exc
    if encoding != "text/plain":
        raise UserDataError(f"write_files {entry.get('path')}: unknown encoding {encoding!r}")
    return data


def write_files(root, document):
    """Write a cloud-config document's ``write_files`` under ``root``. Returns the paths written."""
    written = []
    for entry in document.get("write_files") or []:
        if not isinstance(entry, dict) or not entry.get("path"):
            raise UserDataError(f"write_files entry without a path: {entry!r}")
        destination = inside(root, entry["path"])
        parent, real_root = os.path.dirname(destination), os.path.realpath(root)
        real_parent = os.path.realpath(parent)  # resolves the links among the parts that exist
        if (real_parent != real_root and not real_parent.startswith(real_root + os.sep)) or os.path.islink(destination):
            raise UserDataError(f"write_files {entry['path']}: leads through a link out of the instance")
        os.makedirs(parent, exist_ok=True)
        permissions = entry.get("permissions", "0644")
        try:
            mode = permissions if isinstance(permissions, int) else int(str(permissions), 8)
        except ValueError as exc:
            raise UserDataError(f"write_files {entry['path']}: permissions {permissions!r} are not octal") from exc
        with open(destination, "ab" if entry.get("append") else "wb") as handle:
            handle.write(file_content(entry))
        os.chmod(destination, mode)
        written.append(entry["path"])
    return written


def cloud_config(raw):
    """The ``#cloud-config`` document the user data bytes hold (a mapping)."""
    text = raw.decode("utf-8", "replace")
    if not text.startswith("#cloud-config"):
        first = text.splitlines()[0][:60] if text else ""
        raise UserDataNotRun(
            f"user data is not a #cloud-config document (it starts {first!r}); the sandbox applies "
            "only cloud-config write_files and runs no scripts"
        )
    import yaml

    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserDataError(f"the cloud-config document is not YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise UserDataError("the cloud-config document is not a mapping")
    return document
