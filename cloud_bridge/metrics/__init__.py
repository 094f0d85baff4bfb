"""Pure OEE and evidence maths: the edge API and the cloud API hand it data and get numbers back.

No I/O, no asyncio, no web framework: every function here is tested with hand-computed fixtures.
"""

from cloud_bridge.metrics.calendar import (
    DEFAULT_SHIFTS,
    PlanSlice,
    ShiftLike,
    ShiftOccurrence,
    ShiftSpec,
    current_shift,
    occurrences,
    plan_slices,
    work_intervals,
)
from cloud_bridge.metrics.counters import CounterStep, counter_delta, counter_steps, default_counter_max
from cloud_bridge.metrics.evidence import (
    Completeness,
    OnlineSummary,
    areas,
    band_label,
    cap_online,
    completeness,
    online_at,
    online_summary,
    ratio,
    score_band,
)
from cloud_bridge.metrics.labels import DOMAIN_AREAS, Label, label
from cloud_bridge.metrics.oee import CountPoint, OeeParams, OeeResult, OeeSettings, compute_oee, oee_params
from cloud_bridge.metrics.timeline import ALL_STATES, MACHINE_STATES, Segment, mark_micro_stops, state_timeline

__all__ = [
    "ALL_STATES",
    "DEFAULT_SHIFTS",
    "DOMAIN_AREAS",
    "MACHINE_STATES",
    "Completeness",
    "CountPoint",
    "CounterStep",
    "Label",
    "OeeParams",
    "OeeResult",
    "OeeSettings",
    "OnlineSummary",
    "PlanSlice",
    "Segment",
    "ShiftLike",
    "ShiftOccurrence",
    "ShiftSpec",
    "areas",
    "band_label",
    "cap_online",
    "completeness",
    "compute_oee",
    "counter_delta",
    "counter_steps",
    "current_shift",
    "default_counter_max",
    "label",
    "mark_micro_stops",
    "occurrences",
    "oee_params",
    "online_at",
    "online_summary",
    "plan_slices",
    "ratio",
    "score_band",
    "state_timeline",
    "work_intervals",
]
