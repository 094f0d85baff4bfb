"""Config loading: every kind of mistake names the file, the line and the field path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edge_config import ConfigError, json_schema, load_cloud_config, load_gateway_config, load_text
from edge_config.durations import parse_duration
from edge_config.modbus import ModbusAddress, Table, parse_address
from edge_config.models import GatewayConfig, ModbusTcpDevice

GOOD = """\
gateway:
  id: gw-textile-01
  enterprise_id: ent-0001
  enterprise_name: 昌吉某纺织有限公司
mqtt:
  url: mqtt://127.0.0.1:1883
  protocol: "5"
api:
  listen: 127.0.0.1:8080
devices:
  - id: loom-01
    name: 喷气织机 1#
    type: air_jet_loom
    line: weaving-1
    driver: modbus_tcp
    connection: {host: 127.0.0.1, port: 5020, unit_id: 1, timeout: 1s}
    poll_interval: 1s
    tags:
      - {name: speed, address: "40001", type: uint16, scale: 0.1, unit: rpm, deadband: 0.5, domain: equipment}
      - {name: energy_kwh, address: "hr:10", type: float32, byte_order: CDAB, unit: kWh, domain: energy}
      - {name: run_state, address: "hr:20", type: uint16}
      - {name: picks_total, address: "hr:21", type: uint32}
    oee:
      state_tag: run_state
      states: {running: [1], idle: [0], fault: [2], setup: [3], planned_stop: [4]}
      total_count_tag: picks_total
      ideal_cycle_time: 0.12s
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, GatewayConfig, "gateway.yaml")
    return [str(i) for i in info.value.issues]


def test_the_design_example_is_valid() -> None:
    cfg = load_text(GOOD, GatewayConfig, "gateway.yaml")
    dev = cfg.devices[0]
    assert isinstance(dev, ModbusTcpDevice)
    assert dev.connection.timeout == 1.0
    assert dev.tags[0].scale == 0.1
    assert dev.oee is not None and dev.oee.ideal_cycle_time == pytest.approx(0.12)
    assert cfg.mqtt.protocol == "5"


