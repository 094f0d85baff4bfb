"""`edgegw evidence export|verify|import-equipment` and `edgegw serve`: exit codes and messages."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.cloud.trust.audit import AuditFinding, AuditReport
from gateway.cli import main
from tests.unit.test_evidence_build import LEDGER_CSV, fill_day


@pytest.fixture
def cloud(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    cfg = tmp_path / "cloud.yaml"
    cfg.write_text(
        f'ledger: {{url: "{url}"}}\n'
        "trust: {mode: 'off'}\n"  # a ledger filled by the test, not by proven messages: nothing to audit
        "enterprises:\n"
        '  - {id: ent-1, name: 某纺织有限公司, shifts: [{name: A, start: "08:00", end: "17:00",'
        ' breaks: [{start: "12:00", end: "13:00"}]}]}\n',
        encoding="utf-8",
    )
    return cfg


def test_import_export_verify(cloud: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "ledger.csv"
    sheet.write_text(LEDGER_CSV, encoding="utf-8")
    assert main(["evidence", "import-equipment", str(sheet), "--enterprise", "ent-1", "-c", str(cloud)]) == 0
    assert "3 rows from ledger.csv" in capsys.readouterr().out
    out = tmp_path / "pack"
    argv = ["evidence", "export", "--enterprise", "ent-1", "--from", "2024-05-01", "--to", "2024-05-01"]
    assert main([*argv, "-c", str(cloud), "-o", str(out), "--format", "csv,html"]) == 0
    printed = capsys.readouterr().out
    assert "networked equipment ratio: 1/3 = 33.3% → 3 points" in printed
    assert "online for at least 50% of the planned operation time" in printed
    assert "ledger audit not available" in printed and "unsigned: no evidence.signing_key" in printed
    m = re.search(r"manifest.json SHA-256: ([0-9a-f]{64})", printed)
    assert m and not (out / "evidence.json").exists() and (out / "report.html").exists()
    assert main(["evidence", "recompute", str(out)]) == 0
    assert "recomputed: every figure matches" in capsys.readouterr().out
    assert main(["evidence", "verify", str(out), "--expect", m.group(1)]) == 0
    assert "intact: 19 files" in capsys.readouterr().out
    assert main(["evidence", "verify", str(out), "--expect", "0" * 64]) == 1
    assert "NOT intact" in capsys.readouterr().out
    assert main(["evidence", "verify", str(out)]) == 3  # nothing to anchor the manifest to
    assert "integrity unproven" in capsys.readouterr().out


def test_a_signed_pack_and_a_forged_one(cloud: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "keys" / "evidence.pem"
    key.parent.mkdir()
    assert main(["cloud", "keygen", "-o", str(key)]) == 0
    made = capsys.readouterr().out
    assert oct(key.stat().st_mode & 0o777) == "0o600" and (tmp_path / "keys" / "evidence.pem.pub").exists()
    fp = re.search(r"fingerprint: (sha256:[0-9a-f]{64})", made)
    assert fp and main(["cloud", "keygen", "-o", str(key)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    cloud.write_text(cloud.read_text() + f'evidence: {{signing_key: "{key}"}}\n', encoding="utf-8")
    sheet = tmp_path / "ledger.csv"
    sheet.write_text(LEDGER_CSV, encoding="utf-8")
    assert main(["evidence", "import-equipment", str(sheet), "--enterprise", "ent-1", "-c", str(cloud)]) == 0
    out = tmp_path / "pack"
    argv = ["evidence", "export", "--enterprise", "ent-1", "--from", "2024-05-01", "--to", "2024-05-01"]
    assert main([*argv, "-c", str(cloud), "-o", str(out)]) == 0
    assert f"signed by the platform key: Ed25519 {fp.group(1)}" in capsys.readouterr().out
    pub = ["--public-key", str(tmp_path / "keys" / "evidence.pem.pub")]
    assert main(["evidence", "verify", str(out), *pub]) == 0
    assert f"signature valid (trusted key): {fp.group(1)}" in capsys.readouterr().out
    assert main(["evidence", "recompute", str(out)]) == 0
    capsys.readouterr()
    # one figure changed, its manifest entry re-hashed: the signature no longer holds, the recomputation differs
    summary = out / "csv" / "summary.csv"
    summary.write_bytes(summary.read_bytes().replace(b'ratio,0.333333,1,3,3,"(20,40%]"', b'ratio,1,3,3,6,"(60,100%]"'))
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["path"] == "csv/summary.csv")
    entry["sha256"] = hashlib.sha256(summary.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["evidence", "verify", str(out), *pub]) == 1
    assert "the manifest was changed after signing" in capsys.readouterr().out
    assert main(["evidence", "recompute", str(out)]) == 1
    assert "csv/summary.csv:2 (networked_ratio) value: pack '1', recomputed '0.333333'" in capsys.readouterr().out
    # a key that is not a key, a key others can read, a directory that is not a pack: exit 2 with the reason
    (tmp_path / "junk.pem").write_text("junk")
    assert main(["evidence", "verify", str(out), "--public-key", str(tmp_path / "junk.pem")]) == 2
    assert "is not a PEM public key" in capsys.readouterr().err
    key.chmod(0o644)
    assert main([*argv, "-c", str(cloud), "-o", str(tmp_path / "p2")]) == 2
    assert "can be read by others (mode 644): chmod 600 it" in capsys.readouterr().err
    assert main(["evidence", "recompute", str(tmp_path / "keys")]) == 2
    assert "cannot recompute: settings.json: missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--enterprise", "ent-1", "--from", "2024-05-02", "--to", "2024-05-01"], "bad period: the period must end"),
        (["--enterprise", "ent-x", "--from", "2024-05-01", "--to", "2024-05-01"], "unknown enterprise 'ent-x'"),
        (["--enterprise", "ent-1", "--from", "2024-05-01", "--to", "2024-05-01", "--format", "pdf"], "--format: pdf"),
    ],
)
def test_export_errors_exit_2(
    cloud: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["evidence", "export", *extra, "-c", str(cloud), "-o", str(tmp_path / "p")]) == 2
    assert message in capsys.readouterr().err


def test_bad_inputs_exit_2(cloud: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nx\n", encoding="utf-8")
    assert main(["evidence", "import-equipment", str(bad), "--enterprise", "ent-1", "-c", str(cloud)]) == 2
    assert "bad.csv:1: the header needs a 'id' column" in capsys.readouterr().err
    assert (
        main(["evidence", "import-equipment", str(tmp_path / "none.csv"), "--enterprise", "e", "-c", str(cloud)]) == 2
    )
    assert "cannot read" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("ledger: {url: mysql://x}\n")
    assert main(["evidence", "verify", str(tmp_path / "nowhere")]) == 1
    assert main(["evidence", "recompute", str(tmp_path / "nowhere")]) == 2
    assert main(["evidence", "import-equipment", str(bad), "--enterprise", "e", "-c", str(broken)]) == 2
    assert main(["serve", "-c", str(broken)]) == 2
    assert "broken.yaml:1: ledger.url" in capsys.readouterr().err


def _report(intact: bool, findings: list[AuditFinding] = ()) -> AuditReport:  # type: ignore[assignment]
    return AuditReport(
        enterprise="ent-1", from_ms=0, to_ms=1, intact=intact, gateways=[], evidence_rows_checked=412,
        findings=list(findings), not_covered=[],
    )  # fmt: skip


def _audit(monkeypatch: pytest.MonkeyPatch, cloud: Path, audit_period: object) -> None:
    """The audit as `edgegw evidence export` runs it, answering as given (the chain's own tests cover it)."""
    monkeypatch.setattr("cloud_bridge.cloud.evidence.packing.audit_period", audit_period)
    cloud.write_text(cloud.read_text(encoding="utf-8").replace("trust: {mode: 'off'}", "trust: {mode: enforce}"))


def test_the_audit_runs_at_export_and_a_failed_one_is_refused(
    cloud: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["evidence", "export", "--enterprise", "ent-1", "--from", "2024-05-01", "--to", "2024-05-01"]
    argv += ["-c", str(cloud)]
    asked: list[tuple[str, int]] = []

    def passes(store: object, ent: str, period: Any) -> AuditReport:
        asked.append((ent, period.start))
        return _report(True)

    _audit(monkeypatch, cloud, passes)
    assert main([*argv, "-o", str(tmp_path / "ok")]) == 0
    assert asked and asked[0][0] == "ent-1"
    assert (
        "ledger audit: 通过 / passed: 0 gateway(s), 0 signed checkpoints, 412 evidence rows" in capsys.readouterr().out
    )
    record = json.loads((tmp_path / "ok" / "audit.json").read_text())
    assert record["status"] == "passed" and record["report"]["evidence_rows_checked"] == 412
    assert main(["evidence", "recompute", str(tmp_path / "ok")]) == 0

    missing = AuditFinding(kind="missing_message", gw="gw-1", seq=7, detail="seq 7 missing")
    _audit(monkeypatch, cloud, lambda store, ent, period: _report(False, [missing]))
    assert main([*argv, "-o", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "ledger audit: 未通过 / FAILED:" in err and "seq 7 missing" in err and not (tmp_path / "bad").exists()
    assert main([*argv, "-o", str(tmp_path / "bad"), "--allow-failed-audit"]) == 0
    assert json.loads((tmp_path / "bad" / "audit.json").read_text())["report"]["findings"][0]["seq"] == 7
    assert "FAILED" in (tmp_path / "bad" / "report.html").read_text()

    def breaks(store: object, ent: str, period: object) -> AuditReport:
        raise RuntimeError("no chain table")

    _audit(monkeypatch, cloud, breaks)
    assert main([*argv, "-o", str(tmp_path / "broken")]) == 1
    assert "could not run: the audit failed to run: RuntimeError: no chain table" in capsys.readouterr().err


def test_a_sheet_too_large_or_unreadable_as_csv_exits_2_in_one_line(
    cloud: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_config import sheets

    cell, tag_cell = tmp_path / "cell.csv", tmp_path / "tag_cell.csv"
    cell.write_bytes(b"id,name\nL-01," + b"x" * 200_000 + b"\n")  # a traceback and exit 1 before
    tag_cell.write_bytes(b"name,address\nspeed," + b"x" * 200_000 + b"\n")
    for argv in (["evidence", "import-equipment", str(cell), "--enterprise", "ent-1", "-c", str(cloud)],
                 ["tags", "import", str(tag_cell), "--device", "loom-01"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "row 2: not a readable CSV row" in err and "Traceback" not in err, err
    monkeypatch.setattr(sheets, "MAX_FILE_BYTES", 1000)  # 20 MB in use; read whole before (400 MB: 2.9 GB RSS)
    big = tmp_path / "big.csv"
    big.write_bytes(b"id,name\n" + b"L-01,loom\n" * 200)
    for argv in (["evidence", "import-equipment", str(big), "--enterprise", "ent-1", "-c", str(cloud)],
                 ["tags", "import", str(big), "--device", "loom-01"]):  # fmt: skip
        assert main(argv) == 2
        assert f"{big}: larger than 0 MB: split the sheet" in capsys.readouterr().err


def test_a_period_in_other_digits_or_too_long_exits_2(
    cloud: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for text in ("²" * 10, "9" * 5000):  # a ValueError traceback and exit 1 before
        argv = ["evidence", "export", "--enterprise", "ent-1", "--from", text, "--to", "2024-05-01"]
        assert main([*argv, "-c", str(cloud), "-o", str(tmp_path / "p")]) == 2
        assert "bad period:" in capsys.readouterr().err
