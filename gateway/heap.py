"""Keep the garbage collector's full passes off the hot path.

A gateway holds many long-lived objects (config models, driver plans, subscriptions, asyncio
machinery) and makes many short-lived ones per scan (readings, samples). CPython's full
collections walk every tracked object, long-lived ones included, and stall the loop. Once the
steady state is reached, moving what exists into the permanent generation (`gc.freeze`) leaves
the collector only the young, short-lived objects.

The config is the other big transient: a large tag map is parsed and validated into many objects, most
of which are dropped once the run-time state is built (`gateway.compact`). glibc keeps what is freed in
its heap; `trim_heap` hands the free pages back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache
from typing import Any


def settle_heap() -> None:
    """Collect what is garbage now, then freeze the rest out of the collector's reach.

    Unfreezing first lets what an earlier phase left behind (e.g. a lost OPC UA session) be freed,
    not pinned. Safe to call again after a reconnect."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


@cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # glibc has it, musl does not
    except OSError:
        return None


def trim_heap(*, collect: bool = True) -> bool:
    """Collect the garbage, then give the C heap's free memory back to the system (glibc `malloc_trim(0)`).
    Call it after start-up and after a config (re)load. False (and nothing done but the collection) where
    the C library is not glibc."""
    if collect:
        gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
