"""The console and the portal in headless Chromium (Debian's, driven by playwright; one browser for the
module): the real agent against simulated looms, and the real evidence API over a ledger. Every page's
screenshot is saved under the test's tmp dir (and copied to docs/screenshots/ with EDGEGW_SCREENSHOTS=1)."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from cloud_bridge.cloud.api.app import create_cloud_app
from edge_config.models import GatewayConfig
from gateway.agent import Agent
from gateway.reload import config_text
from simulators.workshop import Workshop, WorkshopSpec
from tests.integration.test_cloud_api import add_user, config
from tests.ports import free_port, free_port_block
from tests.unit.test_evidence_build import fill_day

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]  # fmt: skip
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def shot(page: Any, tmp: Path, name: str) -> None:
    path = tmp / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("EDGEGW_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / f"{name}.png")


CHINESE_LEDGER = (
    "设备编号,设备名称,设备类型,产线,关键工序,数字化,网关\n"
    "press-01,冲压机 1#,冲压机,L1,是,是,gw-1\npress-02,冲压机 2#,冲压机,L1,否,是,\nlathe-01,车床,车床,L2,否,否,\n"
)


def zipfile_manifest_sha(path: Path) -> str:
    import hashlib
    import zipfile

    with zipfile.ZipFile(path) as z:
        return hashlib.sha256(z.read("manifest.json")).hexdigest()


def goto_when_up(page: Any, url: str) -> None:
    """Open `url` once its server answers (it is started in the background)."""
    for _ in range(100):
        try:
            page.goto(url)
            return
        except Exception:
            page.wait_for_timeout(100)
    page.goto(url)


class Background:
    """An asyncio loop in a thread running the agent (and its simulators) while the browser drives it."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tmp = tmp

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextmanager
def running_agent(
    bg: Background, tmp_path: Path, mosquitto: Any, devices: list[dict[str, Any]], user: tuple[str, str, str]
) -> Iterator[tuple[Agent, Path, str]]:
    """The agent on these devices with its console on a free port and one user (name, role, password), run in
    `bg`'s loop: (the agent, its config file, the console's base URL)."""
    api_port = free_port()
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path / "edge")},
            "mqtt": {"url": mosquitto.url},
            "api": {"listen": f"127.0.0.1:{api_port}"},
            "devices": devices,
        }
    )
    cfg_file = tmp_path / "gateway.yaml"
    cfg_file.write_text(config_text(cfg), encoding="utf-8")
    agent = Agent(cfg, config_path=cfg_file)
    name, role, password = user
    agent.users.add(name, role, password)
    stop = asyncio.Event()
    task = asyncio.run_coroutine_threadsafe(agent.run(stop), bg.loop)
    try:
        yield agent, cfg_file, f"http://127.0.0.1:{api_port}"
    finally:
        bg.loop.call_soon_threadsafe(stop.set)
        task.result(30)


def test_console(browser: Any, tmp_path: Path, mosquitto: Any) -> None:
    sim_base = free_port_block(2)
    bg = Background(tmp_path)
    sims = Workshop(WorkshopSpec(industry="textiles", devices=[2, 0], port=sim_base))
    bg.run(sims.start())
    devices = sims.device_configs()
    try:
        with running_agent(bg, tmp_path, mosquitto, devices[:1], ("eng", "engineer", "eng-pw")) as (
            agent,
            cfg_file,
            base,
        ):
            console_flow(browser, tmp_path, agent, cfg_file, base, devices[1])
    finally:
        bg.run(sims.stop())
        bg.close()


