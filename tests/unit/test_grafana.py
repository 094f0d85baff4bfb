"""The Grafana provisioning in deploy/grafana/, checked statically: the JSON loads, every dashboard and panel
uses the provisioned datasource's uid, and every metric a query names is one our `/metrics` outputs give
(the gateway's, the ingester's, the evidence API's: generated here from the real registries) or the
`sf_v` series the ingester writes. (tests/integration/test_grafana_queries.py has VictoriaMetrics parse
every query.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloud_bridge.cloud.api.prom import ApiMetrics
from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ingest.metrics import registry_for as ingest_registry
from edge_config.models import CloudConfig, GatewayConfig
from gateway.agent import Agent
from gateway.api.prom import registry_for as edge_registry

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SERIES = {"sf_v"}  # what the ingester writes to the TSDB (measurement sf, field v)
# PromQL / MetricsQL words that are not metric names
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, query) of every panel target and every query variable."""
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            yield f"{dashboard['uid']}/{panel['title']}", t["expr"]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            yield f"{dashboard['uid']}/${v['name']}", v["query"]["query"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL/MetricsQL expression selects: identifiers that are not functions, keywords,
    label names (inside {} and by/without/on/ignoring lists), durations or Grafana variables."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\w+", "", e)  # Grafana variables
    e = re.sub(r"\blabel_values\s*\(([^,()]*),[^)]*\)", r"(\1)", e)  # label_values(metric, label)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", e):
        if m.group(2) is None and m.group(1) not in KEYWORDS:
            names.add(m.group(1))
    return names


def test_metric_names_parser() -> None:
    assert metric_names('sum by (le, type) (rate(edgegw_x_bucket{type=~"a|b"}[5m]))') == {"edgegw_x_bucket"}
    assert metric_names('label_values(sf_v{ent=~"$ent", tag="x"}, dev)') == {"sf_v"}
    assert metric_names("count(a == 0) or vector(0)") == {"a"}
    assert metric_names("60 * rate(b[$__rate_interval]) / on (dev) c") == {"b", "c"}


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name our three `/metrics` give, from the real registries (each histogram and
    labelled metric observed once, so that its samples appear)."""
    tmp = tmp_path_factory.mktemp("metrics")
    edge = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp / "edge")},
            "devices": [
                {
                    "id": "loom-01",
                    "driver": "modbus_tcp",
                    "type": "air_jet_loom",
                    "connection": {"host": "127.0.0.1"},
                    "tags": [{"name": "speed", "address": "40001"}],
                },
            ],
        }
    )
    agent = Agent(edge, config_path=tmp / "gateway.yaml")
    agent.runtime.scan_times["loom-01"].observe(0.01)
    ingester = Ingester(CloudConfig.model_validate({"ledger": {"url": f"sqlite:///{tmp}/ledger.db"}}))
    ingester.metrics.newest_sample_ms = 1
    for store in ("tsdb", "ledger"):
        ingester.metrics.store_seconds.labels(store).observe(0.01)
    api = ApiMetrics()
    api.requests.labels("GET", "/", "200").inc()
    api.seconds.labels("GET", "/").observe(0.01)
    try:
        texts = [generate_latest(r).decode() for r in (edge_registry(agent), ingest_registry(ingester), api.registry)]
    finally:
        agent.buffer.close()
        agent.runtime.history.close()
        ingester.ledger.close()
    return {s.name for text in texts for f in text_string_to_metric_families(text) for s in f.samples}


def test_provisioning_files_load_and_name_one_datasource() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "edgegw.yaml").read_text(encoding="utf-8"))
    [source] = ds["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "edgegw-vm"
    dash = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "edgegw.yaml").read_text(encoding="utf-8"))
    assert dash["providers"][0]["type"] == "file" and dash["providers"][0]["options"]["path"]
    assert {p.stem for p in DASHBOARDS} >= {"fleet", "air-jet-loom", "chemicals"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard(path: Path, exposed: set[str]) -> None:
    uid = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "edgegw.yaml").read_text())["datasources"][0][
        "uid"
    ]
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["uid"] and d["title"] and d["panels"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in d["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == uid, panel["title"]
    for v in d["templating"]["list"]:
        assert v["datasource"]["uid"] == uid, v["name"]
    known = exposed | SERIES
    for where, expr in queries(d):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - known
        assert not unknown, f"{where}: {sorted(unknown)} not in any /metrics output nor sf_v: {expr}"
