"""Settings: TOML file + command-line overrides, validated once into frozen models.

A bad value stops startup with a message naming the field. Secrets (the CA key
passphrase) are never stored here, only where to find them.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from server.ca import api, grants, subjects
from server.ca.acme import api as acme_api
from server.ca.est import logins as est_logins
from server.ca.est import ports as est_ports
from server.ca.status import api as status_api
from server.ca.status import crls, responder
from server.ca.types import KeyAlgorithm
from server.store import pgtls
from server.store.database import sqlite_url

__all__ = [
    "ConfigError",
    "LoggingSettings",
    "MetricsSettings",
    "Pkcs11Config",
    "RevocationSettings",
    "Settings",
    "load_settings",
    "status_settings",
]

DEFAULT_DATA_DIR: Final = Path("data")


class ConfigError(Exception):
    """The configuration is invalid; the message is for the operator."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CASettings(_Model):
    """The hierarchy made on first start and the default issuing CA."""

    root_name: str = "root"
    issuing_name: str = "issuing"
    # The internal admin CA (admin API client certificates), made on first start.
    admin_name: str = "privca-admin"
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256
    organization: str = "privca"
    crl_validity_hours: int = Field(default=24, ge=1, le=24 * 30)
    ocsp_validity_hours: int = Field(default=96, ge=1, le=24 * 14)
    # ``serve`` warns this many days before an offline CA's ceremony-signed status expires.
    offline_warn_days: int = Field(default=7, ge=1, le=365)


class OperatorSettings(_Model):
    """What the CLI operator may issue: CAs (each with its subtree) and profiles.

    ``"*"`` means every CA or profile (the default: a shell on the database host
    is break-glass). Names are otherwise unrestricted for the operator.
    """

    cas: tuple[str, ...] = (grants.ANY,)
    profiles: tuple[str, ...] = (grants.ANY,)

    def to_grant(self) -> grants.Grant:
        """Return the operator's grant for the issuance pipeline."""
        return replace(grants.OPERATOR, cas=frozenset(self.cas), profiles=frozenset(self.profiles))


class EstLabelSettings(_Model):
    """One EST label from the config file (``[est.labels.NAME]``)."""

    ca: str | None = None
    profile: str = "device"
    auth: list[str] = Field(default_factory=lambda: ["basic", "cert"])
    trust_anchors: list[Path] = Field(default_factory=list)
    approval_required: bool = False
    allow_subject_change: bool = False
    # OIDs, or "OID=VALUE-OID,..." for an attribute; None: derived from the profile.
    csrattrs: list[str] | None = None
    # Name policy: what the label's clients may put in a certificate. Nothing set:
    # device identities only (a subject, no DNS/IP/URI/e-mail subjectAltName).
    allow_dns: list[str] = Field(default_factory=list)  # DNS suffixes ("corp.example")
    allow_wildcard: bool = False
    allow_ip: list[str] = Field(default_factory=list)  # CIDR ranges
    allow_uri: list[str] = Field(default_factory=list)  # shell patterns ("spiffe://corp/*")
    allow_email: list[str] = Field(default_factory=list)  # e-mail domains
    subject: list[str] = Field(default_factory=list)  # RFC 4514 patterns ("CN=fire-sensor-*")
    max_days: int | None = Field(default=None, ge=1, le=100 * 366)

    @field_validator("allow_ip")
    @classmethod
    def _ip_ranges(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("subject")
    @classmethod
    def _subject_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            subjects.check_pattern(pattern)
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: list[str]) -> list[str]:
        if not value or any(m not in {"basic", "cert"} for m in value):
            raise ValueError("auth modes are 'basic' and/or 'cert'")
        return value


