"""Matter PKI service: PAA/PAI/RCAC/ICAC CAs and DAC/NOC issuance over the CA engine.

Owns the Matter CA kinds' life cycle (created with ``server.ca.matter.profiles``, stored
through ``CAEngine`` like every CA, with their VID/PID and fabric ids derived from the
certificate), DAC issuance (one from a CSR, or in bulk from generated keys or CSRs)
and NOC issuance from a NOCSR. ``CAEngine.issue(csr, profile="matter-dac"|"matter-noc")``
dispatches here, so any front end (EST labels, the CLI) issues Matter leaves through
the ordinary issue path. ``MatterError`` becomes ``EngineError`` here, with the rule
slug first in the detail. Must not import aiohttp, josepy or sqlalchemy.

Serials: 64 bits from the CSPRNG with bit 64 set (a 65-bit positive INTEGER, 9 octets).
That meets the Matter CP's ">= 64 bits of entropy" exactly and keeps the worst-case NOC
(3 CATs, an ICAC issuer carrying a fabric id, UTCTime notAfter) at 599 bytes of DER,
under the 600-byte limit; the engine's 127-bit serials would not fit. NOCs therefore
get a real expiry by default (one year, capped by the issuer) rather than 9999.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

from server.ca import api, grants, issuance
from server.ca.errors import EngineError, ProblemKind
from server.ca.matter import oids, profiles, rules
from server.ca.matter.errors import MatterError, Rule
from server.ca.matter.rules import MatterKind
from server.ca.signer import Signer
from server.ca.types import (
    CA,
    CAKind,
    CertificateRecord,
    IssuedCertificate,
    KeyAlgorithm,
    KeyHandle,
    Principal,
)

__all__ = [
    "DAC_PROFILE",
    "MATTER_PROFILES",
    "NOC_PROFILE",
    "DeviceCredential",
    "MatterCAInfo",
    "MatterRequest",
    "MatterService",
    "info_of",
    "issue_matter",
    "matter_serial",
    "parse_hex_id",
]

DAC_PROFILE: Final = "matter-dac"
NOC_PROFILE: Final = "matter-noc"
MATTER_PROFILES: Final = frozenset({DAC_PROFILE, NOC_PROFILE})

_CA_BACKDATE: Final = timedelta(minutes=5)
_LEAF_BACKDATE: Final = timedelta(seconds=60)
_OPERATIONAL_CA_LIFETIME: Final = timedelta(days=3650)
_NOC_LIFETIME: Final = timedelta(days=365)
_MAX_NODE_ID: Final = 0xFFFF_FFEF_FFFF_FFFF
_MAX_VID: Final = 0xFFF4
_BATCH: Final = 500
_SERIAL_ATTEMPTS: Final = 5

# Rules a requester breaks with its key; everything about scoping is a policy refusal.
_KEY_RULES: Final = frozenset({Rule.CURVE})
_POLICY_RULES: Final = frozenset(
    {
        Rule.CHAIN_VID_MISMATCH,
        Rule.CHAIN_PID_MISMATCH,
        Rule.CHAIN_FABRIC_MISMATCH,
        Rule.CHAIN_DEPTH,
        Rule.CHAIN_ISSUER_KIND,
        Rule.CHAIN_PATHLEN,
        Rule.CHAIN_VALIDITY,
        Rule.PAI_VID_REQUIRED,
    }
)

_KIND_OF: Final = {
    CAKind.MATTER_PAA: MatterKind.PAA,
    CAKind.MATTER_PAI: MatterKind.PAI,
    CAKind.MATTER_RCAC: MatterKind.RCAC,
    CAKind.MATTER_ICAC: MatterKind.ICAC,
}


def matter_serial() -> int:
    """Return a 65-bit positive serial carrying 64 bits from the CSPRNG (9 DER octets)."""
    return secrets.randbits(64) | (1 << 64)


def parse_hex_id(text: str, *, digits: int, what: str) -> int:
    """Parse a Matter id given in hex (``FFF1``, ``0x8000``, ``FAB000000000001D``).

    Raises:
        EngineError: MALFORMED when it is not hex or longer than ``digits``.
    """
    value = text.strip()
    if value[:2].lower() == "0x":
        value = value[2:]
    if not value or len(value) > digits or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise EngineError(ProblemKind.MALFORMED, f"{what} must be 1-{digits} hex digits: {text!r}")
    return int(value, 16)


@contextlib.contextmanager
def _engine_errors(context: str = "") -> Iterator[None]:
    """Turn ``MatterError`` into ``EngineError`` with the rule slug first in the detail."""
    try:
        yield
    except MatterError as exc:
        if exc.rule in _KEY_RULES:
            kind = ProblemKind.BAD_PUBLIC_KEY
        elif exc.rule in _POLICY_RULES:
            kind = ProblemKind.POLICY
        else:
            kind = ProblemKind.BAD_CSR
        prefix = f"{context}: " if context else ""
        raise EngineError(kind, f"{prefix}{exc.rule}: {exc.detail}") from exc


def _refuse(rule: Rule, detail: str, kind: ProblemKind = ProblemKind.POLICY) -> EngineError:
    return EngineError(kind, f"{rule}: {detail}")


@dataclass(frozen=True, slots=True)
class MatterRequest:
    """Matter parameters for ``CAEngine.issue(..., matter=...)``; None means "derive".

    DAC: ``vendor_id``/``product_id`` default to the CSR subject's Matter attributes,
    then to the PAI's. NOC: ``fabric_id`` defaults to the issuer's fabric id and
    ``node_id`` to a random operational node id.
    """

    vendor_id: int | None = None
    product_id: int | None = None
    common_name: str | None = None
    node_id: int | None = None
    fabric_id: int | None = None
    cats: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MatterCAInfo:
    """A Matter CA with the identifiers read from its certificate."""

    ca: CA
    kind: MatterKind
    vendor_id: int | None = None
    product_id: int | None = None
    fabric_id: int | None = None
    rcac_id: int | None = None
    icac_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceCredential:
    """One issued DAC with its (generated) private key, or the CSR it came from."""

    index: int
    record: CertificateRecord
    certificate: x509.Certificate
    private_key_pem: bytes | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class _Signer:
    ca: CA
    cert: x509.Certificate
    key: Signer


@dataclass(frozen=True, slots=True)
class _Access:
    """Who asks for a leaf and what their grant allows (the engine authorizes it)."""

    principal: Principal
    grant: grants.Grant
    profile: str


def _check_kind(ca: CA, allowed: tuple[CAKind, ...], child: str) -> None:
    if ca.kind in allowed:
        return
    same = (ca.kind, child) in {(CAKind.MATTER_PAI, "PAI"), (CAKind.MATTER_ICAC, "ICAC")}
    if same:
        rule = Rule.CHAIN_DEPTH
        detail = (
            f"a {child} cannot be issued by another {child}: Matter chains are "
            "PAA -> PAI -> DAC and RCAC -> [ICAC] -> NOC"
        )
    else:
        rule = Rule.CHAIN_ISSUER_KIND
        wanted = " or ".join(str(k) for k in allowed)
        detail = f"a {child} must be issued by a {wanted} CA; {ca.name} is {ca.kind}"
    raise _refuse(rule, detail)


async def _load_signer(
    engine: api.CAEngine,
    ref: str | None,
    *,
    allowed: tuple[CAKind, ...],
    child: str,
    access: _Access | None = None,
) -> _Signer:
    """Return a Matter CA of an allowed kind with its certificate and signer.

    A leaf (``access`` given) goes through the engine's authorization (grant, CA
    state up the chain) before anything else; a CA certificate needs an active,
    sound parent.

    Raises:
        EngineError: NOT_FOUND, UNAUTHORIZED/INVALID_PROFILE (grant), POLICY (CA state,
            ``chain-depth``/``chain-issuer-kind``).
    """
    if access is not None:
        ca, issuer = await engine.leaf_issuer(
            access.principal, access.grant, ca=ref, profile=access.profile
        )
        _check_kind(ca, allowed, child)
    else:
        ca = await engine.get_ca(ref)
        _check_kind(ca, allowed, child)
        issuer = await engine.ca_issuer(ca)
    return _Signer(ca=ca, cert=issuer.certificate, key=issuer.signer)


def _not_after(
    now: datetime, lifetime: timedelta | None, issuer: x509.Certificate | None
) -> datetime | None:
    """Return notAfter (None: 99991231235959Z), never past a real issuer expiry."""
    issuer_end = issuer.not_valid_after_utc if issuer is not None else None
    if issuer_end == profiles.NO_EXPIRY:
        issuer_end = None
    if lifetime is None:
        return issuer_end
    end = now + lifetime
    return end if issuer_end is None else min(end, issuer_end)


def _not_before(now: datetime, backdate: timedelta, issuer: x509.Certificate | None) -> datetime:
    """Backdate, but never before the issuer's notBefore (IsCertificateValidAtIssuance)."""
    start = (now - backdate).replace(microsecond=0)
    if issuer is not None:
        start = max(start, issuer.not_valid_before_utc)
    return start


