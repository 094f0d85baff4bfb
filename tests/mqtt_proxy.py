"""A TCP proxy in front of a real broker that can misbehave the way field networks do, for fault tests.

It frames MQTT packets (fixed header + remaining length) in both directions and, per connection:
- `swallow_publishes`: drops PUBLISH packets from the client, forwards everything else (CONNECT,
  PINGREQ, ...): the broker stays alive to the client but never acknowledges a message — a wedged
  broker or a broken middlebox;
- `nack_code` / `nacks_left`: rewrites the next PUBACKs from the broker into failures with that MQTT 5
  reason code (the broker did take the message).
Only the first `wedge_connections` connections swallow; later ones pass messages through.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

PUBLISH, PUBACK = 3, 4


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(1)
    length, mult, raw = 0, 1, b""
    while True:
        b = await reader.readexactly(1)
        raw += b
        length += (b[0] & 0x7F) * mult
        if not b[0] & 0x80:
            break
        mult *= 128
    return head + raw + await reader.readexactly(length)


class MqttProxy:
    def __init__(self, upstream_port: int, *, wedge_connections: int = 0) -> None:
        self.upstream_port = upstream_port
        self.wedge_connections = wedge_connections
        self.nack_code = 0
        self.nacks_left = 0
        self.connections = 0
        self.swallowed = 0
        self.nacked = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ per connection

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        change: Callable[[bytes], bytes | None],
    ) -> None:
        try:
            while True:
                packet = change(await _read_packet(reader))
                if packet is not None:
                    writer.write(packet)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _from_client(self, wedged: bool) -> Callable[[bytes], bytes | None]:
        def change(packet: bytes) -> bytes | None:
            if wedged and packet[0] >> 4 == PUBLISH:
                with self._lock:
                    self.swallowed += 1
                return None
            return packet

        return change

    def _from_broker(self, packet: bytes) -> bytes | None:
        if packet[0] >> 4 != PUBACK:
            return packet
        with self._lock:
            if self.nacks_left <= 0:
                return packet
            self.nacks_left -= 1
            self.nacked += 1
            code = self.nack_code
        packet_id = packet[2:4]  # remaining length < 128 for a PUBACK: one length byte
        return bytes((PUBACK << 4, 4)) + packet_id + bytes((code, 0))

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
            wedged = self.connections <= self.wedge_connections
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(
            self._pipe(client_r, broker_w, self._from_client(wedged)),
            self._pipe(broker_r, client_w, self._from_broker),
        )

    # ------------------------------------------------------------ life cycle (its own thread and loop)

    def start(self) -> MqttProxy:
        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                self._ready.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._server.serve_forever()

            with contextlib.suppress(RuntimeError):
                loop.run_until_complete(main())
            loop.close()

        self._thread = threading.Thread(target=serve, name="mqtt-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the MQTT proxy did not start")
        return self

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            for task in asyncio.all_tasks(self._loop):
                self._loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(5)
