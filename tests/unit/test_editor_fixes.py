"""The tag-map editor against a real `Agent` (built, not started) through its own app: secrets stay as the
file gave them, large forms, DL/T 645 meters, a file changed on disk, the test read's messages, no line
numbers of the draft, and validation off the event loop, one change at a time."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

import gateway.api.console.editor as editor
from drivers.base import Reading
from drivers.opcua.browse import BrowsedTag
from edge_config import load_gateway_config
from edge_config.models import GatewayConfig
from gateway.agent import Agent
from gateway.api.app import create_app
from gateway.compact import load_compact

MASK = "********"  # a secret as the device form shows it (gateway.api.console.forms.MASK)
LOOM = {
    "id": "loom-01",
    "driver": "modbus_tcp",
    "connection": {"host": "127.0.0.1", "port": 1},
    "tags": [{"name": "speed", "address": "40001"}],
}
METER = {
    "id": "meter-1",
    "driver": "dlt645",
    "connection": {"port": "/dev/null", "address": "000000000161"},
    "tags": [{"name": "energy_kwh", "di": "00010000", "unit": "kWh"}, {"name": "voltage_a", "di": "02010100"}],
}


def reactor(**connection: Any) -> dict[str, Any]:
    return {
        "id": "reactor-01",
        "driver": "opcua",
        "connection": {"endpoint": "opc.tcp://127.0.0.1:4840", **connection},
        "tags": [{"name": "temp", "node": "ns=2;s=R1.T", "type": "float64"}],
    }


class Form(HTMLParser):
    """The fields a browser would post for the page's device form (`#device-form`), as drawn."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._select: str | None = None
        self._options: list[tuple[bool, str]] = []  # (selected, value)
        self._option: list[Any] | None = None  # [selected, value or None, text]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._in_form = a.get("id") == "device-form"
        if not self._in_form:
            return
        if tag == "input" and "name" in a:
            if a.get("type") != "checkbox":
                self.fields[a["name"]] = a.get("value", "")
            elif "checked" in a:
                self.fields[a["name"]] = "on"
        elif tag == "select":
            self._select, self._options = a["name"], []
        elif tag == "option":
            self._option = ["selected" in a, a.get("value"), ""]

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option[2] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None:
            selected, value, text = self._option
            self._options.append((selected, value if value is not None else text.strip()))
            self._option = None
        elif tag == "select" and self._select is not None:
            chosen = [v for sel, v in self._options if sel] or [v for _, v in self._options[:1]]
            self.fields[self._select] = chosen[0] if chosen else ""
            self._select = None
        elif tag == "form":
            self._in_form = False


def form_of(html: str) -> dict[str, str]:
    parser = Form()
    parser.feed(html)
    return parser.fields


def make_agent(tmp_path: Path, text: str) -> Agent:
    """The agent as `edgegw run` makes it from the file (its devices point nowhere: they stay offline)."""
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    agent = Agent(load_compact(path), config_path=path)
    agent.users.add("eng", "engineer", "eng-pw")
    return agent


@contextmanager
def console(agent: Agent) -> Iterator[TestClient]:
    """The console of the running agent (its runtime in the test client's event loop, where hot reload
    runs), as an engineer with a token (no CSRF token needed)."""
    token = agent.users.add_token("eng")
    app = create_app(agent)
    with TestClient(app, follow_redirects=False, headers={"Authorization": f"Bearer {token}"}) as client:
        portal = client.portal
        assert portal is not None
        stop: asyncio.Event = portal.call(make_event)
        done = portal.start_task_soon(functools.partial(agent.run, stop, serve_api=False))
        try:
            yield client
        finally:
            portal.call(stop.set)
            done.result(30)


async def make_event() -> asyncio.Event:
    return asyncio.Event()


def config_yaml(tmp_path: Path, devices: list[dict[str, Any]], mqtt: dict[str, Any] | None = None) -> str:
    data: dict[str, Any] = {"gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path / "d")}}
    if mqtt is not None:
        data["mqtt"] = mqtt
    data["devices"] = devices
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def resubmit(client: TestClient, dev_id: str, **changes: str) -> httpx.Response:
    page = client.get(f"/editor/devices/{dev_id}")
    assert page.status_code == 200, page.text
    return client.post(f"/editor/devices/{dev_id}", data={**form_of(page.text), **changes})


def post_pairs(client: TestClient, url: str, pairs: list[tuple[str, str]]) -> httpx.Response:
    """A form with repeated fields, as a browser posts it."""
    body = urlencode(pairs)
    return client.post(url, content=body, headers={"content-type": "application/x-www-form-urlencoded"})


def apply(client: TestClient) -> httpx.Response:
    r = client.post("/editor/apply")
    assert r.status_code == 200 and 'class="flash ok"' in r.text, r.text
    return r


# ---------------------------------------------------------------- 1. secrets


def test_an_environment_password_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGW_MQTT_PASSWORD", "env-s3cret")
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM], mqtt={"username": "gw"}))
    assert agent.config.mqtt.password == "env-s3cret"  # the agent connects with it
    with console(agent) as client:
        assert resubmit(client, "loom-01", name="Loom 1").status_code == 303
        assert "env-s3cret" not in client.get("/editor").text
        apply(client)
    text = (tmp_path / "gateway.yaml").read_text(encoding="utf-8")
    assert "env-s3cret" not in text and "Loom 1" in text
    assert yaml.safe_load(text)["mqtt"] == {"username": "gw"}
    assert load_gateway_config(tmp_path / "gateway.yaml").mqtt.password == "env-s3cret"
    monkeypatch.delenv("EDGEGW_MQTT_PASSWORD")
    assert load_gateway_config(tmp_path / "gateway.yaml").mqtt.password is None


