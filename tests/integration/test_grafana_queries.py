"""Every query of the Grafana dashboards (deploy/grafana/dashboards/) is one VictoriaMetrics parses: asked of a
real VictoriaMetrics with Grafana's variables filled in, none is refused (422), and the `sf_v` panels of the
loom dashboard find the series the ingester wrote."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cloud_bridge.cloud.ingest.tsdb import TsdbWriter
from cloud_bridge.wire.codec import DataMessage, Sample
from edge_config.models import InfluxSection
from tests.servers import VictoriaMetrics, wait_for_samples
from tests.unit.test_grafana import DASHBOARDS, GRAFANA, queries

pytestmark = pytest.mark.integration


def grafana_vars(expr: str) -> str:
    """The query as Grafana would send it, variables filled in with "everything"."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return re.sub(r"\$\w+", ".*", expr)


def ask(vm: VictoriaMetrics, expr: str) -> tuple[int, dict[str, object]]:
    if expr.startswith("label_values("):  # a Grafana function: its series selector is what VM sees
        expr = expr[len("label_values(") :].rsplit(",", 1)[0]
    url = f"{vm.url}/api/v1/query?" + urllib.parse.urlencode({"query": grafana_vars(expr), "time": int(time.time())})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_victoria_parses_every_dashboard_query(victoria: VictoriaMetrics) -> None:
    now = int(time.time() * 1000)
    writer = TsdbWriter(InfluxSection(url=victoria.url))
    try:
        msg = DataMessage(
            "gw-1", "loom-01", 1, False, (Sample("speed", 312.5, now - 1000), Sample("picks_total", 10, now))
        )
        writer.write_lines(writer.lines("ent-1", msg))
    finally:
        writer.close()
    wait_for_samples(victoria, '{__name__="sf_v"}', 2)
    for path in DASHBOARDS:
        for where, expr in queries(json.loads(path.read_text(encoding="utf-8"))):
            status, body = ask(victoria, expr)
            assert status == 200, f"{where}: {expr}: {body}"
    loom = json.loads((GRAFANA / "dashboards" / "air-jet-loom.json").read_text(encoding="utf-8"))
    status, body = ask(victoria, next(e for _, e in queries(loom) if 'tag="speed"' in e))
    assert status == 200 and body["data"]["result"], body  # type: ignore[index]


def test_scrape_config_is_accepted_by_victoria() -> None:
    out = subprocess.run(
        ["victoria-metrics", f"-promscrape.config={GRAFANA / 'scrape.yaml'}", "-promscrape.config.dryRun"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