def info_of(ca: CA) -> MatterCAInfo:
    """Return a Matter CA's kind and the ids its certificate carries.

    Raises:
        EngineError: POLICY when the CA is not a Matter CA.
    """
    kind = _KIND_OF.get(ca.kind)
    if kind is None:
        raise _refuse(Rule.CHAIN_ISSUER_KIND, f"CA {ca.name} is a {ca.kind} CA, not a Matter CA")
    cert = ca.certificate
    if kind.is_operational:
        with _engine_errors(f"CA {ca.name}"):
            ids = rules.extract_operational_ids(cert)
        return MatterCAInfo(
            ca=ca, kind=kind, fabric_id=ids.fabric_id, rcac_id=ids.rcac_id, icac_id=ids.icac_id
        )
    with _engine_errors(f"CA {ca.name}"):
        vid_pid = rules.extract_vid_pid(cert)
    return MatterCAInfo(
        ca=ca, kind=kind, vendor_id=vid_pid.vendor_id, product_id=vid_pid.product_id
    )


def _id_or_random(value: int | None) -> int:
    """Return an RCAC/ICAC id as given, or a random 64-bit one."""
    return value if value is not None else secrets.randbits(64)


def _check_vid(vid: int | None) -> None:
    if vid is not None and not 1 <= vid <= _MAX_VID:
        raise _refuse(Rule.VID_RANGE, f"Vendor ID 0x{vid:X} is outside 0x0001-0xFFF4")


