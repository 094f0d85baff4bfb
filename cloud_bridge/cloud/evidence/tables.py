"""The evidence as tables: the rows of the summary, the OEE and the online intervals, and one helper that
writes any list of models as CSV with the header taken from the model's fields, so that a field added to
a model is a column added to its CSV.

How fields become columns (`columns`):
- a field is a column named as its JSON key, in the model's field order;
- a nested model `a` gives its own columns, named `a_` + theirs (`completeness.ratio` → `completeness_ratio`);
  when it is None, all of them are empty;
- an instant (`EpochMs`) named `x_ms` gives two columns: `x`, its local time (ISO 8601 with the offset, in
  the period's time zone), then `x_ms` (an instant not named `_ms`, or one whose `x` is another field's column,
  as `announced` beside `announced_ms` in `device_meta.csv`: `x_local`, then `x` / `x_ms`);
- a list of plain values is one cell, the values joined by `;`;
- a list of models or of pairs has no cell: leave it out with `exclude` (dotted JSON keys, e.g.
  `oee.shifts`) and write it as a CSV of its own.
Cells: None is empty, booleans `true` / `false`, floats to 6 significant digits — or, in the tables the
figures are computed from (`precise=True`), exactly (the shortest text that reads back as the same float).
A text cell (a `str` or `Literal` field, or a list of them) that starts with `=` `+` `-` `@`, a tab or a carriage
return — what a spreadsheet would take for a formula — or with `'` is written with a `'` in front (OWASP's
defence against CSV injection; `formula_safe`), and read back without it (`unescape_cell`). Numbers are not
text cells: a negative number stays a number.

`read_table` reads such a CSV back into its models (the local-time columns are left out: the `_ms` column is
the value; the header of an older pack, whose `device_meta.csv` named a local-time column `announced` twice, is
taken too), so `edgegw evidence recompute` can compute the figures again from a pack's own files.

CSVs are UTF-8 with a BOM, so Excel shows the Chinese right.
"""

from __future__ import annotations

import csv
import io
import types
import typing
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ValidationError

from cloud_bridge.cloud.evidence.models import (
    Device,
    Evidence,
    IntervalRow,
    OeeFigures,
    OeeRow,
    ShiftOf,
    StateRow,
    SummaryRow,
    Timestamp,
)
from cloud_bridge.cloud.ledger.equipment import formula_safe, unescape_cell
from cloud_bridge.metrics.evidence import ratio
from cloud_bridge.metrics.labels import INDICATORS, TEXTS, Label
from cloud_bridge.metrics.oee import TimelineSegment
from cloud_bridge.metrics.period import iso_local

M = TypeVar("M", bound=BaseModel)
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    path: tuple[str, ...]  # attribute names from the row down to the value
    local_time: bool = False  # the instant's local time instead of its epoch ms

    annotation: Any = str  # the field's type, without `| None` and Annotated (what a cell reads back as)
    optional: bool = False
    legacy: str = ""  # the name older packs gave the column, when it was another

    @property
    def text(self) -> bool:
        """A text cell (escaped against formulas): a str or Literal field, or a list of them."""
        if self.local_time:
            return False
        t = self.annotation
        if typing.get_origin(t) is list:
            t = _unwrap(typing.get_args(t)[0])[0]
        return t is str or typing.get_origin(t) is typing.Literal

    def cell(self, row: BaseModel, tz: str, precise: bool = False) -> str:
        v: Any = row
        for name in self.path:
            v = getattr(v, name)
            if v is None:
                return ""
        if self.local_time:
            return iso_local(v, tz)
        text = _cell(v, precise)
        return formula_safe(text) if self.text else text


def _cell(v: Any, precise: bool = False) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if precise:
            return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
        return f"{v:.6g}" if abs(v) < 1e15 else repr(v)
    if isinstance(v, list | tuple):
        return ";".join(_cell(x, precise) for x in v)
    return str(v)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether it is an instant)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) == 1:
            return _unwrap(kept[0])
    if typing.get_origin(annotation) is Annotated:
        return args[0], any(isinstance(m, Timestamp) for m in annotation.__metadata__)
    return annotation, False


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _plain(t: Any) -> bool:
    t, _ = _unwrap(t)
    return t in _SCALARS or typing.get_origin(t) is typing.Literal


def _plain_columns(model: type[BaseModel], exclude: Collection[str], keys: tuple[str, ...] = ()) -> list[Column]:
    """The columns that are not local times (what a local-time column's name may not repeat)."""
    out: list[Column] = []
    for name, f in model.model_fields.items():
        key = f.alias or name
        if ".".join((*keys, key)) in exclude:
            continue
        t, _ = _unwrap(f.annotation)
        if _is_model(t):
            out.extend(_plain_columns(t, exclude, (*keys, key)))
        else:
            out.append(Column("_".join((*keys, key)), ()))
    return out


