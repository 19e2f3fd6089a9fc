"""Make sure PostgreSQL, MariaDB and RabbitMQ answer on loopback; start those that do not.

With CI=true a service that cannot be reached fails the run; locally the tests that need it
are skipped with a message.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

SERVICES = {
    "PostgreSQL": (
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "MariaDB": (
        3306,
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    ),
    "RabbitMQ": (5672, "rabbitmq-server -detached"),
}


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main() -> int:
    ci = os.environ.get("CI", "").lower() == "true"
    missing = []
    for name, (port, start) in SERVICES.items():
        if answers(port):
            continue
        executable = start.split()[0]
        if shutil.which(executable):
            print(f"{name} is not answering on :{port}; starting it: {start}")
            subprocess.run(start, shell=True, check=False)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not answers(port):
                time.sleep(1)
        if not answers(port):
            missing.append(f"{name} (127.0.0.1:{port})")
    if missing:
        message = "not reachable: " + ", ".join(missing)
        if ci:
            print(f"error: {message}; CI=true requires every service", file=sys.stderr)
            return 1
        print(f"warning: {message}; the tests that need them will be skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
