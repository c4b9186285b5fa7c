# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS plumbing shared by every part of the core: retries, errors, pagination, polling.

Throttling is handled by botocore itself (``RETRY_CONFIG``: the ``standard`` retry mode,
jittered exponential backoff on throttling and transient errors) rather than by a
hand-written loop, so the modules and the Lambda handler back off identically.

Waiting uses our own poll loop instead of botocore waiters: botocore's EC2 waiters poll
every 15 s, which would add up to 15 s to each step of a recovery that has two minutes
in all. ``wait_until`` polls after 0.25 s, then backs off by 1.5x to at most 1 s: EBS
attachments mostly take 1-4 s, and ``make bench`` measured the polling overhead of a
same-AZ move (detach + attach, 4 s of AWS time) at 3.4 s with a 2 s cap and x2 growth.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone

from .errors import AwsApiError, WaitTimeout

try:
    import boto3
    import botocore.config
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
    # Ten attempts, unless the operator set AWS_MAX_ATTEMPTS (botocore's own setting, honoured when the
    # configuration leaves it out): a dead endpoint then fails after the attempts they chose.
    RETRY_CONFIG = botocore.config.Config(
        retries={"mode": "standard", **({} if os.environ.get("AWS_MAX_ATTEMPTS") else {"max_attempts": 10})}
    )
except ImportError:  # pragma: no cover - the modules report the missing library
    HAS_BOTO3 = False
    RETRY_CONFIG = None

    class BotoCoreError(Exception):
        """Stand-in so the except clauses below stay valid without botocore."""

    class ClientError(Exception):
        """Stand-in so the except clauses below stay valid without botocore."""


FIRST_POLL_DELAY = 0.25
POLL_BACKOFF = 1.5
MAX_POLL_DELAY = 1.0
FAST_POLL_SECONDS = 5.0  # polled every FIRST_POLL_DELAY for this long before backing off


class Clock:
    """Wall clock and sleep, injectable so tests can drive time instead of sleeping."""

    def now(self):
        return datetime.now(timezone.utc)

    def monotonic(self):
        return time.monotonic()

    def sleep(self, seconds):
        time.sleep(seconds)


SYSTEM_CLOCK = Clock()


def make_client(service, session=None, **kwargs):
    """A boto3 client with the core's retry configuration (used by the handler)."""
    session = session or boto3.session.Session()
    return session.client(service, config=RETRY_CONFIG, **kwargs)


def error_code(exc):
    """AWS's error code of a ClientError, or None."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def translate(operation, exc):
    """The core's error for a botocore error raised by ``operation``: ``AwsApiError`` naming the operation, AWS's
    error code, the request id and the HTTP status when AWS answered; the botocore error's own words (could not
    connect, timed out, no credentials) when it did not. The one place botocore's errors become the core's."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        metadata = exc.response.get("ResponseMetadata", {})
        return AwsApiError(
            f"{operation} failed: {code}: {message}",
            operation=operation,
            aws_code=code,
            request_id=metadata.get("RequestId"),
            http_status=metadata.get("HTTPStatusCode"),
        )
    return AwsApiError(f"{operation} failed: {exc}", operation=operation, botocore_error=type(exc).__name__)


def call(client, operation, **params):
    """Call one AWS API operation; AWS errors become ``AwsApiError`` with the operation named."""
    try:
        return getattr(client, operation)(**params)
    except (ClientError, BotoCoreError) as exc:
        raise translate(operation, exc) from exc


PAGE_SIZE = 100


def _page_config(client, operation, params):
    """Ask for pages of ``PAGE_SIZE`` where AWS allows it: never with an id list (AWS refuses
    ``MaxResults`` beside ``VolumeIds`` and the like), only where the call takes ``MaxResults``."""
    if any(key.endswith("Ids") and key != "OwnerIds" for key in params):
        return {}
    api_name = client.meta.method_to_api_mapping.get(operation)
    members = client.meta.service_model.operation_model(api_name).input_shape.members if api_name else {}
    return {"PaginationConfig": {"PageSize": PAGE_SIZE}} if "MaxResults" in members else {}


def paginate(client, operation, result_key, **params):
    """Every item of ``result_key`` across all pages (AWS errors translated as in ``call``, on any page: a
    connection lost or a read timed out while paging is the core's error too, never a bare botocore one)."""
    try:
        for page in client.get_paginator(operation).paginate(**params, **_page_config(client, operation, params)):
            yield from page.get(result_key, [])
    except (ClientError, BotoCoreError) as exc:
        raise translate(operation, exc) from exc


def wait_until(fetch, is_done, what, timeout, clock=SYSTEM_CLOCK, is_failed=None):
    """Poll ``fetch()`` until ``is_done(value)``; short first delay, capped backoff.

    ``is_failed(value)`` may return a message to stop early (a volume in ``error``).
    Returns the last value. Raises ``WaitTimeout`` naming ``what`` after ``timeout`` seconds.
    """
    deadline = clock.monotonic() + timeout
    delay = FIRST_POLL_DELAY
    while True:
        value = fetch()
        if is_done(value):
            return value
        if is_failed is not None:
            failure = is_failed(value)
            if failure:
                raise AwsApiError(f"{what}: {failure}")
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}", waited_for=what)
        # Jitter keeps many handlers polling one account from synchronising.
        clock.sleep(min(delay * (0.8 + 0.4 * random.random()), MAX_POLL_DELAY, remaining))
        # The first seconds are polled at the first delay: a stop, a detach or an attach takes 1-4 s, and on a
        # cut-over every second past its end is downtime. Longer waits (snapshots, restores) back off.
        if timeout - (deadline - clock.monotonic()) >= FAST_POLL_SECONDS:
            delay = min(delay * POLL_BACKOFF, MAX_POLL_DELAY)
