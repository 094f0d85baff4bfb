"""A small SQL layer over SQLite (default) and PostgreSQL (by URL) for the cloud's stores.

Statements are written once, SQLite style (`?` placeholders, portable `ON CONFLICT` upserts);
for PostgreSQL the placeholders become `%s` and a few type names are translated. One connection
per `Database`, guarded by a lock: the ingester's worker and the API threads share it safely.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    """What a transaction body may do."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...  # returns rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


_PG_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
]


def to_postgres(sql: str) -> str:
    """Translate one SQLite-style statement to PostgreSQL (placeholders and a few type names)."""
    out = sql.replace("?", "%s")
    for pattern, repl in _PG_TYPES:
        out = pattern.sub(repl, out)
    return out


class _SqliteCursor:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._db.execute(sql, params).fetchall())


class _PgCursor:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cur.execute(to_postgres(sql), params)
        return int(self._cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self._cur.executemany(to_postgres(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(to_postgres(sql), params)
        return list(self._cur.fetchall())


class Database:
    """`sqlite:///path/file.db` (or `sqlite:///:memory:`) or `postgresql://user@host/db`."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        self._lock = threading.RLock()
        self.dialect: Dialect
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            path = url[len("sqlite:///") :]
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an acknowledged message must survive a power cut
            self._sqlite: sqlite3.Connection | None = db
            self._pg: Any = None
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg  # optional dependency: pip install 'edgegw[postgres]'

            self.dialect = "postgresql"
            self._sqlite = None
            self._connect_timeout = int(busy_timeout)
            self._pg = psycopg.connect(url, autocommit=True, connect_timeout=self._connect_timeout)
        else:
            raise ValueError(f"{url!r}: use sqlite:///path/ledger.db or postgresql://user@host/db")

    def _pg_conn(self) -> Any:
        """The PostgreSQL connection, opened again if the server restarted or the link broke
        (the failed statement raised; the caller's retry lands here and reconnects)."""
        if self._pg.closed or self._pg.broken:
            import psycopg

            self._pg = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
        return self._pg

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            if self._sqlite is not None:
                db = self._sqlite
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteCursor(db)
                    db.execute("COMMIT")  # may fail too (disk full): then rolled back like the rest
                except BaseException:
                    if db.in_transaction:
                        with suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    raise
            else:
                pg = self._pg_conn()
                with pg.transaction(), pg.cursor() as cur:
                    yield _PgCursor(cur)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the row count."""
        with self.transaction() as cur:
            return cur.execute(sql, params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A query's rows as dicts."""
        with self._lock:
            if self._sqlite is not None:
                c = self._sqlite.execute(sql, params)
                names = [d[0] for d in c.description]
                return [dict(zip(names, r, strict=True)) for r in c.fetchall()]
            with self._pg_conn().cursor() as cur:
                cur.execute(to_postgres(sql), params)
                names = [d.name for d in cur.description]
                return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def migrate(self, statements: Sequence[str]) -> None:
        """Create tables and indexes (statements are idempotent: IF NOT EXISTS)."""
        with self.transaction() as cur:
            for stmt in statements:
                cur.execute(stmt)

    def close(self) -> None:
        with self._lock:
            if self._sqlite is not None:
                self._sqlite.close()
            else:
                self._pg.close()
