"""Tag maps from and to spreadsheets: Chinese headers, GB18030, XLSX, errors by row and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_config.models import ModbusTag, OpcUaTag
from edge_config.sheets import SheetError
from edge_config.tagmap import read_tags, write_tags
from gateway.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

CHINESE_CSV = """名称,地址,数据类型,倍率,单位,死区,业务域,字节序,备注,责任人
speed,40001,uint16,0.1,rpm,0.5,equipment,,主轴转速,张工
energy_kwh,hr:10,float32,,kWh,,energy,CDAB,电能,张工
alarm,hr:8,bool,,,,safety,,,
"""


def test_chinese_headers_in_gb18030_become_validated_tags() -> None:
    text = CHINESE_CSV.replace("alarm,hr:8,bool,", "alarm,hr:8,bool,")
    tags, kind, ignored = read_tags(text.encode("gb18030"), "点表.csv")
    assert kind == "modbus" and ignored == ["责任人"]
    assert [t.name for t in tags] == ["speed", "energy_kwh", "alarm"]
    speed = tags[0]
    assert isinstance(speed, ModbusTag) and speed.scale == 0.1 and speed.deadband == 0.5
    assert speed.description == "主轴转速"
    assert tags[1].byte_order == "CDAB" and tags[1].scale == 1.0


def test_every_mistake_is_reported_with_row_and_column() -> None:
    text = CHINESE_CSV + "speed,4x0001,uint33,fast,,,,,,\n"
    with pytest.raises(SheetError) as info:
        read_tags(text.encode(), "tags.csv")
    issues = info.value.issues
    assert "tags.csv:5: 地址: '4x0001' is not a Modbus address (use 40001 or hr:0)" in issues
    assert any(i.startswith("tags.csv:5: 数据类型:") for i in issues)
    assert any(i.startswith("tags.csv:5: 倍率:") for i in issues)


def test_a_check_across_columns_names_its_column() -> None:
    """A check across fields (a 32-bit value at the last register, a scale of 0) names the column it is
    about, in the sheet's own words; it said `row:` before, and NaN went through."""
    text = CHINESE_CSV + "last,hr:65535,uint32,,,,,,,\nzero,hr:20,uint16,0,,,,,,\nnan,hr:21,uint16,nan,,,,,,\n"
    with pytest.raises(SheetError) as info:
        read_tags(text.encode(), "tags.csv")
    assert info.value.issues == [
        "tags.csv:5: 地址: uint32 at hr:65535 takes 2 registers: past 65535, the last address",
        "tags.csv:6: 倍率: scale 0 would make every value 0 (1: the raw value)",
        "tags.csv:7: 倍率: Input should be a finite number",
    ]


def test_duplicate_names_and_missing_columns() -> None:
    with pytest.raises(SheetError, match=r"tags.csv:3: name: 'a' is already on row 2"):
        read_tags(b"name,address\na,hr:0\na,hr:1\n", "tags.csv")
    with pytest.raises(SheetError, match="needs a 'address' column"):
        read_tags(b"name,unit\na,rpm\n", "tags.csv")
    with pytest.raises(SheetError, match=r"use a \.csv or \.xlsx"):
        read_tags(b"", "tags.txt")


def test_opcua_sheet_is_recognised_by_its_node_column() -> None:
    tags, kind, _ = read_tags(
        "名称,节点,模式,采样周期,单位\ntemp,ns=2;s=Reactor1.Temperature,subscribe,500ms,°C\n".encode(), "ua.csv"
    )
    assert kind == "opcua" and isinstance(tags[0], OpcUaTag) and tags[0].sampling_interval == 0.5


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_write_then_read_round_trips(tmp_path: Path, suffix: str) -> None:
    tags, _, _ = read_tags(CHINESE_CSV.encode(), "t.csv")
    out = tmp_path / f"tags{suffix}"
    write_tags(tags, out)
    back, kind, _ = read_tags(out.read_bytes(), str(out))
    assert kind == "modbus" and back == tags


def test_cli_import_into_a_config_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "loom.csv"
    assert (
        main(["tags", "export", "-c", str(DEPLOY / "gateway.example.yaml"), "--device", "loom-01", "-o", str(sheet)])
        == 0
    )
    text = sheet.read_text(encoding="utf-8-sig").replace("speed,hr:0,", "speed,hr:5,")
    sheet.write_text(text, encoding="utf-8-sig")
    out = tmp_path / "gateway.yaml"
    args = ["tags", "import", str(sheet), "--device", "loom-01", "-c", str(DEPLOY / "gateway.example.yaml")]
    assert main([*args, "-o", str(out)]) == 0
    assert main(["config", "validate", str(out)]) == 0
    assert "address: hr:5" in out.read_text(encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,address\nspeed,hr:x\n")
    assert main(["tags", "import", str(bad), "--device", "loom-01"]) == 2
    assert "bad.csv:2: address:" in capsys.readouterr().err


def test_cli_import_into_a_config_writes_no_secret_it_did_not_find_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt.pw").write_text("file-secret")
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "gateway: {id: gw-1, enterprise_id: ent-1}\n"
        f"mqtt: {{url: 'mqtt://127.0.0.1:1883', username: gw, password_file: {tmp_path / 'mqtt.pw'}}}\n"
        "api: {token: file-token}\n"
        "devices:\n  - {id: loom-01, driver: modbus_tcp, connection: {host: 127.0.0.1},\n"
        "     tags: [{name: s, address: '40001'}]}\n"
    )
    monkeypatch.setenv("EDGEGW_API_TOKEN", "env-token")
    sheet = tmp_path / "tags.csv"
    sheet.write_text("name,address\nspeed,hr:5\n")
    out = tmp_path / "out.yaml"
    assert main(["tags", "import", str(sheet), "--device", "loom-01", "-c", str(cfg), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    # the secret read from the file and the environment's token were written into the config before
    assert "file-secret" not in text and "env-token" not in text and "password_file" in text
    assert "token: file-token" in text and main(["config", "validate", str(out)]) == 0
