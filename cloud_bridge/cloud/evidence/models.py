"""The evidence as typed models, declared once: what `build_evidence` returns, what the evidence API serves
(its OpenAPI schemas), what `evidence.json` holds and what the pack's CSV rows are made of.

The JSON keys are the field names (`from` and `schema`, Python keywords or taken, through an alias):
dump with `Model.jsonable()` where the evidence leaves the program (files, answers), nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from typing_extensions import Self

from cloud_bridge.metrics.oee import OeeResult
from cloud_bridge.metrics.period import Period
from edge_config.models import Shift

SCHEMA: Final = "edgegw-evidence/1"


class Timestamp:
    """Marks an int field as an instant in epoch milliseconds (UTC); the CSVs add its local time."""

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out.setdefault("description", "epoch milliseconds (UTC)")
        return out


EpochMs = Annotated[int, Timestamp()]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def jsonable(self) -> dict[str, Any]:
        """The model as JSON data with its published keys."""
        return self.model_dump(mode="json", by_alias=True)


# ---------------------------------------------------------------- enterprise and period


class Enterprise(Model):
    id: str
    name: str


class PeriodBounds(Model):
    """The period as asked for (`from`, `to`) and what the figures run up to (`as_of`: the end, or now)."""

    from_: str = Field(alias="from", description="local ISO 8601 date-time")
    to: str
    as_of: str
    from_ms: EpochMs
    to_ms: EpochMs
    as_of_ms: EpochMs
    timezone: str

    @classmethod
    def of(cls, period: Period, **more: Any) -> Self:
        return cls.model_validate({**period.as_dict(), **more})


class PeriodInfo(PeriodBounds):
    """The period with its plan: planned operation time and the shift calendar it comes from."""

    planned_s: float
    planned_intervals: list[tuple[int, int]] = Field(description="planned operation time, [from, to) in epoch ms")
    calendar: list[Shift] | str


# ---------------------------------------------------------------- OEE as served


class OeeTimes(Model):
    """The ISO 22400-2 time model, in seconds (see README "Definitions")."""

    window: float
    unscheduled: float
    planned_breaks: float
    planned_operation: float
    offline: float
    unknown: float
    planned_stop: float
    planned_busy: float
    running: float
    fault: float
    setup: float
    idle: float
    micro_stops: float
    actual_production: float
    offline_total: float
    running_outside_plan: float


class OeeLosses(Model):
    """Time-equivalent losses in seconds; they add up to PBT with ideal cycle time × good."""

    fault: float
    setup: float
    idle: float
    micro_stops: float
    speed: float | None
    scrap: float | None


class OeeCounts(Model):
    produced: float
    good: float
    scrap: float
    during_offline: float
    outside_plan: float
    rollovers: float
    resets: float


class OeeFigures(Model):
    """OEE of one device over a window: A, P, Q and OEE as fractions (P may exceed 1, flagged), the time
    model, losses and counts, the flags, and the settings the figures were computed with."""

    from_ms: EpochMs
    to_ms: EpochMs
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    time_s: OeeTimes
    losses_s: OeeLosses
    counts: OeeCounts
    ideal_cycle_time_s: float | None
    micro_stop_threshold_s: float
    micro_stop_loss: Literal["performance", "availability"]
    quality_from: Literal["good", "reject", "none"]
    flags: list[str] = Field(description="keys of cloud_bridge.metrics.labels.FLAGS")


class ShiftOf(Model):
    """The shift occurrence a result covers (empty for a whole period)."""

    shift: str = ""
    shift_start_ms: EpochMs | None = None
    shift_label: str = ""


class ShiftOee(OeeFigures, ShiftOf):
    """OEE of one shift occurrence."""


class PeriodOee(OeeFigures):
    """OEE of a period, with a result per shift occurrence in it."""

    shifts: list[ShiftOee] = Field(default_factory=list)

    @classmethod
    def of(cls, result: OeeResult, tz: str, **more: Any) -> Self:
        return cls.model_validate({**result.to_dict(tz), **more})


class DeviceOee(PeriodOee):
    """The answer of `GET .../devices/{device}/oee`."""

    enterprise: str
    gateway: str
    device: str
    period: PeriodBounds


# ---------------------------------------------------------------- devices


class CompletenessFigures(Model):
    """Good readings taken / readings the poll plan calls for, inside planned time (ratio None when the plan
    calls for no fixed number, e.g. OPC UA subscriptions)."""

    received: float = 0.0
    expected: float = 0.0
    ratio: float | None = None


class TagInfo(Model):
    name: str
    unit: str | None
    domain: str | None


class Device(Model):
    """One piece of equipment: what the equipment ledger says of it (`id` … `digitized`), whether it is
    connected, and what its gateway reported for the period. Equipment of the ledger that no gateway
    reports on is this model with its defaults (not connected, nothing measured)."""

    id: str
    name: str = ""
    type: str = ""
    line: str = ""
    in_ledger: bool = False
    key_process: bool = False
    digitized: bool | None = Field(None, description="as the ledger declares it; None when not in the ledger")
    connected: bool = False
    gateway: str = ""
    device: str = Field("", description="the device id in its gateway's config")
    networked: bool = False
    samples: int = 0
    good_samples: int = 0
    first_seen_ms: EpochMs | None = None
    last_seen_ms: EpochMs | None = None
    online_s: float = 0.0
    online_planned_s: float = 0.0
    planned_s: float = 0.0
    online_rate: float | None = None
    online_now: bool = False
    online_intervals: list[tuple[int, int]] = Field(default_factory=list, description="[from, to) in epoch ms")
    completeness: CompletenessFigures = Field(default_factory=CompletenessFigures)
    domains: list[str] = Field(default_factory=list)
    oee: PeriodOee | None = None
    config_hash: str = ""
    device_name: str = ""
    device_type: str = ""
    production: bool | None = None
    tags: list[TagInfo] = Field(default_factory=list)


# ---------------------------------------------------------------- summary


class Indicator(Model):
    """A ratio of equipment counts with its MIIT 2024 score band."""

    numerator: int
    denominator: int
    ratio: float | None
    score: float | None
    band: str


class KeyProcess(Model):
    total: int
    networked: int


class OnlineNow(Model):
    online: int
    of: int
    at_ms: EpochMs


class OnlineTime(Model):
    devices: int
    online_planned_s: float
    planned_s: float
    rate: float | None


class Area(Model):
    """A business area data is collected for: the tag domain, its labels, the networked devices, their tags."""

    domain: str
    zh: str
    en: str
    devices: list[str]
    tags: int


class LedgerImport(Model):
    """The last import of the equipment ledger (设备台账)."""

    imported_ms: EpochMs
    source: str
    sha256: str
    row_count: int


class Summary(Model):
    """The indicators: networked and digitized ratios with their bands, key-process equipment, online rate,
    completeness, business areas."""

    denominator_source: Literal["equipment_ledger", "gateway_metadata"]
    equipment_total: int
    ledger_import: LedgerImport | None
    networked: Indicator
    digitized: Indicator
    key_process: KeyProcess
    online_now: OnlineNow
    online_time: OnlineTime
    completeness: CompletenessFigures
    areas: list[Area]
    oee_devices: int


# ---------------------------------------------------------------- provenance and the whole


class GatewayInfo(Model):
    gateway: str
    online: bool | None
    status_ts: EpochMs | None
    version: str | None
    config_hashes: list[str]


class ConfigHash(Model):
    """A config hash in force in the period, as the device's meta announced it."""

    gw: str
    dev: str
    ts: EpochMs
    config_hash: str
    version: str


