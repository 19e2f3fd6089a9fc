"""The push rotation's arithmetic (api/tasks/distribution.py), without a database."""

from __future__ import annotations

from collections import Counter

from api.tasks.distribution import Candidate, choose, start_count


def test_start_count_is_the_furthest_position_at_the_joiners_weight() -> None:
    # Positions reached: 50/1 and 90/2 = 45; the furthest is 50 tasks at weight 1.
    assert start_count(1.0, [(1.0, 50), (2.0, 90)]) == 50
    assert start_count(2.0, [(1.0, 50), (2.0, 90)]) == 100
    assert start_count(0.5, [(1.0, 5)]) == 2  # rounded down: never ahead of the others
    assert start_count(1.0, []) == 0


def test_a_joiner_started_there_shares_at_once() -> None:
    members = [Candidate(1, 1.0, 50), Candidate(2, 1.0, 49)]
    late = Candidate(3, 1.0, start_count(1.0, [(c.weight, c.count) for c in members]))
    picks = Counter(choose([*members, late], 30, distinct=False))
    assert all(abs(picks[uid] - 10) <= 1 for uid in (1, 2, 3)), picks
    # Without the start it would take every one of them.
    fresh = [Candidate(1, 1.0, 50), Candidate(2, 1.0, 49), Candidate(3, 1.0, 0)]
    assert Counter(choose(fresh, 30, distinct=False))[3] == 30
