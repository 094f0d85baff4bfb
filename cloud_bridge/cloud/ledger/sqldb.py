"""The cloud's stores in SQL: SQLite (default) or PostgreSQL (by URL), through SQLAlchemy Core.

Why a library rather than SQL text: every statement is a Core construct (schema.py declares the tables
once) that each dialect compiles for its own database: the driver's bind style (`?`, `%(name)s`), so a
value is only ever a bound parameter and one holding `?`, `%s` or `:x` is data, never SQL; the type
names (BLOB / BYTEA, DOUBLE / DOUBLE PRECISION) and identity columns; and the upserts through each
dialect's own `insert().on_conflict_do_nothing / _do_update`. No SQL text is rewritten anywhere.

What it costs: a dependency (SQLAlchemy 2, pure Python with optional compiled speed-ups), and some
Python per statement executed (compiled-cache look-up, parameter processing: tens of µs). The
ingest path therefore runs statements per batch and per message, never per sample: statistics are
aggregated in Python and written with one executemany per table (see writer.py).

Connections come from the engine's pool, one per thread at a time, so the ingester's worker and the
API's threads share one `Database` safely; `sqlite:///:memory:` is a single connection (StaticPool)
that a lock hands to one thread at a time. SQLite runs in WAL mode with `synchronous=FULL` and a busy
timeout, and a write transaction takes the write lock at BEGIN (`BEGIN IMMEDIATE`). PostgreSQL
connections are checked before use (`pool_pre_ping`): one the server dropped while idle is replaced;
one dropped during a transaction fails that transaction, and the caller's retry gets a new one.
Errors name the statement but not its parameters (the data of a whole batch), as the drivers' did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Executable,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement
from sqlalchemy.types import TypeEngine

Excluded = ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]  # the row an upsert proposed

# Any number, the same in every process: PostgreSQL serializes the schema creation of ingesters that start together.
_SCHEMA_LOCK = 0x6564676577  # "edgew"

# SQLAlchemy keeps the driver's row count of an INSERT only when asked (psycopg's is gone otherwise).
_ROWCOUNT = {"preserve_rowcount": True}


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL of `sqlite:///path` or `postgresql://…` (run by psycopg 3); ValueError otherwise."""
    problem = f"{url!r}: use sqlite:///path/ledger.db or postgresql://user@host/db"
    try:
        u = make_url(url)
    except ArgumentError:
        raise ValueError(problem) from None
    if u.drivername == "sqlite" and url.startswith("sqlite:///") and u.database:
        return u
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return u.set(drivername="postgresql+psycopg")
    raise ValueError(problem)


def db_reason(e: DBAPIError) -> str:
    """The driver's reason for a database error, on one line (no SQLAlchemy background link)."""
    return "; ".join(line.strip() for line in str(e.orig or e).splitlines() if line.strip())


def unusable(url: str) -> str | None:
    """Why the database at `url` cannot be used (refused, unknown host, no such file, no rights), or None
    when it answers: for the commands that serve it to say so at start, in one line."""
    try:
        db = Database(url, busy_timeout=5.0)
        try:
            with db.engine.connect() as c:
                c.exec_driver_sql("SELECT 1")
        finally:
            db.close()
    except DBAPIError as e:
        return db_reason(e)
    except OSError as e:
        return f"{e.filename}: {e.strerror}" if e.filename else str(e)
    return None


