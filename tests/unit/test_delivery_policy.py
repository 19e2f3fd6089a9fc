"""The retry policy: what one attempt's answer means, and when the next attempt is due."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import pairwise

import pytest

from shared.delivery.policy import Decision, Outcome, RetryPolicy, decide, retry_after_seconds

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
FAR = NOW + timedelta(days=30)
DEFAULT = RetryPolicy()


class Edge:
    """An rng stub that always draws the low (or the high) end of the jitter band."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return max(a, b) if self.high else min(a, b)


LOW = Edge(high=False)
HIGH = Edge(high=True)


def attempt(
    *,
    attempt: int = 1,
    status_code: int | None = 503,
    error: str | None = None,
    retry_after: str | None = None,
    now: datetime = NOW,
    deadline: datetime = FAR,
    permanent: bool = False,
    rng: object | None = None,
    policy: RetryPolicy = DEFAULT,
) -> Decision:
    return decide(
        policy,
        attempt=attempt,
        status_code=status_code,
        error=error,
        retry_after=retry_after,
        now=now,
        deadline=deadline,
        permanent=permanent,
        rng=rng,  # type: ignore[arg-type]
    )


def delay_of(decision: Decision, now: datetime = NOW) -> float:
    assert decision.outcome is Outcome.retry, decision
    assert decision.next_attempt_at is not None
    return (decision.next_attempt_at - now).total_seconds()


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


# --- what an answer means ---------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_is_delivered(status: int) -> None:
    decision = attempt(status_code=status)
    assert decision.outcome is Outcome.delivered
    assert decision.next_attempt_at is None


def test_a_2xx_is_delivered_even_past_the_deadline() -> None:
    decision = attempt(attempt=40, status_code=200, deadline=NOW - timedelta(hours=1))
    assert decision.outcome is Outcome.delivered


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 415, 422])
def test_a_client_error_fails_for_good_with_a_reason(status: int) -> None:
    decision = attempt(status_code=status)
    assert decision.outcome is Outcome.failed
    assert decision.next_attempt_at is None
    assert decision.reason
    assert str(status) in decision.reason


@pytest.mark.parametrize("status", [100, 304, 399])
def test_any_other_non_5xx_answer_fails_for_good(status: int) -> None:
    decision = attempt(status_code=status)
    assert decision.outcome is Outcome.failed
    assert decision.reason


@pytest.mark.parametrize("status", [408, 425, 429, 500, 501, 502, 503, 504, 599])
def test_timeouts_throttling_and_server_errors_are_retried(status: int) -> None:
    decision = attempt(status_code=status, rng=random.Random(1))
    assert decision.outcome is Outcome.retry
    assert decision.reason is None
    assert decision.next_attempt_at is not None
    assert decision.next_attempt_at > NOW


@pytest.mark.parametrize(
    "error",
    [
        "ConnectError: [Errno 111] Connection refused",
        "ReadTimeout: timed out",
        "RemoteProtocolError: Server disconnected without sending a response.",
        None,
    ],
)
def test_no_answer_at_all_is_retried(error: str | None) -> None:
    decision = attempt(status_code=None, error=error, rng=random.Random(2))
    assert decision.outcome is Outcome.retry
    assert decision.next_attempt_at is not None
    assert decision.next_attempt_at > NOW


def test_a_request_that_cannot_be_made_fails_for_good_with_its_error() -> None:
    error = "UnsupportedProtocol: Request URL has an unsupported protocol 'ftp://'."
    decision = attempt(status_code=None, error=error, permanent=True)
    assert decision.outcome is Outcome.failed
    assert decision.next_attempt_at is None
    assert decision.reason == error


def test_a_permanent_failure_without_an_error_still_has_a_reason() -> None:
    decision = attempt(status_code=None, error=None, permanent=True)
    assert decision.outcome is Outcome.failed
    assert decision.reason


def test_permanent_wins_over_a_retriable_answer() -> None:
    decision = attempt(status_code=503, error="the webhook was deleted", permanent=True)
    assert decision.outcome is Outcome.failed


# --- backoff and jitter -----------------------------------------------------------------


@pytest.mark.parametrize("number", range(1, 12))
def test_the_backoff_doubles_per_attempt_within_the_jitter_band(number: int) -> None:
    full = DEFAULT.base_seconds * 2 ** (number - 1)
    assert full <= DEFAULT.cap_seconds  # not capped yet for these attempts
    low = delay_of(attempt(attempt=number, rng=LOW))
    high = delay_of(attempt(attempt=number, rng=HIGH))
    assert low == pytest.approx(full / 2)
    assert high == pytest.approx(full)
    assert delay_of(attempt(attempt=number + 1, rng=LOW)) == pytest.approx(2 * low)
    assert delay_of(attempt(attempt=number + 1, rng=HIGH)) == pytest.approx(2 * high)


def test_the_first_retry_follows_the_base_delay() -> None:
    policy = RetryPolicy(base_seconds=1.0)
    assert delay_of(attempt(policy=policy, rng=LOW)) == pytest.approx(0.5)
    assert delay_of(attempt(policy=policy, rng=HIGH)) == pytest.approx(1.0)