class EstSettings(_Model):
    """EST front end: labels, and the reverse proxy that may forward client certificates."""

    labels: dict[str, EstLabelSettings] = Field(default_factory=dict)
    # RFC 9440 header carrying the client certificate from a TLS-terminating proxy.
    client_cert_header: str = "Client-Cert"
    trusted_proxies: list[str] = Field(default_factory=list)
    retry_after_seconds: int = Field(default=60, ge=1, le=86400)
    # Per client address and process (503 + Retry-After beyond); 0 turns a limit off.
    requests_per_second: float = Field(default=200.0, ge=0, le=1_000_000)
    request_burst: int = Field(default=400, ge=1, le=1_000_000)
    # Failed password logins a minute, per client address and per account (label, user),
    # counted in the database so every process and node shares them; 0 turns one off.
    failed_logins_per_minute: int = Field(default=30, ge=0, le=100_000)
    failed_logins_per_account_per_minute: int = Field(default=10, ge=0, le=100_000)
    # PBKDF2 checks at once per process (0: the CPU count); a login waits at most
    # password_check_wait_seconds for a slot, then gets 503 + Retry-After.
    password_checks_in_flight: int = Field(default=0, ge=0, le=1024)
    password_check_wait_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    def to_login_limits(self) -> est_logins.LoginLimits:
        """Return the failed-login budgets and the PBKDF2 bound as engine settings."""
        return est_logins.LoginLimits(
            per_address=self.failed_logins_per_minute,
            per_account=self.failed_logins_per_account_per_minute,
            concurrent_checks=self.password_checks_in_flight,
            check_wait=self.password_check_wait_seconds,
        )

    def to_labels(self) -> dict[str, est_ports.EstLabel]:
        """Return the configured labels as engine ``EstLabel`` values (anchor files read).

        Raises:
            ConfigError: an unreadable anchor file or a bad csrattrs entry.
        """
        out: dict[str, est_ports.EstLabel] = {}
        for name, cfg in self.labels.items():
            anchors = b""
            for path in cfg.trust_anchors:
                try:
                    anchors += path.read_bytes()
                except OSError as exc:
                    raise ConfigError(f"est.labels.{name}: cannot read {path}: {exc}") from exc
            attrs = None
            if cfg.csrattrs is not None:
                attrs = tuple(
                    est_ports.CsrAttr(
                        oid=item.partition("=")[0].strip(),
                        values=tuple(
                            v.strip() for v in item.partition("=")[2].split(",") if v.strip()
                        ),
                    )
                    for item in cfg.csrattrs
                )
            out[name] = est_ports.EstLabel(
                name=name,
                ca=cfg.ca,
                profile=cfg.profile,
                auth_modes=frozenset(est_ports.AuthMode(m) for m in cfg.auth),
                trust_anchors_pem=anchors,
                approval_required=cfg.approval_required,
                allow_subject_change=cfg.allow_subject_change,
                csrattrs=attrs,
                source="config",
                dns_suffixes=tuple(cfg.allow_dns),
                allow_wildcard=cfg.allow_wildcard,
                ip_ranges=tuple(ipaddress.ip_network(n, strict=False) for n in cfg.allow_ip),
                uri_patterns=tuple(cfg.allow_uri),
                email_domains=tuple(cfg.allow_email),
                subject_patterns=tuple(cfg.subject),
                max_days=cfg.max_days,
            )
        return out


class RevocationSettings(_Model):
    """OCSP responder and CRL publication (``[revocation]``); validity hours live in ``[ca]``."""

    # Re-sign a pre-signed OCSP response once it is this old (RFC 5019 §6: well before nextUpdate).
    ocsp_refresh_hours: int = Field(default=48, ge=1, le=24 * 14)
    # RFC 5019 §2.1: responders may ignore nonces; on: nonce requests get a fresh, echoed answer.
    ocsp_nonce_echo: bool = False
    ocsp_delegated_signer: bool = False
    ocsp_signer_lifetime_days: int = Field(default=30, ge=2, le=365)
    # A replaced delegated signer's key is destroyed once its certificate expired this long
    # ago; at least an hour, a margin for nodes whose clocks lag.
    ocsp_signer_retention_hours: int = Field(default=24, ge=1, le=24 * 366)
    ocsp_cache_entries: int = Field(default=200_000, ge=0, le=10_000_000)
    # Answers kept in memory per process, keyed by CertID: at most this many bytes.
    ocsp_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0, le=16 * 1024**3)
    # Answers signed live per second (unknown serials, several CertIDs, SHA-2 CertIDs,
    # echoed nonces); beyond it `tryLater`. 0: unlimited. Pre-signed answers never count.
    ocsp_live_signatures_per_second: float = Field(default=50.0, ge=0, le=100_000)
    ocsp_max_request_bytes: int = Field(default=8192, ge=256, le=65536)
    crl_debounce_seconds: float = Field(default=2.0, ge=0, le=3600)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Processes serving both listeners (SO_REUSEPORT); `serve --workers N`.
    workers: int = Field(default=1, ge=1, le=64)
    # Access-log every OCSP/CRL request (off: at OCSP volumes the log line costs more
    # than the answer).
    http_access_log: bool = False


class AcmeDirectoryConfig(_Model):
    """One named ACME directory (``[acme.directories.NAME]``, served at /acme/NAME/directory)."""

    ca: str
    # ACME profile names offered; None: every configured profile.
    profiles: list[str] | None = None
    # DNS suffixes challenges may prove names under; "*": any name.
    allow_dns: list[str] = Field(default_factory=lambda: ["*"])
    # CIDRs IP identifiers must lie in (default: any address).
    allow_ip: list[str] = Field(default_factory=lambda: ["0.0.0.0/0", "::/0"])
    wildcard: bool = True
    # None: the global [acme] eab_required.
    eab_required: bool | None = None

    @field_validator("allow_ip")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    def to_engine(self, name: str) -> acme_api.AcmeDirectory:
        """Return the engine's directory value."""
        return acme_api.AcmeDirectory(
            name=name,
            ca=self.ca,
            profiles=None if self.profiles is None else tuple(self.profiles),
            dns_suffixes=tuple(self.allow_dns),
            ip_ranges=tuple(ipaddress.ip_network(c, strict=False) for c in self.allow_ip),
            wildcard=self.wildcard,
            eab_required=self.eab_required,
            source="config",
        )


