# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions raised by the recovery core.

Every core function raises one of these (never a bare botocore error), each with a
message precise enough to act on. The modules turn them into ``fail_json`` and the
handler logs them, so an operator sees the same words from both.
"""

from __future__ import annotations

from contextlib import contextmanager


class RecoveryError(Exception):
    """Base of every error the core raises. ``code`` is stable and machine-readable."""

    code = "RecoveryError"

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self):
        return {"code": self.code, "message": self.message, **self.details}


class InvalidInput(RecoveryError):
    """The caller asked for something malformed or contradictory. Nothing was changed."""

    code = "InvalidInput"


class NotFound(RecoveryError):
    """A resource the caller named (or the lineage implies) does not exist."""

    code = "NotFound"


class Ambiguous(RecoveryError):
    """More than one resource matched where exactly one is required; we refuse to guess."""

    code = "Ambiguous"


class FenceViolation(RecoveryError):
    """The action could lose or fork data (a live writer, an older generation); refused."""

    code = "FenceViolation"


class Conflict(RecoveryError):
    """The resource is held by something else and the caller did not allow taking it."""

    code = "Conflict"


class WaitTimeout(RecoveryError):
    """A resource did not reach the expected state in time. The action may still complete."""

    code = "WaitTimeout"


class AwsApiError(RecoveryError):
    """AWS refused a call (after botocore's retries). ``aws_code`` is AWS's error code."""

    code = "AwsApiError"

    def __init__(self, message, operation=None, aws_code=None, **details):
        super().__init__(message, operation=operation, aws_code=aws_code, **details)
        self.operation = operation
        self.aws_code = aws_code


def require_section(raw, where, known_keys, expected):
    """``raw`` as a configuration section: an object (``expected`` says what it holds) with none but ``known_keys``;
    ``InvalidInput`` naming ``where`` otherwise. One wording for every section of the handler configuration."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be {expected}")
    unknown = set(raw) - set(known_keys)
    if unknown:
        raise InvalidInput(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    return raw


def optional_name(raw, key, where):
    """``raw[key]``: absent (None) or a non-empty string."""
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidInput(f"{where}.{key} must be a non-empty string")
    return value


def exactly_one(found, missing, several, **details):
    """The one item of ``found``. ``NotFound(missing)`` when there is none and ``Ambiguous(several(found))`` when
    there are more: where exactly one resource is required, the core names what it saw and never picks one."""
    if not found:
        raise NotFound(missing, **details)
    if len(found) > 1:
        raise Ambiguous(several(found), **details)
    return found[0]


@contextmanager
def missing_as_not_found(aws_codes, message, **details):
    """Inside: an ``AwsApiError`` whose code is one of ``aws_codes`` (what EC2 answers for an id that does not exist,
    or is not even an id) becomes ``NotFound(message, **details)``; every other error passes unchanged."""
    try:
        yield
    except AwsApiError as exc:
        if exc.aws_code in aws_codes:
            raise NotFound(message, **details) from exc
        raise