def _check_pid(pid: int | None) -> None:
    if pid is not None and not 1 <= pid <= 0xFFFF:
        raise _refuse(Rule.PID_RANGE, f"Product ID 0x{pid:X} is outside 0x0001-0xFFFF")


def _check_fabric(fabric_id: int | None) -> None:
    if fabric_id is not None and not 1 <= fabric_id < 1 << 64:
        raise _refuse(Rule.FABRIC_ID, "fabric id must be a non-zero 64-bit integer")


def _csr_attribute(csr_subject: x509.Name, oid: x509.ObjectIdentifier, rule: Rule) -> int | None:
    """Return a 4-hex-digit Matter attribute of a CSR subject (VID/PID), None if absent."""
    attrs = csr_subject.get_attributes_for_oid(oid)
    if not attrs:
        return None
    value = attrs[0].value
    if (
        len(attrs) > 1
        or not isinstance(value, str)
        or len(value) != 4
        or any(c not in "0123456789ABCDEF" for c in value)
    ):
        raise _refuse(
            rule,
            "the CSR's Matter id must appear once as 4 uppercase hex digits",
            ProblemKind.BAD_CSR,
        )
    return int(value, 16)


def _csr_common_name(csr_subject: x509.Name) -> str | None:
    attrs = csr_subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else None
    return value if isinstance(value, str) and value else None


def _check_leaf_csr(csr: x509.CertificateSigningRequest, kind: MatterKind) -> None:
    """Refuse CSRs that ask for what the Matter leaf profiles forbid (CA, other KU, SAN)."""
    try:
        exts = list(csr.extensions)
    except ValueError as exc:
        raise EngineError(ProblemKind.BAD_CSR, "the CSR's extension request is malformed") from exc
    ca_rule, ku_rule = (
        (Rule.DAC_CA, Rule.DAC_KEY_USAGE)
        if kind is MatterKind.DAC
        else (Rule.NOC_CA, Rule.NOC_KEY_USAGE)
    )
    for ext in exts:
        value = ext.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise _refuse(ca_rule, f"a {kind.upper()} is not a CA", ProblemKind.BAD_CSR)
        if isinstance(value, x509.KeyUsage) and (
            not value.digital_signature
            or value.key_cert_sign
            or value.crl_sign
            or value.key_encipherment
            or value.key_agreement
            or value.content_commitment
            or value.data_encipherment
        ):
            raise _refuse(
                ku_rule,
                f"a {kind.upper()}'s keyUsage is exactly digitalSignature",
                ProblemKind.BAD_CSR,
            )
        if isinstance(value, x509.SubjectAlternativeName):
            raise _refuse(
                Rule.TLV if kind is MatterKind.NOC else Rule.NAME,
                f"a {kind.upper()} carries no subjectAltName",
                ProblemKind.BAD_CSR,
            )


