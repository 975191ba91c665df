"""Wiring: open storage, build the engine and the protocol services, first-start setup.

The one place that puts storage, ``CAEngine`` and the services over it together:
``serve`` (``server/app.py``), the CLI (``server/cli/``) and the benches call it.
First start on an empty data dir creates the root and issuing CA, a TLS
certificate for the HTTPS listener and ``ca-bundle.pem``; later starts reuse them.
Builds no aiohttp app (that is ``server/app.py``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from protocols.acme import network
from server import private_files
from server.ca import api, custody, grants, hsm, keys, pkcs8, sealing
from server.ca.acme import api as acme_api
from server.ca.admin import api as admin_api
from server.ca.est import api as est_api
from server.ca.status import api as status_api
from server.ca.types import KeyAlgorithm, Principal
from server.config import ConfigError, Pkcs11Config, Settings, status_settings
from server.store.acme_repository import SqlAcmeRepository
from server.store.admin_repository import SqlAdminRepository
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from server.store.repository import SqlRepository
from server.store.status_repository import SqlStatusRepository

__all__ = [
    "Services",
    "TlsFiles",
    "build_acme_directories",
    "build_acme_service",
    "build_admin_service",
    "build_est_service",
    "ensure_first_start",
    "listener_files",
    "listener_grant",
    "listener_names",
    "load_passphrase",
    "open_services",
    "pkcs11_backend",
    "read_pkcs11_pin",
    "renew_tls",
    "validation_permit",
]

log = logging.getLogger(__name__)

SYSTEM: Final = Principal("system", "privca")
_TLS_LIFETIME: Final = timedelta(days=90)
# Renewed once less than this share of its life is left (2/3 of it used).
_TLS_RENEW_LEFT: Final = 1 / 3
_HTTP_URL_KEY: Final = "public_http_url"
# systemd: `LoadCredential=privca-passphrase:/etc/privca/ca-key.passphrase` puts it here.
CREDENTIAL_NAME: Final = "privca-passphrase"
# PBKDF2 rounds of the CA keys this process writes (and re-wraps weaker ones to);
# the test suite lowers it, nothing else does.
KDF_ROUNDS = pkcs8.DEFAULT_ROUNDS


@dataclass(frozen=True, slots=True)
class Services:
    """What a running privca process holds."""

    settings: Settings
    db: Database
    repo: SqlRepository
    engine: api.CAEngine
    # Seals the server secrets kept in the database (EAB HMAC keys, nonce MAC key).
    sealer: sealing.Sealer
    # OCSP/CRL services; attached to the engine so every process pre-signs on issue/revoke.
    status: status_api.StatusService | None = None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The HTTPS listener's certificate chain and key on disk."""

    cert: Path
    key: Path
    bundle: Path
    # False: the operator's tls_cert_file/tls_key_file, never issued nor renewed here.
    managed: bool = True


def load_passphrase(settings: Settings, *, create: bool) -> bytes:
    """Return the CA key passphrase: env var, systemd credential, then passphrase file.

    With ``create`` a missing file is made with a random passphrase (mode 0600).

    Raises:
        ConfigError: no passphrase available.
    """
    from_env = os.environ.get(settings.key_passphrase_env)
    if from_env:
        return from_env.encode()
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        return (Path(credentials) / CREDENTIAL_NAME).read_bytes().strip()
    path = settings.passphrase_file
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise ConfigError(
            f"no CA key passphrase: set {settings.key_passphrase_env} or create {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    log.info("created CA key passphrase file %s (mode 0600)", path)
    return path.read_bytes().strip()


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, *, create: bool = False, serving: bool = False
) -> AsyncIterator[Services]:
    """Open the database (migrating it) and build the engine; close on exit.

    ``create`` allows an empty data dir; ``serving`` records this node's public URL.
    """
    database = settings.data_dir / "privca.db"
    if settings.database_url is None and not create and not database.exists():
        raise ConfigError(f"no privca database in {settings.data_dir} (run `privca serve` first)")
    if create or settings.data_dir.exists():
        # It holds the TLS key, maybe the passphrase file and the SQLite database.
        private_files.ensure_private_dir(settings.data_dir)
    if settings.database_url is None:
        private_files.secure_sqlite_files(database)
    try:
        db = Database(
            settings.db_url,
            sslmode=settings.database_sslmode,
            sslrootcert=settings.database_sslrootcert,
        )
    except ValueError as exc:
        raise ConfigError(f"database TLS: {exc}") from exc
    try:
        await db.migrate()
        repo = SqlRepository(db)
        settings = await _shared_http_url(repo, settings, serving=serving)
        passphrase = load_passphrase(settings, create=create)
        software = keys.Pkcs8KeyBackend(passphrase, kdf_rounds=KDF_ROUNDS)
        sealer = sealing.Sealer(passphrase)
        resealed = await SqlAcmeRepository(db, sealer).seal_stored_secrets()
        if resealed:
            log.info("sealed %d server secrets stored in plain text", resealed)
        token = pkcs11_backend(settings.pkcs11)
        carried = custody.CarriedKeys(software)
        backend = keys.KeyBackends(software, carried, *([token] if token else []))
        engine = api.CAEngine(repo, backend, settings=settings.engine_settings())
        status = status_api.StatusService(
            engine, repo, SqlStatusRepository(db), settings=status_settings(settings)
        ).attach()
        try:
            yield Services(
                settings=settings,
                db=db,
                repo=repo,
                engine=engine,
                sealer=sealer,
                status=status,
            )
        finally:
            if token is not None:
                token.close()
    finally:
        await db.close()