class Database:
    """`sqlite:///path/file.db` (or `sqlite:///:memory:`) or `postgresql://user@host/db`."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url  # as given: redact it before showing it (repr(self) does)
        u = engine_url(url)
        self.dialect = u.get_backend_name()  # "sqlite" or "postgresql"
        self._lock: AbstractContextManager[Any] = nullcontext()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(u, busy_timeout)
            if isinstance(self.engine.pool, StaticPool):
                self._lock = threading.RLock()
            self._insert: Callable[[Table], Any] = sqlite.insert
            self._reader = self.engine  # the driver does not BEGIN by itself: reads run in autocommit
        else:
            self.engine = create_engine(
                u,
                pool_pre_ping=True,
                hide_parameters=True,
                connect_args={"connect_timeout": max(1, round(busy_timeout))},
            )
            self._insert = postgresql.insert
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")  # no BEGIN / ROLLBACK

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises, including
        when the COMMIT itself fails (a full disk)."""
        with self._lock, self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first write
            yield conn  # if the block raises, closing the connection rolls the transaction back
            try:
                conn.commit()
            except BaseException:
                _undo_failed_commit(conn)
                raise

    def execute(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> int:
        """One statement in its own transaction; returns the row count."""
        with self.transaction() as conn:
            return int(conn.execute(stmt, params, execution_options=_ROWCOUNT).rowcount)

    def rows(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """A query's rows as dicts (column name → value)."""
        with self._lock, self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(stmt, params).mappings()]

    def scalar(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, None without rows."""
        with self._lock, self._reader.connect() as conn:
            return conn.execute(stmt, params).scalar()

    def upsert(
        self,
        table: Table,
        update: Callable[[Excluded], Mapping[str, Any]] | None = None,
        where: Callable[[Excluded], ColumnElement[bool]] | None = None,
    ) -> Insert:
        """INSERT into `table` that, on a conflict on its primary key, does nothing (no `update`) or
        sets the columns `update(excluded)` gives (where `where(excluded)` holds); `excluded` is the
        row the insert proposed. Built with this database's dialect."""
        ins = self._insert(table)
        keys = list(table.primary_key.columns)
        if update is None:
            return ins.on_conflict_do_nothing(index_elements=keys)
        x = ins.excluded
        return ins.on_conflict_do_update(index_elements=keys, set_=update(x), where=None if where is None else where(x))

    def create(self, metadata: MetaData, tables: Sequence[Table] | None = None) -> None:
        """Create the tables (all of `metadata`, or `tables`) and their indexes that do not exist yet,
        in one transaction; processes that start together do it one after the other."""
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            metadata.create_all(conn, tables=tables, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()


def execute_many(conn: Connection, stmt: Executable, rows: list[dict[str, Any]]) -> None:
    """`stmt` for each row, as one executemany; nothing for no rows (SQLAlchemy would run it once, bare)."""
    if rows:
        conn.execute(stmt, rows)


def _undo_failed_commit(conn: Connection) -> None:
    """SQLAlchemy counts a transaction whose COMMIT failed as ended, but the driver may still hold it
    open (SQLite does, after a full disk): roll it back there, or else discard the connection."""
    if conn.invalidated:
        return  # already discarded (the link broke)
    try:
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None:
            dbapi.rollback()
    except Exception:
        conn.invalidate()


def _sqlite_engine(u: URL, busy_timeout: float) -> Engine:
    memory = u.database == ":memory:"
    if not memory:
        Path(str(u.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        u,
        hide_parameters=True,
        connect_args={"check_same_thread": False},  # connections move between threads with the pool
        **({"poolclass": StaticPool} if memory else {}),  # one database, so one connection
    )

    @event.listens_for(engine, "connect")
    def _setup(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN by the driver: transaction() begins
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")  # first: WAL may wait for a lock
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # an acknowledged message must survive a power cut
        cur.close()

    return engine


# ---------------------------------------------------------------- PostgreSQL arrays as one text parameter each

Encoder = Callable[[Sequence[Any]], Any]


def pg_array(name: str, type_: TypeEngine[Any]) -> tuple[ColumnElement[Any], Encoder]:
    """A bound PostgreSQL array of `type_` (for `unnest`), and the encoder of its Python values.

    Text, integer and bytea arrays travel as one array literal (`{"a","b"}`, `{1,2}`, `{"\\\\x0a"}`) cast
    on the server: built here mostly by C string joins, where the driver's list dumper spends ≈ 0.7 µs per
    text or integer element and ≈ 10 µs per bytea element (an escaping regex each). Other types are
    bound as a list, as before."""
    for kind, encode in ((String, _text_array), (Integer, _int_array), (LargeBinary, _bytea_array)):
        if isinstance(type_, kind):
            return cast(bindparam(name, type_=Text), ARRAY(type_)), encode
    return bindparam(name, type_=ARRAY(type_)), list


def _quoted(v: str | None) -> str:
    return "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text_array(values: Sequence[str | None]) -> str:
    if None not in values:
        texts: Sequence[str] = values  # type: ignore[assignment]  # no None in it
        joined = "".join(texts)
        if '"' not in joined and "\\" not in joined:
            return '{"' + '","'.join(texts) + '"}'  # every element quoted, none needs escaping
    return "{" + ",".join(map(_quoted, values)) + "}"


def _int_array(values: Sequence[int | None]) -> str:
    if None in values:
        return "{" + ",".join("NULL" if v is None else int.__repr__(v) for v in values) + "}"
    return "{" + ",".join(map(int.__repr__, values)) + "}"


def _bytea_array(values: Sequence[bytes | memoryview | None]) -> str:
    return "{" + ",".join("NULL" if v is None else '"\\\\x' + v.hex() + '"' for v in values) + "}"
