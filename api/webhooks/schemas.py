from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shared.delivery.signing import PREFIX, is_valid_secret

MAX_PATTERNS = 100
WORD = re.compile(r"^(?:[A-Za-z0-9_-]+|\*|#)$")
PATTERN_HELP = (
    "words of letters, digits, '_' or '-' separated by dots; '*' (one word) and '#' (any "
    "number of words) as whole words, e.g. 'task.status.*' or 'task.#'"
)
SECRET_HELP = f"'{PREFIX}' followed by the base64 of at least 16 random bytes"


def check_url(value: str) -> str:
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be an absolute http(s) URL without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    return value


def check_pattern(value: str) -> str:
    words = value.split(".")
    if not all(WORD.match(word) for word in words):
        raise ValueError(f"'{value}' is not a topic pattern: use {PATTERN_HELP}")
    return value


def check_patterns(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def check_secret(value: str) -> str:
    if not value.startswith(PREFIX):
        raise ValueError(f"must start with '{PREFIX}': use {SECRET_HELP}")
    try:
        base64.b64decode(value.removeprefix(PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"is not valid base64 after '{PREFIX}': use {SECRET_HELP}") from None
    if not is_valid_secret(value):
        raise ValueError(f"is too short: use {SECRET_HELP}")
    return value


Url = Annotated[
    str,
    Field(min_length=1, max_length=2048, description="Absolute http(s) URL the events go to"),
    AfterValidator(check_url),
]
Pattern = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(check_pattern)]
Patterns = Annotated[
    list[Pattern],
    Field(
        min_length=1,
        max_length=MAX_PATTERNS,
        description="AMQP topic patterns of the event types to send, e.g. ['task.status.*']",
    ),
    AfterValidator(check_patterns),
]
Secret = Annotated[
    str,
    Field(max_length=128, description=f"Signing secret: {SECRET_HELP}"),
    AfterValidator(check_secret),
]
Description = Annotated[str, Field(max_length=512)]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    events: Patterns
    secret: Secret | None = Field(default=None, description="Generated when omitted")
    enabled: bool = True
    description: Description | None = None


class WebhookUpdate(BaseModel):
    """A partial update: only the fields sent are changed (a null description clears it)."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    events: Patterns | None = None
    secret: Secret | None = None
    enabled: bool | None = None
    description: Description | None = None

    @field_validator("url", "events", "secret", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (leave it out to keep the current value)")
        return value


class WebhookRead(BaseModel):
    uri: str
    id: int
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    create_time: datetime
    update_time: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="The signing secret; shown only in this response")


class WebhookList(BaseModel):
    webhooks: list[WebhookRead]
    total_webhooks: int
    offset: int
    limit: int
