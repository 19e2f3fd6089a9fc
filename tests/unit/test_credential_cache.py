"""The verified-Basic-credential cache: argon2 once, never a stale or wrong password."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.auth import service
from api.auth.service import CredentialCache
from shared.models import User

SECRET = "cache-test-secret"


def user(user_id: int = 1, password_hash: str = "$argon2id$v=19$hash-1") -> User:
    return User(id=user_id, username=f"user{user_id}", password_hash=password_hash)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(service, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_a_remembered_password_hits() -> None:
    cache = CredentialCache(SECRET)
    alice = user()
    assert not cache.hit(alice, "pw")
    cache.remember(alice, "pw")
    assert cache.hit(alice, "pw")
    assert cache.hit(user(), "pw")  # the same row, loaded again by the next request


def test_a_changed_password_hash_misses() -> None:
    cache = CredentialCache(SECRET)
    cache.remember(user(password_hash="$argon2id$old"), "old-pw")
    # The password was changed (or reset by an admin): the row now holds another hash.
    assert not cache.hit(user(password_hash="$argon2id$new"), "old-pw")


def test_a_different_password_misses() -> None:
    cache = CredentialCache(SECRET)
    alice = user()
    cache.remember(alice, "right")
    assert not cache.hit(alice, "wrong")
    assert not cache.hit(alice, "right ")
    assert not cache.hit(alice, "")


def test_another_user_with_the_same_password_misses() -> None:
    cache = CredentialCache(SECRET)
    cache.remember(user(1, "$argon2id$same"), "pw")
    assert not cache.hit(user(2, "$argon2id$same"), "pw")


def test_the_plain_password_is_not_kept() -> None:
    cache = CredentialCache(SECRET)
    cache.remember(user(), "very-secret-password")
    assert "very-secret-password" not in repr(vars(cache))


def test_size_is_bounded_and_the_least_recently_used_goes_first() -> None:
    cache = CredentialCache(SECRET, max_entries=3)
    users = [user(i, f"$argon2id$hash-{i}") for i in range(1, 5)]
    for u in users[:3]:
        cache.remember(u, "pw")
    assert cache.hit(users[0], "pw")  # now the most recently used
    cache.remember(users[3], "pw")
    assert not cache.hit(users[1], "pw")
    assert all(cache.hit(u, "pw") for u in (users[0], users[2], users[3]))

    for i in range(5, 105):
        cache.remember(user(i, f"$argon2id$hash-{i}"), "pw")
    assert sum(cache.hit(user(i, f"$argon2id$hash-{i}"), "pw") for i in range(1, 105)) == 3


def test_an_entry_expires(clock: Clock) -> None:
    cache = CredentialCache(SECRET, ttl_seconds=60)
    alice = user()
    cache.remember(alice, "pw")
    clock.now += 59
    assert cache.hit(alice, "pw")
    clock.now += 2
    assert not cache.hit(alice, "pw")
    # Verifying again starts a new lifetime.
    cache.remember(alice, "pw")
    assert cache.hit(alice, "pw")


def test_a_hit_does_not_extend_the_lifetime(clock: Clock) -> None:
    cache = CredentialCache(SECRET, ttl_seconds=60)
    alice = user()
    cache.remember(alice, "pw")
    clock.now += 40
    assert cache.hit(alice, "pw")
    clock.now += 40
    assert not cache.hit(alice, "pw")
