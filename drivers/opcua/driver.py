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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import Subscription
from asyncua.common.utils import ServiceError
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.ua.uaerrors import UaStructParsingError

from drivers.base import DriverError, DriverStatus, Emit, Reading, StatusSink, without_tags
from drivers.opcua.fastpublish import DataChanges, PublishResponse, PublishResult, read_publish
from drivers.opcua.pki import Pki, pki_for
from drivers.opcua.plan import MonitoredGroup, Plan, PollGroup, TagRef, chunks, make_plan, stale_after
from drivers.opcua.session import close_client, describe_error, open_client
from drivers.opcua.values import bad_reading, reading_from, reading_of, status_name
from edge_config.models import OpcUaDevice
from edge_config.opcua import NodeRef
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
    fast_publishes: int = 0  # responses read by `fastpublish` (the others decoded by asyncua)
    reads: int = 0
    last_publish: float = 0.0  # monotonic


def _read_publish_fast(session: Any, stats: OpcUaStats) -> None:
    """The session's Publish responses read by `fastpublish` when they are of its common shape, by asyncua
    otherwise: asyncua's `publish`, with the decoding step first tried the cheap way. asyncua's publish loop
    reads only what `fastpublish.PublishResponse` carries (the subscription, the sequence number to
    acknowledge, whether there were notifications); our `_Subscription` hands the rest to the driver.
    An asyncua without the session's `_send_request` keeps its own `publish`."""
    send = getattr(session, "_send_request", None)
    if send is None or not hasattr(session, "publish"):
        log.warning("this asyncua has no session._send_request: Publish responses are decoded by asyncua")
        return

    async def publish(acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse | PublishResponse:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await send(request, timeout=0)
        fast = read_publish(bytes(data))
        if fast is not None:
            stats.fast_publishes += 1
            return fast
        try:
            return struct_from_binary(ua.PublishResponse, data)
        except Exception as ex:
            log.exception("Error parsing notification from server")
            raise UaStructParsingError from ex

    session.publish = publish


class _Subscription(Subscription):
    """asyncua's Subscription, but each Publish response goes to the driver whole, in one call.

    asyncua's own delivery makes one task (or queue entry) per notification; a batch is cheaper
    and keeps a scan's values together in one message.
    """

    def __init__(self, client: Client, params: ua.CreateSubscriptionParameters, driver: OpcUaDriver) -> None:
        super().__init__(client.uaclient.session, params, handler=None, queue_maxsize=1)
        self._driver = driver

    async def publish_callback(self, publish_result: ua.PublishResult | PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        # asyncua sends the next Publish request only when this returns: let it go out first, and
        # hand the batch on right after (call_soon keeps the order of responses)
        asyncio.get_running_loop().call_soon(self._driver._on_publish, publish_result)

    async def create_monitored_items(
        self, monitored_items: Iterable[ua.MonitoredItemCreateRequest]
    ) -> list[int | ua.StatusCode]:
        """asyncua's, without its bookkeeping of each item (a `Node` and a `SubscriptionItemData`, ≈ 1 KB an
        item: 100 MB at 100k nodes). Nothing here reads it: notifications reach the driver by client handle
        (above), nothing is unsubscribed item by item, and a lost session is a restart with a new
        subscription, never asyncua's re-creation of the old one. The server handles or status codes."""
        params = ua.CreateMonitoredItemsParameters()
        params.SubscriptionId = self.subscription_id
        params.ItemsToCreate = list(monitored_items)
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        try:
            results = await self.server.create_monitored_items(params)
        except ServiceError as e:
            raise ua.UaStatusCodeError(e.code) from None
        return [r.MonitoredItemId if r.StatusCode.is_good() else r.StatusCode for r in results]


class OpcUaDriver:
    """One OPC UA device (both the `SubscribingDriver` and the `Driver` protocol)."""

    def __init__(self, device: OpcUaDevice, *, data_dir: str | Path = "./data") -> None:
        self.device = without_tags(device)  # the tags live on as compact per-tag state below
        self.device_id: str = device.id
        self.conn = device.connection
        self.plan: Plan = make_plan(device)
        self.pki: Pki = pki_for(data_dir, self.conn.trusted_certs_dir)
        self.stats = OpcUaStats()
        self._names = [r.name for r in self.plan.refs]
        self._refs = self.plan.refs
        self._client: Client | None = None
        self._namespaces: list[str] = []
        self._poll_ids: dict[int, ua.NodeId] = {}  # polled tags' node ids, made once a session
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
            monitored = await self._subscribe() if self.plan.groups else 0
        except DriverError:
            await self.stop()
            raise
        for group in self.plan.poll_groups:
            self._tasks.append(asyncio.create_task(self._poll_loop(group), name=f"opcua-poll-{self.device_id}"))
        self._tasks.append(asyncio.create_task(self._watchdog(), name=f"opcua-watchdog-{self.device_id}"))
        polled = sum(len(g.tags) for g in self.plan.poll_groups)
        parts = [f"{monitored} subscribed"] if self.plan.groups else []
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
        self._namespaces, self._unknown = list(namespaces), {}
        for ref in self._refs:
            if ref.node.namespace_uri is not None:
                try:
                    ua_node_id(ref.node, self._namespaces)
                except KeyError as e:
                    self._unknown[ref.index] = str(e).strip("\"'")
        # subscribed tags need their node id only to create their monitored item: kept for polled ones
        polled = (t for g in self.plan.poll_groups for t in g.tags if t.index not in self._unknown)
        self._poll_ids = {t.index: ua_node_id(t.node, self._namespaces) for t in polled}

    def _node_id(self, tag: TagRef) -> ua.NodeId:
        made = self._poll_ids.get(tag.index)
        return made if made is not None else ua_node_id(tag.node, self._namespaces)

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
        _read_publish_fast(client.uaclient.session, self.stats)
        sub = _Subscription(client, params, self)
        try:
            result = await sub.init()
            self._stale_after = stale_after(result.RevisedPublishingInterval, result.RevisedMaxKeepAliveCount)
            self._sub = sub
            good = 0
            for group in self.plan.groups:
                tags = [t for t in group.tags if self._usable(t)]
                for batch in chunks(tags, self._max_monitor):
                    good += await self._monitor(sub, group, batch)
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

    async def _monitor(self, sub: _Subscription, group: MonitoredGroup, batch: Sequence[TagRef]) -> int:
        requests = []
        for tag in batch:
            rv = ua.ReadValueId(NodeId=self._node_id(tag), AttributeId=ua.AttributeIds.Value)
            mp = ua.MonitoringParameters()
            mp.ClientHandle = tag.index + 1
            mp.SamplingInterval = group.sampling_ms
            mp.QueueSize = group.queue_size
            mp.DiscardOldest = True
            flt = data_change_filter(group.deadband)
            if flt is not None:
                mp.Filter = flt
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=rv, MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=mp
                )
            )
        results = await sub.create_monitored_items(requests)
        refused = []
        for tag, res in zip(batch, results, strict=True):
            if isinstance(res, ua.StatusCode):
                refused.append(bad_reading(tag.name, res.value, now_ms()))
        if refused:
            log.warning("device %s: %d nodes refused, e.g. %s: %s", self.device_id, len(refused), refused[0].tag,
                        refused[0].error)  # fmt: skip
            self._emit_safe(refused)
        return len(batch) - len(refused)

    def _on_publish(self, result: ua.PublishResult | PublishResult) -> None:
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
            if isinstance(notif, DataChanges):
                for handle, value, vtype, code, ts in notif.changes:
                    i = handle - 1
                    if 0 <= i < len(names):
                        readings.append(reading_of(names[i], value, vtype, code, ts or now))
                notif.changes = []  # as below: not held until the next response
            elif isinstance(notif, ua.DataChangeNotification):
                for item in notif.MonitoredItems:
                    i = item.ClientHandle - 1
                    if 0 <= i < len(names):
                        readings.append(reading_from(names[i], item.Value, now))
                # asyncua's publish loop holds its last response until the next one has arrived and been
                # decoded, ≈ 0.6 KB per notification (6 MB at 10k nodes): let the decoded values go now.
                # It has queued the response's acknowledgement already (publish_callback returned first)
                # and reads nothing else of it.
                notif.MonitoredItems = []
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
                ua.ReadValueId(NodeId=self._node_id(t), AttributeId=ua.AttributeIds.Value) for t in batch
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
