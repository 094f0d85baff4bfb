"""Pydantic models of every config file: the edge gateway (`gateway.yaml`) and the cloud side (`cloud.yaml`).

Validated once, at load, into frozen models; the runtime never looks at raw dicts.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from edge_config.dlt645 import DataFormat
from edge_config.durations import Duration
from edge_config.listen import split_listen
from edge_config.modbus import parse_address

if TYPE_CHECKING:
    from typing_extensions import Self

Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
TagName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")]
# a unit travels with the samples and is stored beside the series: the cloud takes at most 128 characters and
# no control character (`cloud_bridge.wire.codec`), so a config the gateway runs on never makes a message it refuses
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(text: str) -> str:
    if _CONTROL.search(text):
        raise ValueError(f"{text!r}: no control character (a newline, a tab) in a unit")
    return text


Unit = Annotated[str, StringConstraints(max_length=128), AfterValidator(_no_control)]

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


class LocatedError(ValueError):
    """A check across fields that knows which field it is about (`loc`, from the model that raised it),
    so the loader can name that field's line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _secret_from_file(data: Any, field: str = "password") -> Any:
    """`{field}_file: PATH` reads the secret from that file (e.g. a systemd credential in
    $CREDENTIALS_DIRECTORY, or a 0600 file), so it need not be written in the YAML. The model holds both
    (the secret read, for whoever connects, and the file's path); writing the config back leaves the secret
    out (`gateway.reload.file_data`), so it stays a `{field}_file`."""
    if not isinstance(data, dict) or not data.get(f"{field}_file"):
        return data
    if data.get(field) is not None:
        raise LocatedError((f"{field}_file",), f"give {field} or {field}_file, not both")
    path = Path(str(data[f"{field}_file"]))
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise LocatedError((f"{field}_file",), f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    return {**data, field: text}


class Frozen(BaseModel):
    # no NaN or infinity in any number of a config (`.nan` and `.inf` are YAML floats)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class EnvSecretSection(Frozen):
    """A section with a secret the environment may set (`edge_config.secrets.with_env_secrets`). It remembers
    what the file gave each field the environment replaced, so that writing the config back (the console's
    editor, `gateway.reload.file_data`) writes the file's value, never the environment's."""

    _file_values: dict[str, Any] = PrivateAttr(default_factory=dict)

    def with_env_value(self, field: str, value: str) -> Self:
        """This section with `field` set from the environment (the file's value remembered)."""
        copy = self.model_copy(update={field: value})
        copy._file_values = {**self._file_values, field: self._file_values.get(field, getattr(self, field))}
        return copy

    @property
    def file_values(self) -> dict[str, Any]:
        """The file's value of each field the environment replaced (None: the file gave none)."""
        return dict(self._file_values)


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


class MqttSection(EnvSecretSection):
    url: str = "mqtt://127.0.0.1:1883"
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: str | None = Field(None, description="or set EDGEGW_MQTT_PASSWORD")
    password_file: str | None = Field(None, description="read the password from this file instead")
    client_id: str | None = None
    topic_prefix: str = "sf/v1"
    keepalive: Duration = 30.0
    inflight: int = Field(100, ge=1, le=65535)
    _password_file = model_validator(mode="before")(_secret_from_file)

    ack_timeout: Duration = Field(
        30.0,
        gt=0,
        description="nothing acknowledged for this long while messages are in flight: reconnect and send them again",
    )
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


class ApiSection(EnvSecretSection):
    listen: str = "127.0.0.1:8080"
    token: str | None = Field(
        None,
        description="ignored, with a warning (README, Authentication): users and API tokens come from "
        "`edgegw user` (edge) and `edgegw cloud user` (cloud)",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        split_listen(v)
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class AuthSection(Frozen):
    """Sessions of the web console / portal (users and tokens: `edgegw user`, `edgegw cloud user`)."""

    session_ttl: Duration = Field(12 * 3600.0, description="a login lasts this long (default 12h)")
    secure_cookies: bool = Field(False, description="mark the session cookie Secure (behind an HTTPS proxy)")


class EdgeAuthSection(AuthSection):
    users_file: str | None = Field(
        None, description="users and API tokens, hashed (default <data_dir>/users.json; edit with `edgegw user`)"
    )


# ---------------------------------------------------------------- tags


class TagBase(Frozen):
    name: TagName
    type: TagType = "uint16"
    scale: float = 1.0
    offset: float = 0.0
    unit: Unit | None = None
    deadband: float | None = Field(None, ge=0, description="absolute change needed to report a new value")
    deadband_percent: float | None = Field(
        None, ge=0, description="change needed to report a new value, in % of the last reported value"
    )
    heartbeat: Duration | None = Field(
        None, description="longest silence: report the value at least this often even if unchanged (default 60s)"
    )
    domain: Domain | None = None
    description: str = ""
    writable: bool = False

    @model_validator(mode="after")
    def _check_reporting(self) -> TagBase:
        if self.scale == 0:
            raise LocatedError(("scale",), "scale 0 would make every value 0 (1: the raw value)")
        if self.deadband is not None and self.deadband_percent is not None:
            raise LocatedError(("deadband_percent",), "use deadband (absolute) or deadband_percent, not both")
        if self.heartbeat is not None and self.heartbeat <= 0:
            raise LocatedError(("heartbeat",), "heartbeat must be above 0")
        return self


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
            raise LocatedError(
                ("type",), f"address {self.address} is a bit (coil or discrete input): type must be bool"
            )
        if self.bit is not None and (table.is_bit or self.type != "bool"):
            raise LocatedError(("bit",), "bit: only for type bool read from a register")
        if self.type == "string" and self.length is None:
            raise LocatedError(("type",), "type string needs length: (registers)")
        offset = parse_address(self.address).offset
        if offset + self.register_count - 1 > 65535:
            raise LocatedError(
                ("address",),
                f"{self.type} at {self.address} takes {self.register_count} registers: past 65535, the last address",
            )
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
    eu_range_deadband: float | None = Field(
        None, gt=0, le=100, description="subscribe: server-side percent deadband, in % of the node's EURange"
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
        if self.eu_range_deadband is not None and (self.mode != "subscribe" or self.deadband is not None):
            raise LocatedError(
                ("eu_range_deadband",), "eu_range_deadband: only for mode subscribe, and not together with deadband"
            )
        if self.sampling_interval is not None and self.sampling_interval <= 0 and self.mode == "poll":
            raise LocatedError(("sampling_interval",), "sampling_interval must be above 0 for mode poll")
        return self


class Dlt645Tag(TagBase):
    """A value a DL/T 645-2007 meter answers for a data identifier; its type comes from the DI's format."""

    type: TagType | None = None  # type: ignore[assignment]  # float64 for numbers, string for dates and digits
    di: str = Field(description="data identifier DI3..DI0: 00010000 forward active energy, 02010100 phase A voltage…")
    format: str | None = Field(None, description="data format of a DI not in the table, e.g. XXX.XXX")
    signed: bool = Field(False, description="with format: the top bit of the value is its sign")

    @field_validator("di", mode="before")
    @classmethod
    def _check_di(cls, v: object) -> str:
        from edge_config.dlt645 import format_di, parse_di

        if isinstance(v, int):  # YAML reads 02010100 as a number (and 04000101 as an octal one)
            raise ValueError(f'write the data identifier in quotes, e.g. di: "02010100" (unquoted it reads as {v})')
        return format_di(parse_di(str(v)))

    @model_validator(mode="after")
    def _check_format(self) -> Dlt645Tag:
        try:
            fmt = self.data_format
        except ValueError as exc:
            raise LocatedError(("format",) if self.format is not None else ("di",), str(exc)) from None
        wanted = "float64" if fmt.kind == "number" else "string"
        if self.type is not None and self.type != wanted:
            raise LocatedError(("type",), f"DI {self.di} ({fmt.text}) reads as {wanted}, not {self.type}")
        return self

    @property
    def data_format(self) -> DataFormat:
        from edge_config.dlt645 import DATA_ITEMS, parse_di, parse_format

        if self.format is not None:
            return parse_format(self.format, self.signed)
        item = DATA_ITEMS.get(parse_di(self.di))
        if item is None:
            raise ValueError(f"DI {self.di} is not in the table: give its format: (e.g. XXX.XXX) and signed:")
        return item.format

    @property
    def value_type(self) -> str:
        return "float64" if self.data_format.kind == "number" else "string"


# ---------------------------------------------------------------- connections


class ModbusConnectionBase(Frozen):
    """Settings every Modbus connection has: request limits, timeouts, retries."""

    timeout: Duration = Field(1.0, description="wait this long for an answer to one request")
    byte_order: ByteOrder = "ABCD"
    max_registers: int = Field(125, ge=1, le=125, description="largest read; lower it for devices that choke")
    max_bits: int = Field(2000, ge=1, le=2000, description="largest read of coils or discrete inputs")
    max_gap: int = Field(
        16, ge=0, le=125, description="largest unused gap worth reading across (registers; ×16 for bits)"
    )
    backoff_max: Duration = Field(
        30.0, description="longest wait between reconnects, or between probes of a slave that does not answer"
    )
    bad_retry: Duration = Field(60.0, description="how often to re-read tags a device refused with an exception")

    @model_validator(mode="after")
    def _check_durations(self) -> ModbusConnectionBase:
        for name in ("timeout", "backoff_max", "bad_retry"):
            if getattr(self, name) <= 0:
                raise LocatedError((name,), f"{name} must be above 0")
        return self


class ModbusTcpConnection(ModbusConnectionBase):
    host: str
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)


class ModbusRtuConnection(ModbusConnectionBase):
    port: str = Field(description="serial port: /dev/ttyUSB0, COM3, or a pyserial URL")
    baudrate: int = Field(9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(1, ge=1, le=247)
    silence: Duration | None = Field(
        None, description="inter-frame silence; default 3.5 characters at the baud rate (at least 1.75ms)"
    )


class Dlt645Connection(Frozen):
    """A DL/T 645-2007 meter on a serial line (RS-485); Modbus RTU units may share the port."""

    port: str = Field(description="serial port: /dev/ttyUSB0, COM3, or a pyserial URL")
    address: str = Field(description="meter address, 12 digits as printed on the meter (shorter: zero-padded)")
    baudrate: int = Field(2400, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout: Duration = Field(1.0, description="wait this long for a meter's answer")
    wakeup: int = Field(4, ge=0, le=8, description="0xFE bytes sent before each frame to wake the meter's receiver")
    backoff_max: Duration = Field(30.0, description="longest wait between probes of a meter that does not answer")
    silence: Duration | None = Field(
        None, description="silence between frames on the line; default 3.5 characters at the baud rate"
    )

    @field_validator("address", mode="before")
    @classmethod
    def _check_address(cls, v: object) -> str:
        from edge_config.dlt645 import parse_meter_address

        return parse_meter_address(v if isinstance(v, int) else str(v))

    @model_validator(mode="after")
    def _check_durations(self) -> Dlt645Connection:
        if self.timeout <= 0 or self.backoff_max <= 0:
            raise ValueError("timeout and backoff_max must be above 0")
        return self


class OpcUaConnection(Frozen):
    endpoint: str
    security_policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    username: str | None = None
    password: str | None = None
    password_file: str | None = Field(None, description="read the password from this file instead")
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

    _password_file = model_validator(mode="before")(_secret_from_file)

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        if not v.startswith("opc.tcp://"):
            raise ValueError(f"{v!r} is not an OPC UA endpoint (opc.tcp://host:4840)")
        return v

    @model_validator(mode="after")
    def _check_security(self) -> OpcUaConnection:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise LocatedError(
                ("security_mode",), "security_mode must be None with policy None, and Sign or SignAndEncrypt otherwise"
            )
        if (self.user_certificate is None) != (self.user_private_key is None):
            missing = "user_private_key" if self.user_private_key is None else "user_certificate"
            raise LocatedError((missing,), "user_certificate and user_private_key go together")
        if self.user_certificate is not None and self.username is not None:
            raise LocatedError(("user_certificate",), "use either username/password or user_certificate, not both")
        if self.password is not None and self.username is None:
            raise LocatedError(("password",), "password without username")
        for name in ("keepalive", "timeout"):
            if getattr(self, name) <= 0:
                raise LocatedError((name,), f"{name} must be above 0")
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
    micro_stop_loss: Literal["performance", "availability"] = Field(
        "performance", description="a micro-stop is a performance loss (six-loss form) or an availability loss"
    )

    @model_validator(mode="after")
    def _check_oee(self) -> OeeSettings:
        if "running" not in self.states:
            raise LocatedError(("states",), "states needs running: [values of the state tag that mean running]")
        if self.good_count_tag is not None and self.reject_count_tag is not None:
            raise LocatedError(("reject_count_tag",), "give good_count_tag or reject_count_tag, not both")
        if (self.good_count_tag or self.reject_count_tag) and not self.total_count_tag:
            which = "good_count_tag" if self.good_count_tag else "reject_count_tag"
            raise LocatedError((which,), f"{which} needs total_count_tag")
        if self.ideal_cycle_time is not None and self.ideal_cycle_time <= 0:
            raise LocatedError(("ideal_cycle_time",), "ideal_cycle_time must be above 0")
        owner: dict[tuple[bool, object], str] = {}
        for state, values in self.states.items():
            for v in values:
                key = (isinstance(v, bool), v)
                if key in owner and owner[key] != state:
                    raise LocatedError(("states", state), f"value {v!r} is in both {owner[key]} and {state}")
                owner[key] = state
        return self


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
        for i, n in enumerate(tag_names):
            if n in seen:
                raise LocatedError(("tags", i, "name"), f"tag name {n!r} appears twice")
            seen.add(n)
        if self.oee is not None:
            for field in ("state_tag", "total_count_tag", "good_count_tag", "reject_count_tag"):
                ref = getattr(self.oee, field)
                if ref is not None and ref not in seen:
                    raise LocatedError(("oee", field), f"{ref!r} is not a tag of this device")
        if self.poll_interval <= 0:
            raise LocatedError(("poll_interval",), "poll_interval must be above 0")


def _check_modbus_tags(tags: list[ModbusTag], connection: ModbusConnectionBase) -> None:
    """Checks that need both a tag and its connection: one request must be able to read each tag."""
    for i, tag in enumerate(tags):
        if tag.interval is not None and tag.interval <= 0:
            raise LocatedError(("tags", i, "interval"), f"tag {tag.name!r}: interval must be above 0")
        if tag.register_count > connection.max_registers and not parse_address(tag.address).table.is_bit:
            raise LocatedError(
                ("tags", i, "length" if tag.type == "string" else "type"),
                f"tag {tag.name!r} needs {tag.register_count} registers, more than "
                f"connection.max_registers ({connection.max_registers}) lets one request read",
            )


class ModbusTcpDevice(DeviceBase):
    driver: Literal["modbus_tcp"]
    connection: ModbusTcpConnection
    tags: list[ModbusTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ModbusTcpDevice:
        self._check_tags([t.name for t in self.tags])
        _check_modbus_tags(self.tags, self.connection)
        return self


class ModbusRtuDevice(DeviceBase):
    driver: Literal["modbus_rtu"]
    connection: ModbusRtuConnection
    tags: list[ModbusTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ModbusRtuDevice:
        self._check_tags([t.name for t in self.tags])
        _check_modbus_tags(self.tags, self.connection)
        return self


class OpcUaDevice(DeviceBase):
    driver: Literal["opcua"]
    connection: OpcUaConnection
    tags: list[OpcUaTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> OpcUaDevice:
        self._check_tags([t.name for t in self.tags])
        return self


class Dlt645Device(DeviceBase):
    """A DL/T 645-2007 energy meter: one request per tag, on a serial bus it may share with Modbus RTU."""

    driver: Literal["dlt645"]
    connection: Dlt645Connection
    production: bool = Field(False, description="meters are not production equipment")
    tags: list[Dlt645Tag] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Dlt645Device:
        self._check_tags([t.name for t in self.tags])
        return self


Device = Annotated[ModbusTcpDevice | ModbusRtuDevice | OpcUaDevice | Dlt645Device, Field(discriminator="driver")]
DRIVER_NAMES = ("modbus_tcp", "modbus_rtu", "opcua", "dlt645")
SERIAL_SETTINGS = ("baudrate", "bytesize", "parity", "stopbits", "silence")


# ---------------------------------------------------------------- shift calendar and history

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ALL_DAYS: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def _clock(v: object) -> str:
    """A local time of day as HH:MM. YAML 1.1 reads an unquoted 20:00 as the base-60 number 1200: that
    is minutes since midnight, so it is taken as such."""
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"{v!r} is not a time of day (use HH:MM, e.g. 08:00)")
    if isinstance(v, int):
        minutes = v
    else:
        m = _CLOCK.match(v)
        if not m or int(m.group(2)) > 59:
            raise ValueError(f"{v!r} is not a time of day (use HH:MM, e.g. 08:00)")
        minutes = int(m.group(1)) * 60 + int(m.group(2))
    if not 0 <= minutes <= 1440:
        raise ValueError(f"{v!r} is not a time of day (00:00 to 24:00)")
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


ClockTime = Annotated[
    str,
    BeforeValidator(_clock),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}$", "description": "local time of day, HH:MM"}),
]


def _minutes(clock: str) -> int:
    h, m = clock.split(":")
    return int(h) * 60 + int(m)


def _check_zone(v: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{v!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
    return v


class PlannedBreak(Frozen):
    start: ClockTime
    end: ClockTime
    name: str = ""


class Shift(Frozen):
    """A shift: local start and end (an end at or before the start is on the next day; start = end is 24 h),
    the weekdays it starts on, and its planned breaks."""

    name: str = Field(min_length=1, max_length=32)
    start: ClockTime
    end: ClockTime
    days: list[Weekday] = Field(default_factory=lambda: list(_ALL_DAYS), min_length=1)
    breaks: list[PlannedBreak] = Field(default_factory=list)

    @property
    def span(self) -> tuple[int, int]:
        """(start, end) in minutes from the start day's midnight."""
        a, b = _minutes(self.start), _minutes(self.end)
        return a, (b if b > a else b + 1440)

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(WEEKDAYS.index(d) for d in self.days)

    @property
    def break_spans(self) -> tuple[tuple[int, int], ...]:
        a = self.span[0]
        out = []
        for br in self.breaks:
            x, y = _minutes(br.start), _minutes(br.end)
            x = x + 1440 if x < a else x
            y = y + 1440 if y <= x % 1440 or y < a else y
            out.append((x, y))
        return tuple(out)

    @model_validator(mode="after")
    def _check_shift(self) -> Shift:
        if self.start == "24:00":
            raise LocatedError(("start",), "24:00 is the end of a day; a shift starts at 00:00 to 23:59")
        if len(set(self.days)) != len(self.days):
            raise LocatedError(("days",), "a weekday appears twice")
        a, b = self.span
        spans = self.break_spans
        for i, (br, (x, y)) in enumerate(zip(self.breaks, spans, strict=True)):
            if not (a <= x < y <= b):
                raise LocatedError(
                    ("breaks", i), f"break {br.start}-{br.end} is not inside the shift {self.start}-{self.end}"
                )
        ordered = sorted(range(len(spans)), key=lambda k: spans[k])
        for k0, k1 in itertools.pairwise(ordered):
            if spans[k1][0] < spans[k0][1]:
                raise LocatedError(("breaks", k1), "breaks overlap")
        return self


def check_calendar(shifts: list[Shift]) -> list[Shift]:
    """Shift names are unique and no two shifts overlap in the week (night shifts cross midnight and Sunday)."""
    names = [s.name for s in shifts]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise LocatedError((i, "name"), f"shift name {n!r} appears twice")
    week = 7 * 1440
    spans: list[tuple[int, int, str, str]] = []
    for s in shifts:
        a, b = s.span
        for d in sorted(s.weekdays):
            x, y = d * 1440 + a, d * 1440 + b
            spans.append((x, y, s.name, WEEKDAYS[d]))
            if y > week:
                spans.append((x - week, y - week, s.name, WEEKDAYS[d]))
    spans.sort()
    for i, (_, y0, n0, d0) in enumerate(spans):
        for x1, _, n1, d1 in spans[i + 1 :]:
            if x1 >= y0:
                break
            raise LocatedError((names.index(n1),), f"shifts overlap: {n0!r} starting {d0} and {n1!r} starting {d1}")
    return shifts


TimeZone = Annotated[str, AfterValidator(_check_zone)]
ShiftCalendar = Annotated[list[Shift], AfterValidator(check_calendar)]


class HistorySection(Frozen):
    """The OEE and online history: snapshots sent to the cloud, and what the gateway keeps locally."""

    snapshot_interval: Duration = Field(60.0, description="counter and reading snapshots sent to the cloud")
    local_interval: Duration = Field(10.0, description="counter readings kept in the local history")
    retention: Duration = Field(744 * 3600.0, description="how long the local history is kept (744h = 31 days)")
    max_future_skew: Duration = Field(
        300.0,
        description="a reading stamped further ahead of the gateway's clock is flagged, counted and taken at the "
        "gateway's time in the OEE history (it never moves 'last seen' or prunes the history)",
    )

    @model_validator(mode="after")
    def _check_positive(self) -> HistorySection:
        for name in ("snapshot_interval", "local_interval", "retention"):
            if getattr(self, name) <= 0:
                raise LocatedError((name,), f"{name} must be above 0")
        if self.snapshot_interval > 300:
            raise LocatedError(
                ("snapshot_interval",),
                "snapshot_interval is at most 5m: the cloud takes a gateway silent for 10 minutes as stopped",
            )
        return self


class GatewayConfig(Frozen):
    """The edge agent's config file (`edgegw run -c gateway.yaml`)."""

    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    api: ApiSection = ApiSection()
    buffer: BufferSection = BufferSection()
    devices: list[Device] = Field(default_factory=list)
    timezone: TimeZone = Field("Asia/Shanghai", description="IANA time zone of the shift calendar")
    shifts: ShiftCalendar = Field(default_factory=list, description="shift calendar; none: one 24 h shift a day")
    history: HistorySection = HistorySection()
    auth: EdgeAuthSection = EdgeAuthSection()

    @model_validator(mode="after")
    def _unique_devices(self) -> GatewayConfig:
        seen: set[str] = set()
        for i, d in enumerate(self.devices):
            if d.id in seen:
                raise LocatedError(("devices", i, "id"), f"device id {d.id!r} appears twice")
            seen.add(d.id)
        return self

    @model_validator(mode="after")
    def _shared_serial_ports(self) -> GatewayConfig:
        """Modbus RTU units and DL/T 645 meters on one serial port share one bus: its line settings must
        agree, and no two meters on it have one address."""
        first: dict[str, ModbusRtuDevice | Dlt645Device] = {}
        meters: dict[tuple[str, str], str] = {}
        for i, d in enumerate(self.devices):
            if not isinstance(d, ModbusRtuDevice | Dlt645Device):
                continue
            port = d.connection.port
            if isinstance(d, Dlt645Device):
                other_meter = meters.setdefault((port, d.connection.address), d.id)
                if other_meter != d.id:
                    raise LocatedError(
                        ("devices", i, "connection", "address"),
                        f"meter address {d.connection.address} on {port} is already device {other_meter!r}",
                    )
            other = first.setdefault(port, d)
            for f in SERIAL_SETTINGS:
                mine, theirs = getattr(d.connection, f), getattr(other.connection, f)
                if mine != theirs and (f != "silence" or (mine is not None and theirs is not None)):
                    raise LocatedError(
                        ("devices", i, "connection", f),
                        f"{mine!r} differs from {theirs!r} of device {other.id!r} on the same serial port "
                        f"{port}: devices on one port share its settings",
                    )
        return self


# ---------------------------------------------------------------- cloud side


class InfluxSection(EnvSecretSection):
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
    inflight: int = Field(1000, ge=1, le=65535, description="unacknowledged messages held; batches are up to half")
    shared_group: str | None = Field(
        "edgegw-ingest", description="MQTT 5 shared subscription group; null for a plain subscription"
    )
    client_id: str | None = None


class NetworkedRuleSettings(Frozen):
    """What makes equipment networked (联网) for a period besides good data arriving (README "Definitions")."""

    min_online_ratio: float = Field(
        0.5, ge=0, le=1, description="online for at least this share of the planned operation time (0..1)"
    )
    min_completeness: float | None = Field(
        None, ge=0, le=1, description="data completeness at least this (0..1) where measurable; null: no condition"
    )


class AreaSettings(Frozen):
    """A 数据采集 business area of the pilot's version of the indicators."""

    key: Slug
    zh: str
    en: str = ""
    domains: list[Domain] | None = Field(
        None, description="tag domains that collect data for it; default the domain of the same key, if any"
    )


class AreaCatalogue(Frozen):
    """The pilot's list of 数据采集 business areas, replacing the built-in one (MIIT 2024) where it differs."""

    source: str = Field(description="the document the list comes from")
    areas: list[AreaSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_keys(self) -> AreaCatalogue:
        keys = [a.key for a in self.areas]
        for k, key in enumerate(keys):
            if key in keys[:k]:
                raise LocatedError(("areas", k, "key"), f"area {key!r} appears twice")
        return self


class EvidenceSettings(Frozen):
    """Evidence packs and the rules their figures follow."""

    signing_key: str | None = Field(
        None, description="PEM file of the Ed25519 key that signs evidence packs (made by edgegw cloud keygen)"
    )
    networked: NetworkedRuleSettings = NetworkedRuleSettings()
    areas: AreaCatalogue | None = Field(None, description="the pilot's 数据采集 business areas; null: MIIT 2024")
    fill_days: int = Field(
        62,
        ge=0,
        le=3660,
        description="edgegw serve computes the overview's day summaries of the closed days of the last this many "
        "days in the background (at start, every fill_every_s and after local midnight); 0: only on request",
    )
    fill_every_s: int = Field(900, ge=60, le=86_400, description="seconds between two background fills of the days")


class IngestSection(Frozen):
    """The ingester's own settings (`edgegw ingest`)."""

    metrics_listen: str | None = Field(
        "127.0.0.1:8091",
        description="host:port of the ingester's Prometheus /metrics (no login: keep it on loopback or a "
        "scrape network); null for none",
    )

    @field_validator("metrics_listen")
    @classmethod
    def _check_listen(cls, v: str | None) -> str | None:
        return None if v is None else ApiSection._check_listen(v)


class EnterpriseSettings(Frozen):
    """An enterprise the evidence API reports on: its name and shift calendar (default: the file's)."""

    id: Slug
    name: str = ""
    timezone: TimeZone | None = None
    shifts: ShiftCalendar | None = None
    networked: NetworkedRuleSettings | None = Field(None, description="this enterprise's rule; null: the pilot's")


class TrustSection(Frozen):
    """What the ingester takes as proven (README "Trust model")."""

    mode: Literal["enforce", "off"] = Field(
        "enforce",
        description="enforce: only messages of registered gateways, proven by their signed hash chain, are "
        "recorded; off: everything is taken as it comes (before every gateway is enrolled)",
    )
    proof_timeout: Duration = Field(
        24 * 3600.0, description="how long a message waits for the signed checkpoint covering it before it is refused"
    )
    max_future_skew: Duration = Field(
        300.0, description="timestamps further ahead of the ingester's clock are flagged and kept out of the evidence"
    )
    max_unproven: int = Field(
        10_000, ge=1, description="messages one gateway may have waiting for their proof; more are refused"
    )


class LimitsSection(Frozen):
    """Bounds on what one message, one gateway and the dead letters may take (hostile input)."""

    max_payload: Annotated[int, BeforeValidator(_parse_size), Field(ge=1024)] = Field(
        1 << 20,
        description="larger MQTT payloads are refused before they are parsed (match the broker's max_packet_size)",
    )
    max_samples: int = Field(10_000, ge=1, description="samples in one data message")
    max_series_per_gateway: int = Field(100_000, ge=1, description="distinct device/tag series one gateway may create")
    dead_letter_bytes: Annotated[int, BeforeValidator(_parse_size), Field(ge=256)] = Field(
        64 << 10, description="a dead letter keeps at most this much of the payload"
    )
    dead_letter_retention: Duration = Field(30 * 86400.0, description="dead letters older than this are deleted")


class CloudConfig(Frozen):
    """The cloud side's config file (`edgegw ingest|serve -c cloud.yaml`)."""

    mqtt: IngestMqttSection = IngestMqttSection()
    influx: InfluxSection | None = None
    ledger: LedgerSection = LedgerSection()
    trust: TrustSection = TrustSection()
    limits: LimitsSection = LimitsSection()
    api: ApiSection = ApiSection(listen="127.0.0.1:8090")
    ingest: IngestSection = IngestSection()
    auth: AuthSection = AuthSection()
    timezone: TimeZone = Field("Asia/Shanghai", description="default time zone of enterprises' shift calendars")
    shifts: ShiftCalendar = Field(default_factory=list, description="default shift calendar; none: 24 h a day")
    enterprises: list[EnterpriseSettings] = Field(default_factory=list)
    evidence: EvidenceSettings = EvidenceSettings()

    @model_validator(mode="after")
    def _unique_enterprises(self) -> CloudConfig:
        ids = [e.id for e in self.enterprises]
        for k, i in enumerate(ids):
            if i in ids[:k]:
                raise LocatedError(("enterprises", k, "id"), f"enterprise id {i!r} appears twice")
        return self

    def enterprise(self, ent_id: str) -> EnterpriseSettings | None:
        return next((e for e in self.enterprises if e.id == ent_id), None)

    def calendar(self, ent_id: str) -> tuple[str, list[Shift]]:
        """(time zone, shifts) of an enterprise, falling back to the file's defaults."""
        e = self.enterprise(ent_id)
        tz = e.timezone if e is not None and e.timezone is not None else self.timezone
        shifts = e.shifts if e is not None and e.shifts is not None else self.shifts
        return tz, shifts

    def networked_rule(self, ent_id: str) -> tuple[NetworkedRuleSettings, str]:
        """(the networked rule of an enterprise, where it comes from: enterprise, pilot or default)."""
        e = self.enterprise(ent_id)
        if e is not None and e.networked is not None:
            return e.networked, "enterprise"
        return self.evidence.networked, "default" if self.evidence.networked == NetworkedRuleSettings() else "pilot"
