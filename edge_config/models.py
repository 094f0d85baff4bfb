"""Pydantic models of every config file: the edge gateway (`gateway.yaml`) and the cloud side (`cloud.yaml`).

Validated once, at load, into frozen models; the runtime never looks at raw dicts.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from edge_config.durations import Duration
from edge_config.modbus import parse_address

Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
TagName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")]

TagType = Literal["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]
ByteOrder = Literal["ABCD", "BADC", "CDAB", "DCBA"]
Domain = Literal["equipment", "energy", "quality", "production", "safety"]
StateName = Literal["running", "idle", "fault", "setup", "planned_stop"]

REGISTER_COUNT: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------- gateway, mqtt, api


class GatewaySection(Frozen):
    id: Slug
    enterprise_id: Slug
    enterprise_name: str = ""
    data_dir: str = "./data"


class TlsSettings(Frozen):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = Field(False, description="skip server hostname check (test benches only)")


class MqttSection(Frozen):
    url: str = "mqtt://127.0.0.1:1883"
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: str | None = Field(None, description="or set EDGEGW_MQTT_PASSWORD")
    client_id: str | None = None
    topic_prefix: str = "sf/v1"
    keepalive: Duration = 30.0
    inflight: int = Field(100, ge=1, le=65535)
    tls: TlsSettings | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, v: object) -> object:
        return str(v) if isinstance(v, int | float) else v

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v == "embedded":
            return v
        u = urlparse(v)
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not u.hostname:
            raise ValueError(f"{v!r} is not an MQTT URL (use mqtt://host:1883, mqtts://host:8883 or 'embedded')")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "#+") or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"{v!r} is not a topic prefix (no wildcards, no leading or trailing '/')")
        return v


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def _parse_size(v: object) -> object:
    if isinstance(v, str):
        text = v.strip().upper().replace("IB", "B")
        num = text.rstrip("KMGB ")
        unit = text[len(num) :].strip()
        if not num.replace(".", "", 1).isdigit() or unit not in _SIZE_UNITS:
            raise ValueError(f"{v!r} is not a size (use 512MB, 2GB or bytes)")
        return int(float(num) * _SIZE_UNITS[unit])
    return v


class BufferSection(Frozen):
    """The store-and-forward buffer (SQLite in data_dir)."""

    max_bytes: Annotated[int, BeforeValidator(_parse_size), Field(ge=1 << 20)] = Field(
        1 << 30, description="bound on stored messages; past it the oldest are dropped and counted (512MB, 2GB)"
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss (one fsync per scan); NORMAL only a killed process"
    )
    compress: bool = True
    status_interval: Duration = Field(10.0, description="how often the gateway status topic reports the backlog")


class ApiSection(Frozen):
    listen: str = "127.0.0.1:8080"
    token: str | None = Field(None, description="bearer token required for API writes; or EDGEGW_API_TOKEN")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not host:port")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


# ---------------------------------------------------------------- tags


class TagBase(Frozen):
    name: TagName
    type: TagType = "uint16"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    deadband: float | None = Field(None, ge=0, description="absolute change needed to report a new value")
    domain: Domain | None = None
    description: str = ""
    writable: bool = False


class ModbusTag(TagBase):
    address: str
    byte_order: ByteOrder | None = None
    bit: int | None = Field(None, ge=0, le=15, description="bit of a register, for type bool")
    length: int | None = Field(None, ge=1, le=125, description="registers, for type string")
    interval: Duration | None = Field(None, description="poll interval of this tag; default the device's")

    @field_validator("address", mode="before")
    @classmethod
    def _check_address(cls, v: object) -> str:
        text = str(v)
        parse_address(text)
        return text

    @model_validator(mode="after")
    def _check_type_fits_table(self) -> ModbusTag:
        table = parse_address(self.address).table
        if table.is_bit and self.type != "bool":
            raise ValueError(f"address {self.address} is a bit (coil or discrete input): type must be bool")
        if self.bit is not None and (table.is_bit or self.type != "bool"):
            raise ValueError("bit: only for type bool read from a register")
        if self.type == "string" and self.length is None:
            raise ValueError("type string needs length: (registers)")
        return self

    @property
    def register_count(self) -> int:
        if parse_address(self.address).table.is_bit:
            return 1
        if self.type == "string":
            return self.length or 1
        return REGISTER_COUNT[self.type]


class OpcUaTag(TagBase):
    type: TagType | None = None  # type: ignore[assignment]  # taken from the server when absent
    node: str = Field(description="ns=2;s=Name, ns=2;i=1001, ns=2;g=GUID, ns=2;b=BASE64 or nsu=URI;s=Name")
    mode: Literal["subscribe", "poll"] = "subscribe"
    sampling_interval: Duration | None = Field(
        None, description="subscribe: how often the server samples; poll: how often it is read (default poll_interval)"
    )
    queue_size: int = Field(1, ge=1, le=10000, description="subscribe: values the server queues between publishes")
    deadband_percent: float | None = Field(
        None, gt=0, le=100, description="subscribe: server-side deadband in percent of the node's EURange"
    )

    @field_validator("node", mode="before")
    @classmethod
    def _check_node(cls, v: object) -> str:
        from edge_config.opcua import parse_node_id

        text = str(v).strip()
        parse_node_id(text)
        return text

    @model_validator(mode="after")
    def _check_mode(self) -> OpcUaTag:
        if self.deadband_percent is not None and (self.mode != "subscribe" or self.deadband is not None):
            raise ValueError("deadband_percent: only for mode subscribe, and not together with deadband")
        if self.sampling_interval is not None and self.sampling_interval <= 0 and self.mode == "poll":
            raise ValueError("sampling_interval must be above 0 for mode poll")
        return self


# ---------------------------------------------------------------- connections


class ModbusTcpConnection(Frozen):
    host: str
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    timeout: Duration = 1.0
    byte_order: ByteOrder = "ABCD"
    max_registers: int = Field(125, ge=1, le=125, description="largest read; lower it for devices that choke")
    max_gap: int = Field(16, ge=0, le=125, description="largest unused gap worth reading across")


class ModbusRtuConnection(Frozen):
    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(1, ge=0, le=247)
    timeout: Duration = 1.0
    byte_order: ByteOrder = "ABCD"
    max_registers: int = Field(125, ge=1, le=125)
    max_gap: int = Field(16, ge=0, le=125)


class OpcUaConnection(Frozen):
    endpoint: str
    security_policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    username: str | None = None
    password: str | None = None
    user_certificate: str | None = Field(None, description="X.509 user identity: certificate file (PEM or DER)")
    user_private_key: str | None = Field(None, description="X.509 user identity: private key file (PEM)")
    trusted_certs_dir: str | None = Field(
        None, description="trusted server certificates (DER/PEM); default {data_dir}/pki/trusted"
    )
    trust_on_first_use: bool = Field(
        False, description="trust and store an unknown server certificate the first time (commissioning only)"
    )
    timeout: Duration = 4.0
    publishing_interval: Duration | None = Field(
        None, description="subscription publishing interval; default the shortest sampling interval"
    )
    keepalive: Duration = Field(5.0, description="a subscription silent for 3× this is dead and is re-created")
    max_nodes_per_request: int = Field(1000, ge=1, le=100000, description="nodes per Read or CreateMonitoredItems")
    reconnect_max_delay: Duration = Field(10.0, description="cap of the reconnect backoff")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        if not v.startswith("opc.tcp://"):
            raise ValueError(f"{v!r} is not an OPC UA endpoint (opc.tcp://host:4840)")
        return v

    @model_validator(mode="after")
    def _check_security(self) -> OpcUaConnection:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("security_mode must be None with policy None, and Sign or SignAndEncrypt otherwise")
        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ValueError("user_certificate and user_private_key go together")
        if self.user_certificate is not None and self.username is not None:
            raise ValueError("use either username/password or user_certificate, not both")
        if self.password is not None and self.username is None:
            raise ValueError("password without username")
        if self.keepalive <= 0 or self.timeout <= 0:
            raise ValueError("keepalive and timeout must be above 0")
        return self


# ---------------------------------------------------------------- OEE and devices


class OeeSettings(Frozen):
    state_tag: str
    states: dict[StateName, list[int | str | bool]]
    total_count_tag: str | None = None
    good_count_tag: str | None = None
    reject_count_tag: str | None = None
    ideal_cycle_time: Duration | None = None
    counter_max: int | None = Field(None, ge=1, description="value at which counters wrap; default by type")
    micro_stop: Duration = Field(120.0, description="stops shorter than this are performance losses")


class DeviceBase(Frozen):
    id: Slug
    name: str = ""
    type: str = "generic"
    line: str = ""
    production: bool = Field(True, description="counts in the networked-equipment denominator")
    poll_interval: Duration = 1.0
    oee: OeeSettings | None = None

    def _check_tags(self, tag_names: list[str]) -> None:
        seen: set[str] = set()
        for n in tag_names:
            if n in seen:
                raise ValueError(f"tag name {n!r} appears twice")
            seen.add(n)
        if self.oee is not None:
            for field in ("state_tag", "total_count_tag", "good_count_tag", "reject_count_tag"):
                ref = getattr(self.oee, field)
                if ref is not None and ref not in seen:
                    raise ValueError(f"oee.{field}: {ref!r} is not a tag of this device")
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be above 0")


class ModbusTcpDevice(DeviceBase):
    driver: Literal["modbus_tcp"]
    connection: ModbusTcpConnection
    tags: list[ModbusTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ModbusTcpDevice:
        self._check_tags([t.name for t in self.tags])
        return self


class ModbusRtuDevice(DeviceBase):
    driver: Literal["modbus_rtu"]
    connection: ModbusRtuConnection
    tags: list[ModbusTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ModbusRtuDevice:
        self._check_tags([t.name for t in self.tags])
        return self


class OpcUaDevice(DeviceBase):
    driver: Literal["opcua"]
    connection: OpcUaConnection
    tags: list[OpcUaTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> OpcUaDevice:
        self._check_tags([t.name for t in self.tags])
        return self


Device = Annotated[ModbusTcpDevice | ModbusRtuDevice | OpcUaDevice, Field(discriminator="driver")]
DRIVER_NAMES = ("modbus_tcp", "modbus_rtu", "opcua")


class GatewayConfig(Frozen):
    """The edge agent's config file (`edgegw run -c gateway.yaml`)."""

    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    api: ApiSection = ApiSection()
    buffer: BufferSection = BufferSection()
    devices: list[Device] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_devices(self) -> GatewayConfig:
        seen: set[str] = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} appears twice")
            seen.add(d.id)
        return self


# ---------------------------------------------------------------- cloud side


class InfluxSection(Frozen):
    url: str
    token: str = Field("edgegw", description="or set EDGEGW_INFLUX_TOKEN")
    org: str = "edgegw"
    bucket: str = "shopfloor"
    measurement: str = "sf"
    timeout: Duration = 10.0


class LedgerSection(Frozen):
    url: str = Field("sqlite:///./cloud-data/ledger.db", description="sqlite:///PATH or postgresql://...")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("postgresql://") or v.startswith("postgres://")):
            raise ValueError(f"{v!r}: use sqlite:///path/ledger.db or postgresql://user@host/db")
        return v


class IngestMqttSection(MqttSection):
    shared_group: str | None = Field(
        "edgegw-ingest", description="MQTT 5 shared subscription group; null for a plain subscription"
    )
    client_id: str | None = None


class CloudConfig(Frozen):
    """The cloud side's config file (`edgegw ingest|serve -c cloud.yaml`)."""

    mqtt: IngestMqttSection = IngestMqttSection()
    influx: InfluxSection | None = None
    ledger: LedgerSection = LedgerSection()
    api: ApiSection = ApiSection(listen="127.0.0.1:8090")
