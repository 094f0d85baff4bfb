"""The evidence pack: files, manifest with SHA-256 and provenance, the platform's signature, verification that
catches edits and refuses what is not the pack's own, recomputation of every figure from the pack's files, and a
self-contained bilingual report. Every pack exported here is recomputed (`exported`)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_bridge.cloud.evidence.build import build_evidence, gather_inputs
from cloud_bridge.cloud.evidence.export import ExportError, Pack, export_pack, parse_formats, verify_pack
from cloud_bridge.cloud.evidence.models import AuditRecord
from cloud_bridge.cloud.evidence.recompute import RecomputeError, recompute_pack
from cloud_bridge.cloud.evidence.report import render_report
from cloud_bridge.cloud.evidence.signing import SigningError, fingerprint, load_public_key
from cloud_bridge.cloud.ledger.store import EvidenceStore
from edge_config.secrets import redact_url
from tests.unit.test_evidence_build import CONFIG, NOW, period, store  # noqa: F401  (the hand-built day)

KEY = Ed25519PrivateKey.generate()


def exported(db: EvidenceStore, out: Path, formats: tuple[str, ...] = ("json", "csv", "html"), **kw: object) -> Pack:
    """A pack of the hand-built day, recomputed from its own files before anything else looks at it."""
    pack = export_pack(gather_inputs(db, CONFIG, "ent-1", period(), now_ms=NOW), out, formats, **kw)  # type: ignore[arg-type]
    if "csv" in formats:
        r = recompute_pack(out)
        assert r.ok, r.differences
    return pack


@pytest.fixture
def pack(store: EvidenceStore, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    out = exported(store, tmp_path / "pack", signing_key=KEY)
    return out.computed.evidence, out


def test_files_and_manifest(pack) -> None:  # type: ignore[no-untyped-def]
    ev, out = pack
    names = {f["path"] for f in out.files}
    assert names == {
        "evidence.json",
        "report.html",
        "settings.json",
        "equipment/ledger-as-imported.csv",
        *(
            f"csv/{n}.csv"
            for n in (
                "summary",
                "devices",
                "online_intervals",
                "oee",
                "areas",
                "state_timeline",
                "events",
                "counts",
                "activity_hourly",
                "config_hashes",
                "equipment_ledger",
                "device_meta",
                "tags",
                "oee_settings",
                "gateways",
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
    assert manifest["signer"] == {"algorithm": "Ed25519", "public_key_fingerprint": fingerprint(KEY.public_key())}
    assert json.loads((out.directory / "evidence.json").read_text()) == ev.jsonable()
    # the equipment sheet the report cites is in the pack, byte for byte
    sheet = (out.directory / "equipment" / "ledger-as-imported.csv").read_bytes()
    assert hashlib.sha256(sheet).hexdigest() == manifest["ledger"]["equipment_import"]["sha256"]
    assert (out.directory / "signature.json").exists()


def test_csvs_hold_the_numbers(pack) -> None:  # type: ignore[no-untyped-def]
    _, out = pack

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO((out.directory / "csv" / name).read_text(encoding="utf-8-sig"))))

    summary = {r["indicator"]: r for r in rows("summary.csv")}
    net = summary["networked_ratio"]
    assert (net["numerator"], net["denominator"], net["score"], net["band"]) == ("1", "3", "3", "(20,40%]")
    assert "online for at least 50% of the planned operation time" in net["note"]
    assert summary["networked_ratio"]["indicator_zh"] == "生产设备联网率"
    devices = {r["id"]: r for r in rows("devices.csv")}
    assert float(devices["press-01"]["online_rate"]) == pytest.approx(0.875)
    intervals = [r for r in rows("online_intervals.csv") if r["id"] == "press-01"]
    assert sum(float(r["seconds"]) for r in intervals) == 23 * 3600
    oee = [r for r in rows("oee.csv") if r["id"] == "press-01"]
    assert [r["scope"] for r in oee] == ["period", "shift"] and float(oee[0]["availability"]) == pytest.approx(6.5 / 7)
    events = [r for r in rows("events.csv") if r["device"] == "press-01"]
    kinds = [r["kind"] for r in events if r["boundary"] == "in"]
    assert kinds.count("offline") == 1 and kinds.count("online") == 1
    # the online event of the night before is what the maths starts from: in the pack, marked as such
    assert [(r["kind"], r["boundary"]) for r in events if r["boundary"] != "in"] == [("online", "before")]
    counts = [r for r in rows("counts.csv") if r["device"] == "press-01"]
    assert len([r for r in counts if r["kind"] == "snapshot" and r["boundary"] == "in"]) == 10
    assert [(r["kind"], r["boundary"]) for r in counts if r["boundary"] != "in"] == [
        ("state", "before"),  # idle since 23:00 the night before
        ("snapshot", "after"),  # midnight: the production up to the end of the day
    ]
    timeline = [r for r in rows("state_timeline.csv") if r["id"] == "press-01"]
    assert {r["state"] for r in timeline} == {"idle", "running", "offline", "fault"}
    assert sum(float(r["seconds"]) for r in timeline) == 24 * 3600
    assert sum(float(r["seconds"]) for r in timeline if r["state"] == "fault" and r["plan"] == "work") == 1800
    settings = [r for r in rows("oee_settings.csv")]
    assert [(r["device"], r["ideal_cycle_time_s"], r["counter_max"]) for r in settings] == [("press-01", "1", "65535")]
    hourly = [r for r in rows("activity_hourly.csv") if r["device"] == "press-01"]
    assert sum(int(r["samples"]) for r in hourly) == 2


def test_verify_catches_edits_additions_removals_and_a_replaced_manifest(pack) -> None:  # type: ignore[no-untyped-def]
    _, out = pack
    d = out.directory
    ok = verify_pack(d, out.manifest_sha256)
    assert ok.ok and ok.proven and ok.problems == [] and ok.files == 19
    (d / "csv" / "summary.csv").write_bytes((d / "csv" / "summary.csv").read_bytes().replace(b"0.333333", b"0.666667"))
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


@pytest.mark.parametrize("raw", [bytes(32), bytes([1]) + bytes(31)], ids=["zero", "identity"])
def test_a_small_order_public_key_is_refused_as_a_trusted_key(tmp_path: Path, raw: bytes) -> None:
    """`evidence verify --public-key`: a key under which OpenSSL takes signatures nobody made (the registry's
    test shows it) proves nothing; it is refused with the reason instead of checked against."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = tmp_path / "platform.pub"
    key = Ed25519PublicKey.from_public_bytes(raw)
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(SigningError, match="small-order or non-canonical Ed25519 key: it proves no signature"):
        load_public_key(path)


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
    out = exported(store, tmp_path / "html-only", ("html",))
    assert [f["path"] for f in out.files] == ["report.html"]
    assert verify_pack(out.directory).ok
    with pytest.raises(RecomputeError, match=r"settings\.json: missing — the pack was exported without its inputs"):
        recompute_pack(out.directory)
    with pytest.raises(ExportError, match="not empty"):
        exported(store, out.directory, ("json",))
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
        "3</span> / 6",
        "(20,40%]",
        "数据采集业务环节",
        "人力资源",
        "A（含离线）",
        "online for at least 50%",
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


