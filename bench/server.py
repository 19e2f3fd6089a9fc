"""The servers under test, started as real processes, and the reader they serve.

`taskmanager serve` is started the way an operator starts it (the console script next to
this interpreter, configuration in the environment, a clean working directory so no `.env`
leaks in); the bare reference app is started with uvicorn and the same worker count.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.tasks import claim_pg
from bench.cpu import descendants

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
CLAIM_PATH = "/api/v1/tasks/claim"


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def claim_url(self) -> str:
        return self.base_url + CLAIM_PATH

    def pids(self) -> list[int]:
        """The server's processes: uvicorn's master and its workers."""
        return descendants(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class Reader:
    """The benchmark's reader: role `user`, member of the group all seeded tasks belong to."""

    username: str
    password: str
    user_id: int
    group_id: int
    template_id: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_environ() -> dict[str, str]:
    """This environment without anything the service reads as configuration."""
    names = {"SQLALCHEMY_DATABASE_URI", "SECRET_KEY", "SECURITY_PASSWORD_SALT", "SENTRY_DSN"}
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TASKMAN_", "DB_")) and key not in names
    }


async def _wait_ready(server: Server, path: str, ready_status: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                break
            try:
                if (await client.get(path)).status_code == ready_status:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.name} did not become ready; its log:\n{server.log_tail()}")


def _stop(server: Server) -> None:
    """SIGTERM to the server's process group (its own session), SIGKILL when it lingers."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def _spawn(name: str, command: list[str], env: dict[str, str], workdir: Path) -> Server:
    """Start `command` on a free port in a session of its own, its output in a log file."""
    port = free_port()
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, f"http://127.0.0.1:{port}", process, log_path)


@asynccontextmanager
async def _running(
    name: str, command: list[str], env: dict[str, str], workdir: Path, ready: tuple[str, int]
) -> AsyncIterator[Server]:
    server = _spawn(name, command, env, workdir)
    try:
        await _wait_ready(server, *ready)
        yield server
    finally:
        _stop(server)


@dataclass(frozen=True)
class Credentials:
    secret_key: str
    admin_password: str


def new_credentials() -> Credentials:
    return Credentials(secrets.token_urlsafe(32), secrets.token_urlsafe(16))


@asynccontextmanager
async def taskmanager(
    database_url: str,
    workers: int,
    workdir: Path,
    credentials: Credentials,
    amqp_url: str | None = None,
) -> AsyncIterator[Server]:
    """`taskmanager serve` on a free port, ready when /-/ready answers 200.

    With `amqp_url` it runs as deployed with a broker: it writes events to the outbox and
    leaves relaying and delivery to `taskmanager worker` (not started here). Without, it is
    the embedded mode and delivers its events itself.
    """
    env = {
        **_clean_environ(),
        "TASKMAN_DATABASE_URL": database_url,
        "TASKMAN_SECRET_KEY": credentials.secret_key,
        "TASKMAN_ADMIN_PASSWORD": credentials.admin_password,
        "TASKMAN_LOG_LEVEL": "WARNING",
        "TASKMAN_DATA_DIR": str(workdir / "data"),
    }
    if amqp_url:
        env["TASKMAN_AMQP_URL"] = amqp_url
    command = [str(BIN / "taskmanager"), "serve", "--host", "127.0.0.1", "--workers", str(workers)]
    async with _running("taskmanager", command, env, workdir, ("/-/ready", 200)) as server:
        yield server


@asynccontextmanager
async def bare(dsn: str, user_id: int, workers: int, workdir: Path) -> AsyncIterator[Server]:
    """bench/bare.py under uvicorn; ready when the claim path answers (405 to a GET)."""
    env = {
        **_clean_environ(),
        "BENCH_BARE_DSN": dsn,
        "BENCH_BARE_USER_ID": str(user_id),
        # As many connections as our claim path holds (api/tasks/claim_pg.py), so that the
        # two differ by what each does per claim, not by how many claims run at once.
        "BENCH_BARE_POOL": str(claim_pg.POOL_SIZE),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "bench.bare:app",
        "--host",
        "127.0.0.1",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    async with _running("bare", command, env, workdir, (CLAIM_PATH, 405)) as server:
        yield server


def _id_of(uri: str) -> int:
    return int(uri.rstrip("/").rsplit("/", 1)[-1])


async def create_reader(server: Server, credentials: Credentials) -> Reader:
    """Through the API, as a coordinator would: the reader, its group, a template."""
    username, password = "bench-reader", secrets.token_urlsafe(16)
    admin = httpx.BasicAuth("admin", credentials.admin_password)
    async with httpx.AsyncClient(base_url=server.base_url, auth=admin, timeout=30) as client:

        async def call(method: str, path: str, body: object | None = None) -> dict[str, object]:
            response = await client.request(method, f"/api/v1{path}", json=body)
            if response.status_code >= 300:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            data: dict[str, object] = response.json()
            return data

        user = await call("POST", "/users", {"username": username, "password": password})
        await call("PUT", f"/users/{username}/roles/user")
        group = await call("POST", "/groups", {"groupname": "bench-readers", "members": [username]})
        template = await call(
            "POST",
            "/task_templates",
            {"label": "bench-landmarks", "content": '{"landmarks": ["nasion", "inion"]}'},
        )
    return Reader(
        username,
        password,
        _id_of(str(user["uri"])),
        _id_of(str(group["uri"])),
        _id_of(str(template["uri"])),
    )


async def bearer_header(server: Server, reader: Reader) -> str:
    """A fresh access token for the reader, from the OAuth2 password form."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        response = await client.post(
            "/api/v1/auth/token", data={"username": reader.username, "password": reader.password}
        )
        response.raise_for_status()
        return f"Bearer {response.json()['access_token']}"


def basic_header(reader: Reader) -> str:
    pair = f"{reader.username}:{reader.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()
