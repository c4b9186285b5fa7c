# Copyright: ec2spot.autorecover maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: gzip_b64
short_description: Compress a string with gzip, reproducibly, and encode it as Base64
version_added: 0.1.0
author:
  - ec2spot.autorecover maintainers (@ec2spot)
description:
  - Encodes the input as UTF-8, compresses it with gzip and returns the result as Base64 text.
  - This is what cloud-init's C(write_files) expects with C(encoding=gz+b64), so that a file fits in EC2's 16 KB of
    user data.
  - The output is reproducible, the same input always gives the same text (no file name, a modification time of 0),
    so a launch template built from it only changes when the input does.
options:
  _input:
    description: The text to compress.
    type: string
    required: true
  level:
    description: The gzip compression level, from 1 (fastest) to 9 (smallest).
    type: int
    default: 9
seealso:
  - name: cloud-init write_files
    description: The module that decodes the result on the instance.
    link: https://cloudinit.readthedocs.io/en/latest/reference/modules.html#write-files
"""

EXAMPLES = r"""
- name: Write a script through user data
  ansible.builtin.set_fact:
    user_data_file:
      path: /usr/local/sbin/tool
      permissions: "0755"
      encoding: gz+b64
      content: "{{ lookup('ansible.builtin.file', 'tool.py', rstrip=false) | ec2spot.autorecover.gzip_b64 }}"
"""

RETURN = r"""
_value:
  description: The gzip-compressed input, Base64-encoded (standard alphabet, padded, no line breaks).
  type: string
"""

import base64
import struct
import zlib

from ansible.errors import AnsibleFilterError

# gzip header (RFC 1952): magic, deflate, no flags (no name), mtime 0, XFL, OS 255 ("unknown"). Written
# here rather than by gzip.compress, whose OS byte differs between Python versions.
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
_OS_UNKNOWN = b"\xff"


def gzip_bytes(data, level=9):
    """One gzip member of ``data``: the same bytes for the same data, level and zlib."""
    extra_flags = b"\x02" if level == 9 else (b"\x04" if level == 1 else b"\x00")
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return (
        _HEADER
        + extra_flags
        + _OS_UNKNOWN
        + body
        + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    )


def gzip_b64(data, level=9):
    """Gzip ``data`` (text as UTF-8, or bytes) with no name and mtime 0, and return it as Base64 text."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, bytes):
        raise AnsibleFilterError("gzip_b64 expects a string, got %s" % type(data).__name__)
    try:
        level = int(level)
    except (TypeError, ValueError):
        raise AnsibleFilterError("gzip_b64: level must be an integer from 1 to 9, got %r" % (level,))
    if not 1 <= level <= 9:
        raise AnsibleFilterError("gzip_b64: level must be an integer from 1 to 9, got %r" % (level,))
    return base64.b64encode(gzip_bytes(data, level)).decode("ascii")


class FilterModule:
    """ec2spot.autorecover filters."""

    def filters(self):
        return {"gzip_b64": gzip_b64}