def test_models_are_frozen() -> None:
    cfg = load_text(GOOD, GatewayConfig)
    with pytest.raises(Exception, match="frozen"):
        cfg.gateway.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # a bad Modbus address, on the tag's line
        (
            'address: "hr:21", type: uint32',
            'address: "4x0001", type: uint32',
            "gateway.yaml:22: devices[0].tags[3].address: '4x0001' is not a Modbus address (use 40001 or hr:0)",
        ),
        # an unknown type
        (
            "type: float32, byte_order",
            "type: float33, byte_order",
            "gateway.yaml:20: devices[0].tags[1].type: 'float33': input should be",
        ),
        # a misspelt field
        (
            "    poll_interval: 1s",
            "    pol_interval: 1s",
            "gateway.yaml:17: devices[0].pol_interval: unknown field (check the spelling)",
        ),
        # a missing required field
        (
            "  enterprise_id: ent-0001\n",
            "",
            "gateway.yaml:1: gateway.enterprise_id: required field is missing",
        ),
        # a bad duration
        (
            "poll_interval: 1s",
            "poll_interval: fast",
            "gateway.yaml:17: devices[0].poll_interval: 'fast' is not a duration (use 500ms, 1s, 2m)",
        ),
        # an unknown driver
        (
            "driver: modbus_tcp",
            "driver: modbus_tpc",
            "gateway.yaml:15: devices[0].driver: driver must be one of modbus_tcp, modbus_rtu, opcua",
        ),
        # a wrong type of value
        (
            "port: 5020",
            "port: many",
            "gateway.yaml:16: devices[0].connection.port: Input should be a valid integer",
        ),
        # an OEE reference to a tag that does not exist
        (
            "total_count_tag: picks_total",
            "total_count_tag: pick_total",
            "gateway.yaml:26: devices[0].oee.total_count_tag: 'pick_total' is not a tag of this device",
        ),
        # an id that is not an ASCII slug
        ("id: gw-textile-01", "id: 网关一号", "gateway.yaml:2: gateway.id: String should match pattern"),
        # a bad MQTT URL
        (
            "url: mqtt://127.0.0.1:1883",
            "url: http://broker",
            "gateway.yaml:6: mqtt.url: 'http://broker' is not an MQTT URL",
        ),
        # a tag name used twice (a check across the list): the second one's line
        ("name: run_state", "name: speed", "gateway.yaml:21: devices[0].tags[2].name: tag name 'speed' appears twice"),
        # a check across two fields of a tag: the field to change
        (
            "deadband: 0.5",
            "deadband: 0.5, deadband_percent: 1",
            "gateway.yaml:19: devices[0].tags[0].deadband_percent:",
        ),
        # bool type on a register without... a string without length
        (
            "type: uint16}",
            "type: string}",
            "gateway.yaml:21: devices[0].tags[2].type: type string needs length: (registers)",
        ),
        # numbers YAML allows and nothing here can use (each was accepted, the first stopping the poller)
        (
            "poll_interval: 1s",
            "poll_interval: .nan",
            "gateway.yaml:17: devices[0].poll_interval: nan is not a duration (use 500ms, 1s, 2m)",
        ),
        (
            "timeout: 1s}",
            "timeout: 99999999999s}",
            "gateway.yaml:16: devices[0].connection.timeout: '99999999999s': a duration of at most 10 years",
        ),
        ("scale: 0.1", "scale: .inf", "gateway.yaml:19: devices[0].tags[0].scale: Input should be a finite number"),
        ("scale: 0.1", "scale: 0", "gateway.yaml:19: devices[0].tags[0].scale: scale 0 would make every value 0"),
        ("deadband: 0.5", "deadband: .nan", "gateway.yaml:19: devices[0].tags[0].deadband: Input should be a finite"),
        # a 32-bit value at the last register would read past the address space
        (
            'address: "hr:21", type: uint32',
            'address: "hr:65535", type: uint32',
            "gateway.yaml:22: devices[0].tags[3].address: uint32 at hr:65535 takes 2 registers: past 65535",
        ),
        # the cloud refuses a message whose unit is longer or holds a control character: the whole message
        ("unit: rpm", 'unit: "r\\npm"', "gateway.yaml:19: devices[0].tags[0].unit: 'r\\npm': no control character"),
        ("unit: rpm", "unit: " + "x" * 129, "gateway.yaml:19: devices[0].tags[0].unit: String should have at most 128"),
    ],
)
def test_each_kind_of_mistake_names_file_line_and_path(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    errs = errors_of(GOOD.replace(old, new, 1))
    assert any(e.startswith(expected) for e in errs), errs


def test_yaml_syntax_error_has_a_line() -> None:
    errs = errors_of(GOOD.replace("  listen: 127.0.0.1:8080", "  listen: [127.0.0.1:8080"))
    assert errs[0].startswith("gateway.yaml:1") or errs[0].startswith("gateway.yaml:10"), errs
    assert "YAML syntax" in errs[0]


def test_duplicate_device_ids_and_tag_names() -> None:
    dup_tag = GOOD.replace("name: run_state", "name: speed")
    assert any("tag name 'speed' appears twice" in e for e in errors_of(dup_tag))


def test_all_errors_are_reported_at_once() -> None:
    text = GOOD.replace("poll_interval: 1s", "poll_interval: fast").replace('"hr:21"', '"x:1"')
    assert len(errors_of(text)) == 2


def test_load_file_uses_the_file_name_and_env_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "gw.yaml"
    p.write_text(GOOD, encoding="utf-8")
    monkeypatch.setenv("EDGEGW_MQTT_PASSWORD", "s3cret")
    assert load_gateway_config(p).mqtt.password == "s3cret"
    p.write_text(GOOD.replace("port: 5020", "port: 70000"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(p)
    assert str(info.value).startswith(f"{p}:16: devices[0].connection.port:")


def test_environment_overrides_the_file_for_every_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One precedence everywhere: the environment over the file (README "Secrets")."""
    p = tmp_path / "gw.yaml"
    p.write_text(
        GOOD.replace("  listen: 127.0.0.1:8080", "  listen: 127.0.0.1:8080\n  token: from-file"), encoding="utf-8"
    )
    assert load_gateway_config(p).api.token == "from-file"
    monkeypatch.setenv("EDGEGW_API_TOKEN", "from-env")
    monkeypatch.setenv("EDGEGW_MQTT_PASSWORD", "pw-env")
    cfg = load_gateway_config(p)
    assert cfg.api.token == "from-env" and cfg.mqtt.password == "pw-env"
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(
        "mqtt: {url: mqtt://127.0.0.1:1883, password: file}\ninflux: {url: http://127.0.0.1:8428, token: file}\n"
    )
    monkeypatch.setenv("EDGEGW_INFLUX_TOKEN", "tok-env")
    c = load_cloud_config(cloud)
    assert (c.mqtt.password, c.influx.token if c.influx else None, c.api.token) == ("pw-env", "tok-env", "from-env")


def test_secrets_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_config.envsettings import EnvSecrets

    monkeypatch.setenv("EDGEGW_MQTT_PASSWORD", "hunter2")
    assert "hunter2" not in repr(EnvSecrets()) and "hunter2" not in str(EnvSecrets())


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_gateway_config(tmp_path / "nope.yaml")


def test_schema_is_json_with_the_sections() -> None:
    schema = json.loads(json_schema("gateway"))
    assert set(schema["properties"]) == {
        "gateway",
        "mqtt",
        "api",
        "buffer",
        "devices",
        "timezone",
        "shifts",
        "history",
        "auth",
    }


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("40001", ModbusAddress(Table.HOLDING_REGISTER, 0)),
        ("400010", ModbusAddress(Table.HOLDING_REGISTER, 9)),
        ("30001", ModbusAddress(Table.INPUT_REGISTER, 0)),
        ("10005", ModbusAddress(Table.DISCRETE_INPUT, 4)),
        ("00001", ModbusAddress(Table.COIL, 0)),
        ("hr:0", ModbusAddress(Table.HOLDING_REGISTER, 0)),
        ("IR:7", ModbusAddress(Table.INPUT_REGISTER, 7)),
        ("co:65535", ModbusAddress(Table.COIL, 65535)),
    ],
)
def test_modbus_addresses(text: str, addr: ModbusAddress) -> None:
    assert parse_address(text) == addr


@pytest.mark.parametrize("text", ["4x0001", "40000", "hr:-1", "hr:70000", "20001", "abc", ""])
def test_bad_modbus_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1s", 1.0), ("2m", 120.0), ("1h", 3600.0), (3, 3.0), ("0.25", 0.25)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def _big(extra_tags: int) -> str:
    """GOOD with enough extra tags on its first device to be parsed in a child process."""
    lines = "".join(
        f'      - {{name: x{i:05d}, address: "hr:{100 + i}", type: uint16, unit: kW, description: "{"p" * 40}"}}\n'
        for i in range(extra_tags)
    )
    return GOOD.replace("    tags:\n", "    tags:\n" + lines, 1)


def test_a_large_tag_map_parsed_elsewhere_gives_the_same_config() -> None:
    from edge_config import loader

    text = _big(8000)
    assert len(text) > loader.PARSE_ELSEWHERE_BYTES
    elsewhere = load_text(text, GatewayConfig, "gateway.yaml")
    here = GatewayConfig.model_validate(yaml.safe_load(text))
    assert elsewhere == here and len(elsewhere.devices[0].tags) > 8000


def test_a_large_tag_map_with_mistakes_still_names_their_lines() -> None:
    text = _big(8000)
    bad = text.replace('address: "hr:5000"', 'address: "hr:99999"')
    errs = errors_of(bad)
    assert any(e.startswith("gateway.yaml:") and "99999" in e for e in errs), errs[:3]
    line_no = next(i for i, ln in enumerate(bad.splitlines(), 1) if "hr:99999" in ln)
    assert any(e.startswith(f"gateway.yaml:{line_no}:") for e in errs)
    broken = text.replace("    tags:\n", "    tags: [\n", 1)  # a YAML syntax error: the child gives up
    assert "YAML syntax" in errors_of(broken)[0]


def _alias_bomb(levels: int) -> str:
    """Each level a list of ten aliases of the one before: 10**levels values from a few hundred bytes."""
    anchors = ["  l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    anchors += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return GOOD.replace("mqtt:\n", "mqtt:\n" + "\n".join(anchors) + "\n", 1)


def test_an_alias_bomb_is_refused_at_its_line_before_anything_is_built() -> None:
    # nine levels stand for a billion values: validated (or its error lines mapped) it ate every GB the
    # machine had (23 GB before it was killed, from the console's editor)
    errs = errors_of(_alias_bomb(9))
    assert len(errs) == 1, errs
    line = next(i for i, ln in enumerate(_alias_bomb(9).splitlines(), 1) if "&l7" in ln)
    assert errs[0].startswith(f"gateway.yaml:{line}: YAML: its aliases repeat nodes to "), errs
    stood_for = int(errs[0].split(" to ")[1].split(" in all")[0].replace(",", ""))
    assert stood_for > 10**9 and "(at most 1,000,000)" in errs[0]
    # the same in the child a large config is parsed in, and without the line map's walk
    big = _big(8000).replace("mqtt:\n", "mqtt:\n" + _alias_bomb(9).split("mqtt:\n")[1].split("  url:")[0], 1)
    from edge_config import loader

    assert len(big) > loader.PARSE_ELSEWHERE_BYTES
    assert "YAML: its aliases repeat nodes" in errors_of(big)[0]


def test_aliases_a_config_uses_load_as_written() -> None:
    shared = GOOD.replace("connection: {host", "connection: &conn {host", 1) + "".join(
        f"  - {{id: loom-{i:02d}, driver: modbus_tcp, connection: *conn, tags: [{{name: s, address: '40001'}}]}}\n"
        for i in range(2, 40)
    )
    config = load_text(shared, GatewayConfig, "gateway.yaml")
    assert len(config.devices) == 39 and config.devices[38].connection == config.devices[0].connection


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x: &a [1, *a]\n", "gateway.yaml:1: YAML: an alias refers to a node it is inside of (a cycle)"),
        ("x: &m {k: {j: *m}}\n", "gateway.yaml:1: YAML: an alias refers to a node it is inside of (a cycle)"),
        ("x: " + "[" * 400 + "]" * 400 + "\n", "gateway.yaml:1: YAML: nested too deeply"),
        ("x: " + "[" * 990 + "]" * 990 + "\n", "gateway.yaml:1: YAML: nested too deeply"),
        ("x: " + "[" * 2000 + "]" * 2000 + "\n", "gateway.yaml:1: YAML syntax: exceeded maximum nesting depth"),
    ],
)
def test_a_cycle_or_deep_nesting_is_a_config_error_not_a_recursion_error(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


@pytest.mark.parametrize("field", ["connection", "oee", "tags.0.extra"])
def test_the_editor_form_refuses_an_alias_bomb_or_a_cycle_in_its_yaml_fields(field: str) -> None:
    from gateway.api.console.forms import FormError, device_from_form

    bomb = _alias_bomb(9).split("mqtt:\n")[1].split("  url:")[0].replace("\n  ", ", ").strip().rstrip(",")
    for text in ("{" + bomb + "}", "&a {k: [*a]}"):
        form = {"id": "loom-01", "driver": "modbus_tcp", "tags.0.name": "s", field: text}
        with pytest.raises(FormError) as info:
            device_from_form(form)
        assert info.value.field == field and str(info.value).startswith("YAML: "), info.value
