"""Login throttling (`cloud_bridge.webauth.LoginGuard`, used by the login route of `cloud_bridge.webapp` for
the edge console and the cloud portal alike): failed logins per client address and per user name answered
429 until the window passes, at most two password checks at once (argon2 holds 64 MiB each), the rest 503
when no slot frees in time, a bounded table, and an unknown user checked against a real hash. On the edge's
app, with a real `Agent` (built, not started)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud_bridge import webauth
from cloud_bridge.webauth import FAILURE_WINDOW_S, LOGIN_SLOTS, MAX_FAILURES, LoginGuard, check_password
from edge_config.models import GatewayConfig
from gateway.agent import Agent
from gateway.api.app import create_app
from tests.integration.test_modbus_driver import Clock
from tests.unit.test_edge_auth import DEVICE


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    cfg = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path)}, "devices": [DEVICE]}
    )
    (tmp_path / "gateway.yaml").write_text("gateway: {id: gw-1, enterprise_id: ent-1}\n")
    agent = Agent(cfg, config_path=tmp_path / "gateway.yaml")
    for name in ("viewer", "admin"):
        agent.users.add(name, name, f"{name}-pw")
    yield agent
    agent.buffer.close()
    agent.runtime.history.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(agent: Agent, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(agent), follow_redirects=False) as c:
        c.app.state.login_guard.clock = clock  # type: ignore[attr-defined]
        yield c


def post_login(client: TestClient, name: str, password: str) -> int:
    return client.post("/login", data={"username": name, "password": password}).status_code


class Checks:
    """Stands in for `check_password`: counts the checks and the most running at once (each waits a little,
    so that concurrent logins overlap), and refuses every password."""

    def __init__(self) -> None:
        self.calls = self.running = self.peak = 0
        self._lock = threading.Lock()
        self._never = threading.Event()

    def __call__(self, stored: str | None, password: str) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        self._never.wait(0.2)
        with self._lock:
            self.running -= 1
        return False


def test_failed_logins_from_one_address_are_refused_until_the_window_passes(client: TestClient, clock: Clock) -> None:
    for _ in range(MAX_FAILURES):
        assert post_login(client, "viewer", "wrong") == 401
    r = client.post("/login", data={"username": "viewer", "password": "wrong"})
    assert r.status_code == 429 and f"登录失败次数过多，请 {int(FAILURE_WINDOW_S)} 秒后再试" in r.text
    assert r.headers["retry-after"] == str(int(FAILURE_WINDOW_S))
    en = client.post("/login?lang=en", data={"username": "viewer", "password": "wrong"})
    assert en.status_code == 429 and "too many failed logins, try again in 60 s" in en.text
    assert post_login(client, "viewer", "viewer-pw") == 429  # even the right password, meanwhile
    assert post_login(client, "admin", "admin-pw") == 429  # the address is refused, whichever name
    clock.now += FAILURE_WINDOW_S - 1
    assert post_login(client, "admin", "admin-pw") == 429
    clock.now += 1
    assert post_login(client, "viewer", "viewer-pw") == 303


def test_failed_logins_for_one_name_are_refused_from_every_address(agent: Agent, client: TestClient) -> None:
    for i in range(MAX_FAILURES):
        with TestClient(client.app, client=(f"192.0.2.{i}", 40000), follow_redirects=False) as other:
            assert post_login(other, "admin", "wrong") == 401
    assert post_login(client, "admin", "admin-pw") == 429  # another address, the same name
    assert post_login(client, "viewer", "viewer-pw") == 303  # another name from this address


def test_thirty_wrong_passwords_in_a_row_cost_five_checks(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    checks = Checks()
    monkeypatch.setattr(webauth, "check_password", checks)
    statuses = [post_login(client, "viewer", f"guess-{i}") for i in range(30)]
    assert statuses == [401] * MAX_FAILURES + [429] * (30 - MAX_FAILURES)
    assert checks.calls == MAX_FAILURES


def test_concurrent_logins_check_at_most_two_passwords_at_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 concurrent wrong logins used to hash 40 passwords at once (64 MiB each). Now at most LOGIN_SLOTS
    run at once, and once the address has failed MAX_FAILURES times the waiting ones are refused unhashed."""
    checks = Checks()
    monkeypatch.setattr(webauth, "check_password", checks)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: post_login(client, f"nobody-{i}", "wrong"), range(16)))
    assert checks.peak <= LOGIN_SLOTS, checks.peak
    assert checks.calls <= MAX_FAILURES + LOGIN_SLOTS - 1, checks.calls
    assert set(statuses) <= {401, 429, 503} and 429 in statuses, statuses


def test_a_login_that_gets_no_slot_in_time_is_answered_503(client: TestClient) -> None:
    guard: LoginGuard = client.app.state.login_guard  # type: ignore[attr-defined]
    guard.wait_s = 0
    assert all(guard.try_acquire() for _ in range(LOGIN_SLOTS))  # every slot busy
    assert not guard.try_acquire()
    r = client.post("/login?lang=en", data={"username": "viewer", "password": "viewer-pw"})
    assert r.status_code == 503 and "too many logins at once, try again in a moment" in r.text
    assert "retry-after" in r.headers
    for _ in range(LOGIN_SLOTS):
        guard.release()
    assert post_login(client, "viewer", "viewer-pw") == 303


def test_the_failure_table_is_bounded_and_a_success_clears_it(clock: Clock) -> None:
    guard = LoginGuard(max_tracked=100, clock=clock)
    for i in range(1000):
        guard.failed(f"198.51.100.{i % 250}", f"user-{i}")
        assert guard.tracked() <= 100
    for _ in range(MAX_FAILURES):
        guard.failed("203.0.113.1", "bob")
    assert guard.refused("203.0.113.1", "someone") == FAILURE_WINDOW_S
    assert guard.refused("203.0.113.9", "bob") == FAILURE_WINDOW_S
    clock.now += 10
    assert guard.refused("203.0.113.1", "bob") == FAILURE_WINDOW_S - 10
    guard.succeeded("203.0.113.1", "bob")
    assert guard.refused("203.0.113.1", "bob") == 0


def test_an_unknown_user_costs_one_real_hash_check_like_a_known_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """No shortcut for a name that does not exist: its password is verified against a real argon2 hash."""
    hasher, _dummy = webauth._argon2()
    stored = webauth.hash_password("right")
    seen: list[str] = []
    real = type(hasher).verify

    def verify(self: object, hash: str, password: str) -> bool:
        seen.append(hash)
        return real(self, hash, password)  # type: ignore[arg-type]

    monkeypatch.setattr(type(hasher), "verify", verify)
    assert not check_password(None, "right")
    assert check_password(stored, "right")
    assert not check_password(stored, "wrong")
    assert len(seen) == 3 and seen[0].startswith("$argon2id$") and seen[0].split("$")[3] == stored.split("$")[3]
