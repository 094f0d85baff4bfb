"""CSV columns come from the model fields: the pack's headers are the fields flattened by the stated rule,
and a field added to a model is a column added to its CSV."""

from __future__ import annotations

import csv
import io
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from cloud_bridge.cloud.evidence import models
from cloud_bridge.cloud.evidence.build import gather_inputs
from cloud_bridge.cloud.evidence.export import DEVICE_CSV_EXCLUDE, export_pack
from cloud_bridge.cloud.evidence.models import Device, EpochMs, Model
from cloud_bridge.cloud.evidence.tables import TableError, columns, csv_table, read_table
from cloud_bridge.cloud.ledger.store import EvidenceStore
from tests.unit.test_evidence_build import CONFIG, NOW, period, store  # noqa: F401  (the hand-built day)

PACK_CSVS: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {
    "summary.csv": (models.SummaryRow, ()),
    "devices.csv": (models.Device, DEVICE_CSV_EXCLUDE),
    "online_intervals.csv": (models.IntervalRow, ()),
    "oee.csv": (models.OeeRow, ()),
    "areas.csv": (models.Area, ()),
    "events.csv": (models.EventRow, ()),
    "counts.csv": (models.CountRecord, ()),
    "activity_hourly.csv": (models.ActivityRow, ()),
    "config_hashes.csv": (models.ConfigHashRow, ()),
    "state_timeline.csv": (models.StateRow, ()),
    "device_meta.csv": (models.DeviceMetaRow, ()),
    "tags.csv": (models.TagRow, ()),
    "oee_settings.csv": (models.OeeSettingsRow, ()),
    "gateways.csv": (models.GatewayInfo, ()),
}


def flattened(model: type[BaseModel], exclude: tuple[str, ...], keys: tuple[str, ...] = ()) -> list[str]:
    """The rule, written out again: nested models prefixed `name_`, instants `x_ms` as `x` and `x_ms` (as
    `x_local` and `x_ms` when `x` is another field's column: `announced` beside `announced_ms`)."""
    out: list[str] = []
    fields = {"_".join((*keys, f.alias or n)) for n, f in model.model_fields.items()}
    for name, f in model.model_fields.items():
        path = (*keys, f.alias or name)
        if ".".join(path) in exclude:
            continue
        col = "_".join(path)
        inner = [a for a in typing.get_args(f.annotation) if a is not type(None)] or [f.annotation]
        instant = "epoch milliseconds" in str(model.model_json_schema()["properties"][f.alias or name])
        if isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            out += flattened(inner[0], exclude, path)
        elif col.endswith("_ms") and col.removesuffix("_ms") in fields:
            out += [f"{col.removesuffix('_ms')}_local", col]
        elif col.endswith("_ms"):
            out += [col.removesuffix("_ms"), col]
        elif instant:
            out += [f"{col}_local", col]
        else:
            out.append(col)
    return out


