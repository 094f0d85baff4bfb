"""Secrets and overrides from the environment, read once (pydantic-settings).

Precedence, one rule everywhere: a command-line option > the environment (`EDGEGW_*`) > the config
file > the default. So a secret can be kept out of the YAML file (systemd `EnvironmentFile=`, a
container's environment) and rotated without editing it. Values are `SecretStr`: they never show in a
repr or a log line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from edge_config.envsettings import EnvSecrets


# environment setting -> (config section, field)
_CONFIG_FIELDS = {
    "mqtt_password": ("mqtt", "password"),
    "api_token": ("api", "token"),
    "influx_token": ("influx", "token"),
}

M = TypeVar("M", bound=BaseModel)


def with_env_secrets(cfg: M, env: EnvSecrets | None = None) -> M:
    """`cfg` with every secret the environment sets put in place of the file's value. A section that knows
    (`EnvSecretSection`) remembers the file's value, so that writing the config back never writes the
    environment's secret (`gateway.reload.file_data`)."""
    if env is None:
        if not any(k.upper().startswith("EDGEGW_") for k in os.environ):
            return cfg  # nothing to read: pydantic-settings (≈ 5 MB once imported) stays unloaded
        from edge_config.envsettings import EnvSecrets

        env = EnvSecrets()
    for name, (section, field) in _CONFIG_FIELDS.items():
        secret: SecretStr | None = getattr(env, name)
        part = getattr(cfg, section, None)
        if secret is None or part is None or field not in type(part).model_fields:
            continue
        value = secret.get_secret_value()
        with_env = getattr(part, "with_env_value", None)
        part = with_env(field, value) if with_env is not None else part.model_copy(update={field: value})
        cfg = cfg.model_copy(update={section: part})
    return cfg


def redact_url(url: str) -> str:
    """A URL (database, broker) without its password: what commands print and logs show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
