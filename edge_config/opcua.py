"""OPC UA node id notation (OPC 10000-6 §5.3.1.10), as plant engineers copy it from UaExpert or a PLC tool.

Pure parsing, shared by config validation and the OPC UA driver:

    i=2258                      numeric, namespace 0
    ns=2;i=1001                 numeric
    ns=2;s=Reactor1.Temperature string (may contain ';' and '=')
    ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a   GUID
    ns=4;b=M/RbKBsRVkePCePcx24oRA==               opaque (base64)
    nsu=urn:plant:chemicals;s=R1.Temp             namespace by URI, resolved when connected
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Literal, cast

IdKind = Literal["i", "s", "g", "b"]
Identifier = int | str | uuid.UUID | bytes

_HINT = "use ns=2;s=Name, ns=2;i=1001, ns=2;g=GUID, ns=2;b=BASE64 or nsu=URI;s=Name"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_UINT32 = 0xFFFFFFFF
MAX_STRING_ID = 4096


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A parsed node id; `namespace_uri` is set instead of `namespace` for the `nsu=` form."""

    kind: IdKind
    identifier: Identifier
    namespace: int = 0
    namespace_uri: str | None = None

    def __str__(self) -> str:
        return format_node_id(self)


def _identifier(kind: str, value: str, text: str) -> Identifier:
    if kind == "i":
        if not value.isdigit() or int(value) > MAX_UINT32:
            raise ValueError(f"{text!r}: i= needs a number 0..{MAX_UINT32}")
        return int(value)
    if kind == "s":
        if not value or len(value) > MAX_STRING_ID:
            raise ValueError(f"{text!r}: s= needs 1..{MAX_STRING_ID} characters")
        return value
    if kind == "g":
        v = value.strip("{}")
        if not _GUID.match(v):
            raise ValueError(f"{text!r}: g= needs a GUID like 09087e75-8e5e-499b-954f-f2a9603db28a")
        return uuid.UUID(v)
    # b=: base64 per the spec; 0x-prefixed hex is accepted too
    try:
        raw = bytes.fromhex(value[2:]) if value.lower().startswith("0x") else base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text!r}: b= needs base64 (or 0x-prefixed hex) bytes") from None
    if not raw:
        raise ValueError(f"{text!r}: b= needs at least one byte")
    return raw


def parse_node_id(text: str) -> NodeRef:
    """Parse a node id in standard string notation; raise ValueError with a hint on anything else."""
    s = str(text).strip()
    namespace = 0
    namespace_uri: str | None = None
    rest = s
    # optional namespace prefix, then exactly one identifier part (which runs to the end for s=)
    if rest.startswith("ns="):
        head, sep, rest = rest[3:].partition(";")
        if not sep or not head.isdigit() or int(head) > 0xFFFF:
            raise ValueError(f"{text!r} is not an OPC UA node id (ns= needs 0..65535, then ';'; {_HINT})")
        namespace = int(head)
    elif rest.startswith("nsu="):
        # the URI may itself contain ';' only if escaped; take up to the last ';x=' identifier part
        m = re.match(r"^nsu=(.+?);([isgb])=(.*)$", rest, re.DOTALL)
        if not m or not m.group(1):
            raise ValueError(f"{text!r} is not an OPC UA node id (nsu=URI;s=Name; {_HINT})")
        namespace_uri = m.group(1)
        rest = f"{m.group(2)}={m.group(3)}"
    kind, sep, value = rest.partition("=")
    if not sep or kind not in ("i", "s", "g", "b"):
        raise ValueError(f"{text!r} is not an OPC UA node id ({_HINT})")
    return NodeRef(cast(IdKind, kind), _identifier(kind, value, s), namespace, namespace_uri)


def format_node_id(ref: NodeRef) -> str:
    """The standard string form: the inverse of `parse_node_id` (base64 for opaque ids)."""
    if ref.kind == "b":
        assert isinstance(ref.identifier, bytes)
        ident = base64.b64encode(ref.identifier).decode("ascii")
    else:
        ident = str(ref.identifier)
    body = f"{ref.kind}={ident}"
    if ref.namespace_uri is not None:
        return f"nsu={ref.namespace_uri};{body}"
    if ref.namespace:
        return f"ns={ref.namespace};{body}"
    return body
