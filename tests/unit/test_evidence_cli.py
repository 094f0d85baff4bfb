"""`edgegw evidence export|verify|import-equipment` and `edgegw serve`: exit codes and messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cli import main
from tests.unit.test_evidence_build import LEDGER_CSV, fill_day


@pytest.fixture
def cloud(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    cfg = tmp_path / "cloud.yaml"
    cfg.write_text(
        f'ledger: {{url: "{url}"}}\n'
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
    assert "networked equipment ratio: 2/3 = 66.7% → 6 points" in printed
    m = re.search(r"manifest.json SHA-256: ([0-9a-f]{64})", printed)
    assert m and not (out / "evidence.json").exists() and (out / "report.html").exists()
    assert main(["evidence", "verify", str(out), "--expect", m.group(1)]) == 0
    assert "intact: 11 files" in capsys.readouterr().out
    assert main(["evidence", "verify", str(out), "--expect", "0" * 64]) == 1
    assert "NOT intact" in capsys.readouterr().out


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
    assert main(["evidence", "import-equipment", str(bad), "--enterprise", "e", "-c", str(broken)]) == 2
    assert main(["serve", "-c", str(broken)]) == 2
    assert "broken.yaml:1: ledger.url" in capsys.readouterr().err