def test_a_file_password_stays_when_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEGW_MQTT_PASSWORD", "env-s3cret")
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM], mqtt={"username": "gw", "password": "in-file"}))
    with console(agent) as client:
        assert resubmit(client, "loom-01", name="Loom 1").status_code == 303
        apply(client)
    text = (tmp_path / "gateway.yaml").read_text(encoding="utf-8")
    assert "env-s3cret" not in text and yaml.safe_load(text)["mqtt"] == {"username": "gw", "password": "in-file"}


def test_password_files_stay_password_files(tmp_path: Path) -> None:
    mqtt_secret, opc_secret = tmp_path / "mqtt.pw", tmp_path / "opc.pw"
    mqtt_secret.write_text("mqtt-file-s3cret\n")
    opc_secret.write_text("opc-file-s3cret\n")
    devices = [LOOM, reactor(username="op", password_file=str(opc_secret))]
    agent = make_agent(
        tmp_path, config_yaml(tmp_path, devices, mqtt={"username": "gw", "password_file": str(mqtt_secret)})
    )
    with console(agent) as client:
        page = client.get("/editor/devices/reactor-01").text
        assert "opc-file-s3cret" not in page
        # every change of the draft validated the whole config: it failed with "not both" before
        assert resubmit(client, "reactor-01", name="Reactor 1").status_code == 303
        assert resubmit(client, "loom-01", name="Loom 1").status_code == 303
        assert client.post("/editor/devices/loom-01/remove").status_code == 303
        diff = client.get("/editor").text
        assert "s3cret" not in diff
        apply(client)
    text = (tmp_path / "gateway.yaml").read_text(encoding="utf-8")
    assert "s3cret" not in text
    data = yaml.safe_load(text)
    assert data["mqtt"] == {"username": "gw", "password_file": str(mqtt_secret)}
    assert data["devices"][0]["connection"]["password_file"] == str(opc_secret)
    assert "password" not in data["devices"][0]["connection"]
    cfg = load_gateway_config(tmp_path / "gateway.yaml")
    assert cfg.mqtt.password == "mqtt-file-s3cret" and cfg.devices[0].connection.password == "opc-file-s3cret"  # type: ignore[union-attr]


def test_apply_says_when_a_password_file_went_away(tmp_path: Path) -> None:
    secret = tmp_path / "opc.pw"
    secret.write_text("opc-file-s3cret\n")
    agent = make_agent(tmp_path, config_yaml(tmp_path, [reactor(username="op", password_file=str(secret))]))
    with console(agent) as client:
        assert resubmit(client, "reactor-01", name="Reactor 1").status_code == 303
        secret.unlink()
        r = client.post("/editor/apply")
        assert r.status_code == 422 and "devices[0].connection.password_file: cannot read" in r.text


def test_the_device_form_never_shows_a_password(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [reactor(username="op", password="inline-s3cret")]))
    with console(agent) as client:
        page = client.get("/editor/devices/reactor-01").text
        assert "inline-s3cret" not in page and MASK in page
        assert resubmit(client, "reactor-01", name="Reactor 1").status_code == 303  # the mask: keep it
        assert "inline-s3cret" not in client.get("/editor").text  # nor the diff
        apply(client)
        conn = yaml.safe_load((tmp_path / "gateway.yaml").read_text())["devices"][0]["connection"]
        assert conn["password"] == "inline-s3cret"
        # a new one typed replaces it; the mask on a device that has none is refused at the field
        fields = form_of(client.get("/editor/devices/reactor-01").text)
        fields["connection"] = fields["connection"].replace(MASK, "new-s3cret")
        assert client.post("/editor/devices/reactor-01", data=fields).status_code == 303
        apply(client)
        conn = yaml.safe_load((tmp_path / "gateway.yaml").read_text())["devices"][0]["connection"]
        assert conn["password"] == "new-s3cret"
        fields = {
            **fields,
            "id": "reactor-02",
            "connection": f"{{endpoint: 'opc.tcp://h:4840', username: a, password: '{MASK}'}}",
        }
        r = client.post("/editor/devices/_new", data=fields)
        assert r.status_code == 422 and "stands for the stored password" in r.text


