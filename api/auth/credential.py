"""A caller's credential in a form one SQL statement can check (the claim's hot path).

A bearer token names its user and the token version it was issued for; a Basic login that
verified before names the user and the password hash it verified against. Whether either
still holds (user active, token version unchanged, password unchanged) is a condition on
the user row, so the statement that does the work can check it in the same round trip:
deactivating a user or changing a password ends its credentials there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, exists, or_
from sqlalchemy.orm import aliased
from sqlmodel import col

from api.auth.service import CredentialCache, basic_login, revoked, scheme_of, token_claims
from shared.models import User
from shared.settings import Settings

_other = aliased(User)


@dataclass(frozen=True, slots=True)
class Credential:
    user_id: int
    # A bearer token's version, or the login and hash a Basic password verified against.
    token_version: int | None = None
    login: str | None = None
    password_hash: str | None = None

    @property
    def kind(self) -> str:
        return "token" if self.token_version is not None else "password"

    def params(self) -> dict[str, Any]:
        if self.token_version is not None:
            return {"uid": self.user_id, "c_version": self.token_version}
        return {"uid": self.user_id, "c_login": self.login, "c_hash": self.password_hash}


def presented(
    settings: Settings, secret: str, cache: CredentialCache, authorization: str | None
) -> Credential | None:
    """The credential of an `Authorization` header, or None when it is a Basic login that
    has not verified yet (a full authentication must check the password first).

    A malformed, expired or foreign credential raises the same 401 as everywhere else.
    """
    scheme, credentials = scheme_of(settings, authorization)
    if scheme == "bearer":
        user_id, version = token_claims(settings, secret, credentials, "access")
        if not isinstance(version, int) or isinstance(version, bool):
            raise revoked(settings)
        return Credential(user_id, token_version=version)
    login, password = basic_login(settings, credentials)
    known = cache.known(login, password)
    if known is None:
        return None
    user_id, password_hash = known
    return Credential(user_id, login=login, password_hash=password_hash)


def still_holds(kind: str) -> ColumnElement[bool]:
    """A condition on `User`: the user of a `kind` credential (`Credential.params`) is
    active and the credential still valid."""
    common = [col(User.id) == bindparam("uid"), col(User.active)]
    if kind == "token":
        return and_(*common, col(User.token_version) == bindparam("c_version"))
    login: Any = bindparam("c_login")
    # The login names this user: its username, or its email when no username is that login
    # (as authentication resolves a login).
    by_email = and_(col(User.email) == login, ~exists().where(col(_other.username) == login))
    return and_(
        *common,
        col(User.password_hash) == bindparam("c_hash"),
        or_(col(User.username) == login, by_email),
    )
