"""Keep the garbage collector's full passes off the hot path.

A gateway holds many long-lived objects (config models, driver plans, subscriptions, asyncio
machinery) and makes many short-lived ones per scan (readings, samples). CPython's full
collections walk every tracked object, long-lived ones included, and stall the loop. Once the
steady state is reached, moving what exists into the permanent generation (`gc.freeze`) leaves
the collector only the young, short-lived objects.
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect what is garbage now, then freeze the rest out of the collector's reach.

    Unfreezing first lets what an earlier phase left behind (e.g. a lost OPC UA session) be freed,
    not pinned. Safe to call again after a reconnect."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