class MatterService:
    """Create Matter CAs and issue DACs and NOCs through one ``CAEngine``."""

    def __init__(self, engine: api.CAEngine) -> None:
        self._engine = engine

    # ------------------------------------------------------------------ helpers

    async def _new_key(self, name: str, key_backend: str | None) -> tuple[KeyHandle, Signer]:
        # P-256 only (Matter Core ch. 6): the token, when chosen, must have CKM_ECDSA.
        return await self._engine.new_key(KeyAlgorithm.EC_P256, label=name, key_backend=key_backend)

    async def _signer(
        self,
        ref: str,
        *,
        allowed: tuple[CAKind, ...],
        child: str,
        access: _Access | None = None,
    ) -> _Signer:
        return await _load_signer(self._engine, ref, allowed=allowed, child=child, access=access)

    async def _create_ca(
        self,
        name: str,
        *,
        kind: CAKind,
        signer: _Signer | None,
        lifetime: timedelta | None,
        build: Callable[..., x509.Certificate],
        actor: Principal,
        detail: dict[str, str],
        key_backend: str | None,
    ) -> CA:
        """Make the CA's key, build its certificate inside the issuer's validity, store it.

        ``build`` is a ``profiles.build_*`` with its kind's own arguments bound: a root's
        (``signer`` None) gets the new key to sign itself with, a subordinate's the public
        key and the issuer; both get the validity and a serial.
        """
        now = self._engine.now()
        handle, key = await self._new_key(name, key_backend)
        issuer = signer.cert if signer is not None else None
        validity = {
            "not_before": _not_before(now, _CA_BACKDATE, issuer),
            "not_after": _not_after(now, lifetime, issuer),
            "serial": matter_serial(),
        }
        with _engine_errors():
            if signer is None:
                cert = build(key, **validity)
            else:
                cert = build(
                    key.public_key(), issuer_cert=signer.cert, issuer_key=signer.key, **validity
                )
        return await self._engine.add_kind_ca(
            name=name,
            kind=kind,
            parent=signer.ca if signer is not None else None,
            key=handle,
            cert=cert,
            actor=actor,
            detail=detail,
        )

    # ------------------------------------------------------------------ CAs

    async def info(self, ref: str) -> MatterCAInfo:
        """Return a Matter CA with its ids.

        Raises:
            EngineError: NOT_FOUND, POLICY (not a Matter CA).
        """
        with _engine_errors():
            return info_of(await self._engine.get_ca(ref))

    async def create_paa(
        self,
        name: str,
        *,
        actor: Principal,
        vid: int | None = None,
        lifetime: timedelta | None = None,
        key_backend: str | None = None,
    ) -> CA:
        """Create a PAA: VID-scoped with ``vid``, non-VID-scoped without.

        ``lifetime`` None gives notAfter 99991231235959Z ("no well-defined expiry").

        Raises:
            EngineError: MALFORMED/CONFLICT (name), POLICY/BAD_CSR naming the Matter rule.
        """
        await self._engine.check_ca_name(name)
        _check_vid(vid)
        return await self._create_ca(
            name,
            kind=CAKind.MATTER_PAA,
            signer=None,
            lifetime=lifetime,
            build=functools.partial(profiles.build_paa, name=name, vid=vid),
            actor=actor,
            detail={"vid": f"{vid:04X}"} if vid is not None else {},
            key_backend=key_backend,
        )

    async def create_pai(
        self,
        name: str,
        *,
        paa: str,
        vid: int | None,
        actor: Principal,
        pid: int | None = None,
        lifetime: timedelta | None = None,
        key_backend: str | None = None,
    ) -> CA:
        """Create a PAI under a PAA (VID required; ``pid`` makes it PID-scoped).

        Raises:
            EngineError: NOT_FOUND (PAA), MALFORMED/CONFLICT (name), POLICY naming the
                Matter rule (``pai-vid-required``, ``chain-vid-mismatch``, ``chain-depth``).
        """
        await self._engine.check_ca_name(name)
        if vid is None:
            raise _refuse(Rule.PAI_VID_REQUIRED, "a PAI must carry a Vendor ID")
        _check_vid(vid)
        _check_pid(pid)
        signer = await self._signer(paa, allowed=(CAKind.MATTER_PAA,), child="PAI")
        paa_vid = info_of(signer.ca).vendor_id
        if paa_vid is not None and paa_vid != vid:
            raise _refuse(
                Rule.CHAIN_VID_MISMATCH,
                f"VID {vid:04X} differs from the VID-scoped PAA's {paa_vid:04X}",
            )
        detail = {"vid": f"{vid:04X}", "parent": signer.ca.name}
        if pid is not None:
            detail["pid"] = f"{pid:04X}"
        return await self._create_ca(
            name,
            kind=CAKind.MATTER_PAI,
            signer=signer,
            lifetime=lifetime,
            build=functools.partial(profiles.build_pai, name=name, vid=vid, pid=pid),
            actor=actor,
            detail=detail,
            key_backend=key_backend,
        )

    async def create_rcac(
        self,
        name: str,
        *,
        actor: Principal,
        fabric_id: int | None = None,
        rcac_id: int | None = None,
        lifetime: timedelta | None = None,
        key_backend: str | None = None,
    ) -> CA:
        """Create an RCAC (operational root); ``rcac_id`` defaults to a random 64-bit id.

        Raises:
            EngineError: MALFORMED/CONFLICT (name), BAD_CSR/POLICY naming the Matter rule.
        """
        await self._engine.check_ca_name(name)
        _check_fabric(fabric_id)
        return await self._create_ca(
            name,
            kind=CAKind.MATTER_RCAC,
            signer=None,
            lifetime=lifetime or _OPERATIONAL_CA_LIFETIME,
            build=functools.partial(
                profiles.build_rcac, rcac_id=_id_or_random(rcac_id), fabric_id=fabric_id
            ),
            actor=actor,
            detail={"fabric_id": f"{fabric_id:016X}"} if fabric_id is not None else {},
            key_backend=key_backend,
        )

    async def create_icac(
        self,
        name: str,
        *,
        rcac: str,
        actor: Principal,
        fabric_id: int | None = None,
        icac_id: int | None = None,
        lifetime: timedelta | None = None,
        key_backend: str | None = None,
    ) -> CA:
        """Create an ICAC under an RCAC; the fabric id defaults to the RCAC's.

        Raises:
            EngineError: NOT_FOUND (RCAC), MALFORMED/CONFLICT (name), POLICY naming the
                Matter rule (``chain-depth`` under an ICAC, ``chain-fabric-mismatch``).
        """
        await self._engine.check_ca_name(name)
        _check_fabric(fabric_id)
        signer = await self._signer(rcac, allowed=(CAKind.MATTER_RCAC,), child="ICAC")
        fabric = fabric_id if fabric_id is not None else info_of(signer.ca).fabric_id
        detail = {"parent": signer.ca.name}
        if fabric is not None:
            detail["fabric_id"] = f"{fabric:016X}"
        return await self._create_ca(
            name,
            kind=CAKind.MATTER_ICAC,
            signer=signer,
            lifetime=lifetime or _OPERATIONAL_CA_LIFETIME,
            build=functools.partial(
                profiles.build_icac, icac_id=_id_or_random(icac_id), fabric_id=fabric
            ),
            actor=actor,
            detail=detail,
            key_backend=key_backend,
        )

    # ------------------------------------------------------------------ leaves

    async def issue_noc(
        self,
        csr: bytes | x509.CertificateSigningRequest,
        *,
        ca: str,
        actor: Principal,
        grant: grants.Grant,
        fabric_id: int | None = None,
        node_id: int | None = None,
        cats: Sequence[int] = (),
        lifetime: timedelta | None = None,
    ) -> IssuedCertificate:
        """Issue a NOC from a NOCSR under an ICAC or RCAC (see ``issue_matter``)."""
        return await self._engine.issue(
            csr,
            principal=actor,
            grant=grant,
            profile=NOC_PROFILE,
            ca=ca,
            lifetime=lifetime,
            matter=MatterRequest(node_id=node_id, fabric_id=fabric_id, cats=tuple(cats)),
        )

    async def issue_dac(
        self,
        csr: bytes | x509.CertificateSigningRequest,
        *,
        pai: str,
        actor: Principal,
        grant: grants.Grant,
        vid: int | None = None,
        pid: int | None = None,
        lifetime: timedelta | None = None,
    ) -> IssuedCertificate:
        """Issue one DAC from a CSR under a PAI (see ``issue_matter``)."""
        return await self._engine.issue(
            csr,
            principal=actor,
            grant=grant,
            profile=DAC_PROFILE,
            ca=pai,
            lifetime=lifetime,
            matter=MatterRequest(vendor_id=vid, product_id=pid),
        )

    async def issue_dacs(
        self,
        *,
        pai: str,
        vid: int,
        pid: int,
        actor: Principal,
        grant: grants.Grant,
        count: int | None = None,
        csrs: Sequence[tuple[str, bytes]] | None = None,
        lifetime: timedelta | None = None,
        batch_size: int = _BATCH,
    ) -> AsyncIterator[list[DeviceCredential]]:
        """Issue DACs in bulk, yielding each batch once it is stored.

        Either ``count`` keys are generated (the private keys come back, never stored),
        or each ``(source, data)`` CSR is used; every CSR is checked before anything is
        issued, so a bad one refuses the whole run. Each batch is built, validated
        against the Matter rules, and stored (group-committed, one audit event per DAC)
        before it is yielded.

        Raises:
            EngineError: MALFORMED (count), NOT_FOUND (PAI), BAD_CSR/BAD_PUBLIC_KEY
                (a CSR, named by its source), POLICY naming the Matter rule
                (``chain-vid-mismatch``, ``chain-pid-mismatch``, ``dac-pid-required``).
        """
        if csrs is None and (count is None or count < 1):
            raise EngineError(ProblemKind.MALFORMED, "give a DAC count of at least 1, or CSRs")
        _check_vid(vid)
        _check_pid(pid)
        signer = await self._signer(
            pai,
            allowed=(CAKind.MATTER_PAI,),
            child="DAC",
            access=_Access(actor, grant, DAC_PROFILE),
        )
        with _engine_errors():
            factory = profiles.DacFactory(signer.cert, signer.key)
        _check_dac_scope(factory, vid, pid)
        keys_from_csrs: list[tuple[str, CertificatePublicKeyTypes]] = []
        for source, data in csrs or ():
            try:
                req = issuance.load_csr(data)
                _check_leaf_csr(req, MatterKind.DAC)
            except EngineError as exc:
                raise EngineError(exc.kind, f"{source}: {exc.detail}") from exc
            public_key = req.public_key()
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
                public_key.curve, ec.SECP256R1
            ):
                raise _refuse(
                    Rule.CURVE,
                    f"{source}: a DAC key must be P-256 (secp256r1)",
                    ProblemKind.BAD_PUBLIC_KEY,
                )
            keys_from_csrs.append((source, public_key))
        total = len(keys_from_csrs) if csrs is not None else count or 0
        end = _not_after(self._engine.now(), lifetime, signer.cert)

        async def build(first: int) -> tuple[datetime, list[_Built]]:
            n = min(batch_size, total - first)
            start = _not_before(self._engine.now(), _LEAF_BACKDATE, signer.cert)
            if csrs is None:
                return start, await asyncio.to_thread(
                    _build_generated, factory, n, vid, pid, start, end
                )
            chunk = keys_from_csrs[first : first + n]
            built = await asyncio.to_thread(
                _build_from_keys, factory, [k for _, k in chunk], vid, pid, start, end
            )
            return start, [
                _Built(cert, None, source) for (source, _), cert in zip(chunk, built, strict=True)
            ]

        # Pipeline: the next batch is built while this one is stored and its files are
        # written by the caller (file I/O and database waits overlap the signing).
        index = 0
        pending = asyncio.create_task(build(0))
        try:
            while index < total:
                start, items = await pending
                if index + len(items) < total:
                    pending = asyncio.create_task(build(index + len(items)))
                stored = await self._store_dacs(signer, factory, items, vid, pid, start, end, actor)
                yield [
                    DeviceCredential(
                        index=index + i + 1,
                        record=record,
                        certificate=item.cert,
                        private_key_pem=item.key_pem,
                        source=item.source,
                    )
                    for i, (item, record) in enumerate(stored)
                ]
                index += len(items)
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    async def _store_dacs(
        self,
        signer: _Signer,
        factory: profiles.DacFactory,
        items: list[_Built],
        vid: int,
        pid: int,
        start: datetime,
        end: datetime | None,
        actor: Principal,
    ) -> list[tuple[_Built, CertificateRecord]]:
        results = await self._engine.store_leaves(
            signer.ca, [i.cert for i in items], profile=DAC_PROFILE, principal=actor
        )
        out: list[tuple[_Built, CertificateRecord]] = []
        for item, record in zip(items, results, strict=True):
            attempts = 0
            while record is None:
                # Serial collision (2^-64 odds): rebuild for the same key with a new serial.
                attempts += 1
                if attempts > _SERIAL_ATTEMPTS:
                    raise EngineError(
                        ProblemKind.SERVER_INTERNAL, "could not allocate a unique serial"
                    )
                cert = _build_one(factory, item.cert.public_key(), vid, pid, start, end)
                item = replace(item, cert=cert)
                (record,) = await self._engine.store_leaves(
                    signer.ca, [cert], profile=DAC_PROFILE, principal=actor
                )
            out.append((item, record))
        return out


