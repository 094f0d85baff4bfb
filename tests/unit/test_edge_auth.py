"""The edge's authentication: the route × role matrix, sessions and CSRF, tokens hashed at rest, the refusal
to listen beyond loopback with no user, and `/metrics` in the Prometheus format. On a real `Agent` (built,
not started: its buffer, publisher and runtime are real objects)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cloud_bridge.webauth import SESSION_COOKIE
from edge_config.models import GatewayConfig
from gateway.agent import Agent
from gateway.api.app import create_app
from gateway.cli.main import main
from gateway.users import UserStore

DEVICE = {
    "id": "loom-01",
    "driver": "modbus_tcp",
    "type": "air_jet_loom",
    "connection": {"host": "127.0.0.1", "port": 1},
    "tags": [{"name": "speed", "address": "40001"}],
}
API_ROUTES = ["/api/v1/devices", "/api/v1/devices/loom-01", "/metrics"]
VIEWER_PAGES = ["/", "/devices/loom-01", "/console/devices", "/console/devices/loom-01/values"]
ENGINEER_PAGES = ["/editor", "/editor/devices/loom-01", "/editor/template.csv", "/editor/devices/loom-01/tags.csv"]


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    cfg = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path)}, "devices": [DEVICE]}
    )
    users = UserStore(tmp_path / "users.json")
    for role in ("viewer", "engineer", "admin"):
        users.add(role, role, f"{role}-pw")
    (tmp_path / "gateway.yaml").write_text("gateway: {id: gw-1, enterprise_id: ent-1}\n")
    return Agent(cfg, config_path=tmp_path / "gateway.yaml")


@pytest.fixture
def client(agent: Agent) -> Iterator[TestClient]:
    with TestClient(create_app(agent), follow_redirects=False) as c:
        yield c
    agent.buffer.close()
    agent.runtime.history.close()


def token(agent: Agent, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {agent.users.add_token(role)}"}


def login(client: TestClient, role: str) -> str:
    r = client.post("/login", data={"username": role, "password": f"{role}-pw", "next": "/"})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/").text
    return page.split('name="csrf-token" content="')[1].split('"')[0]


def test_health_is_open_and_everything_else_is_not(client: TestClient) -> None:
    assert client.get("/api/v1/health").status_code == 200
    for path in API_ROUTES:
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.json()["detail"] == "log in or send a bearer token"
    for path in VIEWER_PAGES + ENGINEER_PAGES:
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    assert client.get("/api/v1/devices", headers={"Authorization": "Bearer egw_00000000_forged"}).status_code == 401


@pytest.mark.parametrize("role", ["viewer", "engineer", "admin"])
def test_role_matrix_with_tokens(agent: Agent, client: TestClient, role: str) -> None:
    h = token(agent, role)
    for path in API_ROUTES + VIEWER_PAGES:
        assert client.get(path, headers=h).status_code == 200, path
    for path in ENGINEER_PAGES:
        assert client.get(path, headers=h).status_code == (403 if role == "viewer" else 200), path
    r = client.post("/editor/discard", headers=h)  # a token request needs no CSRF token
    assert r.status_code == (403 if role == "viewer" else 303)


def test_session_login_and_csrf(client: TestClient) -> None:
    bad = client.post("/login", data={"username": "engineer", "password": "wrong"})
    assert bad.status_code == 401 and SESSION_COOKIE not in bad.cookies
    csrf = login(client, "engineer")
    assert client.get("/api/v1/devices").status_code == 200  # the session works for the JSON API too
    assert client.post("/editor/discard").status_code == 403  # no CSRF token
    assert client.post("/editor/discard", data={"csrf": "0" * 64}).status_code == 403
    assert client.post("/editor/discard", data={"csrf": csrf}).status_code == 303
    assert client.post("/editor/discard", headers={"X-CSRF-Token": csrf}).status_code == 303


def test_a_removed_user_or_new_password_ends_sessions_and_tokens(agent: Agent, client: TestClient) -> None:
    h = token(agent, "viewer")
    login(client, "viewer")
    agent.users.add("viewer", "viewer", "new-pw", replace=True)  # new epoch: the session ends
    assert client.get("/api/v1/devices").status_code == 401
    assert client.get("/api/v1/devices", headers=h).status_code == 200  # tokens stay until the user goes
    agent.users.remove("viewer")
    assert client.get("/api/v1/devices", headers=h).status_code == 401


def test_secrets_are_stored_hashed(agent: Agent, tmp_path: Path) -> None:
    secret = agent.users.add_token("admin")
    text = (tmp_path / "users.json").read_text()
    assert secret not in text and "admin-pw" not in text and "$argon2id$" in text
    assert oct((tmp_path / "users.json").stat().st_mode & 0o777) == "0o600"


def test_metrics_parse(agent: Agent, client: TestClient) -> None:
    agent.runtime.scan_times["loom-01"].observe(0.02)
    text = client.get("/metrics", headers=token(agent, "viewer")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("edgegw_device_online", "edgegw_device_scans", "edgegw_device_scan_seconds",
                 "edgegw_buffer_messages", "edgegw_buffer_behind_seconds", "edgegw_mqtt_acked",
                 "edgegw_mqtt_connects", "process_resident_memory_bytes", "process_cpu_seconds"):  # fmt: skip
        assert name in families, name
    online = families["edgegw_device_online"].samples[0]
    assert online.labels == {"device": "loom-01", "type": "air_jet_loom", "driver": "modbus_tcp"}
    count = [s for s in families["edgegw_device_scan_seconds"].samples if s.name.endswith("_count")]
    assert count[0].value == 1


def test_run_refuses_to_listen_beyond_loopback_with_no_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        json.dumps(
            {
                "gateway": {"id": "gw-1", "enterprise_id": "e", "data_dir": str(tmp_path / "d")},
                "api": {"listen": "0.0.0.0:18099"},
            }
        )
    )
    assert main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0:18099 with no user" in err and "edgegw user add" in err
    assert "Traceback" not in err


def test_run_with_its_api_port_taken_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The API's address is bound when the agent starts, before its web stack is loaded (`gateway.listen`):
    a port in use stops `edgegw run` at once with the address and the reason, not at the first request."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "gateway": {"id": "gw-1", "enterprise_id": "e", "data_dir": str(tmp_path / "d")},
                    "api": {"listen": f"127.0.0.1:{port}"},
                }
            )
        )
        assert main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port} for the API" in err and "in use" in err
    assert "Traceback" not in err


def test_a_user_removed_and_added_again_gets_back_no_session_or_token(agent: Agent, client: TestClient) -> None:
    """The epoch comes from a file-wide counter that only goes up: re-adding a name (now an admin) does not
    bring back the viewer's old cookie or token (it used to restart at 1 and match the old cookie)."""
    agent.users.add("alice", "viewer", "alice-pw")
    old_token = token(agent, "alice")
    login(client, "alice")
    agent.users.remove("alice")
    assert client.get("/api/v1/devices").status_code == 401
    agent.users.add("alice", "admin", "alice-pw")
    assert client.get("/users").status_code == 303  # to the login page, not the admin's users page
    assert client.get("/api/v1/devices").status_code == 401
    assert client.get("/api/v1/devices", headers=old_token).status_code == 401
    # the same through the console's users page (an admin's token: no CSRF token needed)
    admin = token(agent, "admin")
    login(client, "alice")
    assert client.post("/users/alice/remove", headers=admin).status_code == 200
    form = {"name": "alice", "role": "admin", "password": "alice-pw"}
    assert client.post("/users", data=form, headers=admin).status_code == 200
    assert client.get("/api/v1/devices").status_code == 401


