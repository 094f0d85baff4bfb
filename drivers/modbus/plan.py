"""Block planning: which Modbus requests read a device's tags. Pure, no I/O.

Tags are merged greedily in address order, table by table: a tag joins the current block when the
block stays within the request limit and the unused gap before the tag is at most `max_gap`;
otherwise it starts a new block. Overlapping tags (two bools on bits of one register) share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_config.modbus import Table

MAX_REGISTERS = 125  # Modbus limit of FC 3/4
MAX_BITS = 2000  # Modbus limit of FC 1/2

# tables in the order their blocks are read
_TABLE_ORDER = {
    t: i for i, t in enumerate((Table.COIL, Table.DISCRETE_INPUT, Table.HOLDING_REGISTER, Table.INPUT_REGISTER))
}

# (tag name, table, zero-based offset, registers or bits the tag occupies)
Span = tuple[str, Table, int, int]


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) of `table` from `start`, covering `tags`."""

    table: Table
    start: int
    count: int
    tags: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.start + self.count


def plan_blocks(
    spans: Iterable[Span],
    max_registers: int = MAX_REGISTERS,
    max_gap: int = 16,
    max_bits: int = MAX_BITS,
) -> list[Block]:
    """Plan the blocks that read every span, sorted by table then address.

    `max_registers` limits register blocks (FC 3/4), `max_bits` bit blocks (FC 1/2); `max_gap` is the
    largest run of unused addresses worth reading across (in registers, or bits for bit tables).
    Raises ValueError for a tag larger than the request limit or beyond address 65535.
    """
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}, not {max_registers}")
    if not 1 <= max_bits <= MAX_BITS:
        raise ValueError(f"max_bits must be 1..{MAX_BITS}, not {max_bits}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be 0 or more, not {max_gap}")

    ordered = sorted(spans, key=lambda s: (_TABLE_ORDER[s[1]], s[2]))  # stable: config order on ties
    blocks: list[Block] = []
    table: Table | None = None
    start = end = 0
    names: list[str] = []

    for name, tag_table, offset, count in ordered:
        limit = max_bits if tag_table.is_bit else max_registers
        if count < 1:
            raise ValueError(f"tag {name!r}: count must be 1 or more")
        if count > limit:
            raise ValueError(f"tag {name!r} needs {count} registers, more than one request reads ({limit})")
        if offset < 0 or offset + count > 65536:
            raise ValueError(f"tag {name!r}: {tag_table.value}:{offset} + {count} is beyond address 65535")
        new_end = max(end, offset + count)
        if tag_table is table and offset - end <= max_gap and new_end - start <= limit:
            end = new_end
            names.append(name)
            continue
        if table is not None:
            blocks.append(Block(table, start, end - start, tuple(names)))
        table, start, end, names = tag_table, offset, offset + count, [name]

    if table is not None:
        blocks.append(Block(table, start, end - start, tuple(names)))
    return blocks