@dataclass(frozen=True, slots=True)
class _Built:
    cert: x509.Certificate
    key_pem: bytes | None
    source: str | None


def _check_dac_scope(factory: profiles.DacFactory, vid: int, pid: int) -> None:
    if vid != factory.vendor_id:
        raise _refuse(
            Rule.CHAIN_VID_MISMATCH, f"VID {vid:04X} differs from the PAI's {factory.vendor_id:04X}"
        )
    if factory.product_id is not None and pid != factory.product_id:
        raise _refuse(
            Rule.CHAIN_PID_MISMATCH,
            f"PID {pid:04X} differs from the PID-scoped PAI's {factory.product_id:04X}",
        )


def _build_one(
    factory: profiles.DacFactory,
    public_key: CertificatePublicKeyTypes,
    vid: int,
    pid: int,
    start: datetime,
    end: datetime | None,
    name: str | None = None,
) -> x509.Certificate:
    serial = matter_serial()
    with _engine_errors():
        return factory.build(
            public_key,
            name=name or f"Matter DAC {serial:017X}",
            vid=vid,
            pid=pid,
            not_before=start,
            not_after=end,
            serial=serial,
        )


def _build_from_keys(
    factory: profiles.DacFactory,
    public_keys: Sequence[CertificatePublicKeyTypes],
    vid: int,
    pid: int,
    start: datetime,
    end: datetime | None,
) -> list[x509.Certificate]:
    return [_build_one(factory, k, vid, pid, start, end) for k in public_keys]


