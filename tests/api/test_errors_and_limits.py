"""Body limits, authentication, probes, docs and the reverse-proxy prefix, on every backend."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from shared import __version__
from tests.conftest import ADMIN, client_for, make_settings, running

PROBLEM_JSON = "application/problem+json"
LIMIT = 1024


@asynccontextmanager
async def small_app(app: FastAPI, tmp: str, **overrides: Any) -> AsyncIterator[FastAPI]:
    """Another app on the same (clean, bootstrapped) database, with other settings."""
    settings = make_settings(app.state.settings.database_url, tmp, **overrides)
    async with running(create_app(settings, run_bootstrap=False)) as application:
        yield application


def template_body(size: int) -> bytes:
    """A valid template-create body of exactly `size` bytes."""
    empty = json.dumps({"label": "big", "content": ""}).encode()
    body = json.dumps({"label": "big", "content": "x" * (size - len(empty))}).encode()
    assert len(body) == size
    return body


async def chunked(body: bytes, chunk: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# --- body size limit -----------------------------------------------------------------------


@pytest.fixture
async def limited(clean_app: FastAPI, tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        small_app(clean_app, str(tmp_path), max_body_bytes=LIMIT) as app,
        client_for(app, ADMIN) as client,
    ):
        yield client


async def test_body_over_the_limit_with_content_length_is_413(
    limited: httpx.AsyncClient,
) -> None:
    response = await limited.post(
        "/api/v1/task_templates",
        content=template_body(LIMIT + 1),
        headers={"content-type": "application/json"},
    )
    body = assert_problem(response, 413)
    assert str(LIMIT) in body["detail"]
    assert (await limited.get("/api/v1/task_templates")).json() == {"task_templates": []}


async def test_body_over_the_limit_sent_chunked_is_413(limited: httpx.AsyncClient) -> None:
    request = limited.build_request(
        "POST",
        "/api/v1/task_templates",
        content=chunked(template_body(LIMIT + 1)),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await limited.send(request)
    body = assert_problem(response, 413)
    assert str(LIMIT) in body["detail"]
    assert (await limited.get("/api/v1/task_templates")).json() == {"task_templates": []}


async def test_body_at_the_limit_is_accepted_with_content_length_and_chunked(
    limited: httpx.AsyncClient,
) -> None:
    body = template_body(LIMIT)
    headers = {"content-type": "application/json"}
    response = await limited.post("/api/v1/task_templates", content=body, headers=headers)
    assert response.status_code == 201, response.text
    assert (await limited.delete("/api/v1/task_templates/big")).status_code == 204

    response = await limited.post("/api/v1/task_templates", content=chunked(body), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["content"] == json.loads(body)["content"]


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/task_templates"])
async def test_unauthenticated_is_401_with_basic_challenge(
    anon: httpx.AsyncClient, path: str
) -> None:
    response = await anon.get(path)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Basic realm="TaskManager"'


async def test_realm_is_the_instance_name(clean_app: FastAPI, tmp_path: Any) -> None:
    async with (
        small_app(clean_app, str(tmp_path), instance_name="Pineal Study") as app,
        client_for(app) as client,
    ):
        response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="Pineal Study"'


@pytest.mark.parametrize(
    "auth", [(ADMIN[0], "wrong-password"), ("nobody", ADMIN[1]), (ADMIN[0], "")]
)
async def test_wrong_credentials_are_401(clean_app: FastAPI, auth: tuple[str, str]) -> None:
    async with client_for(clean_app, auth) as client:
        response = await client.get("/api/v1/users/me")
    body = assert_problem(response, 401)
    # The same answer for an unknown user and a wrong password.
    assert body["detail"] == "Invalid username or password"
    assert response.headers["www-authenticate"] == 'Basic realm="TaskManager"'


@pytest.mark.parametrize(
    "authorization", ["Basic !!!not-base64", "Basic bm9jb2xvbg==", "Digest abc", "Bearer junk"]
)
async def test_malformed_authorization_is_401(anon: httpx.AsyncClient, authorization: str) -> None:
    response = await anon.get("/api/v1/users/me", headers={"authorization": authorization})
    assert_problem(response, 401)


async def test_basic_with_the_email_instead_of_the_username(clean_app: FastAPI) -> None:
    async with client_for(clean_app, ("admin@example.org", ADMIN[1])) as client:
        response = await client.get("/api/v1/users/me")
    assert response.status_code == 200, response.text
    assert response.json()["username"] == ADMIN[0]


async def test_bearer_token_and_refresh(anon: httpx.AsyncClient) -> None:
    response = await anon.post(
        "/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] > 0
    access, refresh = tokens["access_token"], tokens["refresh_token"]

    me = await anon.get("/api/v1/users/me", headers={"authorization": f"Bearer {access}"})
    assert me.status_code == 200, me.text
    assert me.json()["username"] == ADMIN[0]

    refreshed = await anon.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert refreshed.status_code == 200, refreshed.text
    new_access = refreshed.json()["access_token"]
    me = await anon.get("/api/v1/users/me", headers={"authorization": f"Bearer {new_access}"})
    assert me.status_code == 200
    assert me.json()["username"] == ADMIN[0]

    # Each token only does its own job.
    wrong = await anon.post("/api/v1/auth/refresh", json={"refresh_token": access})
    assert_problem(wrong, 401)
    wrong = await anon.get("/api/v1/users/me", headers={"authorization": f"Bearer {refresh}"})
    assert_problem(wrong, 401)


async def test_token_with_the_email_as_username(anon: httpx.AsyncClient) -> None:
    response = await anon.post(
        "/api/v1/auth/token", data={"username": "admin@example.org", "password": ADMIN[1]}
    )
    assert response.status_code == 200, response.text


async def test_token_with_a_wrong_password_is_401(anon: httpx.AsyncClient) -> None:
    response = await anon.post(
        "/api/v1/auth/token", data={"username": ADMIN[0], "password": "wrong"}
    )
    assert_problem(response, 401)
    assert "access_token" not in response.json()


async def test_a_tampered_token_is_401(anon: httpx.AsyncClient) -> None:
    response = await anon.post(
        "/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}
    )
    access = response.json()["access_token"]
    header, payload, signature = access.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    response = await anon.get("/api/v1/users/me", headers={"authorization": f"Bearer {forged}"})
    assert_problem(response, 401)


# --- probes and version discovery ------------------------------------------------------------


async def test_health_probes(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/-/healthy")).status_code == 200
    assert (await anon.get("/-/ready")).status_code == 200


async def test_ready_is_503_when_the_database_does_not_answer(tmp_path: Any) -> None:
    settings = make_settings("postgresql+asyncpg://tm@127.0.0.1:9/none", str(tmp_path))
    async with (
        running(create_app(settings, run_bootstrap=False)) as app,
        client_for(app) as client,
    ):
        assert (await client.get("/-/healthy")).status_code == 200
        response = await client.get("/-/ready")
    assert response.status_code == 503
    assert response.json()["database"] != "ok"


async def test_versions_work_for_a_6x_client(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/-/versions")
    assert response.status_code == 200
    body = response.json()
    assert body == {"version": __version__, "api_versions": {"1.0": "/api/v1"}}
    # How 6.x clients pick the newest API.
    api_versions = body["api_versions"]
    newest = max(float(k) for k in api_versions)
    assert api_versions[str(newest)] == "/api/v1"


# --- docs and OpenAPI -------------------------------------------------------------------------


def local_urls(html: str) -> list[str]:
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""url:\s*["']([^"']+)["']""", html)
    return urls


