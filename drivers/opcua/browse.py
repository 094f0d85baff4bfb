"""Walk an OPC UA address space and turn what is found into a tag map a plant engineer can edit.

`walk` browses breadth-first with batched Browse/BrowseNext and Read requests (objects and
variables along hierarchical references); variables become `BrowsedTag`s with their data type,
engineering unit (the EngineeringUnits property, EUInformation) and EURange. The rest is pure:
`tag_name` (safe, unique names), `tag_type` (OPC UA type → config type), and the YAML/CSV writers,
whose output validates as edgegw config.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import yaml
from asyncua import Client, ua

Progress = Callable[[int, int, int], None]  # (nodes visited, nodes queued, tags found)

OBJECTS_FOLDER = ua.NodeId(ua.ObjectIds.ObjectsFolder)  # type: ignore[arg-type]
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)  # type: ignore[arg-type]
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)  # type: ignore[arg-type]
_HAS_SUBTYPE = ua.NodeId(ua.ObjectIds.HasSubtype)  # type: ignore[arg-type]
_ENUMERATION = 29
_BATCH = 200

# OPC UA built-in data types (ns=0 ids 1..25) by id
BUILTIN_NAMES = {
    1: "Boolean", 2: "SByte", 3: "Byte", 4: "Int16", 5: "UInt16", 6: "Int32", 7: "UInt32", 8: "Int64", 9: "UInt64",
    10: "Float", 11: "Double", 12: "String", 13: "DateTime", 14: "Guid", 15: "ByteString", 16: "XmlElement",
    17: "NodeId", 18: "ExpandedNodeId", 19: "StatusCode", 20: "QualifiedName", 21: "LocalizedText",
    22: "Structure", 23: "DataValue", 24: "BaseDataType", 25: "DiagnosticInfo", 29: "Enumeration",
}  # fmt: skip
# built-in type name -> tag type in the config (text-like types travel as strings)
CONFIG_TYPES = {
    "Boolean": "bool", "SByte": "int16", "Byte": "uint16", "Int16": "int16", "UInt16": "uint16",
    "Int32": "int32", "UInt32": "uint32", "Int64": "int64", "UInt64": "uint64", "Float": "float32",
    "Double": "float64", "String": "string", "DateTime": "string", "Guid": "string", "ByteString": "string",
    "XmlElement": "string", "NodeId": "string", "ExpandedNodeId": "string", "QualifiedName": "string",
    "LocalizedText": "string", "StatusCode": "uint32", "Enumeration": "int32",
}  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def unit_text(text: str | None) -> str | None:
    """A server's unit as a config takes it (`edge_config.models.Unit`): control characters as spaces, at
    most 128 characters; None for none."""
    cleaned = _CONTROL.sub(" ", text or "").strip()[:128]
    return cleaned or None


CSV_COLUMNS = ["name", "node", "mode", "type", "unit", "sampling_interval", "deadband", "domain", "description"]


@dataclass(frozen=True, slots=True)
class BrowsedTag:
    path: tuple[str, ...]  # browse names from below the root down to the variable
    node: str  # standard notation, e.g. ns=2;s=Reactor1.Temperature
    data_type: str | None  # built-in type name (Double, Int32, ...) or None when unknown
    value_rank: int  # -1 scalar, >= 0 array dimensions
    unit: str | None
    eu_range: tuple[float, float] | None
    description: str


# ---------------------------------------------------------------- pure helpers


def tag_type(data_type: str | None, value_rank: int) -> str | None:
    """The config's `type:` for an OPC UA data type; arrays travel as JSON text (string)."""
    if value_rank >= 0 and data_type is not None:
        return "string"
    if value_rank not in (-1,):  # -2 any, -3 scalar-or-one-dimension: leave it to the server
        return None
    return CONFIG_TYPES.get(data_type or "")


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _safe_part(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_")


def tag_name(path: Sequence[str], node: str, taken: set[str]) -> str:
    """A valid, unique tag name from the browse path (`Plant.Reactor1.Temperature`).

    Parts with no ASCII letters or digits (e.g. Chinese browse names) fall back to the node id.
    """
    parts = [_safe_part(p) for p in path]
    if not all(parts):
        parts = ["n_" + (_safe_part(node) or "node")]
    name = ".".join(parts)
    if not (name[0].isalpha() or name[0] == "_"):
        name = "_" + name
    name = name[:120]
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique


def to_tags(found: Sequence[BrowsedTag], *, mode: str = "subscribe") -> list[dict[str, Any]]:
    """Tag dicts in the config's format (they validate as OpcUaTag)."""
    taken: set[str] = set()
    out: list[dict[str, Any]] = []
    for b in found:
        tag: dict[str, Any] = {"name": tag_name(b.path, b.node, taken), "node": b.node}
        t = tag_type(b.data_type, b.value_rank)
        if t is not None:
            tag["type"] = t
        if b.unit:
            tag["unit"] = b.unit
        tag["mode"] = mode
        desc = b.description
        if b.eu_range is not None:
            lo, hi = b.eu_range
            desc = f"{desc} [{lo:g}..{hi:g}]".strip()
        if desc:
            tag["description"] = desc
        out.append(tag)
    return out


def _flow(d: dict[str, Any]) -> str:
    text: str = yaml.safe_dump(d, default_flow_style=True, allow_unicode=True, width=10_000, sort_keys=False)
    return text.strip()


def _scalar(value: str) -> str:
    text: str = yaml.safe_dump(value, allow_unicode=True, width=10_000)
    return text.removesuffix("\n...\n").strip()


def render_yaml(
    tags: Sequence[dict[str, Any]],
    *,
    endpoint: str,
    device_id: str,
    device_name: str = "",
    connection: dict[str, Any] | None = None,
    root: str = "i=85",
) -> str:
    """A complete gateway.yaml with one OPC UA device: `edgegw config validate` accepts it as is."""
    conn = {"endpoint": endpoint, **(connection or {})}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# edgegw opcua browse {endpoint} --root {root}  ({stamp}, {len(tags)} tags)",
        "# 请按需修改名称、删除不需要的点位 / edit names and delete the tags you do not need,",
        "# then check it: edgegw config validate THIS_FILE",
        "gateway: {id: gw-01, enterprise_id: ent-0001, data_dir: ./data}",
        "devices:",
        f"  - id: {device_id}",
    ]
    if device_name:
        lines.append(f"    name: {_scalar(device_name)}")
    lines += [
        "    driver: opcua",
        f"    connection: {_flow(conn)}",
        "    poll_interval: 1s",
        "    tags:",
    ]
    lines += [f"      - {_flow(t)}" for t in tags]
    return "\n".join(lines) + "\n"


