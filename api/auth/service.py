"""Who is calling: HTTP Basic (with a verified-credential cache) and JWT bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import anyio
import jwt
from sqlalchemy import ColumnElement, Select, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.errors import Unauthorized
from shared.models import RolePermission, User, UserRole, utcnow
from shared.security import verify_password
from shared.settings import Settings

ALGORITHM = "HS256"
AnySelect = Select[*tuple[Any, ...]]


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


class Credentialed(Protocol):
    """What the credential cache keys on: a user's id and its current password hash."""

    @property
    def id(self) -> int | None: ...

    @property
    def password_hash(self) -> str: ...


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

    def _key(self, user: Credentialed, password: str) -> tuple[int, str, bytes]:
        digest = hmac.new(self._secret, password.encode(), hashlib.sha256).digest()
        return (user.id or 0, user.password_hash, digest)

    def hit(self, user: Credentialed, password: str) -> bool:
        key = self._key(user, password)
        expires = self._entries.get(key)
        if expires is None:
            return False
        if expires < time.monotonic():
            self._entries.pop(key, None)
            return False
        self._entries.move_to_end(key)
        return True

    def remember(self, user: Credentialed, password: str) -> None:
        self._entries[self._key(user, password)] = time.monotonic() + self._ttl
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def _unauthorized(settings: Settings, detail: str) -> Unauthorized:
    realm = settings.instance_name.replace('"', "'")
    return Unauthorized(detail, headers={"WWW-Authenticate": f'Basic realm="{realm}"'})


@dataclass(slots=True)
class Principal:
    """A user as authentication sees it: its credentials' state and its permissions."""

    id: int
    username: str
    active: bool
    weight: float
    token_version: int
    password_hash: str
    permissions: set[str]

    def actor(self) -> Actor:
        return Actor(self.id, self.username, frozenset(self.permissions), self.weight)


def _principal_query(condition: ColumnElement[bool]) -> AnySelect:
    return (
        select(
            col(User.id),
            col(User.username),
            col(User.active),
            col(User.assignment_weight),
            col(User.token_version),
            col(User.password_hash),
            col(RolePermission.permission),
        )
        .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
        .outerjoin(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(condition)
    )


# Built once, with parameters: the API's session and the hot paths run the same statements.
BY_LOGIN = _principal_query(
    or_(col(User.username) == bindparam("login"), col(User.email) == bindparam("login"))
)
BY_ID = _principal_query(col(User.id) == bindparam("user_id"))

# Runs one of the statements above with its parameters and returns its rows.
Fetch = Callable[..., Awaitable[Iterable[Sequence[Any]]]]


def session_fetch(session: AsyncSession) -> Fetch:
    async def fetch(statement: AnySelect, **params: Any) -> Iterable[Sequence[Any]]:
        rows: Iterable[Sequence[Any]] = (await session.execute(statement, params)).all()
        return rows

    return fetch


async def _principals(fetch: Fetch, statement: AnySelect, **params: Any) -> dict[int, Principal]:
    found: dict[int, Principal] = {}
    for uid, username, active, weight, version, password_hash, permission in await fetch(
        statement, **params
    ):
        entry = found.get(uid)
        if entry is None:
            entry = found[uid] = Principal(
                uid, username, active, weight, version, password_hash, set()
            )
        if permission is not None:
            entry.permissions.add(permission)
    return found


async def find_login(fetch: Fetch, login: str) -> Principal | None:
    """The user whose username (preferred) or email is `login`."""
    found = await _principals(fetch, BY_LOGIN, login=login)
    for principal in found.values():
        if principal.username == login:
            return principal
    return next(iter(found.values()), None)


async def check_login(
    fetch: Fetch, cache: CredentialCache, login: str, password: str
) -> Principal | None:
    principal = await find_login(fetch, login)
    if principal is None or not principal.active:
        return None
    if not cache.hit(principal, password):
        ok = await anyio.to_thread.run_sync(verify_password, password, principal.password_hash)
        if not ok:
            return None
        cache.remember(principal, password)
    return principal


async def check_password(
    session: AsyncSession, cache: CredentialCache, login: str, password: str
) -> Principal | None:
    return await check_login(session_fetch(session), cache, login, password)


async def authenticate_basic(
    fetch: Fetch, settings: Settings, cache: CredentialCache, credentials: str
) -> Actor:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _unauthorized(settings, "Malformed Basic credentials") from exc
    login, sep, password = decoded.partition(":")
    if not sep:
        raise _unauthorized(settings, "Malformed Basic credentials")
    principal = await check_login(fetch, cache, login, password)
    if principal is None:
        raise _unauthorized(settings, "Invalid username or password")
    return principal.actor()


def issue_token(settings: Settings, secret: str, user: Principal, kind: str) -> tuple[str, int]:
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


_DECODED: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()


def _decode(token: str, secret: str) -> dict[str, Any]:
    """A token's verified claims; a token seen before skips the signature check.

    Clients send the same token on every request. Its expiry is still checked each time,
    and whether it was revoked is decided by the user row, read on every request.
    """
    key = (token, secret)
    claims = _DECODED.get(key)
    if claims is None:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
        _DECODED[key] = claims
        if len(_DECODED) > 10_000:
            _DECODED.popitem(last=False)
    elif claims["exp"] <= time.time():
        _DECODED.pop(key, None)
        raise jwt.ExpiredSignatureError("Signature has expired")
    return claims


async def principal_from_token(
    fetch: Fetch, settings: Settings, secret: str, token: str, kind: str
) -> Principal:
    try:
        claims = _decode(token, secret)
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized(settings, "Token expired") from exc
    except jwt.PyJWTError as exc:
        raise _unauthorized(settings, "Invalid token") from exc
    if claims.get("typ") != kind or not str(claims.get("sub", "")).isdigit():
        raise _unauthorized(settings, f"Not an {kind} token")
    user_id = int(claims["sub"])
    found = (await _principals(fetch, BY_ID, user_id=user_id)).get(user_id)
    if found is None or not found.active or found.token_version != claims.get("ver"):
        raise _unauthorized(settings, "Token revoked")
    return found


async def user_from_token(
    session: AsyncSession, settings: Settings, secret: str, token: str, kind: str
) -> Principal:
    return await principal_from_token(session_fetch(session), settings, secret, token, kind)


async def authenticate(
    fetch: Fetch,
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
        return await authenticate_basic(fetch, settings, cache, credentials.strip())
    if scheme == "bearer":
        principal = await principal_from_token(
            fetch, settings, secret, credentials.strip(), "access"
        )
        return principal.actor()
    raise _unauthorized(settings, f"Unsupported authorization scheme '{scheme}'")