async def test_docs_use_only_local_assets(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = local_urls(response.text)
    assert any(u.endswith(".js") for u in urls)
    assert any(u.endswith(".css") for u in urls)
    assert any(u.endswith("openapi.json") for u in urls)
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert (await anon.get(url)).status_code == 200, url


def problem_ref(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get(PROBLEM_JSON, {}).get("schema", {}).get("$ref")


async def test_openapi_declares_problem_json_errors(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert "Problem" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]

    operations = {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1")
        for method, operation in item.items()
    }
    errors = [
        (key, code, declared)
        for key, operation in operations.items()
        for code, declared in operation["responses"].items()
        if code[0] in "45"
    ]
    assert errors
    for key, code, declared in errors:
        assert set(declared.get("content", {})) == {PROBLEM_JSON}, (key, code)
        assert problem_ref(declared) == "#/components/schemas/Problem", (key, code)

    create = operations["POST", "/api/v1/task_templates"]["responses"]
    for code in ("401", "403", "413", "422"):
        assert problem_ref(create[code]) == "#/components/schemas/Problem", code


async def test_openapi_offers_basic_and_bearer_to_authorize(anon: httpx.AsyncClient) -> None:
    schemes = (await anon.get("/openapi.json")).json()["components"]["securitySchemes"]
    kinds = {(s["type"], s.get("scheme")) for s in schemes.values()}
    assert ("http", "basic") in kinds
    oauth = [s for s in schemes.values() if s["type"] == "oauth2"]
    assert oauth
    assert oauth[0]["flows"]["password"]["tokenUrl"].endswith("api/v1/auth/token")


# --- reverse-proxy root path -------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_prefix",
    ["", "/taskmanager"],
    ids=["proxy-strips-prefix", "proxy-keeps-prefix"],
)
async def test_root_path_prefixes_returned_uris(
    clean_app: FastAPI, tmp_path: Any, request_prefix: str
) -> None:
    async with (
        small_app(clean_app, str(tmp_path), root_path="/taskmanager") as app,
        client_for(app, ADMIN) as client,
    ):
        created = await client.post(
            f"{request_prefix}/api/v1/task_templates", json={"label": "pin", "content": "a: 1"}
        )
        assert created.status_code == 201, created.text
        uri = created.json()["uri"]
        assert uri == f"/taskmanager/api/v1/task_templates/{created.json()['id']}"
        listed = await client.get(f"{request_prefix}/api/v1/task_templates")
        assert listed.json() == {"task_templates": [uri]}
        # A client that follows the uri through the proxy (which keeps the prefix) finds it.
        assert (await client.get(uri)).json()["label"] == "pin"

        docs = await client.get(f"{request_prefix}/docs")
        assert docs.status_code == 200
        for url in local_urls(docs.text):
            assert url.startswith("/taskmanager/"), url
            assert (await client.get(url)).status_code == 200, url
