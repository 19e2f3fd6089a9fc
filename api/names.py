"""Names that references resolve to: never all digits, since an all-digit reference is an id."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, StringConstraints


def not_an_id(value: Any) -> Any:
    if isinstance(value, str) and value.strip().isdigit():
        raise ValueError("cannot be all digits (it would read as an id)")
    return value


# A group or role name: anything but a slash (a reference's last path segment is its name).
Name = Annotated[
    str,
    BeforeValidator(not_an_id),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^/]+$"),
]
