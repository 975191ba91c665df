"""CA lifecycle: disable, enable, revoke, renew, mark offline; the state shown for it.

States: PENDING (an import waiting for its certificate), ACTIVE, DISABLED, REVOKED,
and "expired", which is not stored but follows from the certificate. A disabled or
revoked CA issues nothing (``pipeline.check_ca_state`` refuses it and everything
under a revoked one); both keep publishing CRLs and OCSP answers and accept
revocations (a revoked one while its own certificate is valid), so validators keep
learning about the certificates already out (``publishes_status``).

Renewal gives a CA a new certificate from its parent (self-signed for a root), with
the same subject and, unless ``rekey``, the same key: certificates issued under the
old certificate still chain (same name, same key identifier) and CRLs/OCSP signed
with the key cover both. ``rekey`` is refused while the CA has unexpired, unrevoked
child CAs (their certificates were signed by the old key, so no chain through the
new certificate could verify them). Leaves issued under the old key keep their
validity but lose status coverage: the responder answers for the current key only
and new CRLs are signed by the new key (documented limit; the count is in the audit
detail and printed by the CLI).

An offline CA (``set_offline``) keeps its state; only its key is kept from
serving processes (``CAEngine._issuer`` refuses it outside a ceremony, and it
issues no leaves): see ``server/ca/status/offline.py``.

``CAEngine.disable_ca`` and friends are thin calls into this module. Nodes sharing
the database see a change within ``api.STATE_TTL``. Must not import aiohttp,
josepy or sqlalchemy.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import custody, hierarchy, issuance
from server.ca.errors import CAChangedError, EngineError, ProblemKind
from server.ca.types import (
    CA,
    AuditEvent,
    CAId,
    CAKind,
    CAStatus,
    CertificateInsert,
    CertificateRecord,
    CertQuery,
    CertStatus,
    KeyHandle,
    Principal,
    RevocationReason,
)

if TYPE_CHECKING:
    from server.ca.api import CAEngine

__all__ = [
    "Renewal",
    "disable",
    "enable",
    "holder_of",
    "offline_refusal",
    "publishes_status",
    "renew",
    "revoke",
    "revoke_certificate",
    "set_offline",
    "state_of",
]

_log = logging.getLogger(__name__)

_BACKDATE: Final = timedelta(minutes=5)
# Tries of a revocation that lost a race to another write of the same CA row.
_RACE_ATTEMPTS: Final = 5
# Leaves counted for the rekey warning; the count only says "some" beyond this.
_LEAF_COUNT_LIMIT: Final = 10_000


def state_of(ca: CA, now: datetime) -> str:
    """Return the state an operator sees: pending-import, active, disabled, revoked, expired."""
    # No certificate and PENDING go together (``CA.cert_der``): testing the certificate
    # covers the status and is what ``ca.certificate`` below needs.
    if ca.cert_der is None:
        return "pending-import"
    if ca.status is CAStatus.REVOKED:
        return "revoked"
    if ca.certificate.not_valid_after_utc <= now:
        return "expired"
    return str(ca.status)


def publishes_status(ca: CA, now: datetime) -> bool:
    """Return whether the CA's CRL and OCSP answers are served.

    Active and disabled CAs publish; a revoked CA publishes while its own
    certificate is valid (its leaves' revocations still matter to validators that
    have not yet seen the CA's); a pending import has nothing to sign with.
    """
    if ca.cert_der is None:  # pending import
        return False
    if ca.status is CAStatus.REVOKED:
        return now < ca.certificate.not_valid_after_utc
    return True


def offline_refusal(ca: CA) -> str:
    """Return the refusal for using an offline CA's key outside a ceremony (rule ``ca.offline``)."""
    return (
        f"ca.offline: CA {ca.name} is offline: it issues nothing here and its key is used "
        f"only by `privca ca sign-offline {ca.name}` where the key is"
    )


async def set_offline(
    engine: CAEngine,
    name: str,
    *,
    offline: bool,
    actor: Principal,
    key: KeyHandle | None = None,
) -> CA:
    """Mark a CA offline (serving processes never load its key) or back online.

    An offline CA issues no leaves; its CRL and the OCSP answers for what it signed
    are made by ``privca ca sign-offline`` and served until they expire. ``key``
    replaces the stored key handle in the same update: a ``carried`` one when the
    key leaves the database (``custody``), the key brought back when coming online.
    Taking an already offline CA's key out of the database is allowed (``key`` given).

    Going offline (a key carried out or not) starts again from what is stored when
    another write got in between its read and its write (``CAChangedError``): the
    offline flag only ever tightens, and the checks run again on the fresh copy (a
    carried key must still be the CA's). Coming online loosens it, so a lost race
    is reported (CONFLICT) for the operator to look again.

    Raises:
        EngineError: NOT_FOUND, CONFLICT (already in that state, or pending; coming
            online while the CA changed; still racing after ``_RACE_ATTEMPTS`` tries),
            MALFORMED (``key`` is not this CA's, a carried key going online, a carried
            key missing when coming online).
    """
    if not offline:
        return await _set_offline(engine, name, offline=offline, actor=actor, key=key)
    for _ in range(_RACE_ATTEMPTS - 1):
        with contextlib.suppress(CAChangedError):
            return await _set_offline(engine, name, offline=offline, actor=actor, key=key)
    return await _set_offline(engine, name, offline=offline, actor=actor, key=key)


async def _set_offline(
    engine: CAEngine, name: str, *, offline: bool, actor: Principal, key: KeyHandle | None
) -> CA:
    ca, _ = await _fresh(engine, name)
    if ca.cert_der is None:
        raise EngineError(ProblemKind.CONFLICT, f"CA {ca.name} has no certificate yet")
    moves_key = key is not None and key != ca.key
    if ca.offline is offline and not (offline and moves_key and not custody.is_carried(ca.key)):
        raise EngineError(
            ProblemKind.CONFLICT, f"CA {ca.name} is already {'offline' if offline else 'online'}"
        )
    new_key = ca.key if key is None else key
    if key is not None:
        _check_key_swap(ca, key, offline=offline)
    elif not offline and custody.is_carried(ca.key):
        raise EngineError(
            ProblemKind.MALFORMED,
            f"CA {ca.name}'s key is kept outside the database: bring it back with --key FILE",
        )
    action = "ca.set-offline" if offline else "ca.set-online"
    detail = {"key": new_key.backend} if moves_key else {}
    change = replace(ca, offline=offline, key=new_key)
    if offline:
        updated = await engine.replace_ca(
            ca, change, actor=actor, action=action, target=ca.name, **detail
        )
    else:
        updated = await _replace_once(
            engine,
            ca,
            change,
            doing="it was being brought online",
            audit=engine._audit(actor, action, ca.name, **detail),
        )
    _log.info(
        "CA %s marked %s by %s%s",
        ca.name,
        "offline" if offline else "online",
        actor,
        f" (key now {new_key.backend})" if moves_key else "",
    )
    return updated


def _check_key_swap(ca: CA, key: KeyHandle, *, offline: bool) -> None:
    """Refuse a key handle that is not ``ca``'s key, or not where ``offline`` puts it."""
    if custody.is_carried(key) != offline:
        where = "carried out of" if custody.is_carried(key) else "kept in"
        raise EngineError(
            ProblemKind.MALFORMED,
            f"CA {ca.name}: a key {where} the database cannot go "
            f"{'offline' if offline else 'online'} that way",
        )
    if custody.is_carried(key) and key.blob != ca.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise EngineError(ProblemKind.MALFORMED, f"the key is not CA {ca.name}'s key")


async def _fresh(engine: CAEngine, name: str) -> tuple[CA, list[CA]]:
    """Return the CA as stored now (not the engine's cached copy) and every CA."""
    cas = list(await engine.list_cas())
    found = next((c for c in cas if c.name == name), None) or next(
        (c for c in cas if c.id == name), None
    )
    if found is None:
        raise EngineError(ProblemKind.NOT_FOUND, f"unknown CA {name!r}")
    return found, cas


async def _replace_once(
    engine: CAEngine,
    ca: CA,
    updated: CA,
    *,
    doing: str,
    audit: AuditEvent,
    certificate: CertificateInsert | None = None,
) -> CA:
    """Store ``updated`` over ``ca`` as read, or report CONFLICT: not safe to re-apply blindly.

    Enable, disable, renew and coming online decide on the state the operator saw; when
    another write got in between (another node, a concurrent ``set-offline``), applying
    them to the new state could undo that write or act on a state nobody checked.
    ``certificate`` (a renewal's) is written with the CA or not at all.
    """
    try:
        return await engine._replace_ca(ca, updated, audit=audit, certificate=certificate)
    except CAChangedError as exc:
        raise CAChangedError(
            detail=f"CA {ca.name} changed while {doing} (another command or node wrote it "
            "first); nothing was written: check its state and run the command again"
        ) from exc


def _descendants(ca: CA, cas: list[CA]) -> list[CA]:
    """Return every CA below ``ca``, parents before children."""
    out: list[CA] = []
    frontier = [ca.id]
    while frontier:
        children = [c for c in cas if c.parent_id in frontier]
        out.extend(children)
        frontier = [c.id for c in children]
    return out


async def disable(engine: CAEngine, name: str, *, actor: Principal) -> CA:
    """Stop an active CA from issuing; it keeps publishing CRLs/OCSP and accepting revocations.

    Raises:
        EngineError: NOT_FOUND, CONFLICT (not active).
    """
    ca, _ = await _fresh(engine, name)
    if ca.status is not CAStatus.ACTIVE:
        raise EngineError(ProblemKind.CONFLICT, f"CA {ca.name} is {ca.status}, not active")
    updated = await _replace_once(
        engine,
        ca,
        replace(ca, status=CAStatus.DISABLED),
        doing="it was being disabled",
        audit=engine._audit(actor, "ca.disable", ca.name),
    )
    _log.info("CA %s disabled by %s", ca.name, actor)
    return updated


async def enable(engine: CAEngine, name: str, *, actor: Principal) -> CA:
    """Let a disabled CA issue again (only from DISABLED: revoked and pending CAs stay).

    Raises:
        EngineError: NOT_FOUND, CONFLICT (not disabled).
    """
    ca, _ = await _fresh(engine, name)
    if ca.status is not CAStatus.DISABLED:
        why = {
            CAStatus.REVOKED: "revocation is permanent",
            CAStatus.PENDING: "activate the import with `privca ca import-activate`",
            CAStatus.ACTIVE: "it is already active",
        }[ca.status]
        raise EngineError(ProblemKind.CONFLICT, f"CA {ca.name} is {ca.status}, not disabled: {why}")
    updated = await _replace_once(
        engine,
        ca,
        replace(ca, status=CAStatus.ACTIVE),
        doing="it was being enabled",
        audit=engine._audit(actor, "ca.enable", ca.name),
    )
    _log.info("CA %s enabled by %s", ca.name, actor)
    return updated


async def revoke(engine: CAEngine, name: str, *, reason: RevocationReason, actor: Principal) -> CA:
    """Revoke a CA: its certificate at its parent (OCSP, CRL), then it and its subtree.

    The CA's certificate record under its parent is revoked with ``reason`` (the
    parent's OCSP answers revoked and its next CRL lists it); the CA and every CA
    below it are marked REVOKED, so nothing in the subtree issues again. A root, or
    an imported CA whose issuer is outside privca, is only marked: no CRL privca
    publishes can carry it (the audit detail says so).

    A concurrent write of the CA (enable, disable, renew, set-offline, a key move; here
    or on another node) does not make it fail: when the CA's row changed between
    reading and writing (``CAChangedError``, any change bumps its version) it starts
    again from what is stored, so revocation wins over every other change.

    Raises:
        EngineError: NOT_FOUND, CONFLICT (already revoked, or pending; still racing
            after ``_RACE_ATTEMPTS`` tries), BAD_REVOCATION_REASON.
    """
    for _ in range(_RACE_ATTEMPTS - 1):
        with contextlib.suppress(CAChangedError):
            return await _revoke(engine, name, reason=reason, actor=actor)
    return await _revoke(engine, name, reason=reason, actor=actor)


async def _revoke(engine: CAEngine, name: str, *, reason: RevocationReason, actor: Principal) -> CA:
    ca, cas = await _fresh(engine, name)
    if ca.status is CAStatus.REVOKED:
        raise EngineError(ProblemKind.ALREADY_REVOKED, f"CA {ca.name} is already revoked")
    if ca.cert_der is None:  # pending import
        raise EngineError(
            ProblemKind.CONFLICT, f"CA {ca.name} has no certificate to revoke (pending import)"
        )
    if reason is RevocationReason.REMOVE_FROM_CRL:
        raise EngineError(ProblemKind.BAD_REVOCATION_REASON, "removeFromCRL is only for delta CRLs")
    parent = next((c for c in cas if c.id == ca.parent_id), None)
    detail: dict[str, str] = {"reason": str(reason)}
    revocation = None
    if parent is None:
        detail["crl"] = (
            "none: a root has no issuer whose CRL could list it; remove it from trust stores"
            if not ca.external
            else "none: its issuer is outside privca; ask that CA to revoke it"
        )
    else:
        record = await engine.get_certificate(parent.id, ca.certificate.serial_number)
        if record.status is CertStatus.REVOKED:
            detail["certificate"] = f"{record.serial_hex} was already revoked at {parent.name}"
        else:
            revocation = engine._revocation(record, reason=reason, actor=actor)
            detail["certificate"] = f"{record.serial_hex} revoked at {parent.name}"
    # The certificate at the parent (cert.revoke) and the CA (ca.revoke) in one write:
    # never a revoked certificate whose CA still issues. When the certificate was revoked
    # meanwhile, nothing is written and the next try records it as already revoked.
    updated = await engine._replace_ca(
        ca,
        replace(ca, status=CAStatus.REVOKED),
        audit=engine._audit(actor, "ca.revoke", ca.name, **detail),
        revocation=revocation,
    )
    for below in _descendants(ca, cas):
        await _mark_revoked(engine, below, actor=actor, cause=f"under revoked CA {ca.name}")
    _log.warning("CA %s revoked by %s (%s)", ca.name, actor, reason)
    return updated


async def _mark_revoked(engine: CAEngine, ca: CA, *, actor: Principal, cause: str) -> None:
    """Mark a CA below a revoked one REVOKED, re-reading it when another write got in first."""
    for _ in range(_RACE_ATTEMPTS):
        if ca.status is CAStatus.REVOKED:
            return
        try:
            await engine.replace_ca(
                ca,
                replace(ca, status=CAStatus.REVOKED),
                actor=actor,
                action="ca.revoke",
                target=ca.name,
                cause=cause,
            )
        except CAChangedError:
            ca, _ = await _fresh(engine, ca.id)
        else:
            return
    raise CAChangedError(detail=f"CA {ca.name} kept changing while it was being revoked")


async def holder_of(engine: CAEngine, record: CertificateRecord) -> CA | None:
    """Return the CA whose current certificate ``record`` is, None for anything else."""
    if not record.is_ca:
        return None
    return next((c for c in await engine.list_cas() if c.cert_der == record.der), None)


async def revoke_certificate(
    engine: CAEngine, record: CertificateRecord, *, reason: RevocationReason, actor: Principal
) -> tuple[CertificateRecord, CA | None]:
    """Revoke a stored certificate; a CA's current certificate revokes that CA (``revoke``).

    Returns the certificate as stored now and the CA revoked with it (None for a leaf).

    Raises:
        EngineError: as ``revoke`` and ``CAEngine.revoke``.
    """
    holder = await holder_of(engine, record)
    if holder is not None:
        # So it and its subtree stop issuing, not only its certificate.
        await revoke(engine, holder.name, reason=reason, actor=actor)
        return await engine.get_certificate(record.ca_id, record.serial), holder
    updated = await engine.revoke(record.serial, principal=actor, reason=reason, ca=record.ca_id)
    return updated, None


@dataclass(frozen=True, slots=True)
class Renewal:
    """A renewed CA with what the operator should know about it."""

    ca: CA
    certificate: x509.Certificate
    rekeyed: bool
    # Unexpired, unrevoked leaves signed by the old key (rekey only): they lose status coverage.
    orphaned_leaves: int = 0


def _name_constraints(cert: x509.Certificate) -> x509.NameConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None


async def renew(
    engine: CAEngine,
    name: str,
    *,
    actor: Principal,
    rekey: bool = False,
    days: int | None = None,
) -> Renewal:
    """Give a CA a new certificate from its parent (a root signs its own).

    Same subject, path length and name constraints; the same key unless ``rekey``.
    The new certificate is recorded under the parent, becomes the CA's current one
    (what chains, cacerts and the CA bundle publish) and replaces the old one in
    the stored chain of every CA below. The lifetime is ``days`` (default: the
    configured root or subordinate lifetime), never past the parent's expiry.

    Raises:
        EngineError: NOT_FOUND, CONFLICT (pending, revoked, imported or Matter CA;
            rekey with live child CAs), MALFORMED (days), POLICY (the parent may
            not issue: ``ca.*`` rules).
    """
    ca, cas = await _fresh(engine, name)
    if ca.status not in (CAStatus.ACTIVE, CAStatus.DISABLED):  # both have a certificate
        raise EngineError(ProblemKind.CONFLICT, f"CA {ca.name} is {ca.status}: cannot renew")
    if ca.external:
        raise EngineError(
            ProblemKind.CONFLICT,
            f"CA {ca.name} was signed outside privca: import a new certificate instead",
        )
    if ca.kind is not CAKind.GENERAL:
        raise EngineError(
            ProblemKind.CONFLICT, f"CA {ca.name} is a {ca.kind} CA: renewal is not supported"
        )
    if days is not None and days < 1:
        raise EngineError(ProblemKind.MALFORMED, "--days must be at least 1")
    if ca.parent_id is None and ca.offline and not engine.in_ceremony:
        # A root signs its own renewal: with its key, which only a ceremony may load.
        raise EngineError(ProblemKind.POLICY, offline_refusal(ca))
    now = engine.now().replace(microsecond=0)
    below = _descendants(ca, cas)
    if rekey:
        live = [
            c
            for c in below
            if c.parent_id == ca.id
            and c.status is not CAStatus.REVOKED
            and c.cert_der is not None
            and c.certificate.not_valid_after_utc > now
        ]
        if live:
            raise EngineError(
                ProblemKind.CONFLICT,
                f"CA {ca.name} has child CAs signed by its current key "
                f"({', '.join(c.name for c in live)}): renew without --rekey, "
                "or revoke them first",
            )
    old = ca.certificate
    parent = next((c for c in cas if c.id == ca.parent_id), None)
    lifetime = (
        timedelta(days=days)
        if days is not None
        else (engine.settings.root_lifetime if parent is None else engine.settings.sub_lifetime)
    )
    key = ca.key
    public_key = old.public_key()
    if rekey:
        # A new key in the backend that holds the current one (HSM stays HSM).
        key, new_signer = await engine.new_key(
            ca.key_algorithm, label=ca.name, key_backend=ca.key.backend
        )
        public_key = new_signer.public_key()
    if parent is None:
        self_key = await engine.key_signer(key)
        signer = None
        not_after = now + lifetime
    else:
        # Refuses a parent that may not issue (``ca.*`` rules, its lineage included).
        signer = await engine.ca_issuer(await engine.get_ca(parent.id))
        self_key = None
        not_after = min(now + lifetime, signer.not_after)
    cert = issuance.build_ca_certificate(
        subject=old.subject,
        public_key=public_key,
        issuer=signer,
        self_key=self_key,
        not_before=now - _BACKDATE,
        not_after=not_after,
        serial=engine.new_serial(),
        path_length=hierarchy.path_length_of(old),
        name_constraints=_name_constraints(old),
    )
    orphaned = 0
    if rekey:
        orphaned = len(
            await engine.find_certificates(
                CertQuery(
                    ca_id=ca.id,
                    status=CertStatus.VALID,
                    expires_after=now,
                    limit=_LEAF_COUNT_LIMIT,
                )
            )
        )
    new_der = cert.public_bytes(serialization.Encoding.DER)
    detail = {
        "serial": format(cert.serial_number, "X"),
        "replaces": format(old.serial_number, "X"),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "rekey": "yes" if rekey else "no",
    }
    if rekey:
        detail["orphaned_leaves"] = str(orphaned)
    # The certificate was made from the CA as read: if anything changed since (a
    # concurrent renew, disable, set-offline, key move) it is discarded, never stored.
    # Recorded under the issuer like every CA certificate (its OCSP and CRL cover it),
    # in the CA's own write; this function is bound as a CAEngine method, so it uses
    # the engine's own helper.
    updated = await _replace_once(
        engine,
        ca,
        replace(ca, cert_der=new_der, key=key),
        doing="it was being renewed (the new certificate was discarded)",
        audit=engine._audit(actor, "ca.renew", ca.name, **detail),
        certificate=engine._ca_certificate(parent or ca, ca, cert, actor),
    )
    await _update_chains(engine, updated, actor=actor, serial=detail["serial"])
    _log.info("CA %s renewed by %s (serial %s)", ca.name, actor, detail["serial"])
    return Renewal(ca=updated, certificate=cert, rekeyed=rekey, orphaned_leaves=orphaned)


async def _update_chains(engine: CAEngine, ca: CA, *, actor: Principal, serial: str) -> None:
    """Give every CA below a renewed ``ca`` the chain through its parent's current certificate.

    Each CA below (parents first, listed after the renewal is stored, so a sub-CA made
    meanwhile is included) gets ``(parent certificate, *parent chain)`` as stored now,
    the chain ``hierarchy`` gives a new sub-CA. A CA another write changed in between
    is read again and the chain re-applied (``_rechain``): the renewal is stored by then,
    so stopping would leave it half done. Re-deriving from the parents makes this
    idempotent: a renew that still ended early (a CA below kept changing for
    ``_RACE_ATTEMPTS`` tries) is completed by running ``ca renew`` again, whose chain
    update re-derives every chain below, stale ones included.
    """
    for below in _descendants(ca, list(await engine.list_cas())):
        await _rechain(engine, below.id, actor=actor, issuer=ca.name, serial=serial)


async def _rechain(
    engine: CAEngine, ca_id: CAId, *, actor: Principal, issuer: str, serial: str
) -> None:
    """Store the chain through the parent of CA ``ca_id``, re-reading both after a lost race."""
    name: str = ca_id
    for _ in range(_RACE_ATTEMPTS):
        cas = {c.id: c for c in await engine.list_cas()}
        child = cas[ca_id]
        name = child.name
        parent = cas.get(child.parent_id) if child.parent_id is not None else None
        if parent is None or parent.cert_der is None:
            return
        chain = (parent.cert_der, *parent.chain_der)
        if child.chain_der == chain:
            return
        try:
            await engine.replace_ca(
                child,
                replace(child, chain_der=chain),
                actor=actor,
                action="ca.chain-update",
                target=child.name,
                issuer=issuer,
                serial=serial,
            )
        except CAChangedError:
            continue
        return
    raise CAChangedError(
        detail=f"CA {issuer} is renewed (serial {serial}), but CA {name} kept changing while "
        f"its chain was being updated: run `privca ca renew {issuer}` again to finish (it "
        "issues another certificate and re-derives every chain below)"
    )