@pytest.mark.parametrize("number", [1, 3, 6, 10])
def test_seeded_jitter_stays_in_the_band_and_spreads(number: int) -> None:
    full = DEFAULT.base_seconds * 2 ** (number - 1)
    rng = random.Random(20250314)
    delays = [delay_of(attempt(attempt=number, rng=rng)) for _ in range(500)]
    assert all(full / 2 <= delay <= full for delay in delays)
    # Real jitter: the draws cover most of the band, not one point of it.
    assert max(delays) - min(delays) > 0.8 * (full / 2)


def test_seeded_jitter_is_reproducible() -> None:
    first = [delay_of(attempt(attempt=n, rng=random.Random(7))) for n in range(1, 10)]
    again = [delay_of(attempt(attempt=n, rng=random.Random(7))) for n in range(1, 10)]
    assert first == again


def test_jitter_without_an_rng_stays_in_the_band() -> None:
    delays = [delay_of(attempt(attempt=4)) for _ in range(200)]
    assert all(20.0 <= delay <= 40.0 for delay in delays)


@pytest.mark.parametrize("number", [13, 14, 20, 40, 60])
def test_the_backoff_is_capped(number: int) -> None:
    cap = DEFAULT.cap_seconds
    assert delay_of(attempt(attempt=number, rng=HIGH)) == pytest.approx(cap)
    assert delay_of(attempt(attempt=number, rng=LOW)) == pytest.approx(cap / 2)
    seeded = delay_of(attempt(attempt=number, rng=random.Random(number)))
    assert cap / 2 <= seeded <= cap


def test_a_custom_cap_is_honoured() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=10.0)
    highs = [delay_of(attempt(policy=policy, attempt=n, rng=HIGH)) for n in range(1, 8)]
    assert highs == pytest.approx([1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0])


# --- Retry-After ------------------------------------------------------------------------


def test_retry_after_seconds_parses_delay_seconds() -> None:
    assert retry_after_seconds("120", NOW) == 120.0
    assert retry_after_seconds("0", NOW) == 0.0
    assert retry_after_seconds(" 30 ", NOW) == 30.0


def test_retry_after_seconds_parses_an_http_date() -> None:
    assert retry_after_seconds(http_date(NOW + timedelta(seconds=90)), NOW) == 90.0
    assert retry_after_seconds("Fri, 14 Mar 2025 10:26:53 GMT", NOW) == 3600.0


def test_retry_after_seconds_reads_a_date_without_zone_as_gmt() -> None:
    # RFC 9110: HTTP dates are GMT; the obsolete asctime form and "-0000" carry no zone.
    assert retry_after_seconds("Fri, 14 Mar 2025 10:26:53 -0000", NOW) == 3600.0
    assert retry_after_seconds("Fri Mar 14 10:26:53 2025", NOW) == 3600.0


def test_retry_after_seconds_treats_a_past_date_as_now() -> None:
    assert retry_after_seconds(http_date(NOW - timedelta(hours=1)), NOW) == 0.0


UNPARSEABLE = {
    "word": "soon",
    "negative": "-1",
    "fraction": "1.5",
    "unit": "120s",
    "bad-date": "Wed, 99 Foo 2015 07:28:00 GMT",
    "blank": "   ",
    "superscript-two": "\u00b2",
}


@pytest.mark.parametrize("value", [None, ""])
def test_retry_after_seconds_of_nothing_is_none(value: str | None) -> None:
    assert retry_after_seconds(value, NOW) is None