def _build_generated(
    factory: profiles.DacFactory,
    n: int,
    vid: int,
    pid: int,
    start: datetime,
    end: datetime | None,
) -> list[_Built]:
    out = []
    for _ in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _build_one(factory, key.public_key(), vid, pid, start, end)
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        out.append(_Built(cert, pem, None))
    return out


# ---------------------------------------------------------------------- engine dispatch


async def issue_matter(
    engine: api.CAEngine,
    request_or_key: x509.CertificateSigningRequest | CertificatePublicKeyTypes,
    *,
    principal: Principal,
    grant: grants.Grant,
    profile: str,
    ca: str | None,
    lifetime: timedelta | None = None,
    request: MatterRequest | None = None,
    subject: x509.Name | None = None,
) -> IssuedCertificate:
    """Issue a DAC (``matter-dac``, CA of kind PAI) or NOC (``matter-noc``, ICAC/RCAC).

    Called by ``CAEngine.issue`` and ``issue_with_generated_key``. The CSR's subject
    supplies a DAC's CN and (if present) VID/PID; the request's parameters win.

    Raises:
        EngineError: NOT_FOUND (CA), BAD_CSR/BAD_PUBLIC_KEY (the CSR or key),
            POLICY naming the Matter rule (wrong CA kind, VID/PID/fabric mismatch).
    """
    params = request or MatterRequest()
    if isinstance(request_or_key, x509.CertificateSigningRequest):
        csr_subject = request_or_key.subject
        public_key = request_or_key.public_key()
        kind = MatterKind.DAC if profile == DAC_PROFILE else MatterKind.NOC
        _check_leaf_csr(request_or_key, kind)
    else:
        csr_subject = subject or x509.Name([])
        public_key = request_or_key
    access = _Access(principal, grant, profile)
    if profile == DAC_PROFILE:
        return await _issue_one_dac(engine, public_key, csr_subject, params, ca, access, lifetime)
    return await _issue_one_noc(engine, public_key, params, ca, access, lifetime)


