"""What the environment may set (pydantic-settings), read once when a config file is loaded; see
`edge_config.secrets` for the precedence and for how the values replace the file's."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class EnvSecrets(BaseSettings):
    """What the environment may set: `EDGEGW_MQTT_PASSWORD`, `EDGEGW_API_TOKEN`, `EDGEGW_INFLUX_TOKEN`,
    `EDGEGW_OPCUA_PASSWORD` (for `edgegw opcua browse`)."""

    model_config = SettingsConfigDict(env_prefix="EDGEGW_", extra="ignore", frozen=True)

    mqtt_password: SecretStr | None = None
    api_token: SecretStr | None = None
    influx_token: SecretStr | None = None
    opcua_password: SecretStr | None = None
