"""Password hashing (argon2id through pwdlib).

New hashes take the cost configured by `configure` (TASKMAN_PASSWORD_HASH_*, pwdlib's
defaults unless set); a hash is verified with the cost written in it, so hashes made
with another cost keep verifying.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

if TYPE_CHECKING:
    from shared.settings import Settings

_hasher = PasswordHash((Argon2Hasher(),))


def configure(settings: Settings) -> None:
    """Hash new passwords with the settings' argon2 cost (for this process)."""
    global _hasher
    _hasher = PasswordHash(
        (
            Argon2Hasher(
                memory_cost=settings.password_hash_memory_kib,
                time_cost=settings.password_hash_time_cost,
                parallelism=settings.password_hash_parallelism,
            ),
        )
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # an unknown or corrupt hash verifies nothing
        return False
