"""Rules for ssm (see sandbox/README.md)."""

from __future__ import annotations


def install(context):
    """Nothing layered yet."""
