"""CA hierarchy: creating roots and subordinates, importing externally signed CAs.

Builds the CA key and certificate, checks the hierarchy rules (tiers, path lengths,
subjects, import verification), and hands the result to ``CAEngine`` to store and
audit. ``CAEngine.create_root`` and friends are thin calls into this module.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from server.ca import issuance
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import (
    CA,
    CAId,
    CAKind,
    CAMode,
    CAStatus,
    KeyAlgorithm,
    KeyHandle,
    Principal,
)

if TYPE_CHECKING:
    from server.ca.api import CAEngine

__all__ = [
    "MAX_TIERS",
    "activate_import",
    "ca_subject",
    "child_path_length",
    "create_import_request",
    "create_root",
    "create_subordinate",
    "load_pem_chain",
    "new_active_ca",
    "new_ca_id",
    "path_length_of",
    "permitted_subtrees",
    "verify_import",
]

MAX_TIERS: Final = 5
_CA_BACKDATE: Final = timedelta(minutes=5)
# A dNSName subtree (RFC 5280 §4.2.1.10): LDH labels (A-labels for IDNs), optionally with a
# leading dot as some implementations write it.
_DNS_SUBTREE: Final = re.compile(
    r"^\.?(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$"
)


def new_ca_id() -> CAId:
    """Return a fresh random CA id (12 hex digits)."""
    return CAId(secrets.token_hex(6))


def ca_subject(name: str, organization: str | None) -> x509.Name:
    """Return the default subject for a CA named ``name``."""
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    return x509.Name(attrs)


def path_length_of(cert: x509.Certificate) -> int | None:
    """Return a CA certificate's pathLenConstraint (None: unconstrained)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def child_path_length(
    *, child_tier: int, parent_path_length: int | None, requested: int | None
) -> int:
    """Return the pathLenConstraint for a new CA at ``child_tier`` (1 = root).

    The tier caps the depth: a CA at tier t may have at most MAX_TIERS - t CAs below it.

    Raises:
        EngineError: POLICY when the tier or the parent's constraint forbids the CA.
    """
    if child_tier > MAX_TIERS:
        raise EngineError(
            ProblemKind.POLICY,
            f"a CA hierarchy has at most {MAX_TIERS} tiers (root, three intermediates, issuing); "
            f"this CA would be tier {child_tier}",
        )
    if parent_path_length is not None and parent_path_length < 1:
        raise EngineError(
            ProblemKind.POLICY,
            "the parent CA's pathLenConstraint is 0: it may issue only end-entity certificates",
        )
    allowed = MAX_TIERS - child_tier
    if parent_path_length is not None:
        allowed = min(allowed, parent_path_length - 1)
    if requested is None:
        return allowed
    if requested < 0 or requested > allowed:
        raise EngineError(
            ProblemKind.POLICY, f"pathLenConstraint {requested} not allowed here (0..{allowed})"
        )
    return requested


