"""OPC UA driver: one class per device for both tag modes.

- `subscribe` tags become monitored items of one subscription (sampling interval, queue size,
  absolute or percent deadband); each Publish response becomes one batch of Readings.
- `poll` tags are read with batched Read requests, one loop per poll interval.

As a `SubscribingDriver` (`start(emit, status)` / `stop()`), used by the gateway: a watchdog reports
the device offline when the session dies or the subscription stops publishing (no data and no
keep-alive for 3 keep-alive periods), and the gateway restarts it with backoff; a restart builds
a new session and new subscriptions, which is what a restarted server needs.
As a polled `Driver` (`connect` / `read` / `close`), `read` reads every tag once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import Subscription

from drivers.base import DriverError, DriverStatus, Emit, Reading, StatusSink, without_tags
from drivers.opcua.pki import Pki, pki_for
from drivers.opcua.plan import MonitoredTag, Plan, PollGroup, TagRef, chunks, make_plan, stale_after
from drivers.opcua.session import close_client, describe_error, open_client
from drivers.opcua.values import bad_reading, reading_from, status_name
from edge_config.models import OpcUaDevice
from edge_config.opcua import NodeRef, parse_node_id
from edge_config.timing import now_ms

log = logging.getLogger(__name__)


class _QuietLostConnection(logging.Filter):
    """asyncua logs a traceback every second while its publish loop talks to a dead connection; the
    watchdog reports that once, as the device going offline, so drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Publish iteration crashed"):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionError | OSError | asyncio.TimeoutError)


logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_QuietLostConnection())

_ID_TYPES = {
    "i": ua.NodeIdType.Numeric,
    "s": ua.NodeIdType.String,
    "g": ua.NodeIdType.Guid,
    "b": ua.NodeIdType.ByteString,
}


def ua_node_id(ref: NodeRef, namespaces: Sequence[str]) -> ua.NodeId:
    """The asyncua NodeId of a parsed node id; `nsu=` is resolved against the server's namespace array."""
    ns = ref.namespace
    if ref.namespace_uri is not None:
        try:
            ns = list(namespaces).index(ref.namespace_uri)
        except ValueError:
            raise KeyError(f"namespace {ref.namespace_uri!r} is not on the server") from None
    return ua.NodeId(ref.identifier, ns, _ID_TYPES[ref.kind])  # type: ignore[arg-type]


def data_change_filter(deadband: tuple[str, float] | None) -> ua.DataChangeFilter | None:
    """Report on status or value change, beyond an absolute or percent (of EURange) deadband."""
    if deadband is None:
        return None
    kind, value = deadband
    flt = ua.DataChangeFilter()
    flt.Trigger = ua.DataChangeTrigger.StatusValue
    flt.DeadbandType = ua.DeadbandType.Percent if kind == "percent" else ua.DeadbandType.Absolute
    flt.DeadbandValue = float(value)
    return flt


@dataclass
class OpcUaStats:
    sessions: int = 0
    publishes: int = 0  # Publish responses with data
    keepalives: int = 0
    notifications: int = 0
    reads: int = 0
    last_publish: float = 0.0  # monotonic


class _Subscription(Subscription):
    """asyncua's Subscription, but each Publish response goes to the driver whole, in one call.

    asyncua's own delivery makes one task (or queue entry) per notification; a batch is cheaper
    and keeps a scan's values together in one message.
    """

    def __init__(self, client: Client, params: ua.CreateSubscriptionParameters, driver: OpcUaDriver) -> None:
        super().__init__(client.uaclient.session, params, handler=None, queue_maxsize=1)
        self._driver = driver

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        # asyncua sends the next Publish request only when this returns: let it go out first, and
        # hand the batch on right after (call_soon keeps the order of responses)
        asyncio.get_running_loop().call_soon(self._driver._on_publish, publish_result)