async def _issue_one_dac(
    engine: api.CAEngine,
    public_key: CertificatePublicKeyTypes,
    csr_subject: x509.Name,
    params: MatterRequest,
    ca: str | None,
    access: _Access,
    lifetime: timedelta | None,
) -> IssuedCertificate:
    signer = await _load_signer(
        engine, ca, allowed=(CAKind.MATTER_PAI,), child="DAC", access=access
    )
    with _engine_errors():
        factory = profiles.DacFactory(signer.cert, signer.key)
    vid = params.vendor_id
    if vid is None:
        vid = _csr_attribute(csr_subject, oids.VENDOR_ID, Rule.VID_FORMAT)
    pid = params.product_id
    if pid is None:
        pid = _csr_attribute(csr_subject, oids.PRODUCT_ID, Rule.PID_FORMAT)
    vid = vid if vid is not None else factory.vendor_id
    pid = pid if pid is not None else factory.product_id
    if pid is None:
        raise _refuse(
            Rule.DAC_PID_REQUIRED,
            "a DAC must carry a Product ID: put it in the CSR subject (1.3.6.1.4.1.37244.2.2) "
            "or use a PID-scoped PAI",
            ProblemKind.BAD_CSR,
        )
    _check_pid(pid)
    _check_dac_scope(factory, vid, pid)
    now = engine.now()
    start = _not_before(now, _LEAF_BACKDATE, signer.cert)
    end = _not_after(now, lifetime, signer.cert)
    name = params.common_name or _csr_common_name(csr_subject)
    for _ in range(_SERIAL_ATTEMPTS):
        cert = await asyncio.to_thread(_build_one, factory, public_key, vid, pid, start, end, name)
        (record,) = await engine.store_leaves(
            signer.ca, [cert], profile=DAC_PROFILE, principal=access.principal
        )
        if record is not None:
            return IssuedCertificate(
                record=record, certificate=cert, chain=await engine.chain_of(signer.ca)
            )
    raise EngineError(ProblemKind.SERVER_INTERNAL, "could not allocate a unique serial")


