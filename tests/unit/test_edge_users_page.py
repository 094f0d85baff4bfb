"""The edge's users page (admin only): list, add, remove, a new API token shown once; every change needs the
session's CSRF token. On the real app and users file (fixtures of test_edge_auth)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from gateway.agent import Agent
from tests.unit.test_edge_auth import agent, client, login, token  # noqa: F401 (fixtures)


def test_only_an_admin_sees_and_uses_the_users_page(agent: Agent, client: TestClient) -> None:  # noqa: F811
    for role in ("viewer", "engineer"):
        assert client.get("/users", headers=token(agent, role)).status_code == 403
        assert (
            client.post(
                "/users", headers=token(agent, role), data={"name": "x", "role": "admin", "password": "p"}
            ).status_code
            == 403
        )
    login(client, "viewer")
    assert 'href="/users"' not in client.get("/").text  # not in a viewer's navigation
    r = client.get("/users")
    assert r.status_code == 403 and "admin" in r.text
    login(client, "admin")
    assert 'href="/users"' in client.get("/").text
    page = client.get("/users").text
    assert all(f'data-user="{n}"' in page for n in ("viewer", "engineer", "admin"))


def test_add_token_remove_with_csrf(agent: Agent, client: TestClient) -> None:  # noqa: F811
    csrf = login(client, "admin")
    form = {"name": "op-1", "role": "engineer", "password": "op-pw"}
    assert client.post("/users", data=form).status_code == 403  # no CSRF token
    assert agent.users.user("op-1") is None
    r = client.post("/users", data={**form, "csrf": csrf})
    assert r.status_code == 200 and 'class="flash ok"' in r.text and 'data-user="op-1"' in r.text
    assert agent.users.login("op-1", "op-pw") is not None
    assert client.post("/users", data={**form, "csrf": csrf}).status_code == 422  # exists
    bad = client.post("/users", data={**form, "name": "../evil", "csrf": csrf})
    assert bad.status_code == 422 and "is not a user name" in bad.text

    r = client.post("/users/op-1/token", data={"csrf": csrf})
    secret = re.search(r'<code id="new-token">([^<]+)</code>', r.text)
    assert r.status_code == 200 and secret is not None
    api = TestClient(client.app)
    assert api.get("/api/v1/devices", headers={"Authorization": f"Bearer {secret[1]}"}).status_code == 200
    assert secret[1] not in client.get("/users").text  # shown once
    assert secret[1] not in agent.users.path.read_text()  # kept hashed

    assert client.post("/users/admin/remove", data={"csrf": csrf}).status_code == 409  # not yourself
    assert client.post("/users/op-1/remove", data={}).status_code == 403
    r = client.post("/users/op-1/remove", data={"csrf": csrf})
    assert r.status_code == 200 and 'data-user="op-1"' not in r.text
    assert api.get("/api/v1/devices", headers={"Authorization": f"Bearer {secret[1]}"}).status_code == 401
    assert client.post("/users/nobody/remove", data={"csrf": csrf}).status_code == 404
    assert client.post("/users/nobody/token", data={"csrf": csrf}).status_code == 404