def columns(model: type[BaseModel], exclude: Collection[str] = ()) -> list[Column]:
    """The CSV columns of `model` by the rules above; `exclude` names fields (dotted JSON keys) to leave out."""
    out: list[Column] = []
    names = {c.name for c in _plain_columns(model, exclude)}

    def walk(m: type[BaseModel], path: tuple[str, ...], keys: tuple[str, ...]) -> None:
        for name, f in m.model_fields.items():
            key = f.alias or name
            dotted = ".".join((*keys, key))
            if dotted in exclude:
                continue
            t, instant = _unwrap(f.annotation)
            instant = instant or any(isinstance(x, Timestamp) for x in f.metadata)
            col = "_".join((*keys, key))
            optional = _optional(f.annotation)
            if _is_model(t):
                walk(t, (*path, name), (*keys, key))
            elif instant:
                local = col.removesuffix("_ms") if col.endswith("_ms") else f"{col}_local"
                if local in names:  # another field's column (`announced` beside `announced_ms`)
                    local, legacy = f"{local}_local", local
                else:
                    legacy = ""
                out.extend(
                    (
                        Column(local, (*path, name), local_time=True, legacy=legacy),
                        Column(col, (*path, name), annotation=int, optional=optional),
                    )
                )
            elif typing.get_origin(t) is list and not _plain(typing.get_args(t)[0]):
                raise TypeError(
                    f"{m.__name__}.{name}: a list of {typing.get_args(t)[0]} has no cell: exclude {dotted!r}"
                )
            else:
                out.append(Column(col, (*path, name), annotation=t, optional=optional))

    walk(model, (), ())
    return out


def csv_table(
    model: type[M],
    rows: Iterable[M],
    tz: str,
    *,
    exclude: Collection[str] = (),
    precise: bool = False,
    older_header: bool = False,
) -> bytes:
    """`rows` as CSV (UTF-8 with a BOM, CRLF), the header from `model`'s fields (`older_header`: as packs
    written before the local-time columns were renamed, to compare such a pack with)."""
    cols = columns(model, exclude)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([(c.legacy or c.name) if older_header else c.name for c in cols])
    for r in rows:
        w.writerow([c.cell(r, tz, precise) for c in cols])
    return buf.getvalue().encode("utf-8-sig")


def older_header(model: type[BaseModel], exclude: Collection[str] = ()) -> list[str]:
    """The header packs written before the local-time columns were renamed have (`device_meta.csv`'s
    `announced,announced,announced_ms`)."""
    return [c.legacy or c.name for c in columns(model, exclude)]


class TableError(ValueError):
    """A CSV that does not read back into its model: `file:row: column: message`."""


def _value(col: Column, text: str, *, escaped: bool = True) -> Any:
    if escaped and col.text:
        text = unescape_cell(text)
    t = col.annotation
    if typing.get_origin(t) is list and not (col.optional and text == ""):
        (inner,) = typing.get_args(t)
        item = Column(col.name, col.path, annotation=_unwrap(inner)[0])
        # the whole cell was unescaped above, not each value
        return [_value(item, x, escaped=False) for x in text.split(";")] if text else []
    if text == "" and (col.optional or t is not str):
        return None
    if t is bool:
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    if t is int:
        return int(text)
    if t is float:
        return float(text)
    return text  # str, Literal: the model checks it