def console_flow(browser: Any, tmp_path: Path, agent: Agent, cfg_file: Path, base: str, d: dict[str, Any]) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    goto_when_up(page, base + "/")
    page.wait_for_selector("input[name=username]")
    shot(page, tmp_path, "console-login")
    page.fill("input[name=username]", "eng")
    page.fill("input[name=password]", "eng-pw")
    page.click("button")
    page.wait_for_selector("#devices tr[data-device=loom-01] .pill.online", timeout=20_000)
    shot(page, tmp_path, "console-devices")
    # add the second simulated loom through the editor's form, then apply: it is hot-reloaded
    page.goto(base + "/editor/devices/_new")
    page.fill("input[name=id]", d["id"])
    page.fill("input[name=name]", d["name"])
    page.fill("input[name=connection]", f"{{host: 127.0.0.1, port: {d['connection']['port']}}}")
    page.fill("input[name='tags.0.name']", "speed")
    page.fill("input[name='tags.0.address']", "4x0001")  # wrong: the message shows at the field
    page.click("#save")
    page.wait_for_selector(".field-error")
    assert "is not a Modbus address" in page.inner_text(".field-error")
    shot(page, tmp_path, "console-editor-error")
    page.fill("input[name='tags.0.address']", "hr:0")
    page.fill("input[name='tags.0.scale']", "0.1")
    page.fill("input[name='tags.0.unit']", "rpm")
    page.click("#save")
    page.wait_for_selector("pre.diff")
    shot(page, tmp_path, "console-editor-diff")
    seq_before = agent.runtime.devices["loom-01"].scans
    task_before = agent.runtime.device_task("loom-01")
    page.click("#apply")
    page.wait_for_selector(".flash.ok")
    assert agent.runtime.device_task("loom-01") is task_before  # untouched by the reload
    assert agent.runtime.devices["loom-01"].scans >= seq_before
    assert d["id"] in cfg_file.read_text() and list(tmp_path.glob("gateway.yaml.bak-*"))
    page.goto(base + f"/devices/{d['id']}")
    page.wait_for_selector("#values tr[data-tag=speed] .pill.good", timeout=20_000)
    shot(page, tmp_path, "console-live-values")
    page.click("a.lang")
    page.wait_for_selector("text=Live values")
    shot(page, tmp_path, "console-live-values-en")
    page.close()


