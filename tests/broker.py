"""A RabbitMQ virtual host per test session, so runs never share queues."""

from __future__ import annotations

import os
import subprocess
import uuid

from tests.backends import AMQP_URL, require_service


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def create_vhost() -> tuple[str, str]:
    """(vhost name, AMQP URL for it), with guest allowed everywhere in it."""
    require_service("rabbitmq")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    name = f"tm_test_{worker}_{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name, AMQP_URL.rstrip("/") + "/" + name


def delete_vhost(name: str) -> None:
    _rabbitmqctl("delete_vhost", name)