class AcmeConfig(_Model):
    """The ACME server (``[acme]``): validation network, EAB, reuse, limits, directory meta."""

    # Test mode / private networks: every identifier resolves to this address.
    resolve_all_to: str | None = None
    http01_port: int = Field(default=80, ge=1, le=65535)
    tlsalpn01_port: int = Field(default=443, ge=1, le=65535)
    # HOST:PORT of the DNS server dns-01 asks (default: the system resolver).
    dns_resolver: str | None = None
    validation_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    validation_attempts: int = Field(default=3, ge=1, le=10)
    validation_concurrency: int = Field(default=32, ge=1, le=1024)
    # Validations queued or running per process; a challenge POST beyond it is
    # answered rateLimited (Retry-After) and the challenge stays pending.
    validation_queue: int = Field(default=1000, ge=1, le=1_000_000)
    # CIDRs validation may reach although they are denied by default (loopback,
    # link-local, unspecified, multicast); private ranges are always allowed.
    validation_allow: list[str] = Field(default_factory=list)
    eab_required: bool = False
    # An EAB key admits one account; true lets it admit several (each one recorded).
    eab_reuse: bool = False
    authz_reuse: bool = True
    # Limits (rateLimited + Retry-After beyond); 0 disables one.
    orders_per_account_per_hour: int = Field(default=300, ge=0)
    accounts_per_ip_per_hour: int = Field(default=50, ge=0)
    # Unexpired pending authorizations per account; newOrder/newAuthz beyond it is refused.
    pending_authzs_per_account: int = Field(default=1000, ge=0)
    account_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: list[str] = Field(default_factory=list)
    # Named directories, each with its CA and identifier policy (/acme/NAME/directory).
    directories: dict[str, AcmeDirectoryConfig] = Field(default_factory=dict)

    @field_validator("directories")
    @classmethod
    def _names(cls, value: dict[str, AcmeDirectoryConfig]) -> dict[str, AcmeDirectoryConfig]:
        for name in value:
            if not acme_api.is_valid_directory_name(name):
                raise ValueError(
                    f"{name!r}: directory names are 1-64 lower-case letters, digits, '.', '_' "
                    "or '-', not 'default' nor an ACME resource name"
                )
        return value

    def to_directories(self) -> dict[str, acme_api.AcmeDirectory]:
        """Return the configured named directories as engine values."""
        return {name: cfg.to_engine(name) for name, cfg in self.directories.items()}

    @field_validator("resolve_all_to")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @field_validator("validation_allow")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("dns_resolver")
    @classmethod
    def _hostport(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be HOST:PORT")
        return value

    def to_engine(self) -> acme_api.AcmeSettings:
        """Return the ACME engine's settings."""
        return acme_api.AcmeSettings(
            eab_required=self.eab_required,
            eab_reuse=self.eab_reuse,
            authz_reuse=self.authz_reuse,
            orders_per_account_per_hour=self.orders_per_account_per_hour,
            accounts_per_ip_per_hour=self.accounts_per_ip_per_hour,
            pending_authzs_per_account=self.pending_authzs_per_account,
            account_cache_seconds=self.account_cache_seconds,
            validation_concurrency=self.validation_concurrency,
            validation_queue=self.validation_queue,
            terms_of_service=self.terms_of_service,
            website=self.website,
            caa_identities=tuple(self.caa_identities),
            validation=acme_api.ValidationSettings(
                http01_port=self.http01_port,
                tlsalpn01_port=self.tlsalpn01_port,
                resolve_all_to=self.resolve_all_to,
                allow_targets=tuple(
                    ipaddress.ip_network(c, strict=False) for c in self.validation_allow
                ),
                timeout=self.validation_timeout_seconds,
                attempts=self.validation_attempts,
            ),
        )


class Pkcs11Config(_Model):
    """The PKCS#11 token CA keys may live in (``[pkcs11]``); each CA picks its backend."""

    module: Path
    token_label: str = Field(min_length=1)
    # The user PIN: this environment variable, else this file (mode 0600, checked).
    pin_file: Path | None = None
    pin_env: str = "PRIVCA_PKCS11_PIN"
    # Sessions held open: signatures from this many threads proceed at once.
    pool_size: int = Field(default=4, ge=1, le=64)


class MetricsSettings(_Model):
    """The Prometheus listener (``[metrics]``; ``serve --metrics-port``): off without a port."""

    port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback by default: the metrics name CAs and labels, and carry no authentication.
    host: str = "127.0.0.1"
    # How often the database gauges (CA expiry, CRL age, expiring leaves, pending
    # approvals) are re-read and each process's pool and OCSP-cache figures published.
    refresh_seconds: float = Field(default=15.0, gt=0, le=3600)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value


class LoggingSettings(_Model):
    """Log output (``[logging]``): ``format = "json"`` writes one JSON object per line."""

    format: Literal["text", "json"] = "text"


class Settings(_Model):
    """Everything ``privca serve`` and the CLI need."""

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    # PostgreSQL TLS, as libpq's sslmode/sslrootcert; the same parameters in
    # database_url win. Production: "verify-full" and the database CA's file.
    database_sslmode: str | None = None
    database_sslrootcert: Path | None = None
    host: str = "127.0.0.1"
    https_port: int = Field(default=8443, ge=0, le=65535)
    http_port: int = Field(default=8080, ge=0, le=65535)
    # Names (DNS or IP) the self-issued HTTPS certificate carries: what clients connect to.
    tls_names: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"], min_length=1
    )
    # An operator-provided certificate chain and key instead (both or neither; reloaded
    # by every serving process when replaced).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Base URL written into CDP/AIA of issued certificates; defaults to http://host:http_port.
    public_http_url: str | None = None
    key_passphrase_env: str = "PRIVCA_KEY_PASSPHRASE"  # noqa: S105 - an env var name
    key_passphrase_file: Path | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Slow clients, per listener (HTTPS and HTTP) and process: a request's head must be
    # complete this long after its first byte (or after the connection or TLS handshake
    # began), its body this long after the head; arriving bytes do not extend either.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Beyond this many open connections a listener answers 503 and closes.
    max_connections: int = Field(default=4096, ge=1, le=1_000_000)
    ca: CASettings = CASettings()
    operator: OperatorSettings = OperatorSettings()
    revocation: RevocationSettings = RevocationSettings()
    est: EstSettings = EstSettings()
    acme: AcmeConfig = AcmeConfig()
    pkcs11: Pkcs11Config | None = None
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()

    @field_validator("tls_names")
    @classmethod
    def _tls_names(cls, value: list[str]) -> list[str]:
        for name in value:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                labels = name.rstrip(".").split(".")
                if "*" in name or not all(
                    0 < len(label) < 64 and label.replace("-", "").isalnum() for label in labels
                ):
                    raise ValueError(f"{name!r} is neither a DNS name nor an IP address") from None
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        return self

    @field_validator("database_sslmode")
    @classmethod
    def _sslmode(cls, value: str | None) -> str | None:
        if value is not None and value not in pgtls.SSLMODES:
            raise ValueError(f"must be one of {', '.join(pgtls.SSLMODES)}")
        return value

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
        )


