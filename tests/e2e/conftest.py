"""Servers started the way a user or a container starts them.

`<venv>/bin/taskmanager db upgrade`, then `<venv>/bin/taskmanager serve --port N`, each a real
process with a controlled environment and a fresh working directory, so neither the
developer's environment nor a `.env` file in the repository can leak into the test. A test
that fails gets the server's log attached to its report.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.backends import TestDatabase, create_database
from tests.backends import require_service as require_service  # e2e tests import it here

# The console script installed next to the interpreter running the tests (the venv's bin/).
TASKMANAGER = Path(sys.executable).parent / "taskmanager"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 40

# Everything that configures the service (section 5 of the spec), including the 6.x names.
_CONFIG_PREFIXES = ("TASKMAN_", "DB_")
_CONFIG_NAMES = frozenset(
    {"SQLALCHEMY_DATABASE_URI", "SECRET_KEY", "SECURITY_PASSWORD_SALT", "SENTRY_DSN"}
)
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):\n.*?^\S[^\n]*$", re.M | re.S)
_SITE_PACKAGES = "/site-packages/"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: starts real `taskmanager` processes")


def clean_environ() -> dict[str, str]:
    """The caller's environment without any setting the service would read."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_CONFIG_PREFIXES) and key not in _CONFIG_NAMES
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def distinct_tracebacks(log: str) -> list[str]:
    """The tracebacks in a server log, each once (uvicorn logs them a second time)."""
    seen: dict[tuple[str, ...], str] = {}
    for match in _TRACEBACK.finditer(log):
        block = match.group(0)
        lines = block.splitlines()
        own_frames = [line for line in lines if "File " in line and _SITE_PACKAGES not in line]
        signature = (*own_frames, re.sub(r"\d+", "N", lines[-1]))
        seen.setdefault(signature, block)
    return list(seen.values())


@dataclass
class Server:
    base_url: str
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)
    _reported: int = field(default=0, init=False, repr=False)

    @property
    def admin_password(self) -> str:
        """The bootstrap admin's password: admin/admin only in the embedded start."""
        return self.env.get("TASKMAN_ADMIN_PASSWORD", "admin")

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def report(self) -> str:
        """What a failing test shows: the server's tracebacks and the end of its log.

        Only what the server logged since the previous report, so that each failure shows
        the errors of its own requests; the whole log stays in `log_path`.
        """
        log = self.log()
        new, self._reported = log[self._reported :], len(log)
        parts = [f"server {self.base_url}, log {self.log_path}"]
        if tracebacks := distinct_tracebacks(new):
            parts.append("tracebacks in the server log:\n" + "\n\n".join(tracebacks))
        tail = "\n".join(new.splitlines()[-LOG_TAIL_LINES:])
        parts.append(
            f"server log since the previous report (at most {LOG_TAIL_LINES} lines):\n{tail}"
        )
        return "\n\n".join(parts)


# The servers of this test process (one per xdist worker), for the failure reports.
_LIVE: list[Server] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed:
        for server in _LIVE:
            report.sections.append((f"taskmanager server log ({server.base_url})", server.report()))
    return report


def _run_cli(args: list[str], workdir: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(TASKMANAGER), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`taskmanager {' '.join(args)}` exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            pytrace=False,
        )


def _stop(process: subprocess.Popen[bytes]) -> str | None:
    """SIGTERM, then SIGKILL; what went wrong, if anything (a crash, a hung shutdown)."""
    if process.poll() is not None:
        return f"taskmanager serve exited on its own, with {process.returncode}, during the test"
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)
        return f"taskmanager serve did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM"
    return None


def _wait_ready(server: Server) -> bool:
    """True once GET /-/ready is 200; False when the process died first (e.g. port taken)."""
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return False
            try:
                if client.get(server.url("/-/ready")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    _stop(server.process)
    pytest.fail(
        f"taskmanager serve did not become ready within {READY_TIMEOUT:.0f} s\n{server.log()}",
        pytrace=False,
    )


def _serve(workdir: Path, env: dict[str, str]) -> Server:
    """`taskmanager serve` on a free port; another process may grab the port first: retry."""
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(TASKMANAGER), "serve", "--port", str(port)],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", workdir, log_path, process, env)
        if _wait_ready(server):
            return server
        if "address already in use" in server.log().lower() and attempt < 2:
            continue
        pytest.fail(
            f"taskmanager serve exited with {process.returncode} before it was ready\n"
            f"{server.log()}",
            pytrace=False,
        )
    raise AssertionError("unreachable")


@contextmanager
def run_server(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Migrate, serve, yield the running server, stop it (SIGTERM, then SIGKILL).

    `env` is added to a clean environment with TASKMAN_DATA_DIR in `workdir`; without a
    database URL in it this is the embedded start (SQLite in the data folder, admin/admin).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = clean_environ()
    full_env["TASKMAN_DATA_DIR"] = str(workdir / "data")
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    _run_cli(["db", "upgrade"], workdir, full_env)
    server = _serve(workdir, full_env)
    _LIVE.append(server)
    try:
        yield server
    finally:
        _LIVE.remove(server)
        problem = _stop(server.process)
    # Only when the test itself passed: its own failure is the one to show.
    if problem:
        pytest.fail(f"{problem}\n\n{server.report()}", pytrace=False)


# The cheapest argon2id cost, for tests that create and log in many users and are about
# something else (the default cost takes 0.15 s per hash here).
CHEAP_PASSWORD_HASHES = {
    "TASKMAN_PASSWORD_HASH_MEMORY_KIB": "1024",
    "TASKMAN_PASSWORD_HASH_TIME_COST": "1",
    "TASKMAN_PASSWORD_HASH_PARALLELISM": "1",
}


@contextmanager
def configured_database_env(backend: str, tmp: Path) -> Iterator[dict[str, str]]:
    """A fresh database of `backend` and the variables a deployment would set for it."""
    database: TestDatabase = asyncio.run(create_database(backend, str(tmp)))
    try:
        yield {
            "TASKMAN_DATABASE_URL": database.url,
            "TASKMAN_SECRET_KEY": secrets.token_urlsafe(48),
            "TASKMAN_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        }
    finally:
        asyncio.run(database.drop())


@contextmanager
def backend_server(backend: str, workdir: Path) -> Iterator[Server]:
    """The embedded start for sqlite; otherwise a new database, configured as a deployment is."""
    if backend == "sqlite":
        with run_server(workdir) as server:
            yield server
        return
    require_service(backend)
    with configured_database_env(backend, workdir) as env, run_server(workdir, env) as server:
        yield server


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[Server]:
    """A first start with nothing configured: SQLite in <tmp>/data, admin/admin bootstrapped."""
    with run_server(tmp_path / "taskmanager") as server:
        yield server
