"""When to try a delivery again: one pure function, called with everything it needs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

RETRIABLE_4XX = frozenset({408, 425, 429})


class Outcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    failed = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base, 2 base, 4 base ... capped, until the deadline."""

    base_seconds: float = 5.0
    cap_seconds: float = 4 * 3600.0
    give_up_after: timedelta = timedelta(days=2)
    max_retry_after_seconds: float = 24 * 3600.0


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    next_attempt_at: datetime | None = None
    reason: str | None = None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from now: delay-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # The obsolete asctime form carries no zone; HTTP dates are always GMT.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def decide(
    policy: RetryPolicy,
    *,
    attempt: int,
    status_code: int | None,
    error: str | None,
    retry_after: str | None,
    now: datetime,
    permanent: bool = False,
    deadline: datetime,
    rng: random.Random | None = None,
) -> Decision:
    """What to do after attempt number `attempt` (1 for the first) came back as given.

    2xx: delivered. Other 4xx except 408/425/429, any other non-5xx answer, and a request
    that cannot be made at all (`permanent`): failed for good, a retry cannot fix it. 5xx,
    408/425/429, timeouts and connection errors (`error` set, no status): retried after
    base * 2^(attempt-1) seconds, capped, with jitter over the upper half, or after
    `Retry-After` when the receiver asks for longer; given up once the next attempt would
    fall past `deadline`.
    """
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Outcome.delivered)
    if permanent:
        return Decision(Outcome.failed, reason=error or "cannot be sent")
    retriable = status_code is None or status_code >= 500 or status_code in RETRIABLE_4XX
    if not retriable:
        return Decision(Outcome.failed, reason=f"HTTP {status_code}: not retried")
    # The exponent is bounded: an often retried delivery must not overflow a float.
    delay = min(policy.cap_seconds, policy.base_seconds * 2 ** min(max(0, attempt - 1), 60))
    delay = delay / 2 + (rng or random).uniform(0, delay / 2)
    asked = retry_after_seconds(retry_after, now)
    if asked is not None:
        delay = max(delay, min(asked, policy.max_retry_after_seconds))
    next_at = now + timedelta(seconds=delay)
    if next_at > deadline:
        why = f"HTTP {status_code}" if status_code is not None else (error or "no answer")
        return Decision(Outcome.failed, reason=f"gave up after {attempt} attempts ({why})")
    return Decision(Outcome.retry, next_attempt_at=next_at)
