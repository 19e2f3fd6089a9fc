"""Password hashes: argon2id at the configured cost; any cost verifies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from shared import security
from shared.settings import Settings


@pytest.fixture(autouse=True)
def restore_cost() -> Iterator[None]:
    """The cost this process had (the suite's apps configure a cheap one) comes back."""
    before = security._hasher
    yield
    security._hasher = before


def test_default_cost_is_pwdlibs_argon2id() -> None:
    security.configure(Settings(_env_file=None))  # type: ignore[call-arg]
    made = security.hash_password("s3cret")
    assert made.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert security.verify_password("s3cret", made)
    assert not security.verify_password("S3cret", made)


def test_configured_cost_is_used_and_hashes_of_another_cost_still_verify() -> None:
    security.configure(Settings(_env_file=None))  # type: ignore[call-arg]
    strong = security.hash_password("one")
    cheap_settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        TASKMAN_PASSWORD_HASH_MEMORY_KIB=2048,
        TASKMAN_PASSWORD_HASH_TIME_COST=2,
        TASKMAN_PASSWORD_HASH_PARALLELISM=1,
    )
    security.configure(cheap_settings)
    cheap = security.hash_password("two")
    assert cheap.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    assert security.verify_password("one", strong)
    assert security.verify_password("two", cheap)
    security.configure(Settings(_env_file=None))  # type: ignore[call-arg]
    assert security.verify_password("two", cheap)


def test_corrupt_or_foreign_hashes_verify_nothing() -> None:
    assert not security.verify_password("x", "")
    assert not security.verify_password("x", "$2b$12$" + "a" * 53)  # bcrypt, not ours
    assert not security.verify_password("x", "$argon2id$v=19$m=65536,t=3,p=4$broken")


@pytest.mark.parametrize(
    "field",
    [
        {"TASKMAN_PASSWORD_HASH_MEMORY_KIB": 512},
        {"TASKMAN_PASSWORD_HASH_TIME_COST": 0},
        {"TASKMAN_PASSWORD_HASH_PARALLELISM": 0},
    ],
)
def test_too_low_a_cost_is_refused(field: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **field)  # type: ignore[arg-type]
