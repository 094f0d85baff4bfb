"""The trust commands: `edgegw identity show` on the edge, `edgegw cloud gateway add|list|revoke|broker-files`
on the cloud (a SQLite ledger), and what they write for Mosquitto."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from gateway.cli.main import main


def test_identity_show_prints_the_key_and_the_enrol_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump({"gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path)}}))
    assert main(["identity", "show", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    key = (tmp_path / "identity" / "gateway.pub").read_text().strip()
    assert key.startswith("ed25519:") and key in out and "SHA256:" in out
    assert f"edgegw cloud gateway add ent-1 gw-1 --public-key {key}" in out
    assert "PRIVATE KEY" not in out and stat.S_IMODE((tmp_path / "identity" / "gateway.key").stat().st_mode) == 0o600
    assert main(["identity", "show", "-c", str(cfg)]) == 0 and key in capsys.readouterr().out, "the same key"


def test_gateway_add_list_revoke_and_the_broker_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloud_bridge.uplink.identity import load_or_create_identity

    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"url": "mqtt://127.0.0.1:1", "username": "ingest", "password": "s3cret"},
                "ledger": {"url": f"sqlite:///{tmp_path}/ledger.db"},
            }
        )
    )
    broker = tmp_path / "broker"
    keys = [load_or_create_identity(tmp_path / g).public_key for g in ("a", "b")]
    base = ["-c", str(cloud), "--mosquitto-dir", str(broker)]
    assert main(["cloud", "gateway", "add", "ent-1", "gw-a", "--public-key", keys[0], *base]) == 0
    out = capsys.readouterr().out
    password = next(line.rsplit(": ", 1)[1] for line in out.splitlines() if "shown once" in line)
    assert main(["cloud", "gateway", "add", "ent-2", "gw-b", "--public-key", keys[1], *base]) == 0
    assert main(["cloud", "gateway", "add", "ent-3", "gw-c", "--public-key", keys[1], *base]) == 2  # a key, a gateway
    assert "already registered" in capsys.readouterr().err
    dynsec = json.loads((broker / "dynamic-security.json").read_text())
    assert {c["username"] for c in dynsec["clients"]} == {"ingest", "ent-1.gw-a", "ent-2.gw-b"}
    assert dynsec["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    assert password not in (broker / "dynamic-security.json").read_text() + (broker / "passwords").read_text()
    assert "s3cret" not in (broker / "passwords").read_text(), "hashes only"
    assert stat.S_IMODE((broker / "passwords").stat().st_mode) == 0o600
    assert main(["cloud", "gateway", "revoke", "ent-1", "gw-a", *base]) == 0
    assert main(["cloud", "gateway", "list", "-c", str(cloud)]) == 0
    listing = capsys.readouterr().out
    assert "gw-a" in listing and "revoked" in listing and "gw-b" in listing and "active" in listing
    dynsec = json.loads((broker / "dynamic-security.json").read_text())
    assert {c["username"] for c in dynsec["clients"]} == {"ingest", "ent-2.gw-b"}, "revoked: out of the broker"
    assert main(["cloud", "gateway", "revoke", "ent-1", "gw-a", *base]) == 2
    assert main(["cloud", "gateway", "broker-files", "-c", str(cloud)]) == 2