def read_table(model: type[M], data: bytes, name: str, *, exclude: Collection[str] = ()) -> list[M]:
    """The rows of a CSV that `csv_table` wrote for `model` (TableError naming the file, row and column)."""
    cols = columns(model, exclude)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TableError(f"{name}: not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise TableError(f"{name}: not a CSV table ({e})") from None
    wanted = [c.name for c in cols]
    older = older_header(model, exclude)
    if not rows or rows[0] not in (wanted, older):
        raise TableError(f"{name}:1: the header is not {','.join(wanted)}")
    out: list[M] = []
    for n, cells in enumerate(rows[1:], start=2):
        if len(cells) != len(cols):
            raise TableError(f"{name}:{n}: {len(cells)} cells, not {len(cols)}")
        data_: dict[str, Any] = {}
        empty: set[tuple[str, ...]] = set()
        for col, cell in zip(cols, cells, strict=True):
            if col.local_time:
                continue
            try:
                v = _value(col, cell)
            except ValueError as e:
                raise TableError(f"{name}:{n}: {col.name}: {e}") from None
            if v is None and len(col.path) > 1:
                empty.add(col.path[:-1])  # a nested model's cell left empty: the model may be None
                continue
            node = data_
            for part in col.path[:-1]:
                node = node.setdefault(part, {})
            node[col.path[-1]] = v
        for parent in sorted(empty, key=len):
            node = data_
            for part in parent[:-1]:
                node = node.setdefault(part, {})
            node.setdefault(parent[-1], None)
        try:
            out.append(model.model_validate(data_))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise TableError(f"{name}:{n}: {where}: {first['msg']}") from None
    return out


# ---------------------------------------------------------------- the evidence's tables


def _take(m: BaseModel, *parts: type[BaseModel]) -> dict[str, Any]:
    return {name: getattr(m, name) for part in parts for name in part.model_fields}


def summary_rows(ev: Evidence) -> list[SummaryRow]:
    """The indicators, as summary.csv and the report's first table show them."""
    s = ev.summary
    none = Label("", "")

    def row(
        key: str,
        value: float | None,
        numerator: float | None,
        denominator: float | None,
        note: Label = none,
        **more: Any,
    ) -> SummaryRow:
        lb = INDICATORS[key]
        return SummaryRow.model_validate(
            {
                "indicator": key,
                "indicator_zh": lb.zh,
                "indicator_en": lb.en,
                "value": value,
                "numerator": numerator,
                "denominator": denominator,
                "score": None,
                "band": None,
                "note": note.en,
                "note_zh": note.zh,
                "value_unit": "ratio",
                "count_unit": "equipment",
                **more,
            }
        )

    at = iso_local(s.online_now.at_ms, ev.period.timezone)
    counted = [a for a in s.areas if a.counted]
    ot, comp, kp, on = s.online_time, s.completeness, s.key_process, s.online_now
    return [
        row(
            "networked_ratio",
            s.networked.ratio,
            s.networked.numerator,
            s.networked.denominator,
            Label(
                f"{TEXTS[f'denominator.{s.denominator_source}'].zh}；{s.networked_rule.text_zh}",
                f"{TEXTS[f'denominator.{s.denominator_source}'].en}; {s.networked_rule.text}",
            ),
            score=s.networked.score,
            band=s.networked.band,
        ),
        row(
            "digitized_ratio",
            s.digitized.ratio,
            s.digitized.numerator,
            s.digitized.denominator,
            TEXTS["note.digitized"],
            score=s.digitized.score,
            band=s.digitized.band,
        ),
        row("key_process_networked", None, kp.networked, kp.total),
        row("online_now", ratio(on.online, on.of), on.online, on.of, Label(at, at)),
        row(
            "online_rate",
            ot.rate,
            ot.online_planned_s,
            ot.planned_s,
            TEXTS["note.online_rate"].format(devices=ot.devices),
            count_unit="s",
        ),
        row(
            "data_completeness",
            comp.ratio,
            comp.received,
            comp.expected,
            TEXTS["note.completeness"],
            count_unit="readings",
        ),
        row(
            "collection_areas",
            s.areas_counted,
            s.areas_counted,
            len(s.areas),
            Label("、".join(a.zh for a in counted) or "—", ", ".join(a.en for a in counted) or "—"),
            value_unit="count",
            count_unit="",
        ),
        row("oee_devices", s.oee_devices, None, None, TEXTS["note.oee_devices"], value_unit="count", count_unit=""),
    ]


def oee_rows(ev: Evidence) -> list[OeeRow]:
    """OEE per device: the period, then each shift occurrence in it."""
    out: list[OeeRow] = []
    for d in ev.devices:
        if d.oee is None:
            continue
        key = {"id": d.id, "gateway": d.gateway, "device": d.device}
        out.append(OeeRow.model_validate({**key, "scope": "period", **_take(d.oee, OeeFigures)}))
        out.extend(
            OeeRow.model_validate({**key, "scope": "shift", **_take(sh, OeeFigures, ShiftOf)}) for sh in d.oee.shifts
        )
    return out


def interval_rows(ev: Evidence) -> list[IntervalRow]:
    return [
        IntervalRow(id=d.id, gateway=d.gateway, device=d.device, from_ms=a, to_ms=b, seconds=(b - a) / 1000)
        for d in ev.devices
        for a, b in d.online_intervals
    ]


def state_rows(timelines: Iterable[tuple[Device, Iterable[TimelineSegment]]]) -> list[StateRow]:
    """Each OEE device's state timeline in the period (`state_timeline.csv`)."""
    return [
        StateRow(
            id=d.id,
            gateway=d.gateway,
            device=d.device,
            from_ms=s.start,
            to_ms=s.end,
            seconds=(s.end - s.start) / 1000,
            state=s.state,
            micro_stop=s.micro,
            plan=s.plan,
        )
        for d, segments in timelines
        for s in segments
    ]