def test_portal(browser: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    add_user(url, "eva", "evaluator", [], password="eva-pw")
    add_user(url, "op", "operator", ["ent-1"], password="op-pw")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_cloud_app(config(url)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        goto_when_up(page, base + "/login")
        page.fill("input[name=username]", "eva")
        page.fill("input[name=password]", "eva-pw")
        page.click("button")
        page.goto(base + "/?start=2024-05-01&end=2024-05-01")
        page.wait_for_selector("#enterprises")
        shot(page, tmp_path, "portal-overview")
        page.click("#enterprises a")
        page.wait_for_selector("#ent-devices")
        shot(page, tmp_path, "portal-enterprise")
        # the evaluator exports the day's pack, then verifies the zip they received
        with page.expect_download() as got:
            page.click("#export-pack")
        download = got.value
        pack = tmp_path / download.suggested_filename
        download.save_as(pack)
        assert pack.name.startswith("evidence-ent-1-2024-05-01-2024-05-01-") and pack.suffix == ".zip"
        sha = zipfile_manifest_sha(pack)
        assert sha[:12] in pack.name
        page.click("nav a[href='/verify']")
        page.set_input_files("#verify-form input[name=pack]", str(pack))
        page.fill("#verify-form input[name=expect]", sha)
        page.click("#verify")
        page.wait_for_selector("#verify-result .flash.ok")
        assert sha in page.inner_text("#verify-result")
        shot(page, tmp_path, "portal-verify")
        page.close()
        # an operator of the enterprise imports its equipment ledger through the form
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/login?next=/enterprises/ent-1%3Fstart%3D2024-05-01%26end%3D2024-05-01")
        page.fill("input[name=username]", "op")
        page.fill("input[name=password]", "op-pw")
        page.click("button")
        page.wait_for_selector("#import-ledger")
        shot(page, tmp_path, "portal-enterprise-operator")
        ledger = tmp_path / "设备台账.csv"
        ledger.write_text(CHINESE_LEDGER, encoding="utf-8")
        page.set_input_files("#import-ledger input[name=sheet]", str(ledger))
        page.click("#import-ledger button")
        page.wait_for_selector(".flash.ok")
        assert "3" in page.inner_text(".flash.ok")
        shot(page, tmp_path, "portal-ledger-imported")
        page.close()
    finally:
        server.should_exit = True
        thread.join(10)


def test_console_opcua_picker_test_read_sheet_import_users(browser: Any, tmp_path: Path, mosquitto: Any) -> None:
    """An admin adds a reactor from the OPC UA simulator through the browse picker, test-reads a Modbus address,
    imports the loom's tags from the Chinese-header template, applies, sees the reactor's live values, makes
    a user and a token on the users page, and switches to English."""
    sim_port, opcua_port = free_port(), free_port()
    bg = Background(tmp_path)
    sims = Workshop(WorkshopSpec(industry="textiles", devices=[1, 0], port=sim_port))
    opcua = Workshop(
        WorkshopSpec(industry="chemicals", devices=[1, 0], protocol="opcua", opcua_port=opcua_port),
        pki_dir=str(tmp_path / "sim-pki"),
    )
    bg.run(sims.start())
    bg.run(opcua.start())
    devices = sims.device_configs()
    try:
        with running_agent(bg, tmp_path, mosquitto, devices, ("adm", "admin", "adm-pw")) as (agent, _file, base):
            picker_flow(browser, tmp_path, agent, base, sim_port, opcua_port)
    finally:
        bg.run(sims.stop())
        bg.run(opcua.stop())
        bg.close()


def picker_flow(browser: Any, tmp_path: Path, agent: Agent, base: str, sim_port: int, opcua_port: int) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    goto_when_up(page, base + "/login")
    page.fill("input[name=username]", "adm")
    page.fill("input[name=password]", "adm-pw")
    page.click("button")
    page.wait_for_selector("#devices")

    # the Modbus test read of one address of the loom (its speed register)
    page.goto(base + "/editor")
    page.fill("input[name=port]", str(sim_port))
    page.fill("input[name=address]", "hr:0")
    page.click("#test-read button, form[hx-post='/editor/modbus/test'] button")
    page.wait_for_selector("#test-read-result.ok", timeout=15_000)
    assert "=" in page.inner_text("#test-read-result") or page.inner_text("#test-read-result").strip()
    shot(page, tmp_path, "console-test-read")

    # the template with Chinese headers, filled in and imported as the loom's tags
    template = page.request.get(base + "/editor/template.csv").body().decode("utf-8-sig")
    header = template.splitlines()[0]
    assert "名称" in header and "地址" in header
    cells = header.split(",")
    rows = {  # the loom's OEE settings name run_state, picks_total and mispicks: the sheet keeps them
        "名称": ["speed", "run_state", "picks_total", "mispicks"],
        "地址": ["hr:0", "hr:1", "hr:2", "hr:18"],
        "数据类型": ["uint16", "uint16", "uint32", "uint32"],
        "倍率": ["0.1", "", "", ""],
        "单位": ["rpm", "", "", ""],
    }
    sheet = "\n".join([header, *(",".join(rows.get(c, [""] * 4)[i] for c in cells) for i in range(4))]) + "\n"
    page.set_input_files(
        "form[action='/editor/devices/loom-01/tags'] input[type=file]",
        files=[{"name": "点表.csv", "mimeType": "text/csv", "buffer": sheet.encode("utf-8-sig")}],
    )
    page.click("form[action='/editor/devices/loom-01/tags'] button")
    page.wait_for_selector("pre.diff")
    assert "energy_kwh" in page.inner_text("pre.diff")  # the tags the sheet leaves out go
    shot(page, tmp_path, "console-editor-sheet-import")

    # the OPC UA browse picker: the reactor's nodes ticked become a new device's tags
    page.goto(base + "/editor/opcua")
    page.fill("input[name=endpoint]", f"opc.tcp://127.0.0.1:{opcua_port}")
    page.fill("input[name=device]", "reactor-01")
    page.click("#browse-go")
    page.wait_for_selector("#browse-tree", timeout=30_000)
    for node in ("Reactor1.Temperature", "Reactor1.Pressure", "Reactor1.AgitatorSpeed"):
        page.check(f"#browse-tree input[value$='{node}']")
    shot(page, tmp_path, "console-opcua-browse")
    page.click("#add-ticked")
    page.wait_for_url("**/editor/devices/reactor-01")
    page.goto(base + "/editor")
    page.click("#apply")
    page.wait_for_selector(".flash.ok")
    assert [d.id for d in agent.config.devices] == ["loom-01", "reactor-01"]
    assert [t.name for t in agent.full_config().devices[0].tags] == ["speed", "run_state", "picks_total", "mispicks"]
    page.goto(base + "/devices/reactor-01")
    page.wait_for_selector("#values tr[data-tag='Plant.Reactor1.Temperature'] .pill.good", timeout=30_000)
    shot(page, tmp_path, "console-opcua-live-values")

    # the users page: a new engineer and a token for them, shown once
    page.goto(base + "/users")
    page.fill("#add-user input[name=name]", "zhang.san")
    page.select_option("#add-user select[name=role]", "engineer")
    page.fill("#add-user input[name=password]", "zs-pw-2024")
    page.click("#add")
    page.wait_for_selector("tr[data-user='zhang.san']")
    page.click("tr[data-user='zhang.san'] button.new-token")
    page.wait_for_selector("#new-token")
    secret = page.inner_text("#new-token")
    assert agent.users.by_token(secret) is not None
    shot(page, tmp_path, "console-users")
    page.click("a.lang")
    page.wait_for_selector("text=Add a user")
    assert secret not in page.content()  # the token is not shown again
    shot(page, tmp_path, "console-users-en")
    page.close()
