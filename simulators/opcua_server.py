"""OPC UA simulator (asyncua server): pilot-industry equipment with engineering units and ranges,
security policies on, user/password and certificate identities, and hooks for tests to stop,
restart and break it.

Address space (namespace `urn:edgegw:simulator`, always index 2):

    Objects/Plant/<Equipment>/<Tag>     ns=2;s=<Equipment>.<Tag>   with EngineeringUnits (EUInformation,
                                                                   UNECE codes) and EURange properties
    Objects/TypeTest/<Type>             ns=2;s=TypeTest.<Type>     every built-in scalar type, arrays, statuses
    Objects/IdForms/...                 ns=2;i=5001, ns=2;g=…, ns=2;b=…   the other node id notations
    Objects/Bulk/N00000 …               ns=2;s=Bulk.N00000         `bulk` Doubles, each changing once per period

Equipment (`simulators.equipment.Machine`) is stepped once per `period` with `clock` (model time,
scaled in fast scenarios) and the values that changed are written with the wall-clock source
timestamp (plus the machine's `clock_skew`, a fault); a machine taken `offline` has its variables
go BadNoCommunication until it is back. The machines are updated a tenth at a time, every period/10,
so a workshop of 50,000 tags does not write its changes in one burst; `stats` counts the slices that
ran late (an update loop that falls behind shows there). Bulk nodes are written in 50 slices spread
over the period (every 20 ms at 1 s), so a thousand nodes change every second without one burst. A
restart makes a fresh server on the same port with the same certificate: sessions and subscriptions
are gone, as after a real server restart.

Run standalone: `python -m simulators.opcua_server --industry chemicals --port 4840 [--bulk 1000]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.equipment import NS, Machine, node_id
from simulators.stepping import TickStats, tick_loop

log = logging.getLogger(__name__)

NAMESPACE = "urn:edgegw:simulator"
DEFAULT_USERS: dict[str, str] = {"operator": "edgegw-sim"}
SECURITY_CHOICES = ("None", "Sign", "SignAndEncrypt")
BULK_SLICES = 50  # writes every period/50: changes are not phase-locked to a publishing interval
SLICES = 10  # equipment is updated a tenth at a time, every period/10


def _nid(identifier: Any, ns: int = NS) -> ua.NodeId:
    """ua.NodeId without fighting asyncua's int subclasses in the type checker."""
    return ua.NodeId(identifier, ns)  # type: ignore[arg-type]


def _dv(variant: ua.Variant, **fields: Any) -> ua.DataValue:
    return ua.DataValue(variant, **fields)


# display unit -> (UNECE Rec 20 common code, description)
UNITS: dict[str, tuple[str, str]] = {
    "°C": ("CEL", "degree Celsius"),
    "MPa": ("MPA", "megapascal"),
    "kPa": ("KPA", "kilopascal"),
    "Pa": ("PAL", "pascal"),
    "r/min": ("RPM", "revolutions per minute"),
    "%": ("P1", "percent"),
    "m³/h": ("MQH", "cubic metre per hour"),
    "t/h": ("E18", "tonne per hour"),
    "t": ("TNE", "tonne"),
    "kg": ("KGM", "kilogram"),
    "kW": ("KWT", "kilowatt"),
    "kWh": ("KWH", "kilowatt hour"),
    "min": ("MIN", "minute"),
    "h": ("HUR", "hour"),
    "rpm": ("RPM", "revolutions per minute"),
    "V": ("VLT", "volt"),
    "A": ("AMP", "ampere"),
    "Hz": ("HTZ", "hertz"),
    "N": ("NEW", "newton"),
    "N·m": ("NU", "newton metre"),
    "m": ("MTR", "metre"),
    "mm": ("MMT", "millimetre"),
    "µm": ("4H", "micrometre"),
    "m/min": ("2X", "metre per minute"),
    "m/s": ("MTS", "metre per second"),
    "g": ("GRM", "gram"),
    "g/m²": ("GM", "gram per square metre"),
    "ppm": ("59", "part per million"),
    "T/m": ("C92", "reciprocal metre (turns per metre)"),
    "bottles/min": ("C94", "reciprocal minute (bottles per minute)"),
    # counts
    "picks": ("C62", "one (picks)"),
    "coils": ("C62", "one (coils)"),
    "units": ("C62", "one (units tested)"),
    "batches": ("C62", "one (batches)"),
    "bottles": ("C62", "one (bottles)"),
}
UNITS_WITHOUT_CODE = frozenset(("1/1000 spindle·h",))  # ends down per 1,000 spindle-hours: no UNECE code
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