def permitted_subtrees(dns: Sequence[str], networks: Sequence[str]) -> x509.NameConstraints | None:
    """Return NameConstraints permitting ``dns`` subtrees and IP ``networks`` (None: neither).

    Raises:
        EngineError: MALFORMED for a value that is no DNS name or no IP network (CIDR,
            host bits clear).
    """
    permitted: list[x509.GeneralName] = []
    for name in dns:
        if len(name) > 253 or not _DNS_SUBTREE.match(name):
            raise EngineError(ProblemKind.MALFORMED, f"{name!r} is not a DNS name constraint")
        permitted.append(x509.DNSName(name))
    for net in networks:
        try:
            permitted.append(x509.IPAddress(ipaddress.ip_network(net)))
        except ValueError as exc:
            raise EngineError(
                ProblemKind.MALFORMED, f"{net!r} is not an IP network constraint (CIDR)"
            ) from exc
    if not permitted:
        return None
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Parse one or more PEM (or a single DER) certificates.

    Raises:
        EngineError: MALFORMED when nothing parses.
    """
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise EngineError(ProblemKind.MALFORMED, "not a PEM or DER certificate") from exc
    if not certs:
        raise EngineError(ProblemKind.MALFORMED, "no certificate found")
    return certs


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_signed_by(child: x509.Certificate, parent: x509.Certificate) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise EngineError(
            ProblemKind.MALFORMED,
            f"{child.subject.rfc4514_string()} is not signed by {parent.subject.rfc4514_string()}",
        ) from exc


def verify_import(
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    *,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
) -> None:
    """Verify an externally signed CA certificate before activation.

    ``chain`` runs from the issuer of ``cert`` up to a self-signed root.

    Raises:
        EngineError: MALFORMED naming the first failed check (key match, CA flag,
            validity, signature, incomplete chain).
    """
    if _spki(cert.public_key()) != _spki(public_key):
        raise EngineError(ProblemKind.MALFORMED, "the certificate is not for this CA's key")
    if not chain:
        raise EngineError(
            ProblemKind.MALFORMED,
            "the issuer chain up to the root is missing (append it to the PEM)",
        )
    path = [cert, *chain]
    for i, c in enumerate(path):
        label = c.subject.rfc4514_string()
        if not _is_ca(c):
            raise EngineError(ProblemKind.MALFORMED, f"{label} is not a CA (basicConstraints cA)")
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise EngineError(ProblemKind.MALFORMED, f"{label} is not within its validity period")
        if i + 1 < len(path):
            _check_signed_by(c, path[i + 1])
            # path[i + 1] has path[0..i] below it: i + 1 CA certificates, the
            # imported one included, since it will sign leaves (RFC 5280 §4.2.1.9).
            limit = path_length_of(path[i + 1])
            if limit is not None and limit <= i:
                raise EngineError(
                    ProblemKind.MALFORMED,
                    f"{path[i + 1].subject.rfc4514_string()} pathLenConstraint forbids this chain",
                )
    root = path[-1]
    if root.issuer != root.subject:
        raise EngineError(ProblemKind.MALFORMED, "the chain does not end in a self-signed root")
    _check_signed_by(root, root)


def new_active_ca(
    name: str,
    *,
    parent: CA | None,
    key_algorithm: KeyAlgorithm,
    key: KeyHandle,
    cert: x509.Certificate,
    created_at: datetime,
    mode: CAMode = CAMode.GENERAL,
    kind: CAKind = CAKind.GENERAL,
    allowed_dns_suffixes: tuple[str, ...] = (),
    allowed_ip_networks: tuple[str, ...] = (),
    publish_revocation: bool = True,
) -> CA:
    """Return a new ACTIVE CA record for ``cert``: a root, or one tier below ``parent``."""
    return CA(
        id=new_ca_id(),
        name=name,
        parent_id=parent.id if parent is not None else None,
        tier=parent.tier + 1 if parent is not None else 1,
        key_algorithm=key_algorithm,
        key=key,
        status=CAStatus.ACTIVE,
        mode=mode,
        kind=kind,
        created_at=created_at,
        cert_der=cert.public_bytes(serialization.Encoding.DER),
        chain_der=(parent.cert_der or b"", *parent.chain_der) if parent is not None else (),
        allowed_dns_suffixes=allowed_dns_suffixes,
        allowed_ip_networks=allowed_ip_networks,
        publish_revocation=publish_revocation,
    )


async def _new_signed_ca(
    engine: CAEngine,
    name: str,
    *,
    parent: tuple[CA, issuance.Issuer] | None,
    key_algorithm: KeyAlgorithm,
    key_backend: str | None,
    subject: x509.Name | None,
    lifetime: timedelta,
    path_length: int,
    name_constraints: x509.NameConstraints | None,
    mode: CAMode,
    kind: CAKind = CAKind.GENERAL,
) -> tuple[CA, x509.Certificate]:
    """Make a CA key and certify it: self-signed without ``parent``, else within its validity.

    Returns the new ACTIVE CA record (not stored yet) and its certificate.
    """
    handle, signer = await engine.new_key(key_algorithm, label=name, key_backend=key_backend)
    now = engine.now().replace(microsecond=0)
    issuer = parent[1] if parent is not None else None
    cert = issuance.build_ca_certificate(
        subject=subject or ca_subject(name, engine.settings.organization),
        public_key=signer.public_key(),
        issuer=issuer,
        self_key=signer if issuer is None else None,
        not_before=now - _CA_BACKDATE,
        not_after=now + lifetime if issuer is None else min(now + lifetime, issuer.not_after),
        serial=engine.new_serial(),
        path_length=path_length,
        name_constraints=name_constraints,
    )
    ca = new_active_ca(
        name,
        parent=parent[0] if parent is not None else None,
        key_algorithm=key_algorithm,
        key=handle,
        cert=cert,
        created_at=now,
        mode=mode,
        kind=kind,
    )
    return ca, cert


def _check_ip_networks(networks: Sequence[str]) -> None:
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise EngineError(ProblemKind.MALFORMED, f"{net!r} is not an IP network") from exc


async def create_root(
    engine: CAEngine,
    name: str,
    *,
    actor: Principal,
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    subject: x509.Name | None = None,
    lifetime: timedelta | None = None,
    path_length: int | None = None,
    mode: CAMode = CAMode.GENERAL,
    name_constraints: x509.NameConstraints | None = None,
    key_backend: str | None = None,
    kind: CAKind = CAKind.GENERAL,
) -> CA:
    """Create a self-signed root CA (tier 1).

    ``kind`` ADMIN makes the internal admin CA (``server/ca/admin/certs.py``).

    Raises:
        EngineError: CONFLICT (name taken), MALFORMED (bad name), POLICY (path length).
    """
    await engine.check_ca_name(name)
    plen = child_path_length(child_tier=1, parent_path_length=None, requested=path_length)
    ca, cert = await _new_signed_ca(
        engine,
        name,
        parent=None,
        key_algorithm=key_algorithm,
        key_backend=key_backend,
        subject=subject,
        lifetime=lifetime or engine.settings.root_lifetime,
        path_length=plen,
        name_constraints=name_constraints,
        mode=mode,
        kind=kind,
    )
    await engine.store_ca(ca, cert=cert, issuer=None, actor=actor, action="ca.create-root")
    return ca


async def create_subordinate(
    engine: CAEngine,
    name: str,
    *,
    parent: str,
    actor: Principal,
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    subject: x509.Name | None = None,
    lifetime: timedelta | None = None,
    path_length: int | None = None,
    mode: CAMode = CAMode.GENERAL,
    name_constraints: x509.NameConstraints | None = None,
    dns_suffixes: Sequence[str] = (),
    ip_networks: Sequence[str] = (),
    publish_revocation: bool | None = None,
    key_backend: str | None = None,
) -> CA:
    """Create a CA signed by ``parent`` (tiers 2..5).

    Raises:
        EngineError: NOT_FOUND (parent), CONFLICT (name), POLICY (sixth tier,
            parent path length, parent not active).
    """
    parent_ca = await engine.get_ca(parent)
    if parent_ca.kind is CAKind.ADMIN:
        raise EngineError(
            ProblemKind.POLICY, f"CA {parent_ca.name} is the admin CA: it has no subordinates"
        )
    parent_issuer = await engine.ca_issuer(parent_ca)
    await engine.check_ca_name(name)
    plen = child_path_length(
        child_tier=parent_ca.tier + 1,
        parent_path_length=path_length_of(parent_issuer.certificate),
        requested=path_length,
    )
    _check_ip_networks(ip_networks)
    ca, cert = await _new_signed_ca(
        engine,
        name,
        parent=(parent_ca, parent_issuer),
        key_algorithm=key_algorithm,
        key_backend=key_backend,
        subject=subject,
        lifetime=lifetime or engine.settings.sub_lifetime,
        path_length=plen,
        name_constraints=name_constraints,
        mode=mode,
    )
    ca = replace(
        ca,
        allowed_dns_suffixes=tuple(dns_suffixes),
        allowed_ip_networks=tuple(ip_networks),
        publish_revocation=(
            publish_revocation if publish_revocation is not None else mode is CAMode.GENERAL
        ),
    )
    await engine.store_ca(
        ca,
        cert=cert,
        issuer=parent_ca,
        actor=actor,
        action="ca.create-sub",
        parent=parent_ca.name,
    )
    return ca


async def create_import_request(
    engine: CAEngine,
    name: str,
    *,
    actor: Principal,
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    subject: x509.Name | None = None,
    mode: CAMode = CAMode.GENERAL,
    key_backend: str | None = None,
) -> CA:
    """Create a CA key and CSR for signing by an external CA; the CA stays PENDING.

    Raises:
        EngineError: CONFLICT (name taken), MALFORMED (bad name).
    """
    await engine.check_ca_name(name)
    handle, signer = await engine.new_key(key_algorithm, label=name, key_backend=key_backend)
    csr = signer.sign_csr(
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject or ca_subject(name, engine.settings.organization))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    ca = CA(
        id=new_ca_id(),
        name=name,
        parent_id=None,
        tier=0,
        key_algorithm=key_algorithm,
        key=handle,
        status=CAStatus.PENDING,
        mode=mode,
        kind=CAKind.GENERAL,
        created_at=engine.now(),
        csr_der=csr.public_bytes(serialization.Encoding.DER),
        external=True,
    )
    await engine.store_ca(ca, cert=None, issuer=None, actor=actor, action="ca.import-csr")
    return ca


async def activate_import(engine: CAEngine, name: str, *, pem: bytes, actor: Principal) -> CA:
    """Activate a PENDING CA with its externally signed certificate and chain.

    ``pem`` holds the CA certificate first, then its issuers up to the root.

    Raises:
        EngineError: NOT_FOUND, CONFLICT (not pending), MALFORMED (failed checks).
    """
    ca = await engine.get_ca(name)
    if ca.status is not CAStatus.PENDING or ca.csr_der is None:
        raise EngineError(ProblemKind.CONFLICT, f"CA {name} is not waiting for a certificate")
    cert, *chain = load_pem_chain(pem)
    csr = x509.load_der_x509_csr(ca.csr_der)
    verify_import(cert, chain, public_key=csr.public_key(), now=engine.now())
    tier = len(chain) + 1
    if tier > MAX_TIERS:
        raise EngineError(
            ProblemKind.POLICY, f"the imported CA would be tier {tier}; at most {MAX_TIERS}"
        )
    active = replace(
        ca,
        status=CAStatus.ACTIVE,
        tier=tier,
        cert_der=cert.public_bytes(serialization.Encoding.DER),
        chain_der=tuple(c.public_bytes(serialization.Encoding.DER) for c in chain),
    )
    await engine.replace_ca(
        ca,
        active,
        actor=actor,
        action="ca.import-activate",
        target=name,
        issuer=cert.issuer.rfc4514_string(),
    )
    return active
