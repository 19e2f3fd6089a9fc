"""Who is calling: HTTP Basic (with a verified-credential cache) and JWT bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import jwt
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.errors import Unauthorized
from shared.models import RolePermission, User, UserRole, utcnow
from shared.security import verify_password
from shared.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller and what it may do."""

    id: int
    username: str
    permissions: frozenset[str]
    weight: float = 1.0

    def can(self, *permissions: str) -> bool:
        """True when the caller holds any of `permissions`."""
        return any(p in self.permissions for p in permissions)


class CredentialCache:
    """Remembers Basic credentials that verified, so argon2 runs once, not on every request.

    An entry is keyed by the user's id, its current password hash and an HMAC of the
    presented password: a changed password changes the stored hash and misses at once, and
    the user row (active flag) is read on every request anyway. Plain passwords are never kept.
    """

    def __init__(self, secret: str, max_entries: int = 10_000, ttl_seconds: float = 900) -> None:
        self._secret = secret.encode()
        self._entries: OrderedDict[tuple[int, str, bytes], float] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def _key(self, user: User, password: str) -> tuple[int, str, bytes]:
        digest = hmac.new(self._secret, password.encode(), hashlib.sha256).digest()
        return (user.id or 0, user.password_hash, digest)

    def hit(self, user: User, password: str) -> bool:
        key = self._key(user, password)
        expires = self._entries.get(key)
        if expires is None:
            return False
        if expires < time.monotonic():
            self._entries.pop(key, None)
            return False
        self._entries.move_to_end(key)
        return True

    def remember(self, user: User, password: str) -> None:
        self._entries[self._key(user, password)] = time.monotonic() + self._ttl
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def _unauthorized(settings: Settings, detail: str) -> Unauthorized:
    realm = settings.instance_name.replace('"', "'")
    return Unauthorized(detail, headers={"WWW-Authenticate": f'Basic realm="{realm}"'})


async def _principals(
    session: AsyncSession, condition: ColumnElement[bool]
) -> dict[int, tuple[User, set[str]]]:
    """Users matching `condition` with their permissions, in one round trip."""
    rows = await session.execute(
        select(User, col(RolePermission.permission))
        .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
        .outerjoin(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(condition)
    )
    found: dict[int, tuple[User, set[str]]] = {}
    for user, permission in rows:
        assert user.id is not None
        entry = found.setdefault(user.id, (user, set()))
        if permission is not None:
            entry[1].add(permission)
    return found


def _actor_of(user: User, permissions: set[str]) -> Actor:
    assert user.id is not None
    return Actor(user.id, user.username, frozenset(permissions), user.assignment_weight)


async def find_login(session: AsyncSession, login: str) -> tuple[User, set[str]] | None:
    """The user whose username (preferred) or email is `login`, with its permissions."""
    found = await _principals(session, or_(col(User.username) == login, col(User.email) == login))
    for user, permissions in found.values():
        if user.username == login:
            return user, permissions
    return next(iter(found.values()), None)


async def check_login(
    session: AsyncSession, cache: CredentialCache, login: str, password: str
) -> tuple[User, set[str]] | None:
    found = await find_login(session, login)
    if found is None or not found[0].active:
        return None
    user = found[0]
    if not cache.hit(user, password):
        ok = await anyio.to_thread.run_sync(verify_password, password, user.password_hash)
        if not ok:
            return None
        cache.remember(user, password)
    return found


async def check_password(
    session: AsyncSession, cache: CredentialCache, login: str, password: str
) -> User | None:
    found = await check_login(session, cache, login, password)
    return found[0] if found else None


async def authenticate_basic(
    session: AsyncSession, settings: Settings, cache: CredentialCache, credentials: str
) -> Actor:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _unauthorized(settings, "Malformed Basic credentials") from exc
    login, sep, password = decoded.partition(":")
    if not sep:
        raise _unauthorized(settings, "Malformed Basic credentials")
    found = await check_login(session, cache, login, password)
    if found is None:
        raise _unauthorized(settings, "Invalid username or password")
    return _actor_of(*found)


def issue_token(settings: Settings, secret: str, user: User, kind: str) -> tuple[str, int]:
    """A signed token for `user`; returns it and its lifetime in seconds."""
    if kind == "access":
        lifetime = timedelta(minutes=settings.access_token_minutes)
    else:
        lifetime = timedelta(days=settings.refresh_token_days)
    now = utcnow()
    claims = {
        "sub": str(user.id),
        "ver": user.token_version,
        "typ": kind,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), int(lifetime.total_seconds())


async def principal_from_token(
    session: AsyncSession, settings: Settings, secret: str, token: str, kind: str
) -> tuple[User, set[str]]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized(settings, "Token expired") from exc
    except jwt.PyJWTError as exc:
        raise _unauthorized(settings, "Invalid token") from exc
    if claims.get("typ") != kind or not str(claims.get("sub", "")).isdigit():
        raise _unauthorized(settings, f"Not an {kind} token")
    user_id = int(claims["sub"])
    found = (await _principals(session, col(User.id) == user_id)).get(user_id)
    if found is None or not found[0].active or found[0].token_version != claims.get("ver"):
        raise _unauthorized(settings, "Token revoked")
    return found


async def user_from_token(
    session: AsyncSession, settings: Settings, secret: str, token: str, kind: str
) -> User:
    return (await principal_from_token(session, settings, secret, token, kind))[0]


async def authenticate(
    session: AsyncSession,
    settings: Settings,
    secret: str,
    cache: CredentialCache,
    authorization: str | None,
) -> Actor:
    if not authorization:
        raise _unauthorized(settings, "Authentication required (HTTP Basic or Bearer token)")
    scheme, _, credentials = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        return await authenticate_basic(session, settings, cache, credentials.strip())
    if scheme == "bearer":
        found = await principal_from_token(session, settings, secret, credentials.strip(), "access")
        return _actor_of(*found)
    raise _unauthorized(settings, f"Unsupported authorization scheme '{scheme}'")