def test_a_users_file_from_before_the_counter_gives_no_old_epoch_again(agent: Agent, tmp_path: Path) -> None:
    """Earlier versions counted epochs per user from 1 and forgot them with the user: a file they wrote, with
    a name removed, still gives that name an epoch no earlier cookie carries when it is added again."""
    path = tmp_path / "users.json"
    data = json.loads(path.read_text())
    del data["last_epoch"]
    data["users"]["viewer"]["epoch"] = 1
    path.write_text(json.dumps(data))
    users = UserStore(path)
    users.remove("viewer")
    users.add("viewer", "viewer", "viewer-pw")
    user = users.user("viewer")
    assert user is not None and user.epoch > 1 << 32
    users.add("viewer", "viewer", "new-pw", replace=True)
    again = users.user("viewer")
    assert again is not None and again.epoch > user.epoch


def test_logout_ends_the_session_on_the_server(agent: Agent, client: TestClient) -> None:
    csrf = login(client, "viewer")
    cookie = client.cookies[SESSION_COOKIE]
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
    client.cookies.set(SESSION_COOKIE, cookie)  # a copy of the cookie kept from before
    assert client.get("/api/v1/devices").status_code == 401
    assert client.get("/").status_code == 303
    with TestClient(create_app(agent), follow_redirects=False) as restarted:  # kept in the users file
        restarted.cookies.set(SESSION_COOKIE, cookie)
        assert restarted.get("/api/v1/devices").status_code == 401
    client.cookies.clear()
    login(client, "viewer")  # a new login is a new session
    assert client.get("/api/v1/devices").status_code == 200


def test_a_damaged_users_file_answers_503_with_the_reason(
    agent: Agent, client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = token(agent, "viewer")
    login(client, "viewer")
    path = tmp_path / "users.json"
    path.write_text('{"users": ')
    with caplog.at_level("ERROR"):
        for r in (client.get("/api/v1/devices"), client.get("/api/v1/devices", headers=h)):
            assert r.status_code == 503, r.text
            assert r.json()["detail"].startswith(f"cannot read the users file {path}: Expecting value")
        for r in (client.get("/"), client.post("/login", data={"username": "viewer", "password": "viewer-pw"})):
            assert r.status_code == 503 and f"无法读取用户文件 {path}: Expecting value" in r.text, r.text
        en = client.get("/?lang=en")
        assert en.status_code == 503 and f"cannot read the users file {path}" in en.text
    assert client.get("/api/v1/health").status_code == 200
    logged = [r for r in caplog.records if "cannot read the users file" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is None, logged


def test_no_api_docs_without_a_login(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404, path
    app = client.app
    assert isinstance(app, FastAPI) and "/api/v1/devices" in app.openapi()["paths"]  # in-process, for the fuzz


def test_health_says_when_the_clock_reads_before_2000(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_config.timing import clock_problem
    from gateway.api import routes

    assert client.get("/api/v1/health").json()["clock"]["ok"] is True
    monkeypatch.setattr(routes, "now_ms", lambda: 5_000)  # an industrial PC whose RTC battery died: 1970
    clock = client.get("/api/v1/health").json()["clock"]
    assert clock["ok"] is False and clock["problem"].startswith("the system clock reads 1970-01-01T00:00:05Z")
    assert "the cloud refuses readings stamped before 2000" in clock["problem"]
    assert clock_problem(946_684_800_000) is None and clock_problem(946_684_799_999) is not None
