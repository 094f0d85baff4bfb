"""The cloud stack in deploy/compose, checked statically (no container engine here): the services a pilot
needs, images pinned, every mounted file present or listed as the operator's to create, each ingester with
a client_id of its own in one shared group, every edgegw config valid."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge_config import load_cloud_config

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
OPERATOR_FILES = {"passwd", "certs", "postgres_password.txt", "pgpass", "edgegw.env"}  # secrets: made on site


def stack() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((COMPOSE / "cloud.compose.yaml").read_text())


def test_the_stack_has_what_a_pilot_needs_with_pinned_images() -> None:
    services = stack()["services"]
    assert {"mosquitto", "victoria", "postgres", "ingest-1", "ingest-2", "serve"} <= set(services)
    for name, svc in services.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image!r})"


def test_every_mounted_file_is_shipped_or_the_operators_to_create() -> None:
    text = (COMPOSE / "cloud.compose.yaml").read_text()
    doc = stack()
    sources = [
        v.split(":")[0] for svc in doc["services"].values() for v in svc.get("volumes", []) if v.startswith("./")
    ]
    sources += [s["file"] for s in doc["secrets"].values()]
    sources += [f for svc in doc["services"].values() for f in svc.get("env_file", [])]
    for src in sources:
        name = Path(src).name
        if name in OPERATOR_FILES:
            assert name in text.split("Create these beside this file")[1], f"{name}: say how to make it"
        else:
            assert (COMPOSE / src).exists(), src
    assert (COMPOSE / "Dockerfile.cloud").exists()


def test_ingesters_share_one_group_each_with_its_own_client_id() -> None:
    services = stack()["services"]
    configs = []
    for svc in services.values():
        if svc.get("command", [None, None])[:2] == ["edgegw", "ingest"]:
            configs.append(load_cloud_config(COMPOSE / Path(svc["command"][-1]).name))
    assert len(configs) >= 2
    assert len({c.mqtt.client_id for c in configs}) == len(configs) and all(c.mqtt.client_id for c in configs)
    assert len({c.mqtt.shared_group for c in configs}) == 1 and configs[0].mqtt.shared_group
    assert all(c.ledger.url.startswith("postgresql://") and "@" in c.ledger.url for c in configs)
    assert all(":" not in c.ledger.url.split("//")[1].split("@")[0] for c in configs), "no password in the URL"


def test_the_broker_keeps_what_it_acknowledges_and_refuses_anonymous_clients() -> None:
    conf = (COMPOSE / "mosquitto.conf").read_text().splitlines()
    assert "autosave_on_changes true" in conf and "persistence true" in conf
    assert "allow_anonymous false" in conf and "require_certificate true" in conf


def test_the_api_config_validates() -> None:
    assert load_cloud_config(COMPOSE / "serve.yaml").api.listen == "0.0.0.0:8090"
