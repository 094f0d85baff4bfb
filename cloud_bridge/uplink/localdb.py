"""The edge's local SQLite files (the store-and-forward buffer, the OEE history): opened in WAL mode and
checked; a file that cannot be opened or fails SQLite's quick check is moved aside with its WAL as
`<name>.corrupt-<time>`, with an error in the log, and a fresh one is created, so a damaged file never
stops the gateway (nor sends its service manager into a restart loop)."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
# SQLite's page cache per connection, KiB (its default is 2,000 KiB). The buffer writes at the end and
# reads what it wrote last: a small cache holds that, and the operating system's page cache the rest
CACHE_KIB = 512


class Damaged(Exception):
    """The file opened but SQLite's quick check found it damaged."""


@dataclass(frozen=True, slots=True)
class Opened:
    db: sqlite3.Connection
    created: bool  # a new file: there was none, or the old one was moved aside
    moved_aside: Path | None = None  # where the damaged file went


def _open(path: Path, synchronous: str, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        (check,) = db.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise Damaged(check)
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def move_aside(path: Path, reason: object, what: str) -> Path:
    """Rename `path` (and its -wal, -shm) to `<name>.corrupt-<time>`; returns the new name."""
    target = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    log.error("%s %s is damaged (%s): moved aside to %s, starting afresh", what, path, reason, target)
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(target) + suffix))
    return target


def open_local_db(path: Path, schema: str, *, synchronous: str, what: str) -> Opened:
    """Open (or create) the SQLite file at `path` with `schema` applied; a damaged one is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    try:
        return Opened(_open(path, synchronous, schema), created=not existed)
    except (sqlite3.DatabaseError, Damaged) as e:
        aside = move_aside(path, e, what)
        return Opened(_open(path, synchronous, schema), created=True, moved_aside=aside)
