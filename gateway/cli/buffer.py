"""`edgegw buffer status|dead-letters -c gateway.yaml`: the store-and-forward buffer of a gateway, and the
messages moved out of its queue (refused for good by the broker, or found damaged), listed and replayed.
Safe while the agent runs (SQLite WAL; a replay is one short transaction)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_config import load_gateway_config
from gateway.cli.options import whole


def _buffer(args: argparse.Namespace) -> Any:
    from cloud_bridge.uplink.buffer import Buffer

    cfg = load_gateway_config(args.config)  # a ConfigError is reported by main()
    path = Path(cfg.gateway.data_dir) / "buffer.db"
    if not path.exists():
        print(f"edgegw buffer: no buffer at {path} (has the gateway run with this config?)", file=sys.stderr)
        return None
    return Buffer(path, max_bytes=cfg.buffer.max_bytes, compress=cfg.buffer.compress)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def cmd_status(args: argparse.Namespace) -> int:
    buf = _buffer(args)
    if buf is None:
        return 2
    try:
        d = buf.depth()
        print(f"待发消息 / queued:        {d.messages:,} messages, {d.samples:,} samples, {d.bytes:,} bytes")
        print(f"最早 / oldest:            {_when(d.oldest_ms) if d.oldest_ms else '-'}")
        print(f"死信 / dead letters:      {d.dead_letters:,} ({d.dead_letter_bytes:,} bytes; {d.quarantined} damaged)")
        print(f"已丢弃 / dropped (full):  {d.dropped_messages:,} messages, {d.dropped_samples:,} samples")
        print(f"下一个 seq / next seq:    {buf.next_seq():,}")
    finally:
        buf.close()
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    ids: list[int] | None = None
    if args.replay and args.replay != "all":
        try:
            ids = [int(x) for x in args.replay.split(",") if x.strip()]
            if not all(0 < i < 2**63 for i in ids):  # SQLite's integers
                raise ValueError
        except ValueError:
            print(
                f"edgegw buffer dead-letters: --replay takes 'all' or ids like 3,7 (not {args.replay!r})",
                file=sys.stderr,
            )
            return 2
    buf = _buffer(args)
    if buf is None:
        return 2
    try:
        if args.replay:
            n = buf.replay_dead_letters(ids)
            print(f"重新排队 / queued again: {n} messages (the running gateway sends them; consumers dedupe on seq)")
            return 0
        rows = buf.dead_letters(args.limit)
        if not rows:
            print("没有死信 / no dead letters")
        for r in rows:
            print(f"{r.id:>8}  seq={r.seq}  {r.topic}  {r.samples} samples  {_when(r.failed_ms)}  {r.reason}")
    finally:
        buf.close()
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("buffer", help="the store-and-forward buffer: depth and dead letters")
    bsub = p.add_subparsers(dest="buffer_command", required=True)
    s = bsub.add_parser("status", help="queued messages, dead letters, drops, next seq")
    s.add_argument("-c", "--config", required=True, help="gateway.yaml")
    s.set_defaults(func=cmd_status)
    d = bsub.add_parser("dead-letters", help="list the dead letters, or put them back in the queue")
    d.add_argument("-c", "--config", required=True, help="gateway.yaml")
    d.add_argument("--replay", default=None, metavar="all|ID,...", help="queue these again (or all)")
    d.add_argument("--limit", type=whole(1, 1_000_000), default=1000)
    d.set_defaults(func=cmd_dead_letters)
