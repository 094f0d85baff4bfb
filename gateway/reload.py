"""Hot reload: what changed between two validated configs, and writing a config file safely.

Devices are compared as validated models (so layout, comments and defaults spelled out make no
difference). `devices`, `timezone` and `shifts` apply at once (`Runtime.reload`): a changed device's task
is stopped and started again with its new settings, an added one started, a removed one stopped and
reported offline; every other device's task, the buffer, the publisher and `seq` are not touched. A
change to any other section (gateway, mqtt, buffer, api, auth, history) is written but takes effect at the
next start: the plan names those sections.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_config.models import EnvSecretSection, GatewayConfig
from gateway.compact import device_digest, without_read_secrets

HOT_SECTIONS = ("devices", "timezone", "shifts")


@dataclass(frozen=True)
class ReloadPlan:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)  # sections that apply at the next start

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.restart_needed)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


def plan_reload(old: GatewayConfig, new: GatewayConfig, old_devices: Mapping[str, str] | None = None) -> ReloadPlan:
    """What applying `new` over `old` does. Devices are compared by the SHA-256 of their canonical config
    (`gateway.compact.device_digest`); `old_devices` gives the old ones' digests when `old` is the running
    agent's light config (its devices have no tag lists)."""
    before = dict(old_devices) if old_devices is not None else {d.id: device_digest(d) for d in old.devices}
    after = {d.id: device_digest(d) for d in new.devices}
    sections = [
        name
        for name in type(new).model_fields
        if name not in HOT_SECTIONS and _dump(getattr(old, name)) != _dump(getattr(new, name))
    ]
    return ReloadPlan(
        added=[i for i in after if i not in before],
        removed=[i for i in before if i not in after],
        changed=[i for i in after if i in before and before[i] != after[i]],
        unchanged=[i for i in after if i in before and before[i] == after[i]],
        restart_needed=sections,
    )


def file_data(config: GatewayConfig) -> dict[str, Any]:
    """The config as its file holds it: what differs from the defaults, in the models' field order, with each
    secret as the file gave it. A secret the environment supplied (`EDGEGW_MQTT_PASSWORD`, …) is not there
    (the file's own value is, if it had one); one read from `{name}_file` is not there either (the
    `{name}_file` is). What the tag-map editor edits and writes."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    for name in type(config).model_fields:
        section = getattr(config, name)
        if not isinstance(section, EnvSecretSection) or not section.file_values:
            continue
        part = data.setdefault(name, {})
        defaults = type(section).model_fields
        for key, value in section.file_values.items():
            if value is None or value == defaults[key].default:
                part.pop(key, None)
            else:
                part[key] = value
        if not part:
            del data[name]
    return without_read_secrets(data)


def data_text(data: Mapping[str, Any]) -> str:
    """Config data as YAML a person can read (the order given)."""
    return yaml.safe_dump(dict(data), allow_unicode=True, sort_keys=False, width=120)


def config_text(config: GatewayConfig) -> str:
    """The config as its file is written: `file_data` as YAML (no secret of the environment's or of a
    secret file in it)."""
    return data_text(file_data(config))


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of the file's bytes; "" when there is no such file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""


def unified_diff(old_text: str, new_text: str, name: str = "gateway.yaml") -> str:
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True), new_text.splitlines(keepends=True), f"{name} (now)", f"{name} (new)"
        )
    )


def write_config(path: Path, text: str, *, keep: int = 10) -> Path | None:
    """Write `text` to `path` atomically (a temporary file in the same folder, fsync, rename) after copying
    the current file to `<name>.bak-<UTC time>`; the `keep` newest backups are kept. Returns the backup."""
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        n = 1
        while backup.exists():
            n += 1
            backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{n}")
        backup.write_bytes(path.read_bytes())
        os.chmod(backup, path.stat().st_mode & 0o777)
    tmp = path.with_name(path.name + ".tmp")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    backups = sorted(path.parent.glob(f"{path.name}.bak-*"), key=lambda p: p.stat().st_mtime)
    for old in backups[:-keep]:
        old.unlink(missing_ok=True)
    return backup