class OpcUaDriver:
    """One OPC UA device (both the `SubscribingDriver` and the `Driver` protocol)."""

    def __init__(self, device: OpcUaDevice, *, data_dir: str | Path = "./data") -> None:
        self.device = without_tags(device)  # the tags live on as compact per-tag state below
        self.device_id: str = device.id
        self.conn = device.connection
        self.plan: Plan = make_plan(device)
        self.pki: Pki = pki_for(data_dir, self.conn.trusted_certs_dir)
        self.stats = OpcUaStats()
        self._names = [t.name for t in device.tags]
        self._refs = [TagRef(i, t.name, parse_node_id(t.node)) for i, t in enumerate(device.tags)]
        self._client: Client | None = None
        self._node_ids: list[ua.NodeId | None] = []
        self._unknown: dict[int, str] = {}  # tag index -> why its node id cannot be used
        self._sub: _Subscription | None = None
        self._stale_after = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._emit: Emit | None = None
        self._status: StatusSink | None = None
        self._lost = False
        self._max_read = self.conn.max_nodes_per_request
        self._max_monitor = self.conn.max_nodes_per_request
        self.security = ""

    # ------------------------------------------------------------ SubscribingDriver

    async def start(self, emit: Emit, status: StatusSink | None = None) -> None:
        """Connect, subscribe, start the poll loops and the watchdog; raise DriverError if that fails."""
        self._emit, self._status, self._lost = emit, status, False
        await self._open()
        try:
            monitored = await self._subscribe() if self.plan.monitored else 0
        except DriverError:
            await self.stop()
            raise
        for group in self.plan.poll_groups:
            self._tasks.append(asyncio.create_task(self._poll_loop(group), name=f"opcua-poll-{self.device_id}"))
        self._tasks.append(asyncio.create_task(self._watchdog(), name=f"opcua-watchdog-{self.device_id}"))
        polled = sum(len(g.tags) for g in self.plan.poll_groups)
        parts = [f"{monitored} subscribed"] if self.plan.monitored else []
        parts += [f"{polled} polled"] if polled else []
        if self._unknown:
            parts.append(f"{len(self._unknown)} unusable")
        reason = f"已连接 / connected: {', '.join(parts)} ({self.security})"
        if status is not None:
            status(DriverStatus(True, reason))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for t in tasks:
            if t is not current:
                t.cancel()
        for t in tasks:
            if t is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._sub = None
        client, self._client = self._client, None
        if client is not None:
            await close_client(client, timeout=self.conn.timeout + 1.0)

    # ------------------------------------------------------------ Driver (polled)

    async def connect(self) -> None:
        self._lost = False
        await self._open()

    async def read(self) -> Sequence[Reading]:
        """Every tag, read once with batched Read requests (bad quality for nodes the server refuses)."""
        if self._client is None:
            raise DriverError("not connected")
        return await self._read(self._refs)

    async def close(self) -> None:
        await self.stop()

    # ------------------------------------------------------------ connecting

    async def _open(self) -> None:
        if self._client is not None:
            return
        client, self.security = await open_client(self.conn, self.pki)
        self._client = client
        self.stats.sessions += 1
        client.connection_lost_callback = self._on_connection_lost
        try:
            namespaces = await client.get_namespace_array()
            await self._read_limits(client)
        except Exception as exc:
            await self.stop()
            raise DriverError(describe_error(exc, self.conn, self.pki)) from None
        self._node_ids, self._unknown = [], {}
        for ref in self._refs:
            try:
                self._node_ids.append(ua_node_id(ref.node, namespaces))
            except KeyError as e:
                self._node_ids.append(None)
                self._unknown[ref.index] = str(e).strip("\"'")

    async def _read_limits(self, client: Client) -> None:
        """Respect the server's OperationLimits (0 means no limit)."""
        ids = [
            ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead),  # type: ignore[arg-type]
            ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall),  # type: ignore[arg-type]
        ]
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in ids]
        results = await client.uaclient.read(params)
        limits = [
            dv.Value.Value if dv.Value is not None and dv.StatusCode is not None and dv.StatusCode.is_good() else 0
            for dv in results
        ]
        if isinstance(limits[0], int) and limits[0] > 0:
            self._max_read = min(self._max_read, limits[0])
        if isinstance(limits[1], int) and limits[1] > 0:
            self._max_monitor = min(self._max_monitor, limits[1])

    # ------------------------------------------------------------ subscribing

    async def _subscribe(self) -> int:
        client, timing = self._client, self.plan.timing
        assert client is not None and timing is not None
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = timing.publishing_ms
        params.RequestedMaxKeepAliveCount = timing.keepalive_count
        params.RequestedLifetimeCount = timing.lifetime_count
        params.MaxNotificationsPerPublish = 0  # no limit: one response per cycle
        params.PublishingEnabled = True
        params.Priority = 0
        sub = _Subscription(client, params, self)
        try:
            result = await sub.init()
            self._stale_after = stale_after(result.RevisedPublishingInterval, result.RevisedMaxKeepAliveCount)
            self._sub = sub
            good = 0
            items = [m for m in self.plan.monitored if self._usable(m.tag)]
            for batch in chunks(items, self._max_monitor):
                good += await self._monitor(sub, batch)
        except DriverError:
            raise
        except Exception as exc:
            raise DriverError(describe_error(exc, self.conn, self.pki)) from None
        self.stats.last_publish = time.monotonic()
        return good

    def _usable(self, tag: TagRef) -> bool:
        if tag.index in self._unknown:
            self._emit_safe([Reading(tag.name, None, now_ms(), "bad", self._unknown[tag.index])])
            return False
        return True

    async def _monitor(self, sub: _Subscription, batch: Sequence[MonitoredTag]) -> int:
        requests = []
        for m in batch:
            node_id = self._node_ids[m.tag.index]
            rv = ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value)
            mp = ua.MonitoringParameters()
            mp.ClientHandle = m.tag.index + 1
            mp.SamplingInterval = m.sampling_ms
            mp.QueueSize = m.queue_size
            mp.DiscardOldest = True
            flt = data_change_filter(m.deadband)
            if flt is not None:
                mp.Filter = flt
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=rv, MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=mp
                )
            )
        results = await sub.create_monitored_items(requests)
        refused = []
        for m, res in zip(batch, results, strict=True):
            if isinstance(res, ua.StatusCode):
                refused.append(bad_reading(m.tag.name, res.value, now_ms()))
        if refused:
            log.warning("device %s: %d nodes refused, e.g. %s: %s", self.device_id, len(refused), refused[0].tag,
                        refused[0].error)  # fmt: skip
            self._emit_safe(refused)
        return len(batch) - len(refused)

    def _on_publish(self, result: ua.PublishResult) -> None:
        """Runs inside asyncua's publish loop: turn a Publish response into one batch of Readings."""
        self.stats.last_publish = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            self.stats.keepalives += 1
            return
        self.stats.publishes += 1
        names, now = self._names, now_ms()
        readings: list[Reading] = []
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                for item in notif.MonitoredItems:
                    i = item.ClientHandle - 1
                    if 0 <= i < len(names):
                        readings.append(reading_from(names[i], item.Value, now))
            elif isinstance(notif, ua.StatusChangeNotification):
                code = notif.Status.value if notif.Status is not None else 0
                self._report_lost(f"订阅状态 / subscription status {status_name(code)}")
        if readings:
            self.stats.notifications += len(readings)
            self._emit_safe(readings)

    def _emit_safe(self, readings: list[Reading]) -> None:
        if self._emit is None:
            return
        try:
            self._emit(readings)
        except Exception:
            log.exception("device %s: emitting %d readings failed", self.device_id, len(readings))

    # ------------------------------------------------------------ polling

    async def _poll_loop(self, group: PollGroup) -> None:
        next_due = time.monotonic()
        while not self._lost:
            try:
                readings = await self._read(group.tags)
            except DriverError as e:
                self._report_lost(str(e))
                return
            self._emit_safe(list(readings))
            next_due += group.interval
            now = time.monotonic()
            if next_due < now:  # overrun: skip the missed slots rather than queue them
                next_due = now + group.interval - (now - next_due) % group.interval
            await asyncio.sleep(next_due - now)

    async def _read(self, tags: Sequence[TagRef]) -> list[Reading]:
        client = self._client
        if client is None:
            raise DriverError("not connected")
        out: list[Reading] = []
        usable = []
        for t in tags:
            if t.index in self._unknown:
                out.append(Reading(t.name, None, now_ms(), "bad", self._unknown[t.index]))
            else:
                usable.append(t)
        for batch in chunks(usable, self._max_read):
            params = ua.ReadParameters()
            params.MaxAge = 0
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.NodesToRead = [
                ua.ReadValueId(NodeId=self._node_ids[t.index], AttributeId=ua.AttributeIds.Value) for t in batch
            ]
            try:
                results = await client.uaclient.read(params)
            except ua.UaStatusCodeError as exc:
                if exc.code is not None and (exc.code & 0xFFFF0000) in (
                    ua.StatusCodes.BadTooManyOperations,
                    ua.StatusCodes.BadNothingToDo,
                ):
                    now = now_ms()
                    out.extend(bad_reading(t.name, exc.code, now) for t in batch)
                    continue
                raise DriverError(describe_error(exc, self.conn, self.pki)) from None
            except Exception as exc:
                raise DriverError(describe_error(exc, self.conn, self.pki)) from None
            now = now_ms()
            out.extend(reading_from(t.name, dv, now) for t, dv in zip(batch, results, strict=True))
        self.stats.reads += 1
        return out

    # ------------------------------------------------------------ watchdog

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._report_lost(f"连接中断 / connection lost: {describe_error(exc, self.conn, self.pki)}")

    def _report_lost(self, reason: str) -> None:
        """Say once that this session is done; the gateway stops us and starts again after a backoff."""
        if self._lost:
            return
        self._lost = True
        log.warning("device %s: %s", self.device_id, reason)
        if self._status is not None:
            self._status(DriverStatus(False, reason))

    async def _watchdog(self) -> None:
        period = max(0.2, min(1.0, self.conn.keepalive / 2))
        while not self._lost:
            await asyncio.sleep(period)
            client = self._client
            if client is None:
                return
            if client.uaclient.state is not UaClientState.CONNECTED:
                self._report_lost(f"会话中断 / session lost (client state {client.uaclient.state.value})")
                return
            if self._sub is not None:
                silent = time.monotonic() - self.stats.last_publish
                if silent > self._stale_after:
                    self._report_lost(
                        f"订阅停止发布 / subscription stopped publishing: nothing for {silent:.0f} s "
                        f"(keep-alive expected every {self._stale_after / 3:.1f} s)"
                    )
                    return
