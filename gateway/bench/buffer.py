"""`edgegw bench buffer [--dir D]`: what durability costs per scan. One buffer transaction per scan (as the
runtime writes: one data message of `--tags` samples) with `synchronous=FULL` (an fsync of the WAL per
commit: a committed scan survives a power cut, tests/integration/test_power_cut.py) against `NORMAL` (no
fsync per commit: survives a killed process, not a power cut), on the disk of `--dir` (the default is a
temporary directory: point it at the gateway's data_dir to measure that disk). Reports the wall time and
CPU per scan. Leaves out the publisher's deletes (a second transaction per acknowledged batch)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cloud_bridge.uplink.buffer import Buffer, Outgoing
from cloud_bridge.wire.codec import Sample, encode_data_body


def measure(directory: Path, synchronous: str, scans: int, tags: int) -> dict[str, Any]:
    path = directory / f"bench-{synchronous.lower()}.db"
    buf = Buffer(path, synchronous=synchronous)  # type: ignore[arg-type]
    body = encode_data_body([Sample(f"tag_{j:03d}", j * 0.5, 1_700_000_000_000) for j in range(tags)])
    scan = [Outgoing("data", "sf/v1/e/g/d/data", "d", body, samples=tags)]
    times = []
    cpu0 = time.process_time()
    try:
        for _ in range(scans):
            t = time.perf_counter()
            buf.enqueue(scan)
            times.append(time.perf_counter() - t)
    finally:
        cpu = time.process_time() - cpu0
        buf.close()
        for p in path.parent.glob(path.name + "*"):
            p.unlink()
    times.sort()
    return {
        "synchronous": synchronous,
        "scans": scans,
        "ms_per_scan_p50": statistics.median(times) * 1000,
        "ms_per_scan_p99": times[int(len(times) * 0.99) - 1] * 1000,
        "cpu_ms_per_scan": cpu / scans * 1000,
        "scans_per_s": scans / sum(times),
    }


def cmd_buffer(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="edgegw-bench-buffer-"))
    directory.mkdir(parents=True, exist_ok=True)
    runs = [measure(directory, mode, args.scans, args.tags) for mode in ("FULL", "NORMAL")]
    print(f"edgegw bench buffer — {args.scans} scans of {args.tags} samples, one transaction each, in {directory}")
    for r in runs:
        print(
            f"  synchronous={r['synchronous']:<6}  p50 {r['ms_per_scan_p50']:.2f} ms  p99 {r['ms_per_scan_p99']:.2f} ms"
            f"  CPU {r['cpu_ms_per_scan']:.3f} ms/scan  {r['scans_per_s']:,.0f} scans/s"
        )
    full, normal = runs
    print(
        f"  fsync 代价 / cost of the fsync per scan: {full['ms_per_scan_p50'] - normal['ms_per_scan_p50']:.2f} ms (p50)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    if not args.dir:
        shutil.rmtree(directory, ignore_errors=True)
    return 0
