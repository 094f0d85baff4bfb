"""Property-based fuzz of both APIs over their OpenAPI documents (schemathesis + hypothesis): the edge API
on a real `Agent` (built, not started) and the evidence API on a real SQLite ledger holding the test day,
both as an admin. Every operation gets a bounded number of generated requests (path and query parameters,
headers, bodies where the document describes one); none may be answered with a 5xx, and every answer
must match the document (status code declared, body of the declared schema, content type).

The console's and the portal's pages and forms (left out of the documents) are fuzzed the same way from a
document made of their routes, for no 5xx; whatever would connect somewhere is pointed at loopback."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from cloud_bridge.cloud.api.app import create_cloud_app
from edge_config.models import GatewayConfig
from gateway.agent import Agent
from gateway.api.app import create_app
from tests.integration.test_cloud_api import add_user, config
from tests.unit.test_evidence_build import LEDGER_CSV, fill_day

pytestmark = pytest.mark.integration
DEVICE = {
    "id": "loom-01",
    "driver": "modbus_tcp",
    "type": "air_jet_loom",
    "connection": {"host": "127.0.0.1", "port": 1},
    "tags": [{"name": "run_state", "address": "40001"}, {"name": "picks", "address": "40002", "type": "uint32"}],
    "oee": {
        "state_tag": "run_state",
        "states": {"running": [1], "idle": [0]},
        "total_count_tag": "picks",
        "ideal_cycle_time": "0.1s",
    },
}
EXAMPLES = 40  # per operation: both APIs in well under a minute on 2 cores
# Values that exist, often drawn instead of the generated ones, so that requests get past the 404s into the
# handlers; the others stay whatever the schema allows (hypothesis favours the first of a sampled list).
PERIOD = {
    "from": ["2024-05-01", "2024-05-01T08:00", "2024-05-01T08:00+08:00", "1714521600000", "2024-02-30", "0"],
    "to": ["2024-05-01", "2024-05-02T00:00", "1714608000000", "2023-01-01", "99999999999999999999"],
}
EDGE_KNOWN = {
    "device_id": ["loom-01"],
    "dev_id": ["loom-01", "_new"],
    "device": ["loom-01"],
    "ext": ["csv", "xlsx"],
    "kind": ["modbus", "opcua"],
    "name": ["admin", "viewer"],
    **PERIOD,
}
CLOUD_KNOWN = {
    "ent": ["ent-1"],
    "device": ["press-01", "press-02", "loom-01"],
    "gateway": ["gw-1"],
    "format": ["csv", "json"],
    "filename": ["ledger.csv", "ledger.xlsx", "ledger.txt"],
    **PERIOD,
}


# Where a page would connect to what a request names (the Modbus test read, the OPC UA browse), always this
# machine: the fuzz sends no traffic beyond loopback.
LOOPBACK = {"host": "127.0.0.1", "endpoint": "opc.tcp://127.0.0.1:1"}


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        inner = getattr(r, "original_router", None)  # FastAPI keeps included routers whole
        if inner is not None:
            yield from _api_routes(inner.routes)


def pages_only(app: FastAPI) -> None:
    """Make the app's OpenAPI document describe its pages and forms (left out of it) instead of its API: the
    fuzz then sends them generated paths, queries and form fields."""
    routes = []
    for r in _api_routes(app.routes):
        if not r.include_in_schema:
            r = copy.copy(r)
            r.include_in_schema = True
            routes.append(r)
    document = get_openapi(title=app.title, version=app.version, routes=routes)
    app.openapi = lambda: document  # type: ignore[method-assign]


def fuzz(
    app: FastAPI, headers: dict[str, str], known: dict[str, list[str]], *, pages: bool = False, examples: int = EXAMPLES
) -> dict[str, int]:
    """Every operation of the app's OpenAPI document, `examples` generated requests each; the statuses seen.
    With `pages`, the pages and forms instead, checked for no 5xx (HTML and redirects the document cannot
    describe)."""
    if pages:
        pages_only(app)
    schema = schemathesis.openapi.from_dict(app.openapi())  # in-process: the edge serves no /openapi.json
    schema.app = app
    seen: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(), data=st.data())
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,  # the same requests every run: a failure is reproducible
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def one(case: Any, data: st.DataObject) -> None:
            path, query = dict(case.path_parameters or {}), dict(case.query or {})
            for params, names in ((path, list(path)), (query, list(known))):
                for name in names:
                    pick = data.draw(st.sampled_from([*known.get(name, []), None]))  # None: as generated
                    if pick is not None:
                        params[name] = pick
            for params in (path, query, case.body if isinstance(case.body, dict) else {}):
                params.update({k: v for k, v in LOOPBACK.items() if k in params or params is query})
            case.path_parameters, case.query = path, query
            if case.method == "PUT":
                body = data.draw(
                    st.sampled_from([LEDGER_CSV, LEDGER_CSV.encode("gb18030"), b"PK\x03\x04 no zip", None])
                )
                if body is not None:
                    case.body = body
            response = case.call(headers=headers)
            key = f"{case.method} {case.path} {response.status_code}"
            seen[key] = seen.get(key, 0) + 1
            assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.query}: {response.text}"
            # the conformance checks: status code documented, body of the documented schema, content type, headers;
            # not whether the data was accepted: a period the schema can only call a string may still be no date,
            # and the values put in above are not what schemathesis generated
            if not pages:
                case.validate_response(response, excluded_checks=[positive_data_acceptance, negative_data_rejection])

        one()
    return seen


@pytest.fixture
def edge_app(tmp_path: Path) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    cfg = GatewayConfig.model_validate(
        {"gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path)}, "devices": [DEVICE]}
    )
    (tmp_path / "gateway.yaml").write_text("gateway: {id: gw-1, enterprise_id: ent-1}\n")
    agent = Agent(cfg, config_path=tmp_path / "gateway.yaml")
    agent.users.add("admin", "admin", "admin-pw")
    app = create_app(agent)
    with TestClient(app):
        yield app, {"Authorization": f"Bearer {agent.users.add_token('admin')}"}
    agent.buffer.close()
    agent.runtime.history.close()


@pytest.fixture
def cloud_app(tmp_path: Path) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    token = add_user(url, "admin", "admin", [])
    app = create_cloud_app(config(url))
    with TestClient(app):  # runs the lifespan: the store, users and sessions
        yield app, {"Authorization": f"Bearer {token}"}


def test_edge_api_fuzz(edge_app: tuple[FastAPI, dict[str, str]]) -> None:
    seen = fuzz(*edge_app, EDGE_KNOWN)
    assert "GET /api/v1/metrics/oee 200" in seen and "GET /api/v1/devices/{device_id} 200" in seen, seen


def test_cloud_api_fuzz(cloud_app: tuple[FastAPI, dict[str, str]]) -> None:
    seen = fuzz(*cloud_app, CLOUD_KNOWN)
    assert "PUT /api/v1/enterprises/{ent}/equipment 200" in seen, seen
    assert "GET /api/v1/enterprises/{ent}/devices/{device}/oee 200" in seen, seen


def test_edge_pages_fuzz(edge_app: tuple[FastAPI, dict[str, str]]) -> None:
    seen = fuzz(*edge_app, EDGE_KNOWN, pages=True, examples=15)
    assert "GET /devices/{dev_id} 200" in seen and "POST /users/{name}/token 200" in seen, seen
    assert "GET /editor/template.{ext} 200" in seen and "POST /editor/apply 200" in seen, seen


def test_portal_pages_fuzz(cloud_app: tuple[FastAPI, dict[str, str]]) -> None:
    seen = fuzz(*cloud_app, CLOUD_KNOWN, pages=True, examples=15)
    assert "GET /enterprises/{ent} 200" in seen and "GET /enterprises/{ent}/pack.zip 200" in seen, seen