def test_the_packs_csv_headers_are_the_model_fields(store: EvidenceStore, tmp_path: Path) -> None:  # noqa: F811
    out = export_pack(gather_inputs(store, CONFIG, "ent-1", period(), now_ms=NOW), tmp_path / "pack")
    for name, (model, exclude) in PACK_CSVS.items():
        data = (out.directory / "csv" / name).read_bytes()
        assert data.startswith(b"\xef\xbb\xbf"), name  # UTF-8 with a BOM
        header = next(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        assert header == flattened(model, exclude) == [c.name for c in columns(model, exclude)], name
        assert len(set(header)) == len(header), name  # no column named twice
    devices = next(csv.reader(io.StringIO((out.directory / "csv" / "devices.csv").read_text(encoding="utf-8-sig"))))
    assert {"completeness_ratio", "first_seen", "first_seen_ms", "oee_availability", "online_now"} <= set(devices)
    oee = next(csv.reader(io.StringIO((out.directory / "csv" / "oee.csv").read_text(encoding="utf-8-sig"))))
    assert {"time_s_planned_busy", "losses_s_speed", "counts_produced", "shift_label", "from"} <= set(oee)


def test_a_field_added_to_a_model_is_a_column_added() -> None:
    class Floor(Model):
        hall: str
        since_ms: EpochMs | None = None

    class DeviceWithFloor(Device):
        floor: Floor | None = None

    before = [c.name for c in columns(Device, DEVICE_CSV_EXCLUDE)]
    after = [c.name for c in columns(DeviceWithFloor, DEVICE_CSV_EXCLUDE)]
    assert after == [*before, "floor_hall", "floor_since", "floor_since_ms"]


class Inner(Model):
    ratio: float | None
    at_ms: EpochMs


class Row(Model):
    name: str
    ok: bool | None
    inner: Inner | None
    seen_ms: EpochMs | None
    tags: list[str]
    pairs: list[tuple[int, int]] = Field(default_factory=list)


def test_the_cells() -> None:
    rows = [
        Row(name="织机 <1>", ok=True, inner=Inner(ratio=2 / 3, at_ms=0), seen_ms=None, tags=["a", "b"]),
        Row(name="x", ok=None, inner=None, seen_ms=86_400_000, tags=[]),
    ]
    text = csv_table(Row, rows, "Asia/Shanghai", exclude=["pairs"]).decode("utf-8-sig")
    assert text.split("\r\n") == [
        "name,ok,inner_ratio,inner_at,inner_at_ms,seen,seen_ms,tags",
        "织机 <1>,true,0.666667,1970-01-01T08:00:00+08:00,0,,,a;b",
        "x,,,,,1970-01-02T08:00:00+08:00,86400000,",
        "",
    ]
    with pytest.raises(TypeError, match=r"Row.pairs: a list of .* has no cell: exclude 'pairs'"):
        columns(Row)


def test_the_tables_of_inputs_read_back_exactly() -> None:
    """What the figures are computed from is written exactly (a 32-bit counter is not 4.29497e+09) and reads
    back into the same models; a cell that does not fit names its file, row and column."""
    rows = [
        Row(name='织机, "1"', ok=False, inner=Inner(ratio=1 / 3, at_ms=1), seen_ms=4_294_967_295, tags=["a"]),
        Row(name="", ok=None, inner=None, seen_ms=None, tags=[]),
    ]
    data = csv_table(Row, rows, "Asia/Shanghai", exclude=["pairs"], precise=True)
    assert "0.3333333333333333" in data.decode("utf-8-sig")
    assert read_table(Row, data, "rows.csv", exclude=["pairs"]) == rows
    counts = [
        models.CountRecord.model_validate(
            {"gateway": "g", "device": "d", "ts_ms": 5, "kind": "snapshot", "state": None, "total": 4294967295.0,
             "good": None, "reject": 0.1, "readings": None, "good_readings": 2.5, "boundary": "after"}
        )
    ]  # fmt: skip
    assert read_table(models.CountRecord, csv_table(models.CountRecord, counts, "UTC", precise=True), "c") == counts
    assert "4.29497e+09" in csv_table(models.CountRecord, counts, "UTC").decode()  # the figures' form: 6 digits
    bad = data.replace(b",false,", b",maybe,")
    with pytest.raises(TableError, match=r"^rows.csv:2: ok: 'maybe' is not true or false$"):
        read_table(Row, bad, "rows.csv", exclude=["pairs"])
    with pytest.raises(TableError, match=r"^rows.csv:1: the header is not name,ok,"):
        read_table(Row, data.replace(b"inner_ratio", b"ratio"), "rows.csv", exclude=["pairs"])
    with pytest.raises(TableError, match=r"^c:2: boundary: "):
        read_table(models.CountRecord, csv_table(models.CountRecord, counts, "UTC").replace(b"after", b"later"), "c")