async def _issue_one_noc(
    engine: api.CAEngine,
    public_key: CertificatePublicKeyTypes,
    params: MatterRequest,
    ca: str | None,
    access: _Access,
    lifetime: timedelta | None,
) -> IssuedCertificate:
    allowed = (CAKind.MATTER_ICAC, CAKind.MATTER_RCAC)
    signer = await _load_signer(engine, ca, allowed=allowed, child="NOC", access=access)
    issuer_fabric = info_of(signer.ca).fabric_id
    fabric_id = params.fabric_id if params.fabric_id is not None else issuer_fabric
    if fabric_id is None:
        raise _refuse(
            Rule.NOC_FABRIC_ID,
            f"a NOC needs a fabric id and {signer.ca.name} carries none: give one",
            ProblemKind.MALFORMED,
        )
    _check_fabric(fabric_id)
    node_id = params.node_id if params.node_id is not None else 1 + secrets.randbelow(_MAX_NODE_ID)
    now = engine.now()
    start = _not_before(now, _LEAF_BACKDATE, signer.cert)
    end = _not_after(now, lifetime or _NOC_LIFETIME, signer.cert)
    for _ in range(_SERIAL_ATTEMPTS):
        with _engine_errors():
            cert = profiles.build_noc(
                public_key,
                issuer_cert=signer.cert,
                issuer_key=signer.key,
                node_id=node_id,
                fabric_id=fabric_id,
                cats=params.cats,
                not_before=start,
                not_after=end,
                serial=matter_serial(),
            )
        (record,) = await engine.store_leaves(
            signer.ca, [cert], profile=NOC_PROFILE, principal=access.principal
        )
        if record is not None:
            return IssuedCertificate(
                record=record, certificate=cert, chain=await engine.chain_of(signer.ca)
            )
    raise EngineError(ProblemKind.SERVER_INTERNAL, "could not allocate a unique serial")
