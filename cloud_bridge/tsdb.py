"""The TSDB writer: data messages → InfluxDB line protocol over the InfluxDB v2 write API.

Works with InfluxDB 2.x/3.x and with VictoriaMetrics, where measurement `sf` and field `v` become
the series `sf_v{dev=…,ent=…,gw=…,q=…,tag=…,unit=…}`. Errors are raised to the caller (the
ingester retries and decides about acknowledgement).
"""

from __future__ import annotations

import os
from typing import cast

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from cloud_bridge.wire import DataMessage
from edge_config.models import InfluxSection

# Tag keys and values: escape what line protocol treats specially. The backslash is escaped too,
# so that a value ending in one does not swallow the separator that follows it.
_ESCAPE_TAG = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_MS = cast(WritePrecision, WritePrecision.MS)  # the enum members are typed as plain str
_ESCAPE_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def escape_tag(value: str) -> str:
    return value.translate(_ESCAPE_TAG)


def field_value(v: object) -> str | None:
    """The line-protocol float for a sample value, or None when it cannot be stored as a number."""
    if isinstance(v, bool):
        return "1.0" if v else "0.0"
    if isinstance(v, int | float):
        try:
            return repr(float(v))
        except OverflowError:  # an integer beyond the float range
            return None
    return None  # strings: a TSDB number field cannot hold them


def to_lines(measurement: str, enterprise_id: str, msg: DataMessage) -> list[str]:
    """One line per numeric or boolean sample, timestamps in milliseconds; other samples are left out."""
    head = (
        f"{measurement.translate(_ESCAPE_MEASUREMENT)},dev={escape_tag(msg.dev)},"
        f"ent={escape_tag(enterprise_id)},gw={escape_tag(msg.gw)},q="
    )
    # tag name → ",tag=…[,unit=…]" (tag keys sorted, as line protocol prefers)
    tail: dict[str, str] = {}
    units = msg.units
    lines: list[str] = []
    for s in msg.samples:
        value = field_value(s.v)
        if value is None:
            continue
        t = tail.get(s.tag)
        if t is None:
            unit = units.get(s.tag)
            t = f",tag={escape_tag(s.tag)}" + (f",unit={escape_tag(unit)}" if unit else "")
            tail[s.tag] = t
        lines.append(f"{head}{s.q}{t} v={value} {s.ts}")
    return lines


class TsdbWriter:
    """Synchronous writer of data messages to an InfluxDB v2 compatible write endpoint."""

    def __init__(self, section: InfluxSection) -> None:
        self.section = section
        self.measurement = section.measurement
        token = os.environ.get("EDGEGW_INFLUX_TOKEN") or section.token
        self._client = InfluxDBClient(
            url=section.url, token=token, org=section.org, timeout=int(section.timeout * 1000)
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, enterprise_id: str, msg: DataMessage) -> int:
        """Write one message's samples as one request; return the number of points written.

        Samples that are not numbers or booleans (strings, integers beyond the float range) are
        skipped: `len(msg.samples) - written` of them.
        """
        lines = to_lines(self.measurement, enterprise_id, msg)
        if lines:
            self._write.write(
                bucket=self.section.bucket,
                org=self.section.org,
                record="\n".join(lines),
                write_precision=_MS,
            )
        return len(lines)

    def close(self) -> None:
        self._write.close()
        self._client.close()
