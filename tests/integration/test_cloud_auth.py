"""The cloud API's auth matrix, role × route × enterprise, on SQLite and PostgreSQL; tokens hashed at rest;
the audit log of reads, exports and imports; the portal's session cookie with CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud_bridge.cloud.api.app import create_cloud_app
from cloud_bridge.cloud.ledger.schema import api_tokens, api_users
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.users import CloudUserError, CloudUsers
from cloud_bridge.webauth import SESSION_COOKIE
from tests.integration.test_cloud_api import DAY, add_user, config
from tests.unit.test_evidence_build import LEDGER_CSV, fill_day

pytestmark = pytest.mark.integration

READS = [
    ("/api/v1/enterprises/{ent}/summary", DAY),
    ("/api/v1/enterprises/{ent}/devices", DAY),
    ("/api/v1/enterprises/{ent}/evidence", DAY),
    ("/api/v1/enterprises/{ent}/equipment", {}),
    ("/api/v1/enterprises/{ent}/devices/press-01/oee", DAY),
]
# role, enterprises -> (may read ent-1, may read ent-2, may import into ent-1)
ROLES = {
    "admin": ([], True, True, True),
    "operator": (["ent-1"], True, False, True),
    "operator2": (["ent-2"], False, True, False),
    "evaluator": ([], True, True, False),
    "evaluator1": (["ent-1"], True, False, False),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    url = f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    fill_day(url)
    tokens = {}
    for name, (ents, *_rest) in ROLES.items():
        role = name.rstrip("12")
        tokens[name] = add_user(url, name, role, ents, password=f"{name}-pw")
    with TestClient(create_cloud_app(config(url)), follow_redirects=False) as c:
        yield c, tokens, url


def test_matrix(setup: tuple[TestClient, dict[str, str], str]) -> None:
    client, tokens, _url = setup
    assert client.get("/api/v1/health").status_code == 200
    for path, params in [*READS, ("/api/v1/overview", DAY)]:
        assert client.get(path.format(ent="ent-1"), params=params).status_code == 401
    for name, (_ents, read1, read2, imp1) in ROLES.items():
        h = {"Authorization": f"Bearer {tokens[name]}"}
        for path, params in READS:
            got = client.get(path.format(ent="ent-1"), params=params, headers=h).status_code
            assert got == (200 if read1 else 403), (name, path, got)
            got2 = client.get(path.format(ent="ent-2"), params=params, headers=h).status_code
            assert got2 == (404 if read2 else 403), (name, path, got2)  # ent-2 may be read, and is unknown
        listed = [e["id"] for e in client.get("/api/v1/enterprises", headers=h).json()]
        assert ("ent-1" in listed) == read1, name
        shown = [
            r["enterprise"]["id"] for r in client.get("/api/v1/overview", params=DAY, headers=h).json()["enterprises"]
        ]
        assert shown == (["ent-1"] if read1 else []), name
        r = client.put(
            "/api/v1/enterprises/ent-1/equipment", params={"filename": "l.csv"}, content=LEDGER_CSV.encode(), headers=h
        )
        assert r.status_code == (200 if imp1 else 403), (name, r.text)


def test_tokens_hashed_audit_and_revoke(setup: tuple[TestClient, dict[str, str], str]) -> None:
    client, tokens, url = setup
    h = {"Authorization": f"Bearer {tokens['operator']}"}
    client.get("/api/v1/enterprises/ent-1/summary", params=DAY, headers=h)
    client.get("/api/v1/enterprises/ent-1/equipment", params={"format": "csv"}, headers=h)
    client.put(
        "/api/v1/enterprises/ent-1/equipment", params={"filename": "l.csv"}, content=LEDGER_CSV.encode(), headers=h
    )
    store = EvidenceStore(url)
    try:
        users = CloudUsers(store.db)
        dump = repr(store.db.rows(select(api_tokens))) + repr(store.db.rows(select(api_users)))
        assert tokens["operator"] not in dump and "operator-pw" not in dump and "$argon2id$" in dump
        log = users.audit_log()
        assert [(e["user_name"], e["action"]) for e in log[:3]] == [
            ("operator", "import"), ("operator", "export"), ("operator", "read")
        ]  # fmt: skip
        assert all(tokens["operator"] not in str(e) for e in log)
        users.revoke("operator")
    finally:
        store.close()
    assert client.get("/api/v1/enterprises/ent-1/summary", params=DAY, headers=h).status_code == 401


def test_session_cookie_needs_csrf_for_writes(setup: tuple[TestClient, dict[str, str], str]) -> None:
    client, _tokens, _url = setup
    r = client.post("/login", data={"username": "operator", "password": "operator-pw", "next": "/"})
    assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
    assert client.get("/api/v1/enterprises/ent-1/summary", params=DAY).status_code == 200
    put = client.put("/api/v1/enterprises/ent-1/equipment", params={"filename": "l.csv"}, content=LEDGER_CSV.encode())
    assert put.status_code == 403 and "CSRF" in put.json()["detail"]


def test_logout_ends_the_portal_session_on_the_server(setup: tuple[TestClient, dict[str, str], str]) -> None:
    client, _tokens, _url = setup
    assert client.post("/login", data={"username": "evaluator", "password": "evaluator-pw"}).status_code == 303
    cookie = client.cookies[SESSION_COOKIE]
    page = client.get("/", params={"start": "2024-05-01", "end": "2024-05-01"}).text
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
    client.cookies.set(SESSION_COOKIE, cookie)  # a copy kept from before the logout
    assert client.get("/api/v1/enterprises/ent-1/summary", params=DAY).status_code == 401


def test_a_revoked_name_cannot_be_added_again(setup: tuple[TestClient, dict[str, str], str]) -> None:
    """The cloud keeps a revoked user's row (its epoch raised): adding the name again is refused, so an old
    session or token of that name never comes back with a new role."""
    client, tokens, url = setup
    assert client.post("/login", data={"username": "evaluator1", "password": "evaluator1-pw"}).status_code == 303
    store = EvidenceStore(url)
    try:
        users = CloudUsers(store.db)
        users.revoke("evaluator1")
        with pytest.raises(CloudUserError, match="was revoked: a name is not given again"):
            users.add("evaluator1", "admin", [], password="evaluator1-pw")
    finally:
        store.close()
    assert client.get("/api/v1/enterprises/ent-1/summary", params=DAY).status_code == 401
    h = {"Authorization": f"Bearer {tokens['evaluator1']}"}
    assert client.get("/api/v1/enterprises/ent-1/summary", params=DAY, headers=h).status_code == 401


def test_a_page_s_error_is_a_page_in_the_user_s_language_and_the_api_s_stays_json(
    setup: tuple[TestClient, dict[str, str], str],
) -> None:
    client, _tokens, _url = setup
    assert client.post("/login", data={"username": "evaluator1", "password": "evaluator1-pw"}).status_code == 303
    for lang, heading in (("zh", "无权访问"), ("en", "Not allowed")):
        client.cookies.set("edgegw_lang", lang)
        r = client.get("/enterprises/ent-2", params={"start": "2024-05-01", "end": "2024-05-01"})
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), r.text
        assert heading in r.text and "may not read enterprise" in r.text and 'href="/"' in r.text
    client.cookies.set("edgegw_lang", "zh")
    assert "页面不存在" in client.get("/nosuchpage").text
    client.cookies.set("edgegw_lang", "en")
    bad = client.get("/", params={"start": "garbage"})
    assert bad.status_code == 422 and "Bad request" in bad.text and "<html" in bad.text
    api = client.get("/api/v1/enterprises/ent-2/summary", params=DAY)  # the API answers JSON, as before
    assert api.status_code == 403 and "may not read" in api.json()["detail"]