def read_pkcs11_pin(config: Pkcs11Config) -> str:
    """Return the token PIN from ``config.pin_env`` or ``config.pin_file`` (mode 0600).

    Read again whenever the token sessions are reopened, so a corrected PIN file takes
    effect without a restart.

    Raises:
        ValueError: no PIN configured, or the file is readable by group or others.
        OSError: the file cannot be read.
    """
    from_env = os.environ.get(config.pin_env)
    if from_env:
        return from_env
    if config.pin_file is None:
        raise ValueError(f"set {config.pin_env} or [pkcs11] pin_file")
    fd = os.open(config.pin_file, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode & 0o777
        if mode & 0o077:
            raise ValueError(f"{config.pin_file} must be mode 0600 (it is {mode:04o})")
        return fh.read().decode().strip()


def pkcs11_backend(config: Pkcs11Config | None) -> hsm.Pkcs11KeyBackend | None:
    """Return the PKCS#11 key backend of ``[pkcs11]`` (None without one); no token I/O yet.

    Raises:
        ConfigError: no usable PIN source (checked now so a bad setup stops startup).
    """
    if config is None:
        return None
    try:
        read_pkcs11_pin(config)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[pkcs11] PIN: {exc}") from exc
    pool = hsm.SessionPool(
        hsm.TokenSettings(
            module=str(config.module), token_label=config.token_label, pool_size=config.pool_size
        ),
        lambda: read_pkcs11_pin(config),
    )
    return hsm.Pkcs11KeyBackend(pool)


def build_acme_service(
    services: Services,
    *,
    ports: acme_api.ValidationPorts | None = None,
    repo: SqlAcmeRepository | None = None,
    queue: acme_api.ValidationQueue | None = None,
) -> acme_api.AcmeService:
    """Return the ACME state machine over this process's engine and database."""
    acme = services.settings.acme
    return acme_api.AcmeService(
        services.engine,
        repo or SqlAcmeRepository(services.db, services.sealer),
        ports=ports or network.default_ports(acme.dns_resolver, permit=validation_permit(services)),
        settings=acme.to_engine(),
        queue=queue,
    )


def build_acme_directories(
    services: Services,
    *,
    ports: acme_api.ValidationPorts | None = None,
    repo: SqlAcmeRepository | None = None,
    queue: acme_api.ValidationQueue | None = None,
) -> acme_api.Directories:
    """Return the named ACME directories (config file, then stored) over the same parts."""
    acme = services.settings.acme
    return acme_api.Directories(
        services.engine,
        repo or SqlAcmeRepository(services.db, services.sealer),
        ports=ports or network.default_ports(acme.dns_resolver, permit=validation_permit(services)),
        settings=acme.to_engine(),
        config=acme.to_directories(),
        queue=queue,
    )


def validation_permit(services: Services) -> network.Permit:
    """Return the configured check every ACME validation connection passes (SSRF)."""
    checks = services.settings.acme.to_engine().validation

    def permit(address: str) -> bool:
        return acme_api.target_permitted(address, checks)

    return permit


def build_est_service(services: Services) -> est_api.EstService:
    """Return the EST facade over the engine and the EST tables (config labels included)."""
    return est_api.EstService(
        services.engine,
        SqlEstRepository(services.db),
        config_labels=services.settings.est.to_labels(),
        retry_after=services.settings.est.retry_after_seconds,
        login_limits=services.settings.est.to_login_limits(),
    )


def build_admin_service(
    services: Services, *, est: est_api.EstService | None = None
) -> admin_api.AdminService:
    """Return the admin API facade over the engine, the admin tables, the CRL publisher
    and the EST and ACME management services (``est``: the one ``serve`` already runs)."""
    return admin_api.AdminService(
        services.engine,
        SqlAdminRepository(services.db),
        admin_ca=services.settings.ca.admin_name,
        base_grant=services.settings.operator.to_grant(),
        crls=services.status,
        est=est or build_est_service(services),
        acme_directories=build_acme_directories(services),
        eab=build_acme_service(services).accounts,
    )


async def _shared_http_url(repo: SqlRepository, settings: Settings, *, serving: bool) -> Settings:
    """Make the CLI and every node write the same CDP/AIA URLs as ``serve``.

    ``serve`` records its public HTTP URL; other commands reuse it unless the
    configuration names one explicitly.
    """
    stored = await repo.get_meta(_HTTP_URL_KEY)
    if serving:
        if stored != settings.http_base_url:
            await repo.set_meta(_HTTP_URL_KEY, settings.http_base_url)
        return settings
    if stored and settings.public_http_url is None:
        return settings.model_copy(update={"public_http_url": stored})
    return settings


async def ensure_first_start(services: Services) -> TlsFiles:
    """Create the default hierarchy and TLS files when missing; return the TLS paths."""
    settings = services.settings
    engine = services.engine
    if await engine.find_ca(settings.ca.issuing_name) is None:
        if await engine.find_ca(settings.ca.root_name) is None:
            log.info("first start: creating root CA %r", settings.ca.root_name)
            await engine.create_root(
                settings.ca.root_name, actor=SYSTEM, key_algorithm=settings.ca.key_algorithm
            )
        log.info("first start: creating issuing CA %r", settings.ca.issuing_name)
        await engine.create_subordinate(
            settings.ca.issuing_name,
            parent=settings.ca.root_name,
            actor=SYSTEM,
            key_algorithm=settings.ca.key_algorithm,
            path_length=0,
        )
    # A separate root for admin API client certificates: no ACME/EST issuance, no EST login.
    await build_admin_service(services).ensure_admin_ca(
        actor=SYSTEM, key_algorithm=settings.ca.key_algorithm
    )
    issuing = await engine.get_ca(settings.ca.issuing_name)
    chain = await engine.chain_of(issuing)
    data = settings.data_dir
    private_files.ensure_private_dir(data)
    bundle = data / "ca-bundle.pem"
    private_files.write_private(
        bundle, chain[-1].public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    files = listener_files(settings)
    if files.managed:
        await renew_tls(engine, files, names=settings.tls_names)
    return files


def listener_files(settings: Settings) -> TlsFiles:
    """Return where the HTTPS listener's certificate and key are (operator's or privca's)."""
    bundle = settings.data_dir / "ca-bundle.pem"
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        return TlsFiles(
            cert=settings.tls_cert_file, key=settings.tls_key_file, bundle=bundle, managed=False
        )
    tls_dir = settings.data_dir / "tls"
    return TlsFiles(cert=tls_dir / "server.pem", key=tls_dir / "server.key", bundle=bundle)


async def renew_tls(engine: api.CAEngine, files: TlsFiles, *, names: Sequence[str]) -> bool:
    """Issue the listener's certificate if missing, 2/3 through its life, for other names,
    or under another root; return True when a new one was written.

    Raises:
        EngineError: issuance refused (the issuing CA disabled or expired).
    """
    issuing = await engine.get_ca(engine.settings.default_ca)
    root = (await engine.chain_of(issuing))[-1]
    if _tls_still_good(files, root, names=names, now=engine.now()):
        return False
    await _issue_tls(engine, files, names)
    return True


def listener_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """Return ``tls_names`` as subjectAltName entries (IP addresses and DNS names)."""
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def listener_grant(names: Sequence[str]) -> grants.Grant:
    """Return what the server may issue itself for its HTTPS listener: its own names only."""
    general = listener_names(names)
    return grants.Grant(
        cas=frozenset({grants.ANY}),
        profiles=frozenset({"tls-server"}),
        dns_suffixes=tuple(g.value for g in general if isinstance(g, x509.DNSName)),
        ip_ranges=tuple(
            ipaddress.ip_network(g.value) for g in general if isinstance(g, x509.IPAddress)
        ),
    )


def _tls_still_good(
    files: TlsFiles, root: x509.Certificate, *, names: Sequence[str], now: datetime
) -> bool:
    if not files.cert.exists() or not files.key.exists():
        return False
    try:
        certs = x509.load_pem_x509_certificates(files.cert.read_bytes())
        san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    leaf = certs[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    left = leaf.not_valid_after_utc - now
    same_root = len(certs) >= 2 and certs[-1].issuer == root.subject
    same_names = set(san) == set(listener_names(names))
    return same_root and same_names and left > lifetime * _TLS_RENEW_LEFT


async def _issue_tls(engine: api.CAEngine, files: TlsFiles, names: Sequence[str]) -> None:
    issued = await engine.issue_with_generated_key(
        principal=SYSTEM,
        grant=listener_grant(names),
        profile="tls-server",
        key_algorithm=KeyAlgorithm.EC_P256,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
        names=listener_names(names),
        lifetime=_TLS_LIFETIME,
    )
    private_files.ensure_private_dir(files.cert.parent)
    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (issued.certificate, *issued.chain[:-1])
    )
    # Key first: a reader that sees the new certificate finds its key already there
    # (serving processes only load a pair that matches: server.tls_listener).
    private_files.write_private(files.key, issued.private_key_pem or b"")
    private_files.write_private(files.cert, pem, mode=0o644)
    log.info(
        "issued HTTPS listener certificate for %s (until %s)",
        ", ".join(names),
        issued.certificate.not_valid_after_utc.isoformat(),
    )