def render_csv(tags: Sequence[dict[str, Any]]) -> str:
    """One row per tag; the columns are OpcUaTag fields (empty cell = default)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for t in tags:
        w.writerow({k: t.get(k, "") for k in CSV_COLUMNS})
    return buf.getvalue()


def csv_rows(text: str) -> list[dict[str, str]]:
    """Rows of a CSV written by `render_csv`, with empty cells dropped (ready for OpcUaTag)."""
    return [{k: v for k, v in row.items() if v} for row in csv.DictReader(io.StringIO(text))]


# ---------------------------------------------------------------- the walk


@dataclass
class _Found:
    node_id: ua.NodeId
    path: tuple[str, ...]
    display: str
    unit_node: ua.NodeId | None = None
    range_node: ua.NodeId | None = None


async def _browse_all(client: Client, node_ids: Sequence[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """Forward hierarchical references of many nodes (objects and variables), following continuations."""
    out: list[list[ua.ReferenceDescription]] = []
    for start in range(0, len(node_ids), _BATCH):
        batch = node_ids[start : start + _BATCH]
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        params.RequestedMaxReferencesPerNode = 1000
        params.NodesToBrowse = [
            ua.BrowseDescription(
                NodeId=n,
                BrowseDirection=ua.BrowseDirection.Forward,
                ReferenceTypeId=_HIERARCHICAL,
                IncludeSubtypes=True,
                NodeClassMask=ua.NodeClass.Object | ua.NodeClass.Variable,
                ResultMask=ua.BrowseResultMask.All,
            )
            for n in batch
        ]
        results = await client.uaclient.browse(params)
        for res in results:
            refs = list(res.References) if res.StatusCode.is_good() else []
            cp = res.ContinuationPoint
            while cp:
                nxt = ua.BrowseNextParameters()
                nxt.ReleaseContinuationPoints = False
                nxt.ContinuationPoints = [cp]
                more = (await client.uaclient.browse_next(nxt))[0]
                refs.extend(more.References)
                cp = more.ContinuationPoint
            out.append(refs)
    return out


async def _read(client: Client, node_ids: Sequence[ua.NodeId], attr: ua.AttributeIds) -> list[ua.DataValue]:
    out: list[ua.DataValue] = []
    for start in range(0, len(node_ids), _BATCH * 5):
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=attr) for n in node_ids[start : start + _BATCH * 5]]
        out.extend(await client.uaclient.read(params))
    return out


def _value(dv: ua.DataValue) -> Any:
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return None
    return dv.Value.Value if dv.Value is not None else None


async def _builtin_names(client: Client, type_ids: set[ua.NodeId]) -> dict[ua.NodeId, str]:
    """Resolve data types to their built-in ancestor (Duration → Double, an enum → Enumeration)."""
    names: dict[ua.NodeId, str] = {}
    current = {t: t for t in type_ids}  # original -> ancestor being looked at
    for _ in range(8):
        pending: dict[ua.NodeId, ua.NodeId] = {}
        for orig, t in current.items():
            if t.NamespaceIndex == 0 and isinstance(t.Identifier, int) and t.Identifier in BUILTIN_NAMES:
                names[orig] = BUILTIN_NAMES[t.Identifier]
            else:
                pending[orig] = t
        if not pending:
            break
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        params.NodesToBrowse = [
            ua.BrowseDescription(
                NodeId=t,
                BrowseDirection=ua.BrowseDirection.Inverse,
                ReferenceTypeId=_HAS_SUBTYPE,
                IncludeSubtypes=False,
                ResultMask=ua.BrowseResultMask.All,
            )
            for t in pending.values()
        ]
        results = await client.uaclient.browse(params)
        current = {}
        for (orig, _t), res in zip(pending.items(), results, strict=True):
            if res.StatusCode.is_good() and res.References:
                parent = res.References[0].NodeId
                current[orig] = ua.NodeId(parent.Identifier, parent.NamespaceIndex)
    return names


async def walk(
    client: Client,
    root: ua.NodeId | None = None,
    *,
    max_depth: int = 12,
    max_nodes: int = 100_000,
    progress: Progress | None = None,
) -> list[BrowsedTag]:
    """Every variable below `root` (default: the Objects folder, without the standard `Server` object)."""
    root = root or OBJECTS_FOLDER
    skip_ns0 = root == OBJECTS_FOLDER
    seen: set[ua.NodeId] = {root}
    found: dict[ua.NodeId, _Found] = {}
    level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(root, ())]
    visited = 0
    for _depth in range(max_depth):
        if not level or visited >= max_nodes:
            break
        refs_per_node = await _browse_all(client, [n for n, _ in level])
        nxt: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for (parent, path), refs in zip(level, refs_per_node, strict=True):
            visited += 1
            for ref in refs:
                if getattr(ref.NodeId, "ServerIndex", 0):
                    continue  # lives on another server
                target = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex)
                name = ref.BrowseName.Name or ""
                if ref.ReferenceTypeId == _HAS_PROPERTY:
                    holder = found.get(parent)
                    if holder is not None and name == "EngineeringUnits":
                        holder.unit_node = target
                    elif holder is not None and name == "EURange":
                        holder.range_node = target
                    continue  # properties describe their parent; they are not tags
                if target in seen or (skip_ns0 and target.NamespaceIndex == 0):
                    continue
                seen.add(target)
                child_path = (*path, name)
                if ref.NodeClass == ua.NodeClass.Variable:
                    found[target] = _Found(target, child_path, ref.DisplayName.Text or name)
                nxt.append((target, child_path))
        level = nxt[: max(0, max_nodes - visited)]
        if progress is not None:
            progress(visited, len(level), len(found))
    return await _describe(client, list(found.values()))


async def _describe(client: Client, items: list[_Found]) -> list[BrowsedTag]:
    ids = [f.node_id for f in items]
    types = await _read(client, ids, ua.AttributeIds.DataType)
    ranks = await _read(client, ids, ua.AttributeIds.ValueRank)
    descs = await _read(client, ids, ua.AttributeIds.Description)
    type_ids = {v for v in (_value(dv) for dv in types) if isinstance(v, ua.NodeId)}
    names = await _builtin_names(client, type_ids)
    unit_nodes = [f.unit_node for f in items if f.unit_node is not None]
    range_nodes = [f.range_node for f in items if f.range_node is not None]
    units = dict(zip(unit_nodes, await _read(client, unit_nodes, ua.AttributeIds.Value), strict=True))
    ranges = dict(zip(range_nodes, await _read(client, range_nodes, ua.AttributeIds.Value), strict=True))
    out = []
    for f, t, r, d in zip(items, types, ranks, descs, strict=True):
        type_id = _value(t)
        rank = _value(r)
        desc = _value(d)
        unit = None
        if f.unit_node is not None:
            eu = _value(units[f.unit_node])
            unit = unit_text(eu.DisplayName.Text) if isinstance(eu, ua.EUInformation) else None
        eu_range = None
        if f.range_node is not None:
            rg = _value(ranges[f.range_node])
            eu_range = (float(rg.Low), float(rg.High)) if isinstance(rg, ua.Range) else None
        text = desc.Text if isinstance(desc, ua.LocalizedText) and desc.Text else ""
        if f.display and f.display != f.path[-1] and f.display not in text:
            text = f"{f.display} {text}".strip()
        out.append(
            BrowsedTag(
                path=f.path,
                node=f.node_id.to_string(),
                data_type=names.get(type_id) if isinstance(type_id, ua.NodeId) else None,
                value_rank=int(rank) if isinstance(rank, int) else -1,
                unit=unit,
                eu_range=eu_range,
                description=text,
            )
        )
    return out
