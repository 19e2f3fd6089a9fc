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
        # The login a verified entry was presented with: lets a hot path name the user and
        # the hash to check before it has read the user row (see `known`).
        self._logins: OrderedDict[tuple[str, bytes], tuple[int, str]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._secret, password.encode(), hashlib.sha256).digest()

    def _key(self, user: Credentialed, password: str) -> tuple[int, str, bytes]:
        return (user.id or 0, user.password_hash, self._digest(password))

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

    def note_login(self, login: str, user: Credentialed, password: str) -> None:
        """`login` with `password` names `user` (whose entry `hit` just found or `remember`
        just stored)."""
        user_id, password_hash, digest = self._key(user, password)
        self._logins[(login, digest)] = (user_id, password_hash)
        self._logins.move_to_end((login, digest))
        while len(self._logins) > self._max:
            self._logins.popitem(last=False)

    def known(self, login: str, password: str) -> tuple[int, str] | None:
        """The user id and password hash that `login` with `password` verified against.

        Whether that hash is still the user's (and the user still active and still the one
        `login` names) is for the caller to check against the user row.
        """
        digest = self._digest(password)
        found = self._logins.get((login, digest))
        if found is None:
            return None
        expires = self._entries.get((*found, digest))
        if expires is None or expires < time.monotonic():
            self._logins.pop((login, digest), None)
            return None
        return found


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
    cache.note_login(login, principal, password)
    return principal


async def check_password(
    session: AsyncSession, cache: CredentialCache, login: str, password: str
) -> Principal | None:
    return await check_login(session_fetch(session), cache, login, password)


def basic_login(settings: Settings, credentials: str) -> tuple[str, str]:
    """The login and password of a Basic `Authorization` header's credentials."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _unauthorized(settings, "Malformed Basic credentials") from exc
    login, sep, password = decoded.partition(":")
    if not sep:
        raise _unauthorized(settings, "Malformed Basic credentials")
    return login, password


async def authenticate_basic(
    fetch: Fetch, settings: Settings, cache: CredentialCache, credentials: str
) -> Actor:
    login, password = basic_login(settings, credentials)
    principal = await check_login(fetch, cache, login, password)
    if principal is None:
        raise invalid_login(settings)
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


def token_claims(settings: Settings, secret: str, token: str, kind: str) -> tuple[int, Any]:
    """The user id and token version a valid, unexpired token of `kind` names.

    Whether it was revoked is for the user row to tell (its active flag and token version).
    """
    try:
        claims = _decode(token, secret)
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized(settings, "Token expired") from exc
    except jwt.PyJWTError as exc:
        raise _unauthorized(settings, "Invalid token") from exc
    if claims.get("typ") != kind or not str(claims.get("sub", "")).isdigit():
        raise _unauthorized(settings, f"Not an {kind} token")
    return int(claims["sub"]), claims.get("ver")


def revoked(settings: Settings) -> Unauthorized:
    return _unauthorized(settings, "Token revoked")


def invalid_login(settings: Settings) -> Unauthorized:
    return _unauthorized(settings, "Invalid username or password")


async def principal_from_token(
    fetch: Fetch, settings: Settings, secret: str, token: str, kind: str
) -> Principal:
    user_id, version = token_claims(settings, secret, token, kind)
    found = (await _principals(fetch, BY_ID, user_id=user_id)).get(user_id)
    if found is None or not found.active or found.token_version != version:
        raise revoked(settings)
    return found


async def user_from_token(
    session: AsyncSession, settings: Settings, secret: str, token: str, kind: str
) -> Principal:
    return await principal_from_token(session_fetch(session), settings, secret, token, kind)


def scheme_of(settings: Settings, authorization: str | None) -> tuple[str, str]:
    """The scheme (`basic` or `bearer`) and the credentials of an `Authorization` header."""
    if not authorization:
        raise _unauthorized(settings, "Authentication required (HTTP Basic or Bearer token)")
    scheme, _, credentials = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        raise _unauthorized(settings, f"Unsupported authorization scheme '{scheme}'")
    return scheme, credentials.strip()


async def authenticate(
    fetch: Fetch,
    settings: Settings,
    secret: str,
    cache: CredentialCache,
    authorization: str | None,
) -> Actor:
    scheme, credentials = scheme_of(settings, authorization)
    if scheme == "basic":
        return await authenticate_basic(fetch, settings, cache, credentials)
    principal = await principal_from_token(fetch, settings, secret, credentials, "access")
    return principal.actor()
