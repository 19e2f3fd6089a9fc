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
from sqlalchemy import or_, select
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


async def permissions_of(session: AsyncSession, user_id: int) -> frozenset[str]:
    rows = await session.scalars(
        select(col(RolePermission.permission))
        .join(UserRole, col(UserRole.role_id) == col(RolePermission.role_id))
        .where(col(UserRole.user_id) == user_id)
    )
    return frozenset(rows)


async def _actor(session: AsyncSession, user: User) -> Actor:
    assert user.id is not None
    permissions = await permissions_of(session, user.id)
    return Actor(user.id, user.username, permissions, user.assignment_weight)


async def find_login(session: AsyncSession, login: str) -> User | None:
    """The user whose username (preferred) or email is `login`."""
    users = list(
        await session.scalars(
            select(User).where(or_(col(User.username) == login, col(User.email) == login)).limit(2)
        )
    )
    for user in users:
        if user.username == login:
            return user
    return users[0] if users else None


async def check_password(
    session: AsyncSession, cache: CredentialCache, login: str, password: str
) -> User | None:
    user = await find_login(session, login)
    if user is None or not user.active:
        return None
    if cache.hit(user, password):
        return user
    ok = await anyio.to_thread.run_sync(verify_password, password, user.password_hash)
    if not ok:
        return None
    cache.remember(user, password)
    return user


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
    user = await check_password(session, cache, login, password)
    if user is None:
        raise _unauthorized(settings, "Invalid username or password")
    return await _actor(session, user)


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


async def user_from_token(
    session: AsyncSession, settings: Settings, secret: str, token: str, kind: str
) -> User:
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
    user = await session.get(User, int(claims["sub"]))
    if user is None or not user.active or user.token_version != claims.get("ver"):
        raise _unauthorized(settings, "Token revoked")
    return user


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
        user = await user_from_token(session, settings, secret, credentials.strip(), "access")
        return await _actor(session, user)
    raise _unauthorized(settings, f"Unsupported authorization scheme '{scheme}'")
