"""Settings: TOML file + command-line overrides, validated once into frozen models.

A bad value stops startup with a message naming the field. Secrets (the CA key
passphrase) are never stored here, only where to find them.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.ca import api
from server.ca.types import KeyAlgorithm
from server.store.database import sqlite_url

__all__ = ["ConfigError", "Settings", "load_settings"]

DEFAULT_DATA_DIR: Final = Path("data")


class ConfigError(Exception):
    """The configuration is invalid; the message is for the operator."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CASettings(_Model):
    """The hierarchy made on first start and the default issuing CA."""

    root_name: str = "root"
    issuing_name: str = "issuing"
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256
    organization: str = "privca"
    crl_validity_hours: int = Field(default=24, ge=1, le=24 * 30)
    ocsp_validity_hours: int = Field(default=96, ge=1, le=24 * 14)


class Settings(_Model):
    """Everything ``privca serve`` and the CLI need."""

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    host: str = "127.0.0.1"
    https_port: int = Field(default=8443, ge=0, le=65535)
    http_port: int = Field(default=8080, ge=0, le=65535)
    # Base URL written into CDP/AIA of issued certificates; defaults to http://host:http_port.
    public_http_url: str | None = None
    key_passphrase_env: str = "PRIVCA_KEY_PASSPHRASE"  # noqa: S105 - an env var name
    key_passphrase_file: Path | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    ca: CASettings = CASettings()

    @field_validator("public_http_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("http://"):
            raise ValueError("must be an http:// URL (RFC 5280 revocation URLs are plain HTTP)")
        return value

    @property
    def db_url(self) -> str:
        """Return the database URL (SQLite file under data_dir by default)."""
        return self.database_url or sqlite_url(self.data_dir / "privca.db")

    @property
    def http_base_url(self) -> str:
        """Return the base URL validators use for CRLs, OCSP and caIssuers."""
        if self.public_http_url:
            return self.public_http_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in {"0.0.0.0", "[::]"}:  # noqa: S104 - only a name comparison
            host = "127.0.0.1"
        return f"http://{host}:{self.http_port}"

    @property
    def passphrase_file(self) -> Path:
        """Return the CA key passphrase file (created on first start if absent)."""
        return self.key_passphrase_file or self.data_dir / "ca-key.passphrase"

    def engine_settings(self) -> api.EngineSettings:
        """Return the CA engine's settings."""
        return api.EngineSettings(
            http_base_url=self.http_base_url,
            organization=self.ca.organization,
            default_ca=self.ca.issuing_name,
            crl_validity=timedelta(hours=self.ca.crl_validity_hours),
            ocsp_validity=timedelta(hours=self.ca.ocsp_validity_hours),
        )


def load_settings(config_file: Path | None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), apply non-None overrides and validate.

    Raises:
        ConfigError: unreadable file or invalid values, with the field named.
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from exc
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
