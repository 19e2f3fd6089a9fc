"""Object references: absolute paths out, ids / names / paths in."""

from __future__ import annotations

from contextvars import ContextVar

API = "/api/v1"
# Ids are 32-bit on every supported database; a larger number names nothing.
MAX_ID = 2**31 - 1

# The reverse-proxy prefix of the request being served (set by RootPathMiddleware).
root_path: ContextVar[str] = ContextVar("root_path", default="")


def uri(collection: str, object_id: int | None) -> str:
    return f"{root_path.get()}{API}/{collection}/{object_id}"


def parse_ref(value: str | int) -> int | str:
    """An id, a name/label, or a path whose last segment is one; all digits means an id."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    text = value.strip().rstrip("/")
    last = text.rsplit("/", 1)[-1] if "/" in text else text
    return int(last) if last.isascii() and last.isdigit() else last
