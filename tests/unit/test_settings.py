"""Configuration: the TASKMAN_* names, the 6.x names, and the refusal to start insecurely."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from api.app import create_app
from shared.settings import PLACEHOLDERS, ConfigError, Settings, to_async_url
from tests.conftest import running

ENV_NAMES = (
    "TASKMAN_DATABASE_URL",
    "SQLALCHEMY_DATABASE_URI",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASS",
    "DB_SCHEMA",
    "TASKMAN_DATA_DIR",
    "TASKMAN_SECRET_KEY",
    "SECRET_KEY",
    "SECURITY_PASSWORD_SALT",
    "TASKMAN_ADMIN_USERNAME",
    "TASKMAN_ADMIN_EMAIL",
    "TASKMAN_ADMIN_PASSWORD",
    "TASKMAN_ADMIN_FORCE_UPDATE",
)
PG_URL = "postgresql+asyncpg://tm:pw@db.example.org:5432/taskmanager"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration leaks in from the developer's shell; the data folder is private."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKMAN_DATA_DIR", str(tmp_path / "data"))


def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "mysql+pymysql://tm:pw@db:3306/taskmanager",
            "mysql+aiomysql://tm:pw@db:3306/taskmanager",
        ),
        ("mysql://tm:pw@db/taskmanager", "mysql+aiomysql://tm:pw@db/taskmanager"),
        (
            "postgresql+psycopg2://tm:pw@db:5432/taskmanager",
            "postgresql+asyncpg://tm:pw@db:5432/taskmanager",
        ),
        ("postgresql://tm@db/taskmanager", "postgresql+asyncpg://tm@db/taskmanager"),
        ("postgres://tm@db/taskmanager", "postgresql+asyncpg://tm@db/taskmanager"),
        ("sqlite:///data/taskmanager.db", "sqlite+aiosqlite:///data/taskmanager.db"),
        ("sqlite:////srv/tm/taskmanager.db", "sqlite+aiosqlite:////srv/tm/taskmanager.db"),
        # Already async: unchanged.
        (PG_URL, PG_URL),
        ("mysql+aiomysql://tm@db/tm", "mysql+aiomysql://tm@db/tm"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_to_async_url_maps_sync_drivers(url: str, expected: str) -> None:
    assert to_async_url(url) == expected


def test_taskman_database_url_is_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMAN_DATABASE_URL", "postgresql+psycopg2://tm:pw@db/taskmanager")
    s = settings()
    assert s.async_database_url == "postgresql+asyncpg://tm:pw@db/taskmanager"
    assert not s.embedded


def test_6x_sqlalchemy_database_uri_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", "mysql+pymysql://tm:pw@db:3306/taskmanager")
    s = settings()
    assert s.async_database_url == "mysql+aiomysql://tm:pw@db:3306/taskmanager"
    assert not s.embedded


def test_taskman_database_url_wins_over_the_6x_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", "mysql+pymysql://old@db/old")
    monkeypatch.setenv("TASKMAN_DATABASE_URL", PG_URL)
    assert settings().async_database_url == PG_URL


@pytest.mark.parametrize(
    ("schema", "driver"),
    [
        ("postgresql+psycopg2", "postgresql+asyncpg"),
        ("postgresql", "postgresql+asyncpg"),
        ("mysql+pymysql", "mysql+aiomysql"),
    ],
)
def test_db_parts_build_the_url(monkeypatch: pytest.MonkeyPatch, schema: str, driver: str) -> None:
    monkeypatch.setenv("DB_HOST", "db.example.org")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("DB_NAME", "taskmanager")
    monkeypatch.setenv("DB_USER", "tm")
    monkeypatch.setenv("DB_PASS", "pw")
    monkeypatch.setenv("DB_SCHEMA", schema)
    s = settings()
    assert not s.embedded
    assert s.async_database_url == f"{driver}://tm:pw@db.example.org:6543/taskmanager"


def test_db_parts_default_to_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "db")
    monkeypatch.setenv("DB_NAME", "taskmanager")
    url = make_url(settings().async_database_url)
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.database, url.username) == ("db", "taskmanager", None)


def test_db_pass_with_url_characters_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "db")
    monkeypatch.setenv("DB_NAME", "taskmanager")
    monkeypatch.setenv("DB_USER", "tm")
    monkeypatch.setenv("DB_PASS", "p@ss:w/rd#1?")
    url = make_url(settings().async_database_url)
    assert (url.username, url.password, url.host, url.database) == (
        "tm",
        "p@ss:w/rd#1?",
        "db",
        "taskmanager",
    )


def test_blank_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker-compose passes `DB_PORT=` as an empty string when the variable is not set.
    monkeypatch.setenv("DB_PORT", "")
    monkeypatch.setenv("TASKMAN_DATABASE_URL", "")
    s = settings()
    assert s.db_port is None
    assert s.embedded


def test_6x_secret_key_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", PG_URL)
    monkeypatch.setenv("SECRET_KEY", "a-6x-secret-key-that-is-long-enough")
    assert settings().resolved_secret_key() == "a-6x-secret-key-that-is-long-enough"


def test_taskman_secret_key_wins_over_the_6x_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMAN_DATABASE_URL", PG_URL)
    monkeypatch.setenv("SECRET_KEY", "old-6x-secret-key")
    monkeypatch.setenv("TASKMAN_SECRET_KEY", "new-secret-key")
    assert settings().resolved_secret_key() == "new-secret-key"


def test_a_6x_env_file_keeps_working(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "SQLALCHEMY_DATABASE_URI=postgresql+psycopg2://tm:pw@db/taskmanager\n"
        "SECRET_KEY=kept-from-6x-0123456789\n"
        "SECURITY_PASSWORD_SALT=kept-from-6x-salt\n"
    )
    s = Settings(_env_file=env_file)
    assert s.async_database_url == "postgresql+asyncpg://tm:pw@db/taskmanager"
    assert s.resolved_secret_key() == "kept-from-6x-0123456789"


def test_security_password_salt_is_ignored_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SECURITY_PASSWORD_SALT", "6x-salt")
    with caplog.at_level(logging.INFO, logger="taskmanager"):
        create_app(settings(), run_bootstrap=False)
    lines = [r for r in caplog.records if "SECURITY_PASSWORD_SALT" in r.getMessage()]
    assert len(lines) == 1


@pytest.mark.parametrize("secret", [None, *sorted(PLACEHOLDERS - {""})])
def test_configured_database_refuses_a_missing_or_placeholder_secret_key(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("TASKMAN_DATABASE_URL", PG_URL)
    if secret is not None:
        monkeypatch.setenv("TASKMAN_SECRET_KEY", secret)
    s = settings()
    with pytest.raises(ConfigError, match="TASKMAN_SECRET_KEY") as info:
        s.resolved_secret_key()
    assert "random" in str(info.value)
    assert not (s.data_dir / "secret_key").exists()


async def test_app_with_configured_database_and_no_secret_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing connects: the key is checked before the database is touched.
    monkeypatch.setenv("TASKMAN_DATABASE_URL", "postgresql+asyncpg://tm@127.0.0.1:9/none")
    app = create_app(settings())
    with pytest.raises(ConfigError, match="TASKMAN_SECRET_KEY"):
        async with running(app):
            pass


@pytest.mark.parametrize("password", [None, "admin", "changeme", "changethis"])
def test_configured_database_refuses_a_missing_or_placeholder_admin_password(
    monkeypatch: pytest.MonkeyPatch, password: str | None
) -> None:
    monkeypatch.setenv("TASKMAN_DATABASE_URL", PG_URL)
    monkeypatch.setenv("TASKMAN_SECRET_KEY", "a-real-secret-key-0123456789")
    if password is not None:
        monkeypatch.setenv("TASKMAN_ADMIN_PASSWORD", password)
    with pytest.raises(ConfigError, match="TASKMAN_ADMIN_PASSWORD"):
        settings().resolved_admin_password()


def test_configured_database_uses_the_given_admin_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKMAN_DATABASE_URL", PG_URL)
    monkeypatch.setenv("TASKMAN_ADMIN_PASSWORD", "a-real-admin-password")
    assert settings().resolved_admin_password() == "a-real-admin-password"


def test_embedded_start_generates_a_secret_key_once_and_reuses_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = settings()
    assert first.embedded
    assert first.async_database_url.startswith("sqlite+aiosqlite:///")
    with caplog.at_level(logging.WARNING, logger="taskmanager.settings"):
        key = first.resolved_secret_key()
    assert len(key) >= 32
    assert any("TASKMAN_SECRET_KEY" in r.getMessage() for r in caplog.records)
    path = first.data_dir / "secret_key"
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    caplog.clear()
    restarted = settings()
    with caplog.at_level(logging.WARNING, logger="taskmanager.settings"):
        assert restarted.resolved_secret_key() == key
    assert not caplog.records


def test_embedded_start_uses_a_given_secret_key_without_writing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKMAN_SECRET_KEY", "given-secret-key-0123456789")
    s = settings()
    assert s.resolved_secret_key() == "given-secret-key-0123456789"
    assert not (s.data_dir / "secret_key").exists()


def test_embedded_start_falls_back_to_admin_admin() -> None:
    s = settings()
    assert s.embedded
    assert s.admin_username == "admin"
    assert s.resolved_admin_password() == "admin"


def test_embedded_start_uses_a_given_admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMAN_ADMIN_PASSWORD", "local-password")
    assert settings().resolved_admin_password() == "local-password"
