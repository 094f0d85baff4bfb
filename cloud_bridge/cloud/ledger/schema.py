"""The ledger's tables, declared once for SQLite and PostgreSQL (SQLAlchemy Core, one `MetaData`).

Names and columns are those the first release created with hand-written DDL, so databases it made
keep working: `Database.create` only adds what is missing. Each dialect picks its own type names
(BLOB / BYTEA, DOUBLE / DOUBLE PRECISION) and numbers the rows of the two logs itself (SQLite: an
INTEGER PRIMARY KEY, the rowid; PostgreSQL: an identity column).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Double, Identity, Index, Integer, LargeBinary, MetaData, Table, Text

metadata = MetaData()

# SQLite numbers rows itself only for a column declared exactly INTEGER PRIMARY KEY (BIGINT would not do).
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


def _key(name: str) -> Column[str]:
    return Column(name, Text, primary_key=True)


def _device(*, key: bool) -> list[Column[str]]:
    """ent, gw, dev: the device a row is about (the start of its primary key where `key`)."""
    return [Column(name, Text, primary_key=key, nullable=False) for name in ("ent", "gw", "dev")]


def _moment() -> list[Column[Any]]:
    """What a device log's row starts with: the device, ts (epoch ms) and the kind of row."""
    return [*_device(key=False), Column("ts", BigInteger, nullable=False), Column("kind", Text, nullable=False)]


def _text(name: str, *, nullable: bool = False) -> Column[str]:
    return Column(name, Text, nullable=nullable)


def _int(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False)


def _blob(name: str, *, key: bool = False) -> Column[bytes]:
    return Column(name, LargeBinary, primary_key=key, nullable=False)


def _message_key() -> list[Column[Any]]:
    """ent, gw, seq: a message's identity, the start of the primary key."""
    return [_key("ent"), _key("gw"), Column("seq", BigInteger, primary_key=True)]


# ---------------------------------------------------------------- what was received (writer.py)

# What was received, as contiguous seq ranges per gateway: the claim of each message (its commit point)
# merges its seq in, so a gateway's steady stream is one row. The first release kept a row per message
# (`received`, in `legacy` below): `Ledger` turns those into ranges at start-up.
received_seqs = Table(
    "received_seqs",
    metadata,
    _key("ent"),
    _key("gw"),
    Column("first_seq", BigInteger, primary_key=True),
    _int("last_seq"),
)

device_events = Table(
    "device_events",
    metadata,
    *_moment(),
    _text("reason"),
    _text("state", nullable=True),
    Index("device_events_dev_ts", "ent", "gw", "dev", "ts"),
)

# The latest status of each device, and of each gateway (dev = '').
device_status = Table(
    "device_status",
    metadata,
    *_device(key=True),
    Column("online", Boolean, nullable=False),
    _int("ts"),
    _text("reason"),
    _text("version", nullable=True),
)

device_stats = Table(
    "device_stats",
    metadata,
    *_device(key=True),
    _int("first_seen"),
    _int("last_seen"),
    _int("samples"),
    _int("good_samples"),
)

tag_stats = Table(
    "tag_stats",
    metadata,
    *_device(key=True),
    _key("tag"),
    _text("unit", nullable=True),
    _int("samples"),
    _int("last_ts"),
    _text("last_value_text"),
)

# Tag statistics of committed batches not yet added to tag_stats: one row per batch, written in the
# batch's claiming transaction (so exactly once), folded into tag_stats on a slower cadence and before
# any read of tag_stats (writer.py `fold_tag_stats`). Body: LZ4 of the JSON rows (see writer.py).
tag_stats_pending = Table(
    "tag_stats_pending",
    metadata,
    Column("id", _ROW_ID, Identity(always=True), primary_key=True),
    _blob("body"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _ROW_ID, Identity(always=True), primary_key=True),
    _int("received_ms"),
    _text("topic"),
    Column("payload", LargeBinary, nullable=False),
    _text("reason"),
)

# ---------------------------------------------------------------- evidence (README "OEE and evidence")