def status_settings(settings: Settings) -> status_api.StatusSettings:
    """Return the revocation services' settings.

    Raises:
        ConfigError: the refresh age is not below the OCSP validity, or the
            delegated signer would not outlive two response validities.
    """
    rev = settings.revocation
    validity = timedelta(hours=settings.ca.ocsp_validity_hours)
    refresh = timedelta(hours=rev.ocsp_refresh_hours)
    if refresh >= validity:
        raise ConfigError(
            "revocation.ocsp_refresh_hours must be below ca.ocsp_validity_hours "
            "(responses are re-signed before nextUpdate)"
        )
    lifetime = timedelta(days=rev.ocsp_signer_lifetime_days)
    if rev.ocsp_delegated_signer and lifetime < validity * 2:
        raise ConfigError(
            "revocation.ocsp_signer_lifetime_days must cover twice ca.ocsp_validity_hours"
        )
    return status_api.StatusSettings(
        ocsp=responder.ResponderSettings(
            validity=validity,
            refresh_after=refresh,
            nonce_echo=rev.ocsp_nonce_echo,
            delegated_signer=rev.ocsp_delegated_signer,
            signer_lifetime=lifetime,
            cache_entries=rev.ocsp_cache_entries,
            cache_bytes=rev.ocsp_cache_bytes,
            live_signatures_per_second=rev.ocsp_live_signatures_per_second,
        ),
        crl=crls.CrlSettings(
            validity=timedelta(hours=settings.ca.crl_validity_hours),
            debounce=timedelta(seconds=rev.crl_debounce_seconds),
        ),
        poll_interval=timedelta(seconds=rev.poll_seconds),
        offline_warn=timedelta(days=settings.ca.offline_warn_days),
        signer_retention=timedelta(hours=rev.ocsp_signer_retention_hours),
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
