"""The store-and-forward buffer: order, seq that survives restarts, delete only on ack."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_bridge.uplink.buffer import Buffer, Outgoing


def data(dev: str, n: int = 1) -> Outgoing:
    return Outgoing("data", f"t/{dev}/data", dev, b'{"samples":[]}', samples=n)


def test_seq_grows_by_one_per_message_and_status_takes_none(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db")
    seqs = b.enqueue([data("a"), Outgoing("status", "t/a/status", "a", b"{}", retain=True), data("b")])
    assert seqs == [1, None, 2]
    assert b.enqueue([data("a")]) == [3]
    rows = b.peek(10)
    assert [r.seq for r in rows] == [1, None, 2, 3]
    assert rows[1].retain and not rows[0].retain


def test_seq_survives_restart_even_after_everything_was_acked(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db")
    b.enqueue([data("a"), data("a")])
    b.ack([r.id for r in b.peek(10)])
    assert b.depth().messages == 0
    b.close()
    b2 = Buffer(tmp_path / "b.db")
    assert b2.enqueue([data("a")]) == [3]


def test_rows_stay_until_acked_and_come_back_in_order(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db")
    b.enqueue([data(f"d{i}", i) for i in range(5)], now_ms=1000)
    first = b.peek(2)
    assert [r.dev for r in first] == ["d0", "d1"]
    assert [r.dev for r in b.peek(2, after_id=first[-1].id)] == ["d2", "d3"]
    b.ack([first[0].id])
    depth = b.depth()
    assert depth.messages == 4 and depth.oldest_ms == 1000 and depth.bytes > 0
    assert [r.dev for r in b.peek(10)] == ["d1", "d2", "d3", "d4"]


def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from cloud_bridge.uplink.buffer import Buffer, Outgoing\n"
        f"b = Buffer({str(tmp_path / 'b.db')!r})\n"
        "for i in range(50):\n"
        "    b.enqueue([Outgoing('data', 't', 'd', b'{}', samples=1)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    b = Buffer(tmp_path / "b.db")
    assert b.depth().messages == 50
    assert [r.seq for r in b.peek(100)] == list(range(1, 51))
    assert b.next_seq() == 51


def test_bodies_are_compressed_on_disk_and_come_back_intact(tmp_path: Path) -> None:
    body = (
        b'{"samples":['
        + b",".join(b'{"tag":"speed","v":900.1,"ts":1795745132987,"q":"good"}' for _ in range(100))
        + b"]}"
    )
    b = Buffer(tmp_path / "b.db")
    b.enqueue([Outgoing("data", "t", "d", body, samples=100)])
    assert b.peek(1)[0].body == body
    assert b.depth().bytes < len(body) / 5
    assert b.depth().samples == 100


def test_full_buffer_drops_oldest_and_counts_it(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db", max_bytes=1000, compress=False)
    for i in range(30):
        b.enqueue([Outgoing("data", "t", "d", b"x" * 100, samples=10)], now_ms=i)
    depth = b.depth()
    assert depth.bytes <= 1000
    assert depth.messages == 10
    assert depth.dropped_messages == 20 and depth.dropped_samples == 200
    assert [r.seq for r in b.peek(100)] == list(range(21, 31)), "the newest are kept, in order"
    b.close()
    assert Buffer(tmp_path / "b.db", max_bytes=1000).depth().dropped_messages == 20, "drops are persisted"


def test_corrupt_buffer_is_moved_aside_and_seq_never_repeats(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    b = Buffer(path)
    b.enqueue([data("a") for _ in range(5)])
    b.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database, a disk error ate it" * 100)
    b2 = Buffer(path)
    assert b2.corrupt_file is not None and b2.corrupt_file.exists()
    assert b2.depth().messages == 0
    (seq,) = b2.enqueue([data("a")])
    assert seq is not None and seq > 5


def test_deleted_buffer_does_not_restart_seq_at_one(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    b = Buffer(path)
    b.enqueue([data("a")])
    b.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    assert Buffer(path).enqueue([data("a")])[0] != 1


def test_seq_reservation_crosses_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cloud_bridge.uplink.buffer.SEQ_BLOCK", 3)
    b = Buffer(tmp_path / "b.db")
    assert b.enqueue([data("a") for _ in range(7)]) == list(range(1, 8))
    assert int((tmp_path / "b.db.seq.hwm").read_text()) > 8


def fill_up(b: Buffer) -> int:
    """Make the database full, as a full disk does (SQLite's own limit: no mock): returns its pages."""
    (pages,) = b._db.execute("PRAGMA page_count").fetchone()
    b._db.execute(f"PRAGMA max_page_count = {pages}")
    return int(pages)


def big(dev: str, i: int) -> Outgoing:
    return Outgoing("data", f"t/{dev}/data", dev, os.urandom(3000) + str(i).encode(), samples=1)


def test_a_full_disk_refuses_the_write_cleanly_and_the_next_goes_in_once_there_is_room(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db", compress=False)
    assert b.enqueue([data("a"), data("a")]) == [1, 2]
    fill_up(b)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for i in range(1000):
            b.enqueue([big("a", i)])
    assert not b._db.in_transaction  # never left inside a transaction
    stored = b.depth()
    assert stored.bytes == sum(len(r.body) for r in b.peek(10_000))  # the byte count stays true
    b._db.execute("PRAGMA max_page_count = 1073741823")  # room again
    (seq,) = b.enqueue([data("a")])
    seqs = [r.seq for r in b.peek(10_000)]
    assert seqs == list(range(1, seq + 1))  # nothing lost that was taken, no gap, no repeat
    assert b.depth().messages == stored.messages + 1


def test_a_failed_ack_or_dead_letter_is_rolled_back_and_the_buffer_keeps_working(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db")
    b.enqueue([data("a"), data("b"), data("c")])
    rows = b.peek(10)
    # a write that fails half way (what a full disk does to a delete): a real SQLite error
    b._db.execute("CREATE TEMP TRIGGER no_room BEFORE DELETE ON outbox BEGIN SELECT RAISE(FAIL, 'disk full'); END")
    for attempt in (lambda: b.ack([rows[0].id, rows[1].id]), lambda: b.dead_letter([rows[2].id], "refused")):
        with pytest.raises(sqlite3.IntegrityError, match="disk full"):
            attempt()
        assert not b._db.in_transaction
    assert b.depth().messages == 3 and b.dead_letter_count() == 0
    b._db.execute("DROP TRIGGER no_room")
    b.ack([rows[0].id, rows[1].id])
    b.dead_letter([rows[2].id], "refused")
    assert b.depth().messages == 0 and b.dead_letter_count() == 1 and b.depth().bytes == 0
    assert b.enqueue([data("a")]) == [4]


def test_dead_letters_count_toward_max_bytes_and_go_first_when_full(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db", max_bytes=1000, compress=False)
    b.enqueue([Outgoing("data", "t", "d", b"x" * 100, samples=1) for _ in range(3)])
    b.dead_letter([r.id for r in b.peek(2)], "not authorised")
    depth = b.depth()
    assert (depth.messages, depth.dead_letters, depth.dead_letter_bytes) == (1, 2, 200)
    for _ in range(8):  # 1 queued + 2 dead + 8 new = 1100 bytes: the oldest dead letter makes room
        b.enqueue([Outgoing("data", "t", "d", b"x" * 100, samples=1)])
    depth = b.depth()
    assert depth.dead_letters == 1 and depth.messages == 9 and depth.dropped_messages == 0
    assert depth.bytes + depth.dead_letter_bytes <= 1000


def test_dead_letters_are_listed_with_their_reason_and_replayed_with_their_seq(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db")
    b.enqueue([data(f"d{i}") for i in range(4)], now_ms=5000)
    rows = b.peek(10)
    b.dead_letter([rows[1].id, rows[3].id], "broker rejected it: Not authorized")
    listed = b.dead_letters()
    assert [(d.seq, d.dev, d.reason, d.created_ms) for d in listed] == [
        (2, "d1", "broker rejected it: Not authorized", 5000),
        (4, "d3", "broker rejected it: Not authorized", 5000),
    ]
    assert b.replay_dead_letters([listed[0].id]) == 1
    assert [r.seq for r in b.peek(10)] == [1, 3, 2], "back in the queue with its own seq"
    assert b.replay_dead_letters() == 1 and b.dead_letter_count() == 0
    assert sorted(r.seq for r in b.peek(10) if r.seq) == [1, 2, 3, 4]


def test_a_row_that_cannot_be_decompressed_is_quarantined_and_the_rest_are_read(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.db")
    b.enqueue([data(f"d{i}") for i in range(5)])
    b._db.execute("UPDATE outbox SET body = x'deadbeef' WHERE seq = 3")
    assert [r.seq for r in b.peek(10)] == [1, 2, 4, 5]
    depth = b.depth()
    assert depth.quarantined == 1 and depth.dead_letters == 1 and depth.messages == 4
    [dead] = b.dead_letters()
    assert dead.seq == 3 and dead.reason.startswith("damaged: the stored body cannot be read")
    b.close()
    assert Buffer(tmp_path / "b.db").depth().quarantined == 1, "the count is persisted"