# TypeTest nodes: name -> (variant type, value); arrays have a list value
TYPE_TEST: dict[str, tuple[ua.VariantType, Any]] = {
    "Boolean": (ua.VariantType.Boolean, True),
    "SByte": (ua.VariantType.SByte, -8),
    "Byte": (ua.VariantType.Byte, 200),
    "Int16": (ua.VariantType.Int16, -12345),
    "UInt16": (ua.VariantType.UInt16, 54321),
    "Int32": (ua.VariantType.Int32, -2_000_000_000),
    "UInt32": (ua.VariantType.UInt32, 4_000_000_000),
    "Int64": (ua.VariantType.Int64, -9_000_000_000_000_000_000),
    "UInt64": (ua.VariantType.UInt64, 18_000_000_000_000_000_000),
    "Float": (ua.VariantType.Float, 21.3),
    "Double": (ua.VariantType.Double, 3.141592653589793),
    "String": (ua.VariantType.String, "反应釜 ok"),
    "DateTime": (ua.VariantType.DateTime, datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)),
    "Guid": (ua.VariantType.Guid, uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a")),
    "ByteString": (ua.VariantType.ByteString, b"\x01\x02\xff"),
    "XmlElement": (ua.VariantType.XmlElement, ua.XmlElement("<a>1</a>")),  # type: ignore[arg-type]
    "NodeId": (ua.VariantType.NodeId, _nid("Reactor1.Temperature")),
    "QualifiedName": (ua.VariantType.QualifiedName, ua.QualifiedName("Temperature", NS)),
    "LocalizedText": (ua.VariantType.LocalizedText, ua.LocalizedText("温度", "zh-CN")),
    "StatusCode": (ua.VariantType.StatusCode, ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)),  # type: ignore[arg-type]
    "DoubleArray": (ua.VariantType.Double, [1.5, -2.25, 3.0]),
    "FloatArray": (ua.VariantType.Float, [0.1, 0.2]),
    "Int32Array": (ua.VariantType.Int32, [1, -2, 3]),
    "BooleanArray": (ua.VariantType.Boolean, [True, False]),
    "StringArray": (ua.VariantType.String, ["a", "乙"]),
    "EmptyArray": (ua.VariantType.Int32, []),
}
# TypeTest nodes written with a non-good status
TYPE_TEST_STATUS: dict[str, tuple[ua.VariantType, Any, int]] = {
    "Uncertain": (ua.VariantType.Double, 7.5, ua.StatusCodes.UncertainLastUsableValue),
    "Bad": (ua.VariantType.Double, 0.0, ua.StatusCodes.BadSensorFailure),
}
ID_FORMS: dict[str, tuple[ua.NodeId, str]] = {
    "Numeric": (_nid(5001, NS), "ns=2;i=5001"),
    "Guid": (
        _nid(uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63"), NS),
        "ns=2;g=72962b91-fa75-4ae6-8d28-b404dc7daf63",
    ),
    "Opaque": (_nid(b"\x10\x20\x30\x40", NS), "ns=2;b=ECAwQA=="),
}

_VARIANT = {
    name: getattr(ua.VariantType, name)
    for name in ("Double", "Float", "Boolean", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "String")
}
_UNSET = object()
# status codes the simulator writes again and again: one object each (they are immutable)
_STATUS = {c: ua.StatusCode(c) for c in (ua.StatusCodes.Good, ua.StatusCodes.BadNoCommunication)}  # type: ignore[arg-type]
BULK_FOLDER = 500  # bulk nodes per folder: asyncua adds a child in time linear in its siblings


OpcUaEquipment = Machine  # what the simulator serves


def _variable(parent: ua.NodeId, node: ua.NodeId, name: str, value: ua.Variant, description: str = "",
              property_: bool = False) -> ua.AddNodesItem:  # fmt: skip
    """An AddNodesItem for a scalar read-only variable (or a property: namespace 0 browse name, PropertyType)."""
    from asyncua.common.manage_nodes import _guess_datatype

    item = ua.AddNodesItem()
    item.RequestedNewNodeId = node
    item.BrowseName = ua.QualifiedName(name, 0 if property_ else NS)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = _nid(ua.ObjectIds.HasProperty if property_ else ua.ObjectIds.HasComponent, 0)
    item.TypeDefinition = _nid(ua.ObjectIds.PropertyType if property_ else ua.ObjectIds.BaseDataVariableType, 0)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.Description = ua.LocalizedText(description or name)
    attrs.DataType = _guess_datatype(value)
    attrs.Value = value
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item.NodeAttributes = attrs
    return item


def unece_unit_id(code: str) -> int:
    """UnitId of a UNECE common code as OPC 10000-8 encodes it (ASCII bytes, big-endian)."""
    out = 0
    for ch in code:
        out = (out << 8) | ord(ch)
    return out


def eu_information(unit: str) -> ua.EUInformation:
    code, description = UNITS.get(unit, ("", unit))
    return ua.EUInformation(
        NamespaceUri=UNECE_NAMESPACE,
        UnitId=unece_unit_id(code) if code else -1,
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(description),
    )


def bulk_node_id(i: int) -> str:
    return f"ns={NS};s=Bulk.N{i:05d}"


def bulk_value(i: int, cycle: int) -> float:
    """What bulk node `i` holds in `cycle`: different every cycle, by at least 1."""
    return float(cycle) + (i % 100) / 100.0


class _Users(UserManager):
    """User name/password pairs, registered user certificates, and anonymous when allowed."""

    def __init__(self, users: Mapping[str, str], certificates: Sequence[bytes], allow_anonymous: bool) -> None:
        self.users = dict(users)
        self.certificates = set(certificates)
        self.allow_anonymous = allow_anonymous

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None:
            ok = self.users.get(username) == password
            return User(role=UserRole.User, name=username) if ok else None
        der = (
            certificate.public_bytes(serialization.Encoding.DER)
            if hasattr(certificate, "public_bytes")
            else certificate
        )
        if der is not None and der in self.certificates:
            return User(role=UserRole.User, name="certificate")
        return User(role=UserRole.User) if self.allow_anonymous else None


async def ensure_server_certificate(pki_dir: Path, app_uri: str) -> tuple[Path, Path]:
    """The simulator's own certificate and key, created once per pki_dir (kept across restarts)."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    cert, key = pki_dir / "server_cert.der", pki_dir / "server_key.pem"
    await cert_gen.setup_self_signed_certificate(
        key,
        cert,
        app_uri,
        socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"organizationName": "edgegw simulator"},
    )
    return cert, key


class OpcUaSimulator:
    """Serves equipment models (and optional bulk nodes) over OPC UA on `host:port`."""

    def __init__(
        self,
        equipment: Sequence[OpcUaEquipment] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 4840,
        pki_dir: str | Path | None = None,
        security: Sequence[str] = SECURITY_CHOICES,
        users: Mapping[str, str] | None = None,
        user_certificates: Sequence[str | Path] = (),
        allow_anonymous: bool = True,
        bulk: int = 0,
        period: float = 1.0,
        clock: Callable[[], float] = time.time,
        type_test: bool = True,
    ) -> None:
        for s in security:
            if s not in SECURITY_CHOICES:
                raise ValueError(f"security {s!r}: one of {', '.join(SECURITY_CHOICES)}")
        self.equipment = list(equipment)
        self.host, self.port = host, port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if pki_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgegw-opcua-sim-")
            pki_dir = self._tmp.name
        self.pki_dir = Path(pki_dir)
        self.security = tuple(security)
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.user_certificates = [Path(p) for p in user_certificates]
        self.allow_anonymous = allow_anonymous
        self.bulk = bulk
        self.period = period
        self.clock = clock
        self.type_test = type_test
        self.application_uri = f"urn:{socket.gethostname()}:edgegw:simulator"
        self.writes = 0
        self.starts = 0
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._nodes: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}  # "Reactor1.Temperature" -> ...
        # per machine: (signal name, node id, variant type) of its variables
        self._vars: list[list[tuple[str, ua.NodeId, ua.VariantType]]] = []
        self._last: list[dict[str, Any]] = []
        self.offline: set[str] = set()  # machines whose variables read BadNoCommunication
        self.stats = TickStats()
        self._bulk_ids: list[ua.NodeId] = []
        self._bulk_cycle = 0
        self._cycle = 0

    # ------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def certificate_path(self) -> Path:
        return self.pki_dir / "server_cert.der"

    @property
    def bulk_cycle(self) -> int:
        return self._bulk_cycle

    async def start(self) -> None:
        """Build the address space and listen; returns once the port accepts connections."""
        if self._server is not None:
            return
        cert_file, key_file = await ensure_server_certificate(self.pki_dir, self.application_uri)
        certs = [await _der(p) for p in self.user_certificates]
        server = Server(user_manager=_Users(self.users, certs, self.allow_anonymous))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("edgegw OPC UA simulator")
        await server.set_application_uri(self.application_uri)
        await server.load_certificate(str(cert_file))
        await server.load_private_key(str(key_file))
        server.set_security_policy(self._policies())
        tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken]
        if self.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        idx = await server.register_namespace(NAMESPACE)
        if idx != NS:
            raise RuntimeError(f"simulator namespace got index {idx}, expected {NS}")
        self._nodes, self._vars, self._last, self._bulk_ids = {}, [], [], []
        await self._build(server)
        try:
            await server.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port} (port in use?): {exc}") from exc
        self._server = server
        self.starts += 1
        await self._write_equipment()
        self._tasks = [
            asyncio.create_task(
                tick_loop(self.period / SLICES, self._equipment_tick, self.stats, self.period),
                name="opcua-sim-equipment",
            )
        ]
        if self._bulk_ids:
            self._tasks.append(asyncio.create_task(self._bulk_loop(), name="opcua-sim-bulk"))

    async def stop(self) -> None:
        """Stop serving: connections drop, sessions and subscriptions are forgotten."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
            await asyncio.sleep(0)

    async def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down for `down_for` seconds, start a fresh server with the same address space."""
        await self.stop()
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    async def close(self) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> OpcUaSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ test hooks

    async def write(self, path: str, value: Any, status: int = ua.StatusCodes.Good) -> None:
        """Set `Equipment.Tag` (or `TypeTest.X`, `Bulk.N00001`) now, with the given status."""
        node, vtype = self._nodes[path]
        await self._write(node, vtype, value, status, datetime.now(timezone.utc))

    async def drop_subscriptions(self) -> int:
        """Forget every subscription without telling the clients: they go silent (a classic failure)."""
        if self._server is None:
            return 0
        service = self._server.iserver.subscription_service
        ids = list(service.subscriptions)
        for sid in ids:
            sub = service.subscriptions.pop(sid)
            await sub.stop()
        return len(ids)

    def subscription_count(self) -> int:
        if self._server is None:
            return 0
        return len(self._server.iserver.subscription_service.subscriptions)

    # ------------------------------------------------------------ address space

    def _policies(self) -> list[ua.SecurityPolicyType]:
        out = []
        if "None" in self.security:
            out.append(ua.SecurityPolicyType.NoSecurity)
        if "SignAndEncrypt" in self.security:
            out += [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
                ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
            ]
        if "Sign" in self.security:
            out += [
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
                ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
            ]
        return out

    async def _build(self, server: Server) -> None:
        objects = server.nodes.objects
        plant = await objects.add_folder(_nid("Plant", NS), ua.QualifiedName("Plant", NS))
        now = self.clock()
        for eq in self.equipment:
            eq.step(now)
            values = eq.values()
            obj = await plant.add_object(_nid(eq.name, NS), ua.QualifiedName(eq.name, NS))
            await obj.write_attribute(ua.AttributeIds.DisplayName, _dv(ua.Variant(ua.LocalizedText(eq.display_name))))
            # a machine's variables and their properties in one AddNodes call: one call per node takes
            # minutes for a workshop of 50,000 tags
            items, variables = [], []
            for n in eq.nodes:
                path = f"{eq.name}.{n.browse_name}"
                vtype = _VARIANT[n.variant]
                node = _nid(path, NS)
                items.append(_variable(obj.nodeid, node, n.browse_name, ua.Variant(values[n.signal], vtype),
                                       n.description))  # fmt: skip
                if n.unit:
                    items.append(_variable(node, _nid(f"{path}.EngineeringUnits", NS), "EngineeringUnits",
                                           ua.Variant(eu_information(n.unit)), property_=True))  # fmt: skip
                if n.range is not None:
                    eu_range = ua.Variant(ua.Range(Low=float(n.range[0]), High=float(n.range[1])))
                    items.append(_variable(node, _nid(f"{path}.EURange", NS), "EURange", eu_range, property_=True))
                self._nodes[path] = (node, vtype)
                variables.append((n.signal, node, vtype))
            for result in await server.iserver.isession.add_nodes(items):
                result.StatusCode.check()
            self._vars.append(variables)
            self._last.append({})
        if self.type_test:
            await self._build_type_test(server)
        if self.bulk:
            await self._build_bulk(server)

    async def _build_type_test(self, server: Server) -> None:
        objects = server.nodes.objects
        tt = await objects.add_object(_nid("TypeTest", NS), ua.QualifiedName("TypeTest", NS))
        stamp = datetime(2024, 1, 1, tzinfo=timezone.utc)
        for name, (vtype, value) in TYPE_TEST.items():
            path = f"TypeTest.{name}"
            variant = ua.Variant(value, vtype, is_array=isinstance(value, list))
            var = await tt.add_variable(_nid(path, NS), ua.QualifiedName(name, NS), variant, varianttype=vtype)
            await server.write_attribute_value(var.nodeid, _dv(variant, SourceTimestamp=stamp, ServerTimestamp=stamp))
            self._nodes[path] = (var.nodeid, vtype)
        for name, (vtype, value, code) in TYPE_TEST_STATUS.items():
            path = f"TypeTest.{name}"
            var = await tt.add_variable(_nid(path, NS), ua.QualifiedName(name, NS), ua.Variant(value, vtype))
            self._nodes[path] = (var.nodeid, vtype)
            await self._write(var.nodeid, vtype, value, code, stamp, server)
        forms = await objects.add_object(_nid("IdForms", NS), ua.QualifiedName("IdForms", NS))
        for name, (nid, _text) in ID_FORMS.items():
            var = await forms.add_variable(nid, ua.QualifiedName(name, NS), ua.Variant(0.0, ua.VariantType.Double))
            self._nodes[f"IdForms.{name}"] = (var.nodeid, ua.VariantType.Double)

    async def _build_bulk(self, server: Server) -> None:
        """Add the bulk nodes in one AddNodes call (one call per node takes seconds for 10,000)."""
        objects = server.nodes.objects
        bulk = await objects.add_object(_nid("Bulk", NS), ua.QualifiedName("Bulk", NS))
        folders = []
        for g in range(0, self.bulk, BULK_FOLDER):  # node ids stay Bulk.N00000…: folders only group them
            name = f"G{g // BULK_FOLDER:03d}"
            folders.append(await bulk.add_folder(_nid(f"Bulk.{name}", NS), ua.QualifiedName(name, NS)))
        items = []
        for i in range(self.bulk):
            name = f"N{i:05d}"
            item = ua.AddNodesItem()
            item.RequestedNewNodeId = _nid(f"Bulk.{name}", NS)
            item.BrowseName = ua.QualifiedName(name, NS)
            item.NodeClass = ua.NodeClass.Variable
            item.ParentNodeId = folders[i // BULK_FOLDER].nodeid
            item.ReferenceTypeId = _nid(ua.ObjectIds.HasComponent, 0)
            item.TypeDefinition = _nid(ua.ObjectIds.BaseDataVariableType, 0)
            attrs = ua.VariableAttributes()
            attrs.DisplayName = ua.LocalizedText(name)
            attrs.DataType = _nid(ua.ObjectIds.Double, 0)
            attrs.Value = ua.Variant(bulk_value(i, 0), ua.VariantType.Double)
            attrs.ValueRank = ua.ValueRank.Scalar
            attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
            item.NodeAttributes = attrs
            items.append(item)
        results = await server.iserver.isession.add_nodes(items)
        for i, res in enumerate(results):
            res.StatusCode.check()
            self._bulk_ids.append(res.AddedNodeId)
            self._nodes[f"Bulk.N{i:05d}"] = (res.AddedNodeId, ua.VariantType.Double)

    # ------------------------------------------------------------ value updates

    async def _write(
        self,
        node: ua.NodeId,
        vtype: ua.VariantType,
        value: Any,
        status: int,
        ts: datetime,
        server: Server | None = None,
    ) -> None:
        server = server or self._server
        if server is None:
            return
        variant = ua.Variant() if value is None else ua.Variant(value, vtype, is_array=isinstance(value, list))
        code = _STATUS.get(status) or ua.StatusCode(status)  # type: ignore[arg-type]
        dv = _dv(variant, StatusCode=code, SourceTimestamp=ts, ServerTimestamp=ts)
        # straight to the address space (Server.write_attribute_value only passes it on, twice)
        await server.iserver.aspace.write_attribute_value(node, ua.AttributeIds.Value, dv)
        self.writes += 1

    async def _write_equipment(self, part: int | None = None) -> None:
        """Step the machines of one part (machine i is in part i mod SLICES; None: all) to the model clock and
        write the values that changed."""
        now = self.clock()
        wall = time.time()
        good, bad = ua.StatusCodes.Good, ua.StatusCodes.BadNoCommunication
        for i, (eq, variables, last) in enumerate(zip(self.equipment, self._vars, self._last, strict=True)):
            if part is not None and i % SLICES != part:
                continue
            eq.step(now)
            stamp = datetime.fromtimestamp(wall + eq.clock_skew, timezone.utc)
            if eq.name in self.offline:
                if last.get("") is not bad:  # once, when it goes offline
                    for _, node, vtype in variables:
                        await self._write(node, vtype, None, bad, stamp)
                    last.clear()
                    last[""] = bad
                continue
            last.pop("", None)
            values = eq.values()
            for signal, node, vtype in variables:
                value = values[signal]
                if last.get(signal, _UNSET) == value:
                    continue
                last[signal] = value
                await self._write(node, vtype, value, good, stamp)

    async def _equipment_tick(self) -> None:
        """One slice of the period: a tenth of the machines, each updated once per period at its own phase,
        so a large workshop does not write all its changes in one burst."""
        writes = self.writes
        part = self._cycle % SLICES
        self._cycle += 1
        await self._write_equipment(part)
        if self.type_test and part == 0:
            now = datetime.now(timezone.utc)
            for nid, _text in ID_FORMS.values():
                await self._write(nid, ua.VariantType.Double, float(self._cycle // SLICES), ua.StatusCodes.Good, now)
        self.stats.changes += self.writes - writes

    async def _bulk_loop(self) -> None:
        """Each cycle (one period), write every bulk node once, in slices spread over the period."""
        slice_period = self.period / BULK_SLICES
        next_due = time.monotonic()
        ids = self._bulk_ids
        while True:
            self._bulk_cycle += 1
            cycle = self._bulk_cycle
            for s in range(BULK_SLICES):
                next_due += slice_period
                await asyncio.sleep(max(0.0, next_due - time.monotonic()))
                for i in range(s, len(ids), BULK_SLICES):
                    await self._write(
                        ids[i],
                        ua.VariantType.Double,
                        bulk_value(i, cycle),
                        ua.StatusCodes.Good,
                        datetime.now(timezone.utc),
                    )


class SimulatorThread:
    """Runs a simulator on its own event loop in a background thread (for sync code and shared fixtures).

    `call(coro)` runs a coroutine on the simulator's loop and waits for it, e.g.
    `t.call(t.sim.restart(down_for=2))`.
    """

    def __init__(self, sim: OpcUaSimulator) -> None:
        self.sim = sim
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opcua-sim", daemon=True)

    def start(self, timeout: float = 60.0) -> SimulatorThread:
        self._thread.start()
        self.call(self.sim.start(), timeout)
        return self

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        try:
            self.call(self.sim.close(), 30.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


async def _der(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


__all__ = [
    "ID_FORMS",
    "NAMESPACE",
    "TYPE_TEST",
    "TYPE_TEST_STATUS",
    "OpcUaEquipment",
    "OpcUaSimulator",
    "SimulatorThread",
    "bulk_node_id",
    "bulk_value",
    "eu_information",
    "node_id",
    "unece_unit_id",
]
