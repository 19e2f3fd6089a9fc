"""Free-form content fields: a string is stored as sent, any other JSON value as JSON text."""

from __future__ import annotations

import json
from typing import Any


def to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def optional_text(value: Any) -> str | None:
    return None if value is None else to_text(value)
