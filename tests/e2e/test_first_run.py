"""The tour a new user takes after `make run`: nothing configured, admin/admin, the docs.

Everything goes through a real `taskmanager serve` process started with a clean environment
in an empty directory, as on a fresh checkout.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parents[1] / "fixtures"
TEMPLATE_TEXT = (FIXTURES / "templates" / "glandula_pinealis.yaml").read_text()
L100 = json.loads((FIXTURES / "tasks" / "L100.json").read_text())


class _Assets(HTMLParser):
    """The scripts, stylesheets and icons a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.urls.append(str(attributes["src"]))
        if tag == "link" and attributes.get("href"):  # the stylesheet and the icon
            self.urls.append(str(attributes["href"]))


def test_docs_load_without_internet(embedded_server: Server) -> None:
    with httpx.Client(base_url=embedded_server.base_url) as anon:
        page = anon.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        parser = _Assets()
        parser.feed(page.text)
        assert any(url.endswith(".js") for url in parser.urls), page.text
        assert any(url.endswith(".css") for url in parser.urls), page.text
        for url in parser.urls:
            # Served by TaskManager itself, not a CDN: the docs work offline and behind proxies.
            assert url.startswith("/"), f"{url} is not served by TaskManager"
            asset = anon.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
        openapi_url = re.search(r"""url: ?['"]([^'"]+)['"]""", page.text)
        assert openapi_url is not None, page.text
        schema = anon.get(openapi_url.group(1))
        assert schema.status_code == 200
        assert "/api/v1/tasks" in schema.json()["paths"]


def test_first_run_tour(embedded_server: Server) -> None:
    base = embedded_server.base_url
    # Nothing from the developer's environment configures this server.
    settings = {key for key in embedded_server.env if key.startswith(("TASKMAN_", "DB_"))}
    assert settings == {"TASKMAN_DATA_DIR"}
    assert not {"SQLALCHEMY_DATABASE_URI", "SECRET_KEY"} & embedded_server.env.keys()
    data_dir = embedded_server.workdir / "data"
    assert (data_dir / "taskmanager.db").is_file(), "the embedded database is in the data folder"
    assert (data_dir / "secret_key").is_file(), "the generated secret key is kept for restarts"

    with httpx.Client(base_url=base) as anon:
        r = anon.get("/api/v1/tasks")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Basic realm=")
        r = anon.post("/api/v1/auth/token", data={"username": "admin", "password": "admin"})
        assert r.status_code == 200, r.text
        token = r.json()
        assert token["token_type"] == "bearer"
        assert token["access_token"]

    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx.Client(base_url=base, headers=bearer) as admin:
        assert admin.get("/api/v1/users/me").json()["username"] == "admin"
        r = admin.post(
            "/api/v1/users",
            json={
                "username": "jdoe",
                "name": "Jane Doe",
                "email": "jane.doe@example.org",
                "password": "jdoe-secret-1",
            },
        )
        assert r.status_code == 201, r.text
        jdoe_uri = r.json()["uri"]
        r = admin.put("/api/v1/users/jdoe/roles/user")
        assert r.status_code == 200, r.text
        assert r.json()["has_role"] is True

        r = admin.post(
            "/api/v1/groups",
            json={"groupname": "neuro", "name": "Neuroradiology", "members": ["jdoe"]},
        )
        assert r.status_code == 201, r.text
        assert admin.get(r.json()["users"]).json()["users"] == [jdoe_uri]

        r = admin.post(
            "/api/v1/task_templates",
            json={"label": "glandula_pinealis", "content": TEMPLATE_TEXT},
        )
        assert r.status_code == 201, r.text
        template = r.json()
        assert template["content"] == TEMPLATE_TEXT

        r = admin.post(
            "/api/v1/tasks",
            json={
                "project": "pinealis",
                "template": "glandula_pinealis",
                "content": json.dumps(L100),
                "groups": ["neuro"],
            },
        )
        assert r.status_code == 201, r.text
        task = r.json()
        assert task["template"] == template["uri"]
        assert task["status"] == "queued"

    with httpx.Client(base_url=base, auth=("jdoe", "jdoe-secret-1")) as jdoe:
        listed = jdoe.get("/api/v1/tasks")
        assert listed.status_code == 200, listed.text
        assert listed.json()["total_tasks"] == 1
        assert [t["uri"] for t in listed.json()["tasks"]] == [task["uri"]]
        got = jdoe.get(task["uri"]).json()
        assert json.loads(got["content"]) == L100
        assert jdoe.get(got["template"]).json()["content"] == TEMPLATE_TEXT

        lock = jdoe.put(f"{task['uri']}/lock")
        assert lock.status_code == 200, lock.text
        assert lock.json()["username"] == "jdoe"
        assert lock.json()["lock"] == jdoe_uri

        done = jdoe.put(task["uri"], json={"status": "done"})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "done"
        assert done.json()["lock_holder"] is None
        assert jdoe.get("/api/v1/tasks", params={"status": "done"}).json()["total_tasks"] == 1

    log = embedded_server.log()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert any("admin" in line and "password" in line for line in warnings), log
    assert any("secret" in line.lower() for line in warnings), log
