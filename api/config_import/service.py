"""Load a 6.x configuration: roles, then users with their roles, then groups, then tags.

`apply_config` runs in the caller's session and never commits: an error anywhere leaves
nothing behind. It is shared by the import endpoint and the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import yaml
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from api.config_import.schemas import ConfigFile, ConfigUser, ImportReport
from api.errors import NotFound, Unprocessable
from api.groups import service as groups
from api.groups.schemas import GroupUpdate
from api.roles import service as roles
from api.roles.schemas import RoleUpdate
from api.users import service as users
from api.users.schemas import UserCreate
from shared.models import Role, Tag, User
from shared.security import verify_password

SECTIONS = ("roles", "users", "groups", "tags", "templates")


def parse_config(text: str) -> dict[str, Any]:
    """The configuration in `text` (YAML, or JSON, which is YAML too)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise Unprocessable(f"config_definition: invalid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Unprocessable(
            f"config_definition: expected a mapping with the sections {', '.join(SECTIONS)}, "
            f"got {type(data).__name__}"
        )
    return data


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def validate_config(config: Mapping[str, Any]) -> ConfigFile:
    try:
        parsed = ConfigFile.model_validate(config)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise Unprocessable(f"Invalid configuration: {detail}", errors=errors) from exc
    for section, names in (
        ("roles", [r.name for r in parsed.roles]),
        ("users", [u.username for u in parsed.users]),
        ("groups", [g.groupname for g in parsed.groups]),
        ("tags", parsed.tags),
    ):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise Unprocessable(f"Invalid configuration: {section}: '{name}' appears twice")
            seen.add(name)
    return parsed


async def _apply_roles(
    session: AsyncSession, config: ConfigFile, overwrite: bool, report: ImportReport
) -> None:
    for data in config.roles:
        role = await roles.find_role(session, data.name)
        if role is None:
            await roles.create(session, data)
            report.created.roles.append(data.name)
        elif overwrite:
            fields = data.model_fields_set & {"description", "permissions"}
            update = RoleUpdate.model_validate({f: getattr(data, f) for f in fields})
            await roles.update(session, role, update)
            report.updated.roles.append(data.name)
        else:
            report.skipped.roles.append(data.name)


async def _user_changes(user: User, data: ConfigUser) -> dict[str, Any]:
    changes: dict[str, Any] = {
        field: getattr(data, field)
        for field in ("name", "email", "active", "assignment_weight")
        if field in data.model_fields_set
        and (getattr(data, field) is not None or field in users.NULLABLE_FIELDS)
        and getattr(data, field) != getattr(user, field)
    }
    # Re-importing the same file must not end everyone's tokens: only a new password counts.
    if data.password is not None and not await anyio.to_thread.run_sync(
        verify_password, data.password, user.password_hash
    ):
        changes["password"] = data.password
    return changes


async def _roles_named(session: AsyncSession, names: list[str], username: str) -> list[Role]:
    found = []
    for name in names:
        role = await roles.find_role(session, name)
        if role is None:
            raise NotFound(f"Role '{name}' not found (a role of user '{username}')")
        found.append(role)
    return found


async def _apply_users(
    session: AsyncSession, config: ConfigFile, overwrite: bool, report: ImportReport
) -> None:
    for data in config.users:
        user = await users.find_user(session, data.username)
        if user is None:
            if data.password is None:
                raise Unprocessable(f"users: '{data.username}' is new and needs a password")
            new = UserCreate(
                username=data.username,
                name=data.name,
                email=data.email,
                password=data.password,
                active=True if data.active is None else data.active,
                assignment_weight=(
                    1.0 if data.assignment_weight is None else data.assignment_weight
                ),
                roles=[],  # the file's roles are given below
            )
            user = await users.create(session, new)
            report.created.users.append(data.username)
        elif overwrite:
            await users.apply_changes(session, user, await _user_changes(user, data))
            report.updated.users.append(data.username)
        else:
            report.skipped.users.append(data.username)
            continue
        if data.roles is not None:
            wanted = await _roles_named(session, data.roles, data.username)
            await roles.set_user_roles(session, user, wanted)


async def _apply_groups(
    session: AsyncSession, config: ConfigFile, overwrite: bool, report: ImportReport
) -> None:
    for data in config.groups:
        group = await groups.find_group(session, data.groupname)
        try:
            if group is None:
                await groups.create(session, data)
                report.created.groups.append(data.groupname)
            elif overwrite:
                fields = data.model_fields_set & {"name", "members"}
                update = GroupUpdate.model_validate({f: getattr(data, f) for f in fields})
                await groups.update(session, group, update)
                report.updated.groups.append(data.groupname)
            else:
                report.skipped.groups.append(data.groupname)
        except NotFound as exc:
            raise NotFound(f"{exc.detail} (a member of group '{data.groupname}')") from exc


async def _apply_tags(session: AsyncSession, config: ConfigFile, report: ImportReport) -> None:
    # A tag is only a name: one that exists has nothing to overwrite, so it is skipped.
    for name in config.tags:
        if await session.scalar(select(Tag.id).where(Tag.name == name)) is not None:
            report.skipped.tags.append(name)
        else:
            session.add(Tag(name=name))
            report.created.tags.append(name)
    await session.flush()


def _template_name(entry: Any) -> str:
    if isinstance(entry, Mapping):
        for key in ("path", "file", "label", "name"):
            if isinstance(entry.get(key), str):
                return str(entry[key])
    return str(entry)


async def apply_config(
    session: AsyncSession, config: Mapping[str, Any], overwrite: bool
) -> ImportReport:
    """Create what `config` defines; what exists is overwritten (`overwrite`) or skipped.

    Templates are file paths relative to the configuration file, which only the command
    line can read: they are reported as skipped.
    """
    parsed = validate_config(config)
    report = ImportReport()
    await _apply_roles(session, parsed, overwrite, report)
    await _apply_users(session, parsed, overwrite, report)
    await _apply_groups(session, parsed, overwrite, report)
    await _apply_tags(session, parsed, report)
    report.skipped.templates = [_template_name(t) for t in parsed.templates]
    return report