class Evidence(Model):
    """Everything the evidence pack and API report for an enterprise and a period (`evidence.json`)."""

    schema_: Literal["edgegw-evidence/1"] = Field(SCHEMA, alias="schema")
    generator: str
    generated_at_ms: EpochMs
    enterprise: Enterprise
    period: PeriodInfo
    summary: Summary
    devices: list[Device]
    gateways: list[GatewayInfo]
    config_hashes: list[ConfigHash]
    notes: list[str]


class SummaryAnswer(Model):
    """The answer of `GET .../summary`."""

    enterprise: Enterprise
    period: PeriodInfo
    summary: Summary
    notes: list[str]


# ---------------------------------------------------------------- rows of the pack's CSVs (see tables.py)


class SummaryRow(Model):
    """An indicator of the summary: a row of `summary.csv` and of the report's first table."""

    indicator: str = Field(description="key of cloud_bridge.metrics.labels.INDICATORS")
    indicator_zh: str
    indicator_en: str
    value: float | None = Field(description="a ratio (0..1), or a number when value_unit is `count`")
    numerator: float | None
    denominator: float | None
    score: float | None
    band: str | None
    note: str
    note_zh: str
    value_unit: Literal["ratio", "count"]
    count_unit: Literal["equipment", "s", "readings", ""] = Field(description="of numerator and denominator")


class DeviceKey(Model):
    id: str = Field(description="the equipment id")
    gateway: str
    device: str


class IntervalRow(DeviceKey):
    """A stretch of time a device was online (`online_intervals.csv`)."""

    from_ms: EpochMs
    to_ms: EpochMs
    seconds: float


class OeeScope(DeviceKey):
    scope: Literal["period", "shift"]


class OeeRow(OeeFigures, ShiftOf, OeeScope):
    """OEE of a device for the period or one shift occurrence in it (`oee.csv`)."""


class EventRow(Model):
    """An online, offline or state event as the ledger received it (`events.csv`)."""

    gateway: str
    device: str
    ts_ms: EpochMs
    kind: str
    state: str | None
    reason: str


class CountRecord(Model):
    """A state change or snapshot with the counter readings (`counts.csv`)."""

    gateway: str
    device: str
    ts_ms: EpochMs
    kind: str
    state: str | None
    total: float | None
    good: float | None
    reject: float | None
    readings: float | None
    good_readings: float | None


class ActivityRow(Model):
    """Samples received from a device in an hour (`activity_hourly.csv`)."""

    gateway: str
    device: str
    hour_ms: EpochMs
    samples: int
    good_samples: int
    first_ts_ms: EpochMs
    last_ts_ms: EpochMs


class ConfigHashRow(Model):
    """A config hash in force in the period (`config_hashes.csv`)."""

    gateway: str
    device: str
    announced_ms: EpochMs
    config_hash: str
    version: str
