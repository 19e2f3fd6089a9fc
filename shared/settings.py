"""Configuration from environment variables (and `.env`), with the 6.x names still accepted."""

from __future__ import annotations

import logging
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

log = logging.getLogger("taskmanager.settings")

PLACEHOLDERS = {"", "changeme", "change-me", "changethis", "secret", "admin", "<secret key>"}

# 6.x URLs name sync drivers; map them to the async driver of the same database.
_DRIVER_MAP = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+pg8000": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mysql+pymysql": "mysql+aiomysql",
    "mysql+mysqldb": "mysql+aiomysql",
    "mysql+mysqlconnector": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "mariadb+pymysql": "mysql+aiomysql",
    "mariadb+mariadbconnector": "mysql+aiomysql",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
}


def to_async_url(url: str) -> str:
    """Map a database URL naming a sync driver (as 6.x used) to its async driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{_DRIVER_MAP.get(scheme.lower(), scheme)}://{rest}"


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TASKMAN_DATABASE_URL", "SQLALCHEMY_DATABASE_URI"),
    )
    db_host: str | None = Field(default=None, validation_alias="DB_HOST")
    db_port: int | None = Field(default=None, validation_alias="DB_PORT")
    db_name: str | None = Field(default=None, validation_alias="DB_NAME")
    db_user: str | None = Field(default=None, validation_alias="DB_USER")
    db_pass: str | None = Field(default=None, validation_alias="DB_PASS")
    db_schema: str | None = Field(default=None, validation_alias="DB_SCHEMA")
    data_dir: Path = Field(default=Path("data"), validation_alias="TASKMAN_DATA_DIR")

    secret_key: str | None = Field(
        default=None, validation_alias=AliasChoices("TASKMAN_SECRET_KEY", "SECRET_KEY")
    )
    security_password_salt: str | None = Field(
        default=None, validation_alias="SECURITY_PASSWORD_SALT"
    )
    amqp_url: str | None = Field(default=None, validation_alias="TASKMAN_AMQP_URL")
    host: str | None = Field(default=None, validation_alias="TASKMAN_HOST")
    port: int = Field(default=5000, validation_alias="TASKMAN_PORT")
    root_path: str = Field(default="", validation_alias="TASKMAN_ROOT_PATH")
    admin_username: str = Field(default="admin", validation_alias="TASKMAN_ADMIN_USERNAME")
    admin_email: str = Field(default="admin@localhost", validation_alias="TASKMAN_ADMIN_EMAIL")
    admin_password: str | None = Field(default=None, validation_alias="TASKMAN_ADMIN_PASSWORD")
    admin_force_update: bool = Field(default=False, validation_alias="TASKMAN_ADMIN_FORCE_UPDATE")
    project_name: str = Field(default="taskmanager", validation_alias="TASKMAN_PROJECT_NAME")
    lock_ttl_seconds: int = Field(default=3600, gt=0, validation_alias="TASKMAN_LOCK_TTL_SECONDS")
    instance_name: str = Field(default="TaskManager", validation_alias="TASKMAN_INSTANCE_NAME")
    callback_netrc: Path | None = Field(default=None, validation_alias="TASKMAN_CALLBACK_NETRC")
    access_token_minutes: int = Field(
        default=60, gt=0, validation_alias="TASKMAN_ACCESS_TOKEN_MINUTES"
    )
    refresh_token_days: int = Field(default=14, gt=0, validation_alias="TASKMAN_REFRESH_TOKEN_DAYS")
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, validation_alias="TASKMAN_MAX_BODY_BYTES"
    )
    max_page: int = Field(default=10_000, gt=0, validation_alias="TASKMAN_MAX_PAGE")
    sweep_interval_seconds: float = Field(
        default=30.0, gt=0, validation_alias="TASKMAN_SWEEP_INTERVAL_SECONDS"
    )
    vacuum_interval_seconds: float = Field(
        default=10.0, ge=0, validation_alias="TASKMAN_VACUUM_INTERVAL_SECONDS"
    )
    vacuum_min_dead_rows: int = Field(
        default=5000, gt=0, validation_alias="TASKMAN_VACUUM_MIN_DEAD_ROWS"
    )
    # The claim and status fast paths' own connections, per API process; None: the
    # backend's default (api/tasks/claim_pg.py, api/tasks/claim_mysql.py). Requests beyond
    # wait their turn in the process.
    hot_pool_size: int | None = Field(
        default=None, gt=0, le=100, validation_alias="TASKMAN_HOT_POOL_SIZE"
    )
    hot_pool_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias="TASKMAN_HOT_POOL_TIMEOUT_SECONDS"
    )
    delivery_concurrency: int = Field(
        default=32, gt=0, validation_alias="TASKMAN_DELIVERY_CONCURRENCY"
    )
    delivery_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="TASKMAN_DELIVERY_TIMEOUT_SECONDS"
    )
    # How long a worker owns a delivery it took; a crashed worker's deliveries wait this long.
    delivery_claim_seconds: float = Field(
        default=60.0, gt=0, validation_alias="TASKMAN_DELIVERY_CLAIM_SECONDS"
    )
    delivery_retry_base_seconds: float = Field(
        default=5.0, gt=0, validation_alias="TASKMAN_DELIVERY_RETRY_BASE_SECONDS"
    )
    delivery_poll_seconds: float = Field(
        default=1.0, gt=0, validation_alias="TASKMAN_DELIVERY_POLL_SECONDS"
    )
    relay_poll_seconds: float = Field(
        default=0.2, gt=0, validation_alias="TASKMAN_RELAY_POLL_SECONDS"
    )
    outbox_retention_hours: float = Field(
        default=168.0, gt=0, validation_alias="TASKMAN_OUTBOX_RETENTION_HOURS"
    )
    delivery_retention_days: float = Field(
        default=30.0, gt=0, validation_alias="TASKMAN_DELIVERY_RETENTION_DAYS"
    )
    worker_prefetch: int = Field(default=256, gt=0, validation_alias="TASKMAN_WORKER_PREFETCH")
    shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, validation_alias="TASKMAN_SHUTDOWN_GRACE_SECONDS"
    )
    # argon2id cost of new password hashes (pwdlib's defaults); a hash keeps the cost it was
    # made with, so changing these never locks anyone out.
    password_hash_memory_kib: int = Field(
        default=65536, ge=1024, validation_alias="TASKMAN_PASSWORD_HASH_MEMORY_KIB"
    )
    password_hash_time_cost: int = Field(
        default=3, ge=1, validation_alias="TASKMAN_PASSWORD_HASH_TIME_COST"
    )
    password_hash_parallelism: int = Field(
        default=4, ge=1, le=64, validation_alias="TASKMAN_PASSWORD_HASH_PARALLELISM"
    )
    log_level: str = Field(default="INFO", validation_alias="TASKMAN_LOG_LEVEL")
    sentry_dsn: str | None = Field(default=None, validation_alias="SENTRY_DSN")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and v == "")}
        return data

    @property
    def embedded(self) -> bool:
        """The local start: no database configured, so a SQLite file in the data folder."""
        return self.database_url is None and self.db_host is None and self.db_name is None

    @property
    def async_database_url(self) -> str:
        if self.database_url:
            return to_async_url(self.database_url)
        if self.db_host or self.db_name:
            scheme = to_async_url((self.db_schema or "postgresql") + "://").removesuffix("://")
            return URL.create(
                scheme,
                username=self.db_user,
                password=self.db_pass,
                host=self.db_host or "localhost",
                port=self.db_port,
                database=self.db_name,
            ).render_as_string(hide_password=False)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'taskmanager.db').resolve()}"

    @property
    def bind_host(self) -> str:
        """Where to listen: loopback for the embedded start (it has admin/admin), else all."""
        if self.host:
            return self.host
        return "127.0.0.1" if self.embedded else "0.0.0.0"

    @property
    def api_prefix(self) -> str:
        return self.root_path.rstrip("/")

    def resolved_secret_key(self) -> str:
        """The signing key; generated and kept in the data folder only for the embedded start."""
        if self.secret_key and self.secret_key not in PLACEHOLDERS:
            return self.secret_key
        if not self.embedded:
            raise ConfigError(
                "TASKMAN_SECRET_KEY (or SECRET_KEY) must be set to a random value when a "
                "database is configured, e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`"
            )
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        log.warning("No TASKMAN_SECRET_KEY set: generated one and kept it in %s", path)
        return key

    def resolved_admin_password(self) -> str:
        if self.admin_password and self.admin_password not in PLACEHOLDERS:
            return self.admin_password
        if self.embedded:
            return self.admin_password or "admin"
        raise ConfigError(
            "TASKMAN_ADMIN_PASSWORD must be set (not a placeholder) to create or reset the "
            "admin account when a database is configured"
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
