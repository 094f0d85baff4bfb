"""OEE at the edge, from the gateway's own history (`OeeHistory`): what `GET /api/v1/metrics/oee` and the
demo summary report. The maths is `cloud_bridge.metrics.compute_oee`, the same the cloud uses."""

from __future__ import annotations

from typing import Any

from cloud_bridge.metrics import CountPoint, OeeResult, compute_oee, current_shift, oee_params
from cloud_bridge.metrics.period import PeriodError, iso_local, parse_instant
from edge_config import timing
from edge_config.models import GatewayConfig
from gateway.oee.history import OeeHistory
from gateway.oee.tracker import oee_meta


class NoOee(LookupError):
    """The device is unknown, or has no OEE settings."""


def device_config(config: GatewayConfig, device_id: str) -> Any:
    for d in config.devices:
        if d.id == device_id:
            return d
    raise NoOee(f"no device {device_id!r} in this gateway's config")


def window(config: GatewayConfig, start: str | None, end: str | None, now_ms: int) -> tuple[int, int, str | None]:
    """[start, end) in epoch ms and the shift's label: by default the current shift up to now."""
    tz = config.timezone
    if start is None and end is None:
        occ = current_shift(config.shifts, tz, now_ms)
        return occ.start, min(occ.end, now_ms), occ.label(tz)
    lo = parse_instant(start, tz) if start else current_shift(config.shifts, tz, now_ms).start
    hi = min(parse_instant(end, tz, end=True), now_ms) if end else now_ms
    if hi <= lo:
        raise PeriodError("the window must end after it starts (and not start in the future)")
    if hi - lo > config.history.retention * 1000:  # bounds the work the API can ask of the gateway
        raise PeriodError(
            f"a window is at most {config.history.retention / 86400:g} days, the history the gateway keeps "
            "(history.retention); ask the cloud's evidence API for longer periods"
        )
    return lo, hi, None


def local_oee(
    config: GatewayConfig,
    history: OeeHistory,
    device_id: str,
    start: int,
    end: int,
    *,
    live: CountPoint | None = None,
) -> OeeResult:
    """OEE of a device over [start, end) from the local history (`live`: the counters as last read, not
    yet in the history)."""
    device = device_config(config, device_id)
    meta = oee_meta(device)
    if meta is None:
        raise NoOee(f"device {device_id!r} has no oee: settings (state tag, counters) in the config")
    margin = round(meta.micro_stop_s * 1000)
    w = history.window(device_id, start, end, margin)
    counts = [c for c in w.counts if c.total is not None]
    if live is not None and live.total is not None and (not counts or live.ts > counts[-1].ts):
        counts.append(live)
    return compute_oee(
        start=start,
        end=end,
        states=w.states,
        online=w.online,
        counts=counts,
        shifts=config.shifts,
        tz=config.timezone,
        params=oee_params(meta),
    )


def oee_report(
    config: GatewayConfig,
    history: OeeHistory,
    device_id: str,
    start: str | None = None,
    end: str | None = None,
    *,
    now_ms: int | None = None,
    live: CountPoint | None = None,
) -> dict[str, Any]:
    """The edge API's answer: availability, performance, quality, OEE, time and loss breakdown."""
    now = now_ms if now_ms is not None else timing.now_ms()
    device_config(config, device_id)
    lo, hi, shift = window(config, start, end, now)
    result = local_oee(config, history, device_id, lo, hi, live=live)
    tz = config.timezone
    return {
        "device": device_id,
        "gateway": config.gateway.id,
        "shift": shift,
        "from": iso_local(lo, tz),
        "to": iso_local(hi, tz),
        "timezone": tz,
        **result.to_dict(tz),
    }