@pytest.mark.parametrize("value", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_retry_after_seconds_of_garbage_is_none(value: str) -> None:
    assert retry_after_seconds(value, NOW) is None


@pytest.mark.parametrize("status", [429, 503])
def test_a_longer_retry_after_in_seconds_is_honoured(status: int) -> None:
    decision = attempt(status_code=status, retry_after="120", rng=HIGH)
    assert decision.next_attempt_at == NOW + timedelta(seconds=120)


def test_a_longer_retry_after_as_an_http_date_is_honoured() -> None:
    when = NOW + timedelta(minutes=45)
    decision = attempt(status_code=503, retry_after=http_date(when), rng=HIGH)
    assert decision.next_attempt_at == when


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    # Attempt 6: backoff 160 s, 80 s at the low end of the jitter.
    assert delay_of(attempt(attempt=6, retry_after="10", rng=LOW)) == pytest.approx(80.0)
    assert delay_of(attempt(attempt=6, retry_after="0", rng=LOW)) == pytest.approx(80.0)
    past = http_date(NOW - timedelta(days=1))
    assert delay_of(attempt(attempt=6, retry_after=past, rng=LOW)) == pytest.approx(80.0)


def test_retry_after_in_seconds_is_capped() -> None:
    cap = DEFAULT.max_retry_after_seconds
    decision = attempt(status_code=429, retry_after=str(10 * 24 * 3600), rng=HIGH)
    assert delay_of(decision) == pytest.approx(cap)


def test_retry_after_as_a_date_is_capped() -> None:
    cap = DEFAULT.max_retry_after_seconds
    later = http_date(NOW + timedelta(days=5))
    decision = attempt(status_code=503, retry_after=later, rng=HIGH)
    assert delay_of(decision) == pytest.approx(cap)


def test_a_custom_retry_after_cap_is_honoured() -> None:
    policy = RetryPolicy(max_retry_after_seconds=60.0)
    decision = attempt(policy=policy, status_code=429, retry_after="600", rng=HIGH)
    assert delay_of(decision) == pytest.approx(60.0)


@pytest.mark.parametrize("value", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_an_unparseable_retry_after_is_ignored(value: str) -> None:
    plain = attempt(attempt=3, rng=HIGH)
    decision = attempt(attempt=3, retry_after=value, rng=HIGH)
    assert decision == plain
    assert delay_of(decision) == pytest.approx(20.0)


def test_retry_after_does_not_rescue_a_permanent_error() -> None:
    decision = attempt(status_code=404, retry_after="60")
    assert decision.outcome is Outcome.failed


# --- the deadline -----------------------------------------------------------------------


def test_gives_up_once_the_next_attempt_would_fall_past_the_deadline() -> None:
    # Attempt 5: the next one would be 40..80 s away; only 30 s are left.
    decision = attempt(attempt=5, deadline=NOW + timedelta(seconds=30), rng=LOW)
    assert decision.outcome is Outcome.failed
    assert decision.next_attempt_at is None
    assert decision.reason
    assert "attempts" in decision.reason
    assert "5" in decision.reason


def test_gives_up_with_the_last_error_in_the_reason() -> None:
    decision = attempt(
        attempt=9,
        status_code=None,
        error="ConnectError: connection refused",
        deadline=NOW,
        rng=LOW,
    )
    assert decision.outcome is Outcome.failed
    assert decision.reason
    assert "attempts" in decision.reason
    assert "ConnectError" in decision.reason


def test_a_next_attempt_exactly_at_the_deadline_is_still_made() -> None:
    decision = attempt(attempt=2, deadline=NOW + timedelta(seconds=10), rng=HIGH)
    assert decision.outcome is Outcome.retry
    assert decision.next_attempt_at == NOW + timedelta(seconds=10)


def test_keeps_trying_while_the_next_attempt_is_before_the_deadline() -> None:
    decision = attempt(attempt=5, deadline=NOW + timedelta(seconds=81), rng=HIGH)
    assert decision.outcome is Outcome.retry


def test_a_retry_after_past_the_deadline_gives_up() -> None:
    decision = attempt(
        status_code=429, retry_after="3600", deadline=NOW + timedelta(minutes=30), rng=LOW
    )
    assert decision.outcome is Outcome.failed
    assert decision.reason
    assert "attempts" in decision.reason


def test_a_deadline_already_passed_gives_up() -> None:
    decision = attempt(attempt=1, deadline=NOW - timedelta(seconds=1), rng=LOW)
    assert decision.outcome is Outcome.failed


# --- a receiver that is down for good ---------------------------------------------------


def always_503(rng: object) -> tuple[int, datetime, list[datetime], Decision]:
    """Attempts against a receiver that answers 503 from t=0, each at its due time."""
    start = NOW
    deadline = start + DEFAULT.give_up_after
    now = start
    times = [now]
    number = 1
    while True:
        decision = attempt(attempt=number, now=now, deadline=deadline, rng=rng)
        if decision.outcome is not Outcome.retry:
            return number, now, times, decision
        assert decision.next_attempt_at is not None
        assert now < decision.next_attempt_at <= deadline
        now = decision.next_attempt_at
        times.append(now)
        number += 1
        assert number < 1000, "never gave up"


@pytest.mark.parametrize("seed", range(10))
def test_a_dead_receiver_is_given_up_on_after_about_two_days(seed: int) -> None:
    attempts, last, times, decision = always_503(random.Random(seed))
    assert decision.outcome is Outcome.failed
    assert decision.reason
    assert "attempts" in decision.reason
    assert str(attempts) in decision.reason
    assert len(times) == attempts
    hours = (last - NOW).total_seconds() / 3600
    assert 44 <= hours <= 48
    assert 15 <= attempts <= 30
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    assert all(gap <= DEFAULT.cap_seconds for gap in gaps)
    assert gaps[0] <= DEFAULT.base_seconds
    assert gaps == sorted(gaps[:12]) + gaps[12:]  # growing until the cap


def test_a_dead_receiver_at_the_jitter_extremes() -> None:
    most, last_low, _, _ = always_503(LOW)
    fewest, last_high, _, _ = always_503(HIGH)
    seeded, _, _, _ = always_503(random.Random(0))
    assert fewest < seeded < most
    assert fewest >= 15
    assert most <= 40
    for last in (last_low, last_high):
        assert 44 <= (last - NOW).total_seconds() / 3600 <= 48


def test_a_delivery_retried_very_often_still_waits_the_cap() -> None:
    # Admin retries reset the deadline but not the count: the backoff must not overflow.
    assert delay_of(attempt(attempt=5000, rng=HIGH)) == pytest.approx(DEFAULT.cap_seconds)
