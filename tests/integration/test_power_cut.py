"""A buffered scan survives a power cut: the real Buffer writes while a shim (tests/powercut/tracewrites.c,
LD_PRELOAD) records every write and sync it makes; the checker then rebuilds the files as a disk may hold
them after a cut at many instants — what each file had when last synced, plus any subset of what was
written after — opens each rebuilt buffer and checks that every scan whose commit had returned is there
and that no seq will be given out again. The same check finds the losses of `synchronous=NORMAL`, so it
can fail. (The -shm index is left out, as after a real cut: SQLite rebuilds it from the WAL.)"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_bridge.uplink.buffer import Buffer

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parents[1] / "powercut"
ROOT = Path(__file__).resolve().parents[2]
FILES = ("buffer.db", "buffer.db-wal")


@dataclass(frozen=True, slots=True)
class Op:
    kind: str  # W write, T truncate, S sync
    name: str
    offset: int
    data: bytes


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("a C compiler is needed for the power-cut shim: apt-get install gcc")
    out = tmp_path_factory.mktemp("shim") / "tracewrites.so"
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(out), str(HERE / "tracewrites.c"), "-ldl", "-lpthread"],
                   check=True, capture_output=True)  # fmt: skip
    return out


def traced_run(shim: Path, work: Path, synchronous: str, scans: int) -> list[Op]:
    data = work / "data"
    data.mkdir()
    log = work / "trace.log"
    env = {**os.environ, "LD_PRELOAD": str(shim), "TRACE_DIR": f"{data}/", "TRACE_LOG": str(log)}
    subprocess.run([sys.executable, str(HERE / "writer.py"), str(data), synchronous, str(scans)],
                   env=env, check=True, cwd=ROOT, timeout=300)  # fmt: skip
    raw, ops, i = log.read_bytes(), [], 0
    while i < len(raw):
        kind = chr(raw[i])
        (plen,) = struct.unpack_from("<H", raw, i + 1)
        name = raw[i + 3 : i + 3 + plen].decode().rsplit("/", 1)[-1]
        offset, length = struct.unpack_from("<qQ", raw, i + 3 + plen)
        i += 19 + plen
        body = raw[i : i + length] if kind == "W" else b""
        i += len(body)
        ops.append(Op(kind, name, offset, body))
    return ops


def rebuild(ops: list[Op], cut: int, rng: random.Random) -> dict[str, bytes]:
    """The files as a disk may hold them after a power cut before ops[cut]."""
    last_sync = {name: max((i for i in range(cut) if ops[i].kind == "S" and ops[i].name == name), default=-1)
                 for name in FILES}  # fmt: skip
    files: dict[str, bytearray] = {name: bytearray() for name in FILES}
    for i in range(cut):
        op = ops[i]
        if op.name not in files or op.kind == "S":
            continue
        if i > last_sync[op.name] and rng.random() < 0.5:
            continue  # written after the last sync: this one did not reach the platter
        f = files[op.name]
        if op.kind == "T":
            del f[op.offset :]
        else:
            if len(f) < op.offset:
                f.extend(b"\0" * (op.offset - len(f)))
            f[op.offset : op.offset + len(op.data)] = op.data
    return {name: bytes(b) for name, b in files.items()}


def markers(ops: list[Op], cut: int) -> tuple[set[int], set[int]]:
    """Seqs whose commit had returned before the cut, and seqs an ack had begun to delete."""
    committed: set[int] = set()
    acking: set[int] = set()
    for op in ops[:cut]:
        if op.name != "commits" or op.kind != "W":
            continue
        for line in op.data.decode().splitlines():
            tag, _, seqs = line.partition(" ")
            (committed if tag == "C" else acking).update(int(s) for s in seqs.split(",") if s)
    return committed, acking


def check_cut(ops: list[Op], cut: int, rng: random.Random, where: Path) -> list[str]:
    """What went wrong with the buffer rebuilt at this cut (nothing: [])."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir()
    for name, content in rebuild(ops, cut, rng).items():
        if content:
            (where / name).write_bytes(content)
    committed, acking = markers(ops, cut)
    buf = Buffer(where / "buffer.db")
    try:
        problems = []
        if buf.corrupt_file is not None:
            problems.append("the rebuilt buffer did not open")
        present = {seq for (seq,) in buf._db.execute("SELECT seq FROM outbox")}
        missing = committed - acking - present
        if missing:
            problems.append(f"committed and lost: {sorted(missing)[:10]}")
        if committed and buf.next_seq() <= max(committed):
            problems.append(f"next seq {buf.next_seq()} would reuse up to {max(committed)}")
    finally:
        buf.close()
    return problems


def cuts(ops: list[Op], n: int, rng: random.Random) -> list[int]:
    points = sorted(rng.sample(range(1, len(ops)), min(n, len(ops) - 1)))
    return [*points, len(ops)]


def test_every_committed_scan_survives_a_power_cut_at_any_instant(shim: Path, tmp_path: Path) -> None:
    ops = traced_run(shim, tmp_path, "FULL", scans=250)
    assert sum(1 for op in ops if op.kind == "S" and op.name == "buffer.db-wal") >= 250, "one sync per commit"
    rng = random.Random(11)
    failures = {}
    points = cuts(ops, 150, rng)
    for cut in points:
        problems = check_cut(ops, cut, rng, tmp_path / "rebuilt")
        if problems:
            failures[cut] = problems
    assert not failures, f"{len(failures)} of {len(points)} cuts lose data: {dict(list(failures.items())[:3])}"
    committed, _ = markers(ops, len(ops))
    assert len(committed) > 500, "the workload committed what it should"


def test_the_check_finds_the_losses_of_synchronous_normal(shim: Path, tmp_path: Path) -> None:
    """NORMAL does not sync each commit: a power cut loses the last ones. The check must see it."""
    ops = traced_run(shim, tmp_path, "NORMAL", scans=120)
    rng = random.Random(11)
    lost = [cut for cut in cuts(ops, 40, rng) if check_cut(ops, cut, rng, tmp_path / "rebuilt")]
    assert lost, "with NORMAL some cut must lose committed scans"
