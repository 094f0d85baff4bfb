"""The TSDB writer: data messages → InfluxDB line protocol over the InfluxDB v2 write API.

Works with InfluxDB 2.x/3.x and with VictoriaMetrics, where measurement `sf` and field `v` become
the series `sf_v{dev=…,ent=…,gw=…,q=…,tag=…,unit=…}`. Errors are raised to the caller (the
ingester retries and decides about acknowledgement).

Writing the same point twice: InfluxDB keeps one (same series and timestamp: the last write wins);
VictoriaMetrics keeps both unless it runs with `-dedup.minScrapeInterval=1ms`. The ingester checks
the ledger before writing, so only a crash or a race between ingesters can write a point twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from cloud_bridge.wire.codec import DataMessage
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


def to_lines(
    measurement: str,
    enterprise_id: str,
    msg: DataMessage,
    tails: dict[tuple[str, str, str | None], str] | None = None,
) -> list[str]:
    """One line per numeric or boolean sample, timestamps in milliseconds; other samples are left out.

    `tails` may carry escaped "q=…,tag=…[,unit=…] v=" parts from one call to the next (a cache kept by
    the caller, cleared here when it grows past 100,000 entries).
    """
    if tails is None:
        tails = {}
    elif len(tails) > 100_000:
        tails.clear()
    head = (
        f"{measurement.translate(_ESCAPE_MEASUREMENT)},dev={escape_tag(msg.dev)},"
        f"ent={escape_tag(enterprise_id)},gw={escape_tag(msg.gw)},"
    )
    # (tag, quality) → everything up to the value: "sf,dev=…,ent=…,gw=…,q=good,tag=…[,unit=…] v="
    # (tag keys sorted, as line protocol prefers). Built once per pair, not per sample.
    prefixes: dict[tuple[str, str], str] = {}
    units = msg.units
    lines: list[str] = []
    append = lines.append
    for s in msg.samples:
        v = s.v
        kind = type(v)
        # The wire codec gives exact JSON types and only finite floats: a fast path for each.
        if kind is float:
            value = repr(v)
        elif kind is int:
            try:
                value = repr(float(v))
            except OverflowError:  # an integer beyond the float range
                continue
        elif kind is bool:
            value = "1.0" if v else "0.0"
        else:
            text = field_value(v)
            if text is None:
                continue
            value = text
        key = (s.tag, s.q)
        prefix = prefixes.get(key)
        if prefix is None:
            unit = units.get(s.tag)
            tail = tails.get((s.tag, s.q, unit))
            if tail is None:
                tail = f"q={s.q},tag={escape_tag(s.tag)}" + (f",unit={escape_tag(unit)}" if unit else "") + " v="
                tails[(s.tag, s.q, unit)] = tail
            prefix = prefixes[key] = head + tail
        append(f"{prefix}{value} {s.ts}")
    return lines


class TsdbWriter:
    """Synchronous writer of data messages to an InfluxDB v2 compatible write endpoint.

    `gzip=True` compresses request bodies (worth it over a WAN link; on loopback it only costs CPU).
    """

    def __init__(self, section: InfluxSection, *, gzip: bool = False) -> None:
        self.section = section
        self.measurement = section.measurement
        token = section.token
        self._client = InfluxDBClient(
            url=section.url,
            token=token,
            org=section.org,
            timeout=int(section.timeout * 1000),
            enable_gzip=gzip,
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._tails: dict[tuple[str, str, str | None], str] = {}  # see to_lines

    def write(self, enterprise_id: str, msg: DataMessage) -> int:
        """Write one message's samples as one request; return the number of points written."""
        return self.write_many([(enterprise_id, msg)])

    def write_many(self, items: Iterable[tuple[str, DataMessage]]) -> int:
        """Write the samples of many (enterprise id, message) pairs as ONE request; return the number
        of points written.

        Samples that are not numbers or booleans (strings, integers beyond the float range) are
        skipped: the message's sample count minus what it contributed. Nothing is sent when no
        point is left.
        """
        lines: list[str] = []
        for enterprise_id, msg in items:
            lines += self.lines(enterprise_id, msg)
        if lines:
            self.write_lines(lines)
        return len(lines)

    def lines(self, enterprise_id: str, msg: DataMessage) -> list[str]:
        """The line protocol of one message (see `to_lines`)."""
        return to_lines(self.measurement, enterprise_id, msg, self._tails)

    def write_lines(self, lines: list[str]) -> None:
        """Send ready line-protocol lines (millisecond timestamps) as one request."""
        self._write.write(
            bucket=self.section.bucket,
            org=self.section.org,
            record="\n".join(lines).encode(),
            write_precision=_MS,
        )

    def close(self) -> None:
        self._write.close()
        self._client.close()