# Samples per device and hour (hour = epoch ms of its start), written with the data statistics;
# `minutes`: bit m set when the hour's minute m had samples (what a period edge inside the hour reads).
device_hours = Table(
    "device_hours",
    metadata,
    *_device(key=True),
    Column("hour", BigInteger, primary_key=True),
    _int("samples"),
    _int("good_samples"),
    _int("first_ts"),
    _int("last_ts"),
    _int("minutes"),
    Index("device_hours_ent_hour", "ent", "hour"),
)

# OEE state changes and counter snapshots, with the counter values they carry.
device_counts = Table(
    "device_counts",
    metadata,
    *_moment(),
    _text("state", nullable=True),
    *(Column(name, Double) for name in ("total", "good", "reject", "readings", "good_readings")),
    Index("device_counts_dev_ts", "ent", "gw", "dev", "ts"),
)

# Retained device metadata (birth): the latest per device, and every config hash ever announced.
device_meta = Table(
    "device_meta",
    metadata,
    *_device(key=True),
    _int("ts"),
    _text("config_hash"),
    _text("body"),
)

meta_log = Table(
    "meta_log",
    metadata,
    *_device(key=True),
    Column("ts", BigInteger, primary_key=True),
    _text("config_hash"),
    _text("version"),
)

# ---------------------------------------------------------------- the equipment ledger (equipment.py)

equipment = Table(
    "equipment",
    metadata,
    _key("ent"),
    _key("id"),
    _text("name"),
    _text("type"),
    _text("line"),
    Column("key_process", Boolean, nullable=False),
    Column("digitized", Boolean, nullable=False),
    _text("gateway"),
    _text("device"),
    Column("row_no", Integer, nullable=False),
)

equipment_imports = Table(
    "equipment_imports",
    metadata,
    Column("id", _ROW_ID, Identity(always=True), primary_key=True),
    _text("ent"),
    _int("imported_ms"),
    _text("source"),
    _text("sha256"),
    Column("row_count", Integer, nullable=False),
)

# The sheets as they were imported (bytes), so an evidence pack can hold the file its denominators come from.
equipment_files = Table(
    "equipment_files",
    metadata,
    _key("ent"),
    _key("sha256"),
    _text("source"),
    Column("data", LargeBinary, nullable=False),
    _int("imported_ms"),
)

EQUIPMENT_TABLES = (equipment, equipment_imports, equipment_files)


# ---------------------------------------------------------------- the cloud API's users (users.py)