# ---------------------------------------------------------------- 2. large forms


def test_a_device_of_300_tags_saves_from_its_form(tmp_path: Path) -> None:
    loom = {**LOOM, "tags": [{"name": f"t{i}", "address": f"hr:{i}"} for i in range(300)]}
    agent = make_agent(tmp_path, config_yaml(tmp_path, [loom]))
    with console(agent) as client:
        fields = form_of(client.get("/editor/devices/loom-01").text)
        assert len(fields) > 2400
        r = client.post("/editor/devices/loom-01", data={**fields, "tags.299.unit": "rpm"})
        assert r.status_code == 303, r.text[:300]
        apply(client)
    assert yaml.safe_load((tmp_path / "gateway.yaml").read_text())["devices"][0]["tags"][299]["unit"] == "rpm"


def test_an_over_limit_form_gets_the_editor_page(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM]))
    with console(agent) as client:
        fields = [(f"tags.{i % 5000}.unit", "x") for i in range(60_000)]  # over MAX_FORM_FIELDS
        r = post_pairs(client, "/editor/devices/loom-01", fields)
        assert r.status_code == 413 and r.headers["content-type"].startswith("text/html")
        assert "表单过大" in r.text and "Too many fields" in r.text and '{"detail"' not in r.text
        assert "The form is too large" in post_pairs(client, "/editor/devices/loom-01?lang=en", fields).text


def test_the_opcua_picker_takes_more_than_1000_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = [BrowsedTag(("Plant", f"V{i}"), f"ns=2;i={i}", "Double", -1, None, None, "") for i in range(1200)]

    async def browse(_endpoint: str, _data_dir: str) -> list[Any]:
        return found

    monkeypatch.setattr(editor, "_browse", browse)
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM]))
    with console(agent) as client:
        data = [("endpoint", "opc.tcp://127.0.0.1:4840"), ("device", "plant")] + [("node", b.node) for b in found]
        r = post_pairs(client, "/editor/opcua", data)
        assert r.status_code == 303, r.text[:300]
        apply(client)
    assert len(yaml.safe_load((tmp_path / "gateway.yaml").read_text())["devices"][1]["tags"]) == 1200


# ---------------------------------------------------------------- 3. DL/T 645


def test_a_meter_resubmitted_unchanged_stays_a_meter(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM, METER]))
    with console(agent) as client:
        page = client.get("/editor/devices/meter-1").text
        fields = form_of(page)
        assert fields["driver"] == "dlt645" and "production" not in fields  # a meter's default: not production
        assert fields["tags.0.di"] == "00010000" and "tags.0.address" not in fields
        assert resubmit(client, "meter-1").status_code == 303
        apply(client)
        new = form_of(client.get("/editor/devices/_new?driver=dlt645").text)
        assert new["driver"] == "dlt645" and "production" not in new and "tags.0.di" in new
        assert "production" in form_of(client.get("/editor/devices/_new").text)  # a machine's default
    meter = load_gateway_config(tmp_path / "gateway.yaml").devices[1]
    assert meter.driver == "dlt645" and meter.production is False
    assert [t.di for t in meter.tags] == ["00010000", "02010100"]


def test_a_new_meter_from_the_form(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM]))
    with console(agent) as client:
        fields = form_of(client.get("/editor/devices/_new").text)  # drawn for Modbus, the driver changed
        fields.update({"id": "meter-2", "driver": "dlt645", "connection": "{port: /dev/null, address: '161'}"})
        fields.update({"tags.0.name": "energy", "tags.0.address": "00010000"})
        fields.pop("production")
        assert client.post("/editor/devices/_new", data=fields).status_code == 303
        apply(client)
    assert load_gateway_config(tmp_path / "gateway.yaml").devices[1].tags[0].di == "00010000"  # type: ignore[union-attr]


# ---------------------------------------------------------------- 4. the file changed on disk


def test_apply_refuses_a_file_changed_since_it_was_loaded(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM]))
    path = tmp_path / "gateway.yaml"
    with console(agent) as client:
        assert resubmit(client, "loom-01", name="Loom 1").status_code == 303
        apply(client)  # the console's own write is what it compares against next
        assert resubmit(client, "loom-01", name="Loom 2").status_code == 303
        hand = path.read_text(encoding="utf-8") + "# a hand edit\n"
        path.write_text(hand, encoding="utf-8")
        r = client.post("/editor/apply")
        assert r.status_code == 409 and "changed on disk" in client.post("/editor/apply?lang=en").text
        assert "在网关加载之后已在磁盘上被修改" in r.text
        assert path.read_text(encoding="utf-8") == hand and "Loom 2" in client.get("/editor").text  # draft kept
    assert len(list(tmp_path.glob("gateway.yaml.bak-*"))) == 1  # the first Apply's


