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
    jumps: float = 0.0  # packs made before counters' jumps were told apart have none


class OeeFigures(Model):
    """OEE of one device over a window: A, P, Q and OEE as fractions (P may exceed 1, flagged), the time
    model, losses and counts, the flags, and the settings the figures were computed with."""

    from_ms: EpochMs
    to_ms: EpochMs
    availability: float | None = Field(description="ISO 22400-2: APT / PBT (offline and unknown time left out)")
    availability_all: float | None = Field(
        description="APT / (POT − planned stop): availability with offline and unknown time counted as lost"
    )
    observed: float | None = Field(description="(POT − offline − unknown) / POT: the planned time the device was seen")
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
    networked_fails: list[str] = Field(
        default_factory=list, description="why it is not networked: keys of cloud_bridge.metrics.labels.NOT_NETWORKED"
    )
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
    """A 数据采集 business area of the indicators, collected for or not: the tags that collect data for it
    (`device/tag`), the devices they are on, those whose good data arrived in the period, and whether it counts
    (a networked device collects for it)."""

    key: str
    zh: str
    en: str
    domains: list[str] = Field(description="the tag domains that collect data for it")
    tags: list[str]
    devices: list[str]
    devices_with_data: list[str]
    data_arrived: bool
    counted: bool


class NetworkedRuleInfo(Model):
    """The networked rule the figures follow, where it comes from, and its wording."""

    min_online_ratio: float
    min_completeness: float | None
    source: Literal["default", "pilot", "enterprise"]
    text: str
    text_zh: str


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
    networked_rule: NetworkedRuleInfo
    networked: Indicator
    digitized: Indicator
    key_process: KeyProcess
    online_now: OnlineNow
    online_time: OnlineTime
    completeness: CompletenessFigures
    areas: list[Area] = Field(description="every business area of the list in force, collected for or not")
    areas_counted: int
    areas_source: str
    oee_devices: int


# ---------------------------------------------------------------- provenance and the whole


class GatewayInfo(Model):
    """A gateway: its last status and sign of life, and since when its devices are counted offline (when it
    is offline now, or silent too long)."""

    gateway: str
    online: bool | None
    status_ts: EpochMs | None
    version: str | None
    last_seen_ms: EpochMs | None = None
    offline_from_ms: EpochMs | None = None
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


Boundary = Literal["before", "in", "after"]
BOUNDARY = "before the period's start or after its end, used by the maths (before: the last state known; after: to \
tell a stop at the end, and production up to the end)"


class EventRow(Model):
    """An online, offline or state event as the ledger received it (`events.csv`), with the ones before and after
    the period the maths uses."""

    gateway: str
    device: str
    ts_ms: EpochMs
    kind: str
    state: str | None
    reason: str
    boundary: Boundary = Field("in", description=BOUNDARY)


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
    boundary: Boundary = Field("in", description=BOUNDARY)


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


# ---------------------------------------------------------------- what the figures are computed from (pack inputs)


class DeviceMetaRow(Model):
    """A device a gateway reported on, and what it announced of itself (`device_meta.csv`; `announced` false:
    no metadata yet, the other columns empty)."""

    gateway: str
    device: str
    announced: bool
    announced_ms: EpochMs | None = None
    name: str = ""
    type: str = ""
    line: str = ""
    production: bool | None = None
    config_hash: str = ""
    version: str = ""


class TagRow(Model):
    """A tag of a device as announced (`tags.csv`): its unit, business domain and read interval."""

    gateway: str
    device: str
    tag: str
    unit: str | None
    domain: str | None
    type: str | None
    interval_s: float | None


class OeeSettingsRow(Model):
    """The OEE settings a device announced with its config hash (`oee_settings.csv`): what its OEE is computed
    with."""

    gateway: str
    device: str
    config_hash: str
    state_tag: str
    total_count_tag: str | None
    good_count_tag: str | None
    reject_count_tag: str | None
    ideal_cycle_time_s: float | None
    counter_max: float | None
    resolution: float
    micro_stop_s: float
    micro_stop_loss: str


class StateRow(DeviceKey):
    """A stretch of one OEE state of a device in the period (`state_timeline.csv`)."""

    from_ms: EpochMs
    to_ms: EpochMs
    seconds: float
    state: str = Field(description="running, idle, fault, setup, planned_stop, offline or unknown")
    micro_stop: bool
    plan: Literal["work", "break", "none"] = Field(description="planned operation time, a planned break, unscheduled")


class AreaOption(Model):
    """A business area of the list in force (`settings.json`)."""

    key: str
    zh: str
    en: str
    domains: list[str]


class PackPeriod(Model):
    from_ms: EpochMs
    to_ms: EpochMs
    as_of_ms: EpochMs
    timezone: str


class PackSettings(Model):
    """What the figures of a pack follow besides its CSVs (`settings.json`): the enterprise, the period and the
    moment of export (what "now" was), the shift calendar, the networked rule, the business areas, the silence
    after which a gateway counts as stopped, and the equipment-ledger import with its original file."""

    schema_: Literal["edgegw-evidence-settings/1"] = Field("edgegw-evidence-settings/1", alias="schema")
    generator: str
    generated_at_ms: EpochMs
    enterprise: Enterprise
    period: PackPeriod
    calendar: list[Shift]
    networked_rule: NetworkedRuleInfo
    areas: list[AreaOption]
    areas_source: str
    silence_ms: int
    ledger_import: LedgerImport | None
    equipment_file: str | None = Field(description="the imported equipment sheet as it was received, in the pack")


class AuditRecord(Model):
    """The audit of the period run at export (`audit.json`): whether the ledger still holds what the gateways
    sent (cloud_bridge.cloud.trust.audit), its verdict in a sentence, and the audit's own report."""

    schema_: Literal["edgegw-evidence-audit/1"] = Field("edgegw-evidence-audit/1", alias="schema")
    status: Literal["passed", "failed", "not_available", "error"]
    summary: str
    report: dict[str, Any] | None = None


# ---------------------------------------------------------------- the pilot's overview (overview.py)


class OverviewGateway(Model):
    """A gateway's retained status (online or not, since when)."""

    gateway: str
    online: bool | None
    status_ts: EpochMs | None


class OverviewRow(Model):
    """One enterprise's equipment indicators for the period, as its evidence's summary gives them."""

    enterprise: Enterprise
    period: PeriodBounds
    denominator_source: Literal["equipment_ledger", "gateway_metadata"]
    equipment_total: int
    networked: Indicator = Field(description="networked ratio: networked / all production equipment")
    digitized: Indicator = Field(description="digitized ratio, as the equipment ledger declares it")
    online_now: OnlineNow
    online_time: OnlineTime = Field(description="online time inside planned time, connected devices")
    oee_devices: int = Field(description="devices with OEE figures (per device in the enterprise's evidence)")
    gateways: list[OverviewGateway]


class OverviewTotals(Model):
    enterprises: int
    equipment_total: int
    networked: int
    online_planned_s: float
    planned_s: float
    online_rate: float | None


class Overview(Model):
    """Every enterprise's indicators for one period (GET /api/v1/overview, the portal's overview page)."""

    generated_at_ms: EpochMs
    enterprises: list[OverviewRow]
    totals: OverviewTotals
    computed_from_days: int = Field(description="enterprises summed from the per-device-day summaries")
    computed_in_full: int = Field(description="enterprises computed from their full evidence (see README)")
    computed_day_rows: int = Field(
        0, description="per-device-day summaries computed for this answer (0 once the background fill has run)"
    )
