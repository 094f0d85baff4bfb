"""The workload of the power-cut test, run under the tracing shim: scans enqueued into a real Buffer as the
gateway does (one transaction per scan), and acknowledgements of the oldest rows as the publisher does.
After each call returns it writes a marker to `commits` (through the traced write(), so the markers sit in
the trace in program order): `C seq,...` committed, `A seq,...` about to be deleted by an ack."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from cloud_bridge.uplink.buffer import Buffer, Outgoing


def main(directory: str, synchronous: str, scans: int) -> None:
    rng = random.Random(7)
    buf = Buffer(Path(directory) / "buffer.db", synchronous=synchronous)  # type: ignore[arg-type]
    marks = os.open(Path(directory) / "commits", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for i in range(scans):
        batch = [
            Outgoing("data", "sf/v1/e/g/d/data", "d", rng.randbytes(rng.randint(20, 3000)), samples=1)
            for _ in range(rng.randint(1, 4))
        ]
        seqs = buf.enqueue(batch)
        os.write(marks, f"C {','.join(str(s) for s in seqs)}\n".encode())
        if i % 5 == 4:
            oldest = buf.peek(rng.randint(1, 6))
            os.write(marks, f"A {','.join(str(r.seq) for r in oldest)}\n".encode())
            buf.ack([r.id for r in oldest])
    buf.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