api_users = Table(
    "api_users",
    metadata,
    _key("name"),
    _text("role"),
    _text("enterprises"),  # comma-separated enterprise ids
    _text("password", nullable=True),  # argon2id hash
    _int("epoch"),  # bumped to end every session and token of the user
    Column("revoked", Boolean, nullable=False),
    _int("created_ms"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    _key("token_id"),
    _text("name"),
    _text("sha256"),
    _int("created_ms"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _ROW_ID, Identity(always=True), primary_key=True),
    _int("ts"),
    _text("user_name"),
    _text("action"),
    _text("enterprise"),
    _text("detail"),
    Index("audit_log_ts", "ts"),
)

auth_settings = Table("auth_settings", metadata, _key("k"), _text("v"))

USER_TABLES = (api_users, api_tokens, audit_log, auth_settings)


# ---------------------------------------------------------------- trust (cloud/trust/, README "Trust model")

# The gateway registry: one row per key a gateway was ever given; at most one `active` per gateway.
gateway_keys = Table(
    "gateway_keys",
    metadata,
    _key("ent"),
    _key("gw"),
    _key("fingerprint"),  # SHA-256 of the raw public key, hex
    _text("public_key"),  # ed25519:<base64>
    _text("status"),  # active | revoked | replaced
    _text("mqtt_user"),
    _text("mqtt_password", nullable=True),  # the broker's own hash ($7$ PBKDF2-SHA512), never the password
    _int("added_ms"),
    Column("revoked_ms", BigInteger, nullable=True),
)

# Signed checkpoints as received: the gateway's own statement of the chain hash of each message.
chain_checkpoints = Table(
    "chain_checkpoints",
    metadata,
    _key("ent"),
    _key("gw"),
    Column("last_seq", BigInteger, primary_key=True),
    _int("first_seq"),
    _int("ts"),
    _blob("prev"),
    _blob("hashes"),  # 32 bytes per seq, first..last
    _text("key"),  # fingerprint of the signing key
    _text("topic"),  # the signature covers it
    _blob("payload"),  # the sealed payload, re-verifiable by the audit
    _int("received_ms"),
    Index("chain_checkpoints_ts", "ent", "ts"),
)

# The signed part of every recorded chained message (LZ4): what the audit re-derives the evidence from.
message_bodies = Table(
    "message_bodies",
    metadata,
    *_message_key(),
    _blob("body"),  # LZ4 block of the signed part: its SHA-256 is the chain hash its checkpoint signs
    _int("ts_min"),
    _int("ts_max"),
    _int("horizon_ms"),  # timestamps past it were flagged as in the future and kept out of the evidence
    Index("message_bodies_ts", "ent", "ts_min"),
)

# Chained messages waiting for the checkpoint that proves them (refused after trust.proof_timeout).
unproven = Table(
    "unproven",
    metadata,
    *_message_key(),
    _blob("h", key=True),
    _text("topic"),
    _blob("payload"),
    _int("received_ms"),
    _text("claimed_by", nullable=True),  # the ingester settling it (shared groups: one of them, not all)
    Column("claimed_ms", BigInteger, nullable=True),
)

# What the ingester refused or flagged, per claimed gateway and reason.
trust_counts = Table(
    "trust_counts",
    metadata,
    _key("ent"),
    _key("gw"),
    _key("what"),  # refused:<kind> or future:samples / future:events
    _int("count"),
    _int("last_ms"),
    _text("last_reason"),
)

# Closed gateway-hours of checkpoints and message bodies, moved out of the two tables above (trust/archive.py):
# one LZMA blob per gateway, hour (of the checkpoints' ts) and part; the audit reads them as rows.
chain_archive = Table(
    "chain_archive",
    metadata,
    _key("ent"),
    _key("gw"),
    Column("hour", BigInteger, primary_key=True),
    Column("part", Integer, primary_key=True),  # 0, then 1, 2, … for bodies that came after the hour was archived
    _int("first_seq"),  # the seqs its checkpoints sign and its bodies hold
    _int("last_seq"),
    _int("checkpoints"),
    _int("messages"),
    _int("ts_min"),  # the bodies' timestamps
    _int("ts_max"),
    _blob("data"),  # LZMA (archive.py)
    _int("archived_ms"),
    Index("chain_archive_ts", "ent", "ts_min"),
)

TRUST_TABLES = (gateway_keys, chain_checkpoints, message_bodies, unproven, trust_counts, chain_archive)

# ---------------------------------------------------------------- the overview's day summaries (days.py)

# Per device and closed local day: what the online and networked figures of any period made of whole days sum
# (cloud/evidence/overview.py). A cache: computed from the ledger when first asked for, dropped by the writer
# when late data arrives for the day or before it, and keyed by the calendar it was computed under.
device_days = Table(
    "device_days",
    metadata,
    *_device(key=True),
    Column("day", BigInteger, primary_key=True),  # epoch ms of the local midnight the day starts at
    _int("day_end"),
    _text("calendar"),  # fingerprint of the time zone and shifts (overview.calendar_key)
    _int("online_ms"),
    _int("online_planned_ms"),
    _int("planned_ms"),
    Column("online_end", Boolean, nullable=False),  # online at the day's end
    _int("samples"),
    _int("good_samples"),
    Column("first_ts", BigInteger, nullable=True),
    Column("last_ts", BigInteger, nullable=True),
    _int("computed_ms"),
    Index("device_days_ent_day", "ent", "day"),
)

# ---------------------------------------------------------------- tables of earlier releases (read to migrate)

legacy = MetaData()

# one row per message (ent, gw, seq): turned into `received_seqs`
received = Table("received", legacy, *_message_key(), _text("dev"), _text("kind"), _int("received_ms"))

# samples per device and 10 s slot: turned into `device_hours`
device_activity = Table(
    "device_activity",
    legacy,
    *_device(key=True),
    Column("slot", BigInteger, primary_key=True),
    _int("samples"),
    _int("good_samples"),
    _int("first_ts"),
    _int("last_ts"),
)
