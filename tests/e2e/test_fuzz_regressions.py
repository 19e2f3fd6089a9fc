"""What the schemathesis run found, as plain requests, against real servers.

Each test is one bug the fuzzer found (now fixed), kept so that it stays fixed.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Server, backend_server

pytestmark = pytest.mark.e2e

TEMPLATE = {"label": "glandula_pinealis", "content": "template_name: glandula_pinealis\n"}
BEYOND_INT64 = 2**63
BEYOND_INT32 = 2**31


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    backend: str = request.param
    with backend_server(backend, tmp_path_factory.mktemp(f"regressions-{backend}")) as server:
        yield server


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    # No keep-alive: uvicorn drops the connection after a 500, which would fail the next call.
    with httpx.Client(
        base_url=server.base_url,
        auth=("admin", server.admin_password),
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        if client.get("/api/v1/task_templates/glandula_pinealis").status_code == 404:
            assert client.post("/api/v1/task_templates", json=TEMPLATE).status_code == 201
        yield client


def documented_statuses(client: httpx.Client, method: str, path: str) -> set[int]:
    operation = client.get("/openapi.json").json()["paths"][path][method.lower()]
    return {int(code) for code in operation["responses"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/users/\u00b9", None),
        ("GET", "/api/v1/groups/\u00b2", None),
        ("POST", "/api/v1/tasks", {"template": "\u00b9", "content": "x", "users": ["admin"]}),
    ],
)
def test_unicode_digits_are_a_name_not_an_id(
    admin: httpx.Client, method: str, path: str, body: object
) -> None:
    r = admin.request(method, path, json=body)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/api/v1/tasks/{BEYOND_INT64}", None),
        ("GET", f"/api/v1/users/{BEYOND_INT64}", None),
        ("POST", "/api/v1/tasks", {"template": BEYOND_INT64, "content": "x"}),
        ("POST", "/api/v1/groups", {"groupname": "g1", "members": [BEYOND_INT64]}),
        ("POST", "/api/v1/tasks/claim", {"template": BEYOND_INT64}),
    ],
)
def test_ids_beyond_int64_are_not_found(
    admin: httpx.Client, method: str, path: str, body: object
) -> None:
    r = admin.request(method, path, json=body)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("path", [f"/api/v1/tasks/{BEYOND_INT32}", f"/api/v1/users/{BEYOND_INT32}"])
def test_ids_beyond_int32_are_not_found(admin: httpx.Client, path: str) -> None:
    r = admin.get(path)
    assert r.status_code == 404, r.text


def test_offset_beyond_int64_is_refused_or_empty(admin: httpx.Client) -> None:
    r = admin.get("/api/v1/tasks", params={"offset": BEYOND_INT64})
    assert r.status_code in (200, 422), r.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tags", {"name": "a\u0000b"}),
        ("/api/v1/groups", {"groupname": "nul\u0000", "name": "x"}),
    ],
)
def test_nul_characters_are_not_a_server_error(
    admin: httpx.Client, path: str, body: object
) -> None:
    r = admin.post(path, json=body)
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("path", ["/api/v1/tags", "/api/v1/auth/refresh"])
def test_body_that_is_not_utf8_gets_a_documented_status(admin: httpx.Client, path: str) -> None:
    r = admin.post(path, content=b"\xff", headers={"Content-Type": "application/json"})
    assert r.status_code in documented_statuses(admin, "POST", path), r.text