def _rehash(d: Path, name: str) -> None:
    """What a forger does after editing a file: the manifest's entry made to match it again."""
    manifest = json.loads((d / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"] == name:
            data = (d / name).read_bytes()
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (d / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def test_a_figure_changed_and_rehashed_fails_verify_and_recompute(pack) -> None:  # type: ignore[no-untyped-def]
    """The attack of issue #11: summary.csv's networked ratio edited and its manifest entry re-hashed."""
    _, out = pack
    d = out.directory
    assert verify_pack(d, public_key=KEY.public_key()).proven
    summary = d / "csv" / "summary.csv"
    summary.write_bytes(
        summary.read_bytes().replace(
            b"networked equipment ratio,0.333333,1,3,3,", b"networked equipment ratio,1,3,3,6,"
        )
    )
    _rehash(d, "csv/summary.csv")
    v = verify_pack(d, public_key=KEY.public_key())
    assert not v.ok and not v.proven
    assert v.problems == [
        "signature.json: the signature does not match manifest.json with the trusted key "
        f"{fingerprint(KEY.public_key())} (the manifest was changed after signing)"
    ]
    unanchored = verify_pack(d)  # the files match the re-written manifest: nothing says whose it is
    assert unanchored.ok and not unanchored.proven
    r = recompute_pack(d)
    assert not r.ok
    assert "csv/summary.csv:2 (networked_ratio) value: pack '1', recomputed '0.333333'" in r.differences
    assert "csv/summary.csv:2 (networked_ratio) score: pack '6', recomputed '3'" in r.differences


def test_unsigned_or_signed_by_another_key(store: EvidenceStore, tmp_path: Path) -> None:  # noqa: F811
    unsigned = exported(store, tmp_path / "unsigned")
    assert not (unsigned.directory / "signature.json").exists()
    v = verify_pack(unsigned.directory, public_key=KEY.public_key())
    assert not v.ok and v.problems == ["signature.json: missing — the pack is unsigned"]
    other = Ed25519PrivateKey.generate()
    theirs = exported(store, tmp_path / "theirs", signing_key=other)
    v = verify_pack(theirs.directory, public_key=KEY.public_key())
    assert not v.ok and "(signed by another key)" in v.problems[0] and v.signer == fingerprint(other.public_key())
    # a signature copied from another pack does not sign this manifest
    (unsigned.directory / "signature.json").write_bytes((theirs.directory / "signature.json").read_bytes())
    assert not verify_pack(unsigned.directory, public_key=other.public_key()).ok


def test_verify_refuses_links_special_files_and_paths_that_leave_the_pack(pack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, out = pack
    d = out.directory
    outside = tmp_path / "outside.csv"
    outside.write_bytes((d / "csv" / "areas.csv").read_bytes())  # the same bytes: the hash alone would pass
    (d / "csv" / "areas.csv").unlink()
    (d / "csv" / "areas.csv").symlink_to(outside)
    v = verify_pack(d, public_key=KEY.public_key())
    assert "csv/areas.csv: a symbolic link (refused: a pack holds its own files)" in v.problems and not v.ok
    with pytest.raises(RecomputeError, match="symbolic link"):
        recompute_pack(d)
    (d / "csv" / "areas.csv").unlink()
    (d / "csv" / "areas.csv").write_bytes(outside.read_bytes())
    assert verify_pack(d, public_key=KEY.public_key()).proven
    linked_dir = tmp_path / "elsewhere"
    linked_dir.mkdir()
    (d / "more").symlink_to(linked_dir)
    assert "more: a symbolic link (refused: a pack holds its own files)" in verify_pack(d).problems
    (d / "more").unlink()
    os.mkfifo(d / "pipe")
    assert "pipe: not a regular file (refused)" in verify_pack(d).problems
    (d / "pipe").unlink()
    manifest = json.loads((d / "manifest.json").read_text())
    for bad in (
        "../outside.csv",
        "/etc/passwd",
        "csv/../../outside.csv",
        "csv\\..\\x",
        "./evidence.json",
        "signature.json",
    ):
        m = {**manifest, "files": [*manifest["files"], {"path": bad, "sha256": "0" * 64, "bytes": 0}]}
        (d / "manifest.json").write_text(json.dumps(m))
        v = verify_pack(d)
        assert any(p.startswith(f"manifest.json: bad file entry {{'path': {bad!r}") for p in v.problems), (
            bad,
            v.problems,
        )
    m = {**manifest, "files": [*manifest["files"], manifest["files"][0]]}
    (d / "manifest.json").write_text(json.dumps(m))
    assert f"manifest.json: {manifest['files'][0]['path']} is listed twice" in verify_pack(d).problems


def test_recompute_catches_edited_inputs_and_figures(store: EvidenceStore, tmp_path: Path) -> None:  # noqa: F811
    def fresh(name: str) -> Path:
        return exported(store, tmp_path / name, signing_key=KEY).directory

    # a counter reading changed: the OEE computed from the inputs no longer gives the figures in the pack
    d = fresh("counts")
    counts = d / "csv" / "counts.csv"
    counts.write_bytes(counts.read_bytes().replace(b",snapshot,,30600,", b",snapshot,,32600,"))  # 17:00
    diffs = recompute_pack(d).differences
    assert any(x.startswith("evidence.json: devices[0].oee.performance: pack 1.0, recomputed") for x in diffs), diffs
    assert any(x.startswith("csv/oee.csv:2 (press-01) performance: pack '1', recomputed") for x in diffs), diffs
    # the boundary row before the period removed: press-01's night-before online is lost
    d = fresh("boundary")
    events = d / "csv" / "events.csv"
    events.write_bytes(
        b"".join(line for line in events.read_bytes().splitlines(keepends=True) if b",before" not in line)
    )
    diffs = recompute_pack(d).differences
    assert "evidence.json: devices[0].oee.observed: pack 0.875, recomputed 0.625" in diffs, diffs
    # evidence.json edited
    d = fresh("json")
    ev = json.loads((d / "evidence.json").read_text())
    ev["summary"]["networked"]["numerator"] = 3
    (d / "evidence.json").write_text(json.dumps(ev))
    assert recompute_pack(d).differences == ["evidence.json: summary.networked.numerator: pack 3, recomputed 1"]
    # the equipment sheet as imported swapped for another
    d = fresh("sheet")
    (d / "equipment" / "ledger-as-imported.csv").write_text("id,name\npress-01,Press 1\n")
    diffs = recompute_pack(d).differences
    assert diffs[0].startswith("equipment/ledger-as-imported.csv: SHA-256 ") and "not the imported sheet's" in diffs[0]
    assert "csv/equipment_ledger.csv: its rows are not those of equipment/ledger-as-imported.csv" in diffs[1]
    # an input that does not read back is bad input, not a difference
    d = fresh("broken")
    (d / "csv" / "tags.csv").write_text("name\nx\n")
    with pytest.raises(RecomputeError, match=r"^csv/tags.csv:1: the header is not gateway,device,tag,"):
        recompute_pack(d)


def test_the_audit_goes_into_the_pack_and_its_report(store: EvidenceStore, tmp_path: Path) -> None:  # noqa: F811
    audit = AuditRecord(status="failed", summary="2 messages missing from the ledger", report={"ok": False})
    out = exported(store, tmp_path / "audited", audit=audit)
    assert json.loads((out.directory / "audit.json").read_text())["status"] == "failed"
    assert json.loads((out.directory / "manifest.json").read_text())["audit"]["summary"] == audit.summary
    html = (out.directory / "report.html").read_text()
    assert "未通过" in html and "FAILED" in html and "2 messages missing from the ledger" in html and "未签名" in html


@pytest.mark.parametrize(
    ("name", "edit", "reason"),
    [
        ("csv/counts.csv", lambda b: b + b"x" * 200_000 + b"\r\n", "csv/counts.csv: not a CSV table (field larger"),
        ("csv/events.csv", lambda b: b"\xff\xfe" + b, "csv/events.csv: not UTF-8"),
        ("csv/gateways.csv", lambda b: b.replace(b"gw-1,", b"gw-1,maybe,", 1), "csv/gateways.csv:2: 11 cells, not 10"),
        ("settings.json", lambda b: b[:40], "settings.json: "),
        ("settings.json", lambda b: b.replace(b'"Asia/Shanghai"', b'"Mars/Olympus"'), "the inputs do not make figures"),
        ("csv/equipment_ledger.csv", lambda b: b"name\nx\n", "the header needs a 'id' column"),
    ],
)
def test_a_pack_that_does_not_read_is_refused_with_its_reason(
    store: EvidenceStore,  # noqa: F811
    tmp_path: Path,
    name: str,
    edit: Any,
    reason: str,
) -> None:
    d = exported(store, tmp_path / "p").directory
    (d / name).write_bytes(edit((d / name).read_bytes()))
    with pytest.raises(RecomputeError, match=re.escape(reason)):
        recompute_pack(d)
