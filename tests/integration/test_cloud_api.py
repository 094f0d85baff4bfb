"""The cloud evidence API on SQLite and on a real PostgreSQL, and `edgegw serve` as a process.

The ledger holds the hand-built day of tests/unit/test_evidence_build.py, so the figures are known.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from cloud_bridge.cloud.api.app import create_cloud_app
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.users import CloudUsers
from edge_config.models import CloudConfig
from tests.ports import free_port
from tests.unit.test_evidence_build import CONFIG, LEDGER_CSV, fill_day

pytestmark = pytest.mark.integration
DAY = {"from": "2024-05-01", "to": "2024-05-01"}


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    yield request.getfixturevalue("pg_url")  # a fresh schema, or skipped with the reason


def config(url: str, token: str | None = None) -> CloudConfig:
    data: dict[str, Any] = CONFIG.model_dump(mode="json")
    data["ledger"] = {"url": url}
    data["api"] = {"listen": "127.0.0.1:8090", "token": token}
    data["trust"] = {"mode": "off"}  # a ledger filled by the test, not by proven messages: nothing to audit
    return CloudConfig.model_validate(data)


def add_user(url: str, name: str, role: str, enterprises: list[str], password: str | None = None) -> str:
    """A cloud user made in the ledger database; its API token."""
    store = EvidenceStore(url)
    try:
        return CloudUsers(store.db).add(name, role, enterprises, password).secret
    finally:
        store.close()


@pytest.fixture
def client(ledger_url: str) -> Iterator[TestClient]:
    fill_day(ledger_url)
    admin = add_user(ledger_url, "admin", "admin", [])
    with TestClient(create_cloud_app(config(ledger_url)), headers={"Authorization": f"Bearer {admin}"}) as c:
        r = c.put(
            "/api/v1/enterprises/ent-1/equipment",
            params={"filename": "ledger.csv"},
            content=LEDGER_CSV.encode(),
        )
        assert r.status_code == 200, r.text
        yield c


def test_indicators_devices_and_oee(client: TestClient) -> None:
    assert client.get("/api/v1/health").json()["status"] == "ok"
    ents = client.get("/api/v1/enterprises").json()
    assert {"id": "ent-1", "name": "某纺织有限公司", "configured": True} in ents
    s = client.get("/api/v1/enterprises/ent-1/summary", params=DAY).json()
    assert s["summary"]["networked"]["score"] == 3.0 and s["summary"]["networked"]["numerator"] == 1
    assert s["summary"]["networked_rule"]["min_online_ratio"] == 0.5  # the rule, printed with the figures
    assert s["summary"]["online_time"]["rate"] == pytest.approx(10 / 16)
    assert [a["key"] for a in s["summary"]["areas"] if a["counted"]] == ["equipment", "energy"]
    assert len(s["summary"]["areas"]) == 14
    devices = {d["id"]: d for d in client.get("/api/v1/enterprises/ent-1/devices", params=DAY).json()}
    assert devices["press-01"]["online_rate"] == pytest.approx(0.875)
    assert devices["press-01"]["first_seen_ms"] is not None and devices["lathe-01"]["networked"] is False
    oee = client.get("/api/v1/enterprises/ent-1/devices/press-01/oee", params=DAY).json()
    assert oee["availability"] == pytest.approx(6.5 / 7) and oee["performance"] == pytest.approx(1.0)
    assert oee["gateway"] == "gw-1" and oee["shifts"][0]["shift"] == "A"
    ev = client.get("/api/v1/enterprises/ent-1/evidence", params=DAY).json()
    assert ev["schema"] == "edgegw-evidence/1" and len(ev["devices"]) == 4
    eq = client.get("/api/v1/enterprises/ent-1/equipment").json()
    assert [e["id"] for e in eq["equipment"]] == ["press-01", "press-02", "lathe-01"]
    assert eq["import"]["row_count"] == 3
    csv_text = client.get("/api/v1/enterprises/ent-1/equipment", params={"format": "csv"}).text
    assert csv_text.startswith("id,name,type,line,key_process,digitized,gateway,device")


def test_the_overview_is_each_enterprises_summary(client: TestClient) -> None:
    ov = client.get("/api/v1/overview", params=DAY).json()
    [row] = ov["enterprises"]
    s = client.get("/api/v1/enterprises/ent-1/summary", params=DAY).json()["summary"]
    assert row["enterprise"] == {"id": "ent-1", "name": "某纺织有限公司"}
    for key in ("networked", "digitized", "online_now", "online_time", "oee_devices", "equipment_total"):
        assert row[key] == s[key], key
    assert row["networked"]["numerator"] == 1 and ov["totals"]["equipment_total"] == 3
    assert (ov["computed_from_days"], ov["computed_in_full"]) == (1, 0)
    r = client.get("/api/v1/overview", params={"from": "2024-05-02", "to": "2024-05-01"})
    assert r.status_code == 422 and "bad period" in r.text
    page = client.get("/", params={"start": "2024-05-01", "end": "2024-05-01"})  # the portal's page, same rows
    assert page.status_code == 200 and "某纺织有限公司" in page.text and "(1/3)" in page.text


def test_openapi_names_the_models_and_the_real_answers_fit_them(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):  # pages that load their scripts from a CDN: not served
        assert client.get(page).status_code == 404
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"Evidence", "Summary", "SummaryAnswer", "Device", "PeriodOee", "DeviceOee", "Health"} <= set(schemas)
    assert schemas["Device"]["additionalProperties"] is False  # every key of an answer is declared

    def schema(method: str, path: str) -> dict[str, Any]:
        answer: dict[str, Any] = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        return answer["schema"]

    for path, ops in doc["paths"].items():
        for method in ops:
            s = schema(method, path)
            assert "$ref" in s.get("items", s), f"{method.upper()} {path} declares no response model"

    ent = "/api/v1/enterprises/{ent}"
    answers = [
        ("/api/v1/health", {}),
        ("/api/v1/enterprises", {}),
        (f"{ent}/evidence", DAY),
        (f"{ent}/evidence", {"from": "2024-05-01T09:00", "to": "2024-05-01T18:00"}),  # a period still running
        (f"{ent}/summary", DAY),
        (f"{ent}/devices", DAY),
        (f"{ent}/devices/{{device}}/oee", DAY),
        (f"{ent}/equipment", {}),
        ("/api/v1/overview", DAY),
    ]
    for path, params in answers:
        r = client.get(path.format(ent="ent-1", device="press-01"), params=params)
        assert r.status_code == 200, r.text
        Draft202012Validator({**schema("get", path), "components": doc["components"]}).validate(r.json())


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "reason"),
    [
        ("get", "/api/v1/enterprises/ent-9/summary", DAY, 404, "unknown enterprise 'ent-9'"),
        ("get", "/api/v1/enterprises/ent-1/summary", {"from": "2024-05-02", "to": "2024-05-01"}, 422, "bad period"),
        ("get", "/api/v1/enterprises/ent-1/devices", {"from": "May 1st"}, 422, "is not a date"),
        ("get", "/api/v1/enterprises/ent-1/summary", {"from": "2099-01-01", "to": "2099-01-02"}, 422, "in the future"),
        ("get", "/api/v1/enterprises/ent-1/devices/nope/oee", DAY, 404, "no device 'nope'"),
        ("get", "/api/v1/enterprises/ent-1/devices/press-02/oee", DAY, 404, "no OEE settings"),
        ("get", "/api/v1/enterprises/ent-9/equipment", {}, 404, "unknown enterprise"),
        ("put", "/api/v1/enterprises/ent-1/equipment", {}, 401, "log in or send a bearer token"),
    ],
)
def test_errors_are_4xx_with_a_reason(
    client: TestClient, method: str, path: str, params: dict[str, str], status: int, reason: str
) -> None:
    no_auth = {"Authorization": "Bearer egw_00000000_wrong"} if status == 401 else {}
    r = client.request(method.upper(), path, params=params, headers=no_auth)
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"]
    assert "Traceback" not in r.text


def test_a_bad_sheet_is_refused_with_every_problem(client: TestClient) -> None:
    r = client.put(
        "/api/v1/enterprises/ent-1/equipment",
        params={"filename": "x.csv"},
        content=b"id,name,digitized\na,A,perhaps\na,B,no\n",
    )
    assert r.status_code == 422
    assert r.json()["detail"]["errors"] == [
        "x.csv:2: digitized: 'perhaps' is not yes/no (是/否, 1/0, true/false)",
        "x.csv:3: id: 'a' is already on row 2",
    ]
    # the ledger is unchanged
    assert len(client.get("/api/v1/enterprises/ent-1/equipment").json()["equipment"]) == 3


def _get(url: str, token: str = "") -> tuple[int, Any]:
    try:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_edgegw_serve_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    port = free_port()
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(
        f'ledger: {{url: "{url}"}}\napi: {{listen: "127.0.0.1:{port}"}}\n'
        'enterprises:\n  - {id: ent-1, shifts: [{name: A, start: "08:00", end: "17:00",'
        ' breaks: [{start: "12:00", end: "13:00"}]}]}\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    made = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "cloud", "user", "add", "eva", "--role", "evaluator", "-c", str(cloud)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    token = made.stdout.split("(shown once): ")[1].strip()
    listed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "cloud", "user", "list", "-c", str(cloud)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "eva" in listed.stdout and token not in listed.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "-c", str(cloud)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise AssertionError(f"edgegw serve did not listen: {out}") from None
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/api/v1"
        assert _get(f"{base}/health")[0] == 200  # open
        assert _get(f"{base}/enterprises/ent-1/summary?from=2024-05-01&to=2024-05-01")[0] == 401
        status, body = _get(f"{base}/enterprises/ent-1/summary?from=2024-05-01&to=2024-05-01", token)
        assert status == 200 and body["summary"]["networked"]["numerator"] == 1  # press-02: 37.5 % online
        assert body["summary"]["denominator_source"] == "gateway_metadata"  # no ledger imported here
        status, body = _get(f"{base}/enterprises/nobody/summary", token)
        assert status == 404 and "unknown enterprise" in body["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _edgegw(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *argv], capture_output=True, text=True, env=env)


def test_a_signed_pack_from_the_same_ledger_recomputes_and_agrees_with_the_api(
    client: TestClient, ledger_url: str, tmp_path: Path
) -> None:
    """`edgegw cloud keygen`, `evidence export`, `verify --public-key` and `recompute` as processes on the ledger
    the API reads (SQLite and PostgreSQL): the pack is signed, recomputes from its own files, and holds the same
    figures the API serves."""
    key = tmp_path / "evidence.pem"
    assert _edgegw("cloud", "keygen", "-o", str(key)).returncode == 0
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(
        f'ledger: {{url: "{ledger_url}"}}\nevidence: {{signing_key: "{key}"}}\n'
        "trust: {mode: 'off'}\n"  # the ledger is filled by the test, not by proven messages
        'enterprises:\n  - {id: ent-1, name: 某纺织有限公司, shifts: [{name: A, start: "08:00", end: "17:00",'
        ' breaks: [{start: "12:00", end: "13:00"}]}]}\n',
        encoding="utf-8",
    )
    out = tmp_path / "pack"
    made = _edgegw("evidence", "export", "--enterprise", "ent-1", "--from", "2024-05-01", "--to", "2024-05-01",
                   "-c", str(cloud), "-o", str(out))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "Traceback" not in made.stderr and "signed by the platform key" in made.stdout
    checked = _edgegw("evidence", "verify", str(out), "--public-key", f"{key}.pub")
    assert checked.returncode == 0, checked.stdout
    again = _edgegw("evidence", "recompute", str(out))
    assert again.returncode == 0, again.stdout
    pack = json.loads((out / "evidence.json").read_text())
    api = client.get("/api/v1/enterprises/ent-1/evidence", params=DAY).json()
    for answer in (pack, api):
        answer.pop("generated_at_ms")
    assert pack == api
    assert (out / "equipment" / "ledger-as-imported.csv").read_bytes() == LEDGER_CSV.encode()
    # the same pack with one figure changed and re-hashed fails verify (signature) and recompute
    manifest = json.loads((out / "manifest.json").read_text())
    ev = json.loads((out / "evidence.json").read_text())
    ev["summary"]["networked"].update(numerator=3, ratio=1.0, score=6.0, band="(60,100%]")
    (out / "evidence.json").write_text(json.dumps(ev, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    for f in manifest["files"]:
        if f["path"] == "evidence.json":
            f["sha256"] = hashlib.sha256((out / "evidence.json").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    forged = _edgegw("evidence", "verify", str(out), "--public-key", f"{key}.pub")
    assert forged.returncode == 1 and "the manifest was changed after signing" in forged.stdout
    redone = _edgegw("evidence", "recompute", str(out))
    assert redone.returncode == 1 and "summary.networked.numerator: pack 3, recomputed 1" in redone.stdout


def test_a_body_over_the_limit_sent_in_chunks_is_413_not_500(client: TestClient) -> None:
    from cloud_bridge.cloud.api.app import MAX_BODY

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is only seen as the body streams in
        for _ in range(MAX_BODY // (1 << 20) + 2):
            yield b"a" * (1 << 20)

    r = client.put("/api/v1/enterprises/ent-1/equipment", params={"filename": "x.csv"}, content=chunks())
    assert r.status_code == 413 and "request body larger than" in r.json()["detail"], r.text
    assert client.get("/api/v1/enterprises/ent-1/equipment").status_code == 200  # the ledger is as it was
