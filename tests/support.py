"""Test helpers shared by the suites: fake clock, CSR factory, pkilint and openssl wrappers."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from pkilint import loader, report
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity
from sqlalchemy import event

from server.ca import api, keys, sealing
from server.ca.types import KeyAlgorithm
from server.store.database import Database

__all__ = [
    "MATTER_VECTORS",
    "FakeClock",
    "InjectedError",
    "SoftHsm",
    "failing_statements",
    "lint_errors",
    "make_csr",
    "openssl",
    "openssl_verify",
    "pem",
    "san",
]

TEST_PASSPHRASE = b"test-passphrase-0123456789"
# PBKDF2 rounds of test CA keys (production: server.ca.pkcs8.DEFAULT_ROUNDS).
TEST_KDF_ROUNDS = 1000
TEST_SEALER: Final = sealing.Sealer(TEST_PASSPHRASE)
# Fixed vectors live in tests/data (each folder has a README giving its origin).
MATTER_VECTORS: Final = Path(__file__).resolve().parent / "data" / "matter"


SOFTHSM_MODULES: Final = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True, slots=True)
class SoftHsm:
    """The session's SoftHSM2 token (``softhsm`` fixture)."""

    module: str
    label: str
    pin: str
    tokens: Path


class FakeClock:
    """A clock tests advance by hand (never sleep)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def san(value: str) -> x509.GeneralName:
    """Return a GeneralName from ``dns:x``, ``ip:x``, ``uri:x`` or ``email:x``."""
    kind, _, rest = value.partition(":")
    if kind == "ip":
        return x509.IPAddress(ipaddress.ip_address(rest))
    if kind == "uri":
        return x509.UniformResourceIdentifier(rest)
    if kind == "email":
        return x509.RFC822Name(rest)
    return x509.DNSName(rest)


def make_csr(
    names: Sequence[str] = ("dns:host.internal",),
    *,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    alg: KeyAlgorithm = KeyAlgorithm.EC_P256,
    subject: str | None = None,
) -> tuple[bytes, CertificateIssuerPrivateKeyTypes]:
    """Return a PEM CSR and its key."""
    key = key or keys.generate_private_key(alg)
    attrs = [] if subject is None else [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([san(n) for n in names]), critical=False
        )
    sig_hash: Any = keys.signature_hash(key)
    csr = builder.sign(key, sig_hash)
    return csr.public_bytes(serialization.Encoding.PEM), key


def pem(*certs: x509.Certificate) -> bytes:
    """Return certificates as concatenated PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def external_ca_chain(csr_der: bytes, *, now: datetime | None = None) -> bytes:
    """Sign a CA's CSR under a fresh root privca never saw; return PEM: the CA, then the root.

    What an external signer (an offline corporate root, another PKI) sends back for an
    imported CA: built here with cryptography, not with privca's engine.
    """
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "External Root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Elsewhere Inc"),
        ]
    )
    root = _external_ca(
        root_name, root_key.public_key(), root_name, root_key, start, days=3650, path_length=1
    )
    csr = x509.load_der_x509_csr(csr_der)
    ca = _external_ca(
        csr.subject, csr.public_key(), root, root_key, start, days=1825, path_length=0
    )
    return pem(ca, root)


def _external_ca(
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name | x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    start: datetime,
    *,
    days: int,
    path_length: int,
) -> x509.Certificate:
    """Return a CA certificate signed by ``issuer`` (a certificate, or a root's own name)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if isinstance(issuer, x509.Certificate) else issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if isinstance(issuer, x509.Certificate):
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


_CA_USAGE: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


_VALIDATOR = certificate.create_pkix_certificate_validator_container(
    certificate.create_decoding_validators(
        name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
    ),
    [
        certificate.create_issuer_validator_container([]),
        certificate.create_validity_validator_container(),
        certificate.create_subject_validator_container([]),
        certificate.create_extensions_validator_container([]),
        certificate.create_spki_validator_container([]),
    ],
)


def lint_errors(cert: x509.Certificate) -> list[str]:
    """Return pkilint's RFC 5280 findings of severity ERROR or worse (lint_pkix_cert)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "cert")
    results = _VALIDATOR.validate(doc.root)
    out = []
    for result in results:
        for finding in result.finding_descriptions:
            if finding.finding.severity <= ValidationFindingSeverity.ERROR:
                out.append(f"{result.node.path}: {finding.finding.code} {finding.message or ''}")
    assert report.get_findings_count(results, ValidationFindingSeverity.ERROR) == len(out)
    return out


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the openssl CLI and return the completed process (never raises on failure)."""
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def openssl_verify(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    *,
    extra: Sequence[str] = (),
    crls: Sequence[bytes] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``openssl verify`` with ``chain[-1]`` as the trust anchor."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "root.pem").write_bytes(pem(chain[-1]))
        (d / "untrusted.pem").write_bytes(pem(*chain[:-1]) if len(chain) > 1 else b"")
        (d / "leaf.pem").write_bytes(pem(leaf))
        args = ["verify", "-x509_strict", "-CAfile", str(d / "root.pem")]
        if len(chain) > 1:
            args += ["-untrusted", str(d / "untrusted.pem")]
        for i, crl in enumerate(crls):
            (d / f"crl{i}.der").write_bytes(crl)
            out = openssl(
                "crl",
                "-inform",
                "DER",
                "-in",
                str(d / f"crl{i}.der"),
                "-out",
                str(d / f"crl{i}.pem"),
            )
            assert out.returncode == 0, out.stderr
            args += ["-CRLfile", str(d / f"crl{i}.pem")]
        args += [*extra, str(d / "leaf.pem")]
        return openssl(*args)


def sha1(data: bytes) -> bytes:
    """Return SHA-1 of data (for CertIDs in tests)."""
    h = hashes.Hash(hashes.SHA1())  # noqa: S303 - OCSP CertID
    h.update(data)
    return h.finalize()


class AuditTrail:
    """The audit records an engine appended since the last look, as
    (actor, action, target, source)."""

    def __init__(self, engine: api.CAEngine) -> None:
        self._engine = engine
        self._seq = 0
        self.details: list[dict[str, str]] = []  # of the records ``new`` returned last

    async def new(self) -> list[tuple[str, str, str, str]]:
        found = [e async for e in self._engine.audit_records(after_seq=self._seq)]
        if found:
            self._seq = found[-1].seq or self._seq
        self.details = [e.detail for e in found]
        return [(e.actor, e.action, e.target, e.source) for e in found]


class InjectedError(Exception):
    """The failure a test put into one SQL statement."""


@contextlib.contextmanager
def failing_statements(db: Database, prefix: str) -> Iterator[None]:
    """Make every statement of ``db`` starting with ``prefix`` raise ``InjectedError``."""

    def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix):
            raise InjectedError(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", fail)
