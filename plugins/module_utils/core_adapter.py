# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adapts the modules to the recovery core: AWS clients with the core's retry policy, core errors as failures.

The only Ansible-aware code between a module and the core. The core raises ``RecoveryError`` (botocore's errors
become ``AwsApiError`` in ``recovery.aws.translate``, the one place they are translated); a module fails with the
same message the handler would log, plus what ``fail_json_aws`` gives (amazon.aws's dialect, which operators
know): the error's code and details under ``error``, AWS's request id under ``response_metadata``, the boto3 and
botocore versions, and the traceback (``exception``, shown as ansible-core's ``DISPLAY_TRACEBACK`` setting says).
"""

from __future__ import annotations

import traceback

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import (
    RETRY_CONFIG,
    BotoCoreError,
    ClientError,
    translate,
)
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import AwsApiError, RecoveryError


def client(module, service, **kwargs):
    """An AnsibleAWSModule client using the core's botocore retry configuration (merged with ``config``)."""
    config = kwargs.pop("config", None)
    return module.client(service, config=RETRY_CONFIG.merge(config) if config is not None else RETRY_CONFIG, **kwargs)


def _versions():
    try:
        import boto3
        import botocore
    except ImportError:  # pragma: no cover - AnsibleAWSModule refuses to start without them
        return {}
    return {"boto3_version": boto3.__version__, "botocore_version": botocore.__version__}


def fail(module, error, prefix=None):
    """Fail the module with a core error, in the shape of amazon.aws's ``fail_json_aws``."""
    report = {
        "msg": f"{prefix}: {error.message}" if prefix else error.message,
        "error": error.to_dict(),
        "exception": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        **_versions(),
    }
    if isinstance(error, AwsApiError) and error.details.get("request_id"):
        report["response_metadata"] = {
            "request_id": error.details["request_id"],
            "http_status_code": error.details.get("http_status"),
        }
    module.fail_json(**report)


def run(module, action, prefix=None):
    """Run ``action()``; a core error, or a botocore error a module let through, fails the module cleanly."""
    try:
        return action()
    except RecoveryError as error:
        fail(module, error, prefix)
    except (ClientError, BotoCoreError) as error:
        operation = getattr(error, "operation_name", None) or "an AWS call"
        translated = translate(operation, error)
        translated.__traceback__ = error.__traceback__
        fail(module, translated, prefix)
    return None
