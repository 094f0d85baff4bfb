"""OPC UA node id notation: every standard form parses, round-trips, and bad ones say what to write."""

from __future__ import annotations

import uuid

import pytest
from asyncua import ua

from drivers.opcua.driver import ua_node_id
from edge_config import ConfigError, GatewayConfig, load_text
from edge_config.opcua import NodeRef, format_node_id, parse_node_id

GUID = "09087e75-8e5e-499b-954f-f2a9603db28a"

# text -> (kind, identifier, namespace, namespace uri)
VALID = [
    ("i=2258", ("i", 2258, 0, None)),
    ("ns=2;i=1001", ("i", 1001, 2, None)),
    ("ns=0;i=4294967295", ("i", 4294967295, 0, None)),
    ("ns=2;s=Reactor1.Temperature", ("s", "Reactor1.Temperature", 2, None)),
    ("ns=3;s=a;b=c", ("s", "a;b=c", 3, None)),  # a string id runs to the end, ';' and '=' included
    ("ns=2;s=反应釜.温度", ("s", "反应釜.温度", 2, None)),
    (f"ns=3;g={GUID}", ("g", uuid.UUID(GUID), 3, None)),
    (f"ns=3;g={{{GUID.upper()}}}", ("g", uuid.UUID(GUID), 3, None)),
    ("ns=4;b=M/RbKBsRVkePCePcx24oRA==", ("b", bytes.fromhex("33f45b281b1156478f09e3dcc76e2844"), 4, None)),
    ("ns=4;b=0x10203040", ("b", b"\x10\x20\x30\x40", 4, None)),
    ("nsu=urn:plant:chemicals;s=R1.Temp", ("s", "R1.Temp", 0, "urn:plant:chemicals")),
    ("nsu=http://example.com/UA/;i=5", ("i", 5, 0, "http://example.com/UA/")),
    ("  ns=2;s=Padded  ", ("s", "Padded", 2, None)),
]

INVALID = [
    ("", "is not an OPC UA node id"),
    ("Reactor1.Temperature", "is not an OPC UA node id"),
    ("ns=2;x=5", "is not an OPC UA node id"),
    ("ns=a;i=5", "ns= needs 0..65535"),
    ("ns=70000;i=5", "ns= needs 0..65535"),
    ("ns=2", "ns= needs 0..65535, then ';'"),
    ("ns=2;i=-1", "i= needs a number"),
    ("ns=2;i=4294967296", "i= needs a number"),
    ("ns=2;i=abc", "i= needs a number"),
    ("ns=2;s=", "s= needs 1..4096 characters"),
    ("ns=2;g=not-a-guid", "g= needs a GUID"),
    ("ns=2;b=!!!", "b= needs base64"),
    ("nsu=;s=x", "nsu=URI;s=Name"),
    ("nsu=urn:x", "nsu=URI;s=Name"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parses_every_standard_form(text: str, expected: tuple[object, ...]) -> None:
    ref = parse_node_id(text)
    assert (ref.kind, ref.identifier, ref.namespace, ref.namespace_uri) == expected


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_refuses_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^'") as err:
        parse_node_id(text)
    assert message in str(err.value)


@pytest.mark.parametrize("text", [t for t, _ in VALID if "0x" not in t and "{" not in t and "ns=0;" not in t])
def test_format_round_trips(text: str) -> None:
    assert format_node_id(parse_node_id(text)) == text.strip()


def test_to_asyncua_node_ids() -> None:
    namespaces = ["http://opcfoundation.org/UA/", "urn:server", "urn:plant:chemicals"]
    assert ua_node_id(parse_node_id("ns=2;s=R1.Temp"), namespaces) == ua.NodeId("R1.Temp", 2)
    assert ua_node_id(parse_node_id("nsu=urn:plant:chemicals;s=R1.Temp"), namespaces) == ua.NodeId("R1.Temp", 2)
    assert ua_node_id(parse_node_id("i=2258"), namespaces) == ua.NodeId(2258, 0)
    guid = ua_node_id(parse_node_id(f"ns=1;g={GUID}"), namespaces)
    assert guid.NodeIdType == ua.NodeIdType.Guid and guid.Identifier == uuid.UUID(GUID)
    opaque = ua_node_id(parse_node_id("ns=1;b=ECAwQA=="), namespaces)
    assert opaque.NodeIdType == ua.NodeIdType.ByteString and opaque.Identifier == b"\x10\x20\x30\x40"
    with pytest.raises(KeyError, match="urn:missing"):
        ua_node_id(parse_node_id("nsu=urn:missing;i=1"), namespaces)


def test_node_ref_str_is_the_standard_form() -> None:
    assert str(NodeRef("i", 5, 2)) == "ns=2;i=5"


CONFIG = """\
gateway: {id: gw-1, enterprise_id: ent-1}
devices:
  - id: reactor-01
    driver: opcua
    connection: {endpoint: "opc.tcp://127.0.0.1:4840"}
    tags:
      - {name: temp, node: "ns=2;s=Reactor1.Temperature", unit: °C}
      - {name: bad, node: "ns=2;x=7"}
"""


def test_config_error_names_file_line_and_path() -> None:
    with pytest.raises(ConfigError) as err:
        load_text(CONFIG, GatewayConfig, "gateway.yaml")
    (issue,) = err.value.issues
    assert (issue.file, issue.line, issue.path) == ("gateway.yaml", 8, "devices[0].tags[1].node")
    assert "'ns=2;x=7' is not an OPC UA node id" in issue.message
