"""The evidence pack: files, manifest with SHA-256 and provenance, verification that catches edits, and a
self-contained bilingual report."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_bridge.cloud.evidence.build import build_evidence
from cloud_bridge.cloud.evidence.export import ExportError, export_pack, parse_formats, verify_pack
from cloud_bridge.cloud.evidence.report import render_report
from cloud_bridge.cloud.ledger.store import EvidenceStore
from edge_config.secrets import redact_url
from tests.unit.test_evidence_build import CONFIG, NOW, period, store  # noqa: F401  (the hand-built day)


@pytest.fixture
def pack(store: EvidenceStore, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    p = period()
    ev = build_evidence(store, CONFIG, "ent-1", p, now_ms=NOW)
    return ev, export_pack(ev, store, p, tmp_path / "pack")


def test_files_and_manifest(pack) -> None:  # type: ignore[no-untyped-def]
    ev, out = pack
    names = {f["path"] for f in out.files}
    assert names == {
        "evidence.json",
        "report.html",
        *(
            f"csv/{n}.csv"
            for n in (
                "summary",
                "devices",
                "online_intervals",
                "oee",
                "areas",
                "events",
                "counts",
                "activity_hourly",
                "config_hashes",
                "equipment_ledger",
            )
        ),
    }
    manifest = json.loads((out.directory / "manifest.json").read_text())
    for f in manifest["files"]:
        data = (out.directory / f["path"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
    assert out.manifest_sha256 == hashlib.sha256((out.directory / "manifest.json").read_bytes()).hexdigest()
    assert manifest["enterprise"]["id"] == "ent-1" and manifest["period"]["timezone"] == "Asia/Shanghai"
    assert manifest["gateways"] == [{"gateway": "gw-1", "config_hashes": ["c" * 64]}]
    assert manifest["ledger"]["equipment_import"]["source"] == "ledger.csv"
    assert json.loads((out.directory / "evidence.json").read_text()) == ev.jsonable()


def test_csvs_hold_the_numbers(pack) -> None:  # type: ignore[no-untyped-def]
    _, out = pack

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO((out.directory / "csv" / name).read_text(encoding="utf-8-sig"))))

    summary = {r["indicator"]: r for r in rows("summary.csv")}
    net = summary["networked_ratio"]
    assert (net["numerator"], net["denominator"], net["score"], net["band"]) == ("2", "3", "6", "(60,100%]")
    assert summary["networked_ratio"]["indicator_zh"] == "生产设备联网率"
    devices = {r["id"]: r for r in rows("devices.csv")}
    assert float(devices["press-01"]["online_rate"]) == pytest.approx(0.875)
    intervals = [r for r in rows("online_intervals.csv") if r["id"] == "press-01"]
    assert sum(float(r["seconds"]) for r in intervals) == 23 * 3600
    oee = [r for r in rows("oee.csv") if r["id"] == "press-01"]
    assert [r["scope"] for r in oee] == ["period", "shift"] and float(oee[0]["availability"]) == pytest.approx(6.5 / 7)
    kinds = [r["kind"] for r in rows("events.csv") if r["device"] == "press-01"]
    assert kinds.count("offline") == 1 and kinds.count("online") == 1  # the one before the period is not in it
    assert len([r for r in rows("counts.csv") if r["kind"] == "snapshot"]) == 10
    hourly = [r for r in rows("activity_hourly.csv") if r["device"] == "press-01"]
    assert sum(int(r["samples"]) for r in hourly) == 2


def test_verify_catches_edits_additions_removals_and_a_replaced_manifest(pack) -> None:  # type: ignore[no-untyped-def]
    _, out = pack
    d = out.directory
    ok = verify_pack(d, out.manifest_sha256)
    assert ok.ok and ok.problems == [] and ok.files == 12
    (d / "csv" / "summary.csv").write_bytes((d / "csv" / "summary.csv").read_bytes().replace(b"0.666667", b"0.766667"))
    (d / "extra.txt").write_text("x")
    (d / "csv" / "areas.csv").unlink()
    v = verify_pack(d)
    assert not v.ok
    assert any(p.startswith("csv/summary.csv: SHA-256") and "(edited)" in p for p in v.problems)
    assert "extra.txt: not listed in the manifest (added)" in v.problems
    assert "csv/areas.csv: missing" in v.problems
    # someone rewrites the manifest to match: only the hash noted on receipt catches it
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "csv/summary.csv"]
    (d / "manifest.json").write_text(json.dumps(manifest))
    v = verify_pack(d, out.manifest_sha256)
    assert any("manifest edited?" in p for p in v.problems)


def test_verify_refuses_what_is_not_a_pack(tmp_path: Path) -> None:
    assert not verify_pack(tmp_path).ok
    (tmp_path / "manifest.json").write_text('{"files": [{"path": "../etc/passwd", "sha256": "00"}]}')
    v = verify_pack(tmp_path)
    assert not v.ok and "not an edgegw evidence manifest" in v.problems[0]


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"schema": "edgegw-evidence-manifest/1"}',
        b'{"schema": "edgegw-evidence-manifest/1", "files": {}}',
        b'{"schema": "something-else/1", "files": []}',
    ],
)
def test_verify_refuses_manifests_of_the_wrong_shape(tmp_path: Path, manifest: bytes) -> None:
    (tmp_path / "manifest.json").write_bytes(manifest)
    v = verify_pack(tmp_path)
    assert (v.ok, v.problems, v.files) == (False, ["manifest.json: not an edgegw evidence manifest"], 0)


def test_verify_checks_the_manifest_under_python_optimize(tmp_path: Path) -> None:
    """python -O drops assert statements: the checks must not be asserts."""
    (tmp_path / "manifest.json").write_text('{"schema": "something-else/1", "files": []}')
    code = "import sys; from cloud_bridge.cloud.evidence.export import verify_pack; print(verify_pack(sys.argv[1]).ok)"
    out = subprocess.run([sys.executable, "-O", "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_formats_and_a_non_empty_directory(store: EvidenceStore, tmp_path: Path) -> None:  # noqa: F811
    p = period()
    ev = build_evidence(store, CONFIG, "ent-1", p, now_ms=NOW)
    out = export_pack(ev, store, p, tmp_path / "html-only", ["html"])
    assert [f["path"] for f in out.files] == ["report.html"]
    assert verify_pack(out.directory).ok
    with pytest.raises(ExportError, match="not empty"):
        export_pack(ev, store, p, out.directory, ["json"])
    assert parse_formats("csv, HTML,csv") == ["csv", "html"]
    with pytest.raises(ExportError, match="pdf"):
        parse_formats("json,pdf")


def test_report_is_self_contained_and_bilingual(store: EvidenceStore) -> None:  # noqa: F811
    html = render_report(build_evidence(store, CONFIG, "ent-1", period(), now_ms=NOW))
    for text in (
        "生产设备联网率",
        "networked equipment ratio",
        "生产设备数字化率",
        "设备在线时间线",
        "Online timeline per device",
        "设备综合效率",
        "某纺织有限公司",
        "6</span> / 6",
        "(60,100%]",
        "press-01",
        "lathe-01",
    ):
        assert text in html, text
    assert html.count("<svg") == 3  # timeline, OEE bars, time breakdown
    assert "<script" not in html and not re.search(r"(src|href)=\"https?:", html)
    assert "@page" in html and "@media print" in html


def test_redact_url() -> None:
    assert redact_url("postgresql://edgegw:s3cret@db:5432/ledger") == "postgresql://edgegw:***@db:5432/ledger"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