def test_apply_refuses_a_file_changed_before_the_console_was_first_opened(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM]))  # the agent keeps the file's SHA-256 as loaded
    path = tmp_path / "gateway.yaml"
    hand = path.read_text(encoding="utf-8") + "# edgegw tags import -c\n"
    path.write_text(hand, encoding="utf-8")  # before the API's first connection builds the editor
    with console(agent) as client:
        assert resubmit(client, "loom-01", name="Loom 1").status_code == 303
        assert client.post("/editor/apply").status_code == 409
    assert path.read_text(encoding="utf-8") == hand


def test_a_file_only_touched_since_it_was_loaded_is_written(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM]))
    path = tmp_path / "gateway.yaml"
    later = (agent.started_ms + 2000) * 1_000_000
    os.utime(path, ns=(later, later))  # the same bytes, a later time (a copy, a backup tool)
    with console(agent) as client:
        assert resubmit(client, "loom-01", name="Loom 1").status_code == 303
        apply(client)
    assert "Loom 1" in path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- 5. the Modbus test read


@pytest.mark.parametrize(
    ("address", "type_", "expected"),
    [
        ("40001", "nan", "type: Input should be"),
        ("hr:65535", "float64", "address:"),
        ("40001", "string", "type: type string needs length"),
        ("4x0001", "uint16", "address: '4x0001' is not a Modbus address"),
    ],
)
def test_a_test_read_names_the_field(address: str, type_: str, expected: str) -> None:
    result, ok = asyncio.run(editor._test_read("127.0.0.1", 1, 1, address, type_))
    assert not ok and expected in result and "errors.pydantic.dev" not in result, result


def test_a_test_read_of_nan_is_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    class Meter:
        async def connect(self) -> None:
            pass

        async def read(self) -> list[Reading]:
            return [Reading("value", math.nan, 0, "good")]

        async def close(self) -> None:
            pass

    monkeypatch.setattr(editor, "make_driver", lambda _device: Meter())
    assert asyncio.run(editor._test_read("127.0.0.1", 1, 1, "hr:0", "float32")) == ("nan (bad)", False)


# ---------------------------------------------------------------- 6. no line numbers of the draft


def test_editor_messages_carry_no_line_of_the_draft(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM]))
    with console(agent) as client:
        r = resubmit(
            client, "loom-01", **{"tags.0.address": "4x0001", "oee": "{state_tag: nope, states: {running: [1]}}"}
        )
        assert r.status_code == 422
        assert "tags[0].address: &#39;4x0001&#39; is not a Modbus address" in r.text
        assert not re.search(r"\.yaml:\d+", r.text), re.findall(r".{30}\.yaml:\d+.{30}", r.text)
        r = resubmit(client, "loom-01", oee="{state_tag: nope, states: {running: [1]}}")
        assert r.status_code == 422 and "oee.state_tag: &#39;nope&#39; is not a tag of this device" in r.text
        assert not re.search(r"\.yaml:\d+", r.text), re.findall(r".{30}\.yaml:\d+.{30}", r.text)


# ---------------------------------------------------------------- 7. off the event loop, one at a time


def test_validation_runs_off_the_event_loop_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = editor._validate
    on_loop: list[bool] = []
    running = [0, 0]  # now, most at once
    lock = threading.Lock()

    def watched(data: dict[str, Any], name: str) -> GatewayConfig:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        with lock:
            running[0] += 1
            running[1] = max(running)
        try:
            time.sleep(0.05)  # widens the window two concurrent saves would share; nothing timed is asserted
            return real(data, name)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(editor, "_validate", watched)
    agent = make_agent(tmp_path, config_yaml(tmp_path, [LOOM, {**LOOM, "id": "loom-02"}]))
    with console(agent) as client, ThreadPoolExecutor(2) as pool:
        forms = {d: form_of(client.get(f"/editor/devices/{d}").text) for d in ("loom-01", "loom-02")}
        on_loop.clear()
        saves = [
            pool.submit(client.post, f"/editor/devices/{d}", data={**f, "name": f"{d} renamed"})
            for d, f in forms.items()
        ]
        assert [s.result(30).status_code for s in saves] == [303, 303]
        apply(client)
    assert on_loop and not any(on_loop), on_loop
    assert running[1] == 1
    names = [d["name"] for d in yaml.safe_load((tmp_path / "gateway.yaml").read_text())["devices"]]
    assert names == ["loom-01 renamed", "loom-02 renamed"]  # neither save lost the other's
