"""Trying a provider call again: doubling waits, or as long as the vendor's ``Retry-After`` asks.

One loop for every family (a purge batch, an origin's stage or switch, a change to a Cloudflare
list). What is worth another try is the caller's choice (``retry_on``); an exception that carries
``retry_after`` (seconds, from the vendor's answer) is waited out that long instead of the
doubling delay, never longer than ``Backoff.cap``. When the tries run out, the last exception
propagates: each family words "after N retries" in its own error.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


class Transient(Exception):  # a mixin for a family's own errors, never raised alone
    """Mixed into a family's error that is worth another try (a 429, a 5xx, a dropped
    connection). ``retry_after``: the seconds the vendor asked for, when it said."""

    retry_after: float | None = None


@dataclass(frozen=True)
class Backoff:
    first: float  # seconds before the first retry; doubled for each one after it
    cap: float  # the longest single wait, whatever Retry-After asks

    def delay(self, retry: int, asked: float | None = None) -> float:
        """The wait before retry number ``retry`` (0 = the first)."""
        return min(self.cap, asked if asked is not None else self.first * 2 ** retry)


def retrying(call: Callable[[], T], *, retries: int, backoff: Backoff,
             retry_on: tuple[type[BaseException], ...] = (Transient,),
             sleep: Callable[[float], None] = time.sleep,
             on_try: Callable[[int], None] | None = None,
             on_wait: Callable[[float], None] | None = None) -> T:
    """``call()``, tried up to ``1 + retries`` times while it raises one of ``retry_on``.

    ``on_try(n)`` is told of every try (1, 2, …) before it is made, ``on_wait(seconds)`` of every
    wait: what the callers record (requests, retries, time spent waiting)."""
    retry = 0
    while True:
        if on_try is not None:
            on_try(retry + 1)
        try:
            return call()
        except retry_on as exc:
            if retry >= retries:
                raise
            wait = backoff.delay(retry, getattr(exc, "retry_after", None))
            if on_wait is not None:
                on_wait(wait)
            sleep(wait)
            retry += 1


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date); None when absent or odd."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
