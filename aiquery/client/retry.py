"""Which failures are retried and how long to wait: policy as data, delay as a pure function.

Retryable: 408, 429, 500, 502, 503, 504, connection errors, timeouts and unparseable
responses. Terminal: every other status (400, 401, 403, 404, 413, context length, ...).
The delay honours the server's `retry-after-ms` / `Retry-After` (seconds or an HTTP date;
capped), else capped
exponential backoff with full jitter, so a crowd of retrying tasks spreads out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6  # attempts that failed other than by 429, including the first
    max_throttled_attempts: int = 30  # all attempts, when the failures are 429s
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0  # never sleep longer than this on a server's say-so

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_throttled_attempts < self.max_attempts:
            raise ValueError("need 1 <= max_attempts <= max_throttled_attempts")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must be >= 0")


def is_retryable(status: int | None) -> bool:
    """A status of None means no HTTP answer: a connection error, a timeout, a garbled body."""
    return status is None or status in RETRYABLE_STATUSES


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The server's requested delay: `retry-after-ms` (precise), or `Retry-After` in seconds
    or as an HTTP date (RFC 9110), counted from `now` (epoch seconds; default the clock)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds: float | None = float(value) * scale
        except ValueError:
            is_date = name == "retry-after"
            seconds = (
                _seconds_until(value, time.time() if now is None else now) if is_date else None
            )
        if seconds is not None and seconds >= 0:  # NaN fails this too
            return seconds
    return None


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is read as such
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(
    policy: RetryPolicy, attempt: int, server_delay_s: float | None, rng: random.Random
) -> float:
    """Seconds to wait before attempt `attempt + 1`, after `attempt` failed (1-based)."""
    if server_delay_s is not None:
        # A little jitter on top, so tasks told the same instant do not return in lockstep.
        capped = min(server_delay_s, policy.max_retry_after_s)
        return capped + rng.uniform(0, min(1.0, 0.1 * capped + 0.05))
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** min(attempt - 1, 60))
    return rng.uniform(0, ceiling)
