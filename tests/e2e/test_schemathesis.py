"""Fuzz every operation of the live OpenAPI schema of a running server with schemathesis.

A real `taskmanager serve` (embedded SQLite, and PostgreSQL when it is reachable) is seeded
with a reader, a group, a template, tasks, a tag and a task group, then every operation in
`/openapi.json` is called with generated (valid and invalid) input, once as the admin and
once as the reader. Each response must not be a 5xx, and its status code, content type and
body must be the ones the schema documents.

Nothing is excluded. The fuzzing accounts must not lock themselves out, so the operations
that could deactivate, re-password, demote or re-permission an account are fuzzed with
their target swapped when it is one of the fuzzing accounts (or their roles): the request
then goes to a decoy user or role instead (see `World.protect`). This keeps those operations
fuzzed against a real object without the rest of the run turning into a wall of 401/403s,
and needs no reset between the passes (a reset could not undo changed role permissions).
Half of the generated path references name objects that exist, so that the operations get
past their 404s.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
import yaml
from schemathesis import Case, checks
from schemathesis.config import SchemathesisConfig

from tests.e2e.conftest import Server, backend_server

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parents[1] / "fixtures"
MAX_EXAMPLES = 15
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
READER = "fuzz-reader"
DECOY_USER = "fuzz-decoy"
PROTECTED_ROLES = frozenset({"admin", "user"})  # the fuzzing accounts' roles


# Path parameters and the kind of object they name, for the dictionaries of existing ones.
PATH_REFERENCES = {
    "user": "users",
    "user_ref": "users",
    "group": "groups",
    "group_ref": "groups",
    "role": "roles",
    "template": "templates",
    "task_id": "tasks",
    "taskgroup": "taskgroups",
    "tag": "tags",
}


def _config(known: dict[str, list[str | int]]) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "suppress-health-check": ["all"],
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            # The examples and fuzzing phases, per operation; the coverage phase enumerates
            # hundreds of cases per operation and the stateful one needs links we do not publish.
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "dictionaries": {name: {"values": values} for name, values in known.items() if values},
            "parameters": {
                f"path.{parameter}": {"dictionary": name, "probability": 0.5}
                for parameter, name in PATH_REFERENCES.items()
                if known.get(name)
            },
        }
    )


@dataclass
class Identity:
    name: str
    headers: dict[str, str]


@dataclass
class World:
    """A seeded server, its fuzzing accounts, and the decoys that stand in for them."""

    server: Server
    admin: httpx.Client
    accounts: dict[str, Identity]
    protected_user_uris: set[str] = field(default_factory=set)
    decoy_user_id: str = ""
    decoy_role_id: str = ""

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.admin.get(path, params=params)

    def seed(self, tag: str) -> None:
        """A template, a group with the reader in it, tasks (direct, via group, locked).

        Idempotent: an earlier pass may have renamed, emptied or deleted any of them.
        """
        admin = self.admin
        template = (FIXTURES / "templates" / "glandula_pinealis.yaml").read_text()
        r = admin.post(
            "/api/v1/task_templates", json={"label": "glandula_pinealis", "content": template}
        )
        assert r.status_code in (201, 409), r.text
        r = admin.post("/api/v1/groups", json={"groupname": "neuro", "name": "Neuro"})
        assert r.status_code in (201, 409), r.text
        for member in (READER, self.decoy_user_id):
            r = admin.put(f"/api/v1/groups/neuro/users/{member}")
            assert r.status_code == 200, r.text
        admin.post("/api/v1/tags", json={"name": "pinealis"})
        created: list[str] = []
        for name in ("L100", "L101", "L102"):
            content = json.loads((FIXTURES / "tasks" / f"{name}.json").read_text())
            for kind, owner in (("direct", {"users": [READER]}), ("group", {"groups": ["neuro"]})):
                r = admin.post(
                    "/api/v1/tasks",
                    json={
                        "project": "pinealis",
                        "template": "glandula_pinealis",
                        "content": content,
                        "tags": ["pinealis", tag],
                        "tracking_id": f"{name}-{tag}-{kind}",
                        "callback_url": "http://127.0.0.1:9/callback",
                        **owner,
                    },
                )
                assert r.status_code == 201, r.text
                created.append(r.json()["lock"])
        reader = self.accounts["reader"].headers
        r = httpx.put(self.server.url(created[0]), headers=reader)
        assert r.status_code == 200, r.text
        r = admin.post(
            "/api/v1/taskgroups",
            json={
                "label": f"batch-{tag}",
                "tasks": [
                    {"project": "pinealis", "template": "glandula_pinealis", "content": "{}"}
                ],
                "distribute_in_group": "neuro",
                "distribute_method": "same",
            },
        )
        assert r.status_code == 201, r.text

    def known_references(self) -> dict[str, list[str | int]]:
        """Ids and names of the objects that exist now, per kind."""

        def ids_and(collection: str, key: str, name: str) -> list[str | int]:
            listed = self.get(f"/api/v1/{collection}").json()[key]
            values: list[str | int] = []
            for item in listed:
                obj = item if isinstance(item, dict) else self.get(item).json()
                values += [str(obj["uri"]).rsplit("/", 1)[1], str(obj[name])]
            return values

        tasks = self.get("/api/v1/tasks", scope="all").json()["tasks"]
        return {
            "users": ids_and("users", "users", "username"),
            "groups": ids_and("groups", "groups", "groupname"),
            "roles": ids_and("roles", "roles", "name"),
            "templates": ids_and("task_templates", "task_templates", "label"),
            "tasks": [int(task["id"]) for task in tasks],
            "taskgroups": ids_and("taskgroups", "taskgroups", "label"),
            "tags": ids_and("tags", "tags", "name"),
        }

    def decoy_role(self) -> str:
        """The id of a role the fuzzer may change or delete (made again once deleted)."""
        if self.decoy_role_id and self.get(f"/api/v1/roles/{self.decoy_role_id}").is_success:
            return self.decoy_role_id
        r = self.admin.post(
            "/api/v1/roles",
            json={"name": f"decoy-{secrets.token_hex(4)}", "permissions": ["task_read"]},
        )
        assert r.status_code == 201, r.text
        self.decoy_role_id = str(r.json()["id"])
        return self.decoy_role_id

    def protect(self, case: Case[Any]) -> None:
        """Point operations that could lock a fuzzing account out at a decoy instead."""
        path, method = case.path, case.method.upper()
        if method not in ("PUT", "DELETE"):
            return
        # The reference as it goes on the wire (/api/v1/<kind>/<reference>...), resolved by
        # the server itself: ids, names, whatever its lookup accepts.
        url = urlsplit(case.as_transport_kwargs(base_url=self.server.base_url)["url"])
        reference = url.path.split("/")[4] if url.path.count("/") >= 4 else ""
        if path.startswith("/api/v1/users/{user}"):
            user = self.get(f"/api/v1/users/{reference}")
            if user.is_success and user.json()["uri"] in self.protected_user_uris:
                case.path_parameters["user"] = self.decoy_user_id
        elif path == "/api/v1/roles/{role}":
            role = self.get(f"/api/v1/roles/{reference}")
            if role.is_success and role.json()["name"] in PROTECTED_ROLES:
                case.path_parameters["role"] = self.decoy_role()
        elif path == "/api/v1/service/config/import-config" and method == "PUT":
            self._protect_config(case)

    def _protect_config(self, case: Case[Any]) -> None:
        """PUT overwrites what the file names: rename the fuzzing accounts and their roles."""
        body = case.body
        text = body.get("config_definition") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(text, str):
            return
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError:
            return
        if not isinstance(config, dict):
            return
        usernames = {"admin", READER}
        changed = False
        for section, key, names in (
            ("users", "username", usernames),
            ("roles", "name", PROTECTED_ROLES),
        ):
            for entry in config.get(section) or []:
                if isinstance(entry, dict) and str(entry.get(key, "")).strip().lower() in names:
                    entry[key] = f"decoy-{secrets.token_hex(4)}"
                    changed = True
        if changed:
            case.body = {**body, "config_definition": yaml.safe_dump(config)}


def _token(server: Server, username: str, password: str) -> dict[str, str]:
    r = httpx.post(
        server.url("/api/v1/auth/token"), data={"username": username, "password": password}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    backend: str = request.param
    with backend_server(backend, tmp_path_factory.mktemp(f"fuzz-{backend}")) as server:
        yield server


@pytest.fixture(scope="module")
def world(fuzz_server: Server) -> Iterator[World]:
    admin_headers = _token(fuzz_server, "admin", fuzz_server.admin_password)
    with httpx.Client(base_url=fuzz_server.base_url, headers=admin_headers) as admin:
        protected = {admin.get("/api/v1/users/me").json()["uri"]}
        for username in (READER, DECOY_USER):
            r = admin.post(
                "/api/v1/users",
                json={
                    "username": username,
                    "password": f"{username}-pw",
                    "email": f"{username}@x.org",
                },
            )
            assert r.status_code == 201, r.text
            if username == READER:
                protected.add(r.json()["uri"])
            assert admin.put(f"/api/v1/users/{username}/roles/user").status_code == 200
        accounts = {
            "admin": Identity("admin", admin_headers),
            "reader": Identity("reader", _token(fuzz_server, READER, f"{READER}-pw")),
        }
        world = World(fuzz_server, admin, accounts, protected_user_uris=protected)
        decoy = admin.get(f"/api/v1/users/{DECOY_USER}").json()
        world.decoy_user_id = str(decoy["id"])
        yield world


@pytest.fixture(params=["admin", "reader"])
def fuzz_as(request: pytest.FixtureRequest, world: World) -> Iterator[Identity]:
    identity = world.accounts[request.param]
    # Fresh objects for this pass: the previous one may have deleted or finished them.
    world.seed(identity.name)
    yield identity
    # A pass that locked its account out would have tested little but the 401 response.
    me = httpx.get(world.server.url("/api/v1/users/me"), headers=identity.headers)
    assert me.status_code == 200, f"the fuzzer locked {identity.name} out: {me.text}"


@pytest.fixture
def live_schema(world: World, fuzz_as: Identity) -> Any:
    config = _config(world.known_references())
    return schemathesis.openapi.from_url(world.server.url("/openapi.json"), config=config)


@pytest.fixture(autouse=True)
def _pytest_92_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's `from_fixture` reads `Node._nodeid`, which pytest 9.2 renamed."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
def test_every_operation_conforms_to_the_schema(
    case: Case[Any], world: World, fuzz_as: Identity
) -> None:
    world.protect(case)
    # A new connection per call: uvicorn closes a keep-alive connection after a 500, which
    # would show up as a network error in the next case instead of in the one that caused it.
    case.call_and_validate(headers=fuzz_as.headers, checks=CHECKS, timeout=30)
