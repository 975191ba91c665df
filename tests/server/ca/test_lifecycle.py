"""CA lifecycle: disable, enable, revoke (at the parent, subtree), renew (same key, rekey)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from server.ca import api, grants, keys, lifecycle
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.types import (
    CA,
    AuditEvent,
    CAKind,
    CAStatus,
    CertStatus,
    Principal,
    RevocationReason,
)
from server.store.est_memory import MemoryEstRepository
from server.store.memory import MemoryRepository
from tests.server.ca.status.test_responder import Env, ocsp_request
from tests.support import FakeClock, make_csr, openssl_verify

OP = Principal("operator", "test")
DER = serialization.Encoding.DER


async def _hierarchy(engine: api.CAEngine) -> None:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("mid", parent="root", actor=OP)
    await engine.create_subordinate("issuing", parent="mid", actor=OP)


async def _issue(engine: api.CAEngine, ca: str = "issuing") -> x509.Certificate:
    csr, _ = make_csr(["dns:leaf.internal"])
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca=ca
    )
    return issued.certificate


async def _refused(engine: api.CAEngine, ca: str) -> str:
    with pytest.raises(EngineError) as err:
        await _issue(engine, ca)
    assert err.value.kind is ProblemKind.POLICY
    return err.value.detail


async def _actions(engine: api.CAEngine) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in await engine.audit_log(limit=50)]


@pytest.fixture
def env(key_backend: keys.Pkcs8KeyBackend) -> Env:
    return Env(key_backend)


async def test_disable_refuses_issuance_and_enable_restores_it(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    await engine.disable_ca("issuing", actor=OP)
    assert "ca.state: CA issuing is disabled" in await _refused(engine, "issuing")
    # A disabled CA is not a revoked one: its subtree (an offline root's) still issues.
    await engine.disable_ca("root", actor=OP)
    await _issue(engine, "mid")
    await engine.enable_ca("issuing", actor=OP)
    await _issue(engine, "issuing")
    assert ("ca.disable", "issuing") in await _actions(engine)
    assert ("ca.enable", "issuing") in await _actions(engine)
    with pytest.raises(EngineError, match="already active") as err:
        await engine.enable_ca("issuing", actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    with pytest.raises(EngineError, match="not active"):
        await engine.disable_ca("root", actor=OP)


async def test_enable_refuses_revoked_and_pending(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    await engine.revoke_ca("issuing", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    with pytest.raises(EngineError, match="revocation is permanent"):
        await engine.enable_ca("issuing", actor=OP)
    await engine.create_import_request("imported", actor=OP)
    with pytest.raises(EngineError, match="import-activate"):
        await engine.enable_ca("imported", actor=OP)
    assert (await engine.get_ca("issuing")).status is CAStatus.REVOKED


async def test_revoke_sub_ca_revokes_at_parent_and_stops_the_subtree(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    mid = await engine.get_ca("mid")
    root = await engine.get_ca("root")
    revoked = await engine.revoke_ca("mid", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    assert revoked.status is CAStatus.REVOKED
    record = await engine.get_certificate(root.id, mid.certificate.serial_number)
    assert record.is_ca
    assert record.status is CertStatus.REVOKED
    assert record.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert "ca.state: CA mid is revoked" in await _refused(engine, "mid")
    # The CA below is marked too, and would be refused through its ancestor anyway.
    assert (await engine.get_ca("issuing")).status is CAStatus.REVOKED
    assert "is revoked" in await _refused(engine, "issuing")
    await _issue(engine, "root")  # the parent is untouched
    events = {(e.action, e.target): e.detail for e in await engine.audit_log(limit=50)}
    assert events[("ca.revoke", "mid")]["reason"] == "keyCompromise"
    assert events[("ca.revoke", "issuing")]["cause"] == "under revoked CA mid"
    assert ("cert.revoke", record.serial_hex) in events
    with pytest.raises(EngineError) as err:
        await engine.revoke_ca("mid", reason=RevocationReason.UNSPECIFIED, actor=OP)
    assert err.value.kind is ProblemKind.ALREADY_REVOKED


async def test_revoke_after_certificate_already_revoked(engine: api.CAEngine) -> None:
    """The repro's `cert revoke <sub-CA serial>` left the CA active: `ca revoke` still works."""
    await _hierarchy(engine)
    mid = await engine.get_ca("mid")
    await engine.revoke(mid.certificate.serial_number, principal=OP, ca="root")
    await engine.revoke_ca("mid", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    assert (await engine.get_ca("mid")).status is CAStatus.REVOKED
    events = {(e.action, e.target): e.detail for e in await engine.audit_log(limit=50)}
    assert "already revoked" in events[("ca.revoke", "mid")]["certificate"]


async def test_revoke_root_is_marked_and_says_no_crl_lists_it(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    await engine.revoke_ca("root", reason=RevocationReason.CA_COMPROMISE, actor=OP)
    events = {(e.action, e.target): e.detail for e in await engine.audit_log(limit=50)}
    assert "no issuer whose CRL could list it" in events[("ca.revoke", "root")]["crl"]
    assert "is revoked" in await _refused(engine, "issuing")


async def test_revoke_refuses_remove_from_crl_and_pending(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    with pytest.raises(EngineError) as err:
        await engine.revoke_ca("mid", reason=RevocationReason.REMOVE_FROM_CRL, actor=OP)
    assert err.value.kind is ProblemKind.BAD_REVOCATION_REASON
    assert (await engine.get_ca("mid")).status is CAStatus.ACTIVE
    await engine.create_import_request("imported", actor=OP)
    with pytest.raises(EngineError, match="pending import"):
        await engine.revoke_ca("imported", reason=RevocationReason.UNSPECIFIED, actor=OP)


async def test_state_of(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    await engine.create_import_request("imported", actor=OP)
    await engine.disable_ca("mid", actor=OP)
    await engine.revoke_ca("issuing", reason=RevocationReason.UNSPECIFIED, actor=OP)
    now = engine.now()
    states = {c.name: lifecycle.state_of(c, now) for c in await engine.list_cas()}
    assert states == {
        "root": "active",
        "mid": "disabled",
        "issuing": "revoked",
        "imported": "pending-import",
    }
    root = await engine.get_ca("root")
    assert lifecycle.state_of(root, root.certificate.not_valid_after_utc) == "expired"


# ---------------------------------------------------------------- status while disabled/revoked


async def test_disabled_ca_keeps_publishing_and_accepts_revocations(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    await env.engine.disable_ca("issuing", actor=OP)
    ca = await env.engine.get_ca("issuing")
    await env.status.responder.reload()
    # Revocation still works, and both OCSP and the CRL say so.
    await env.engine.revoke(
        leaf.serial_number, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    resp = ocsp.load_der_ocsp_response(
        (await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    env.clock.advance(timedelta(seconds=3))
    assert ca.id in await env.status.crls.tick()
    env.status.crls._latest.clear()  # as another node would: serve it from storage
    crl = x509.load_der_x509_crl((await env.status.crl(ca.id)).der)
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None


async def test_revoked_ca_publishes_until_its_certificate_expires(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    await env.engine.revoke_ca("issuing", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    ca = await env.engine.get_ca("issuing")
    root = await env.engine.get_ca("root")
    await env.status.responder.reload()
    # The parent's OCSP and CRL say the CA certificate is revoked, with the reason.
    resp = ocsp.load_der_ocsp_response(
        (await env.status.ocsp(ocsp_request(root.certificate, [issuing.serial_number]))).der
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is x509.ReasonFlags.key_compromise
    env.clock.advance(timedelta(seconds=3))
    await env.status.crls.tick()
    root_crl = x509.load_der_x509_crl((await env.status.crl(root.id)).der)
    assert root_crl.get_revoked_certificate_by_serial_number(issuing.serial_number) is not None
    # The revoked CA still answers for its own leaves and accepts their revocation.
    await env.engine.revoke(leaf.serial_number, principal=OP)
    resp = ocsp.load_der_ocsp_response(
        (await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert (await env.status.crl(ca.id)).number >= 1
    # Once its own certificate has expired, a revoked CA publishes nothing more.
    env.clock.advance(issuing.not_valid_after_utc - env.clock.now() + timedelta(seconds=1))
    env.status.crls._latest.clear()  # the 1 s answer cache runs on the real monotonic clock
    with pytest.raises(EngineError) as err:
        await env.status.crls.latest(ca.id)
    assert err.value.kind is ProblemKind.NOT_FOUND
    await env.status.responder.reload()
    with pytest.raises(EngineError) as err:
        await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))
    assert err.value.kind is ProblemKind.UNAUTHORIZED


# ---------------------------------------------------------------- renewal


async def test_renew_same_key_keeps_old_leaves_chaining(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    old_leaf = await _issue(engine)
    before = await engine.get_ca("mid")
    renewal = await engine.renew_ca("mid", actor=OP, days=30)
    mid = await engine.get_ca("mid")
    assert mid.cert_der == renewal.certificate.public_bytes(DER) != before.cert_der
    assert mid.key == before.key
    new = renewal.certificate
    assert new.subject == before.certificate.subject
    assert new.public_key() == before.certificate.public_key()
    assert new.not_valid_after_utc - new.not_valid_before_utc <= timedelta(days=30, minutes=5)
    root = await engine.get_ca("root")
    record = await engine.get_certificate(root.id, new.serial_number)
    assert record.is_ca
    issuing = await engine.get_ca("issuing")
    assert issuing.chain_der[0] == mid.cert_der  # descendants carry the new certificate
    chain = await engine.chain_of(issuing)
    assert chain[1] == new
    assert openssl_verify(old_leaf, chain).returncode == 0
    fresh = await engine.issue(
        make_csr(["dns:new.internal"])[0],
        grant=grants.OPERATOR,
        principal=OP,
        profile="tls-server",
        ca="issuing",
    )
    assert fresh.chain[1] == new
    events = {(e.action, e.target): e.detail for e in await engine.audit_log(limit=50)}
    assert events[("ca.renew", "mid")]["rekey"] == "no"
    assert ("ca.chain-update", "issuing") in events


async def test_renew_root_is_self_signed_with_the_same_key(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    leaf = await _issue(engine)
    renewal = await engine.renew_ca("root", actor=OP)
    root = renewal.certificate
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)
    for name in ("mid", "issuing"):
        assert (await engine.get_ca(name)).chain_der[-1] == root.public_bytes(DER)
    chain = await engine.chain_of(await engine.get_ca("issuing"))
    assert chain[-1] == root
    assert openssl_verify(leaf, chain).returncode == 0


async def test_rekey_refused_with_live_child_cas_then_allowed(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    with pytest.raises(EngineError, match="child CAs signed by its current key") as err:
        await engine.renew_ca("mid", actor=OP, rekey=True)
    assert err.value.kind is ProblemKind.CONFLICT
    old_leaf = await _issue(engine)
    before = await engine.get_ca("issuing")
    renewal = await engine.renew_ca("issuing", actor=OP, rekey=True)
    assert renewal.rekeyed
    assert renewal.orphaned_leaves == 1
    assert renewal.certificate.public_key() != before.certificate.public_key()
    fresh = await _issue(engine)
    chain = await engine.chain_of(await engine.get_ca("issuing"))
    assert openssl_verify(fresh, chain).returncode == 0
    assert openssl_verify(old_leaf, chain).returncode != 0  # the documented limit
    # With its only child revoked, the middle CA may be rekeyed.
    await engine.revoke_ca("issuing", reason=RevocationReason.SUPERSEDED, actor=OP)
    await engine.renew_ca("mid", actor=OP, rekey=True)


class _BusyChild(MemoryRepository):
    """Loses the next ``losses`` chain writes of CA ``name``, as if another node kept writing it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.losses = 0

    async def update_ca(
        self, ca: CA, *, expected_version: int, audit: AuditEvent, **writes: Any
    ) -> bool:
        if ca.name == self.name and audit.action == "ca.chain-update" and self.losses:
            self.losses -= 1
            return False
        return await super().update_ca(ca, expected_version=expected_version, audit=audit, **writes)


async def test_renew_retries_a_child_chain_and_a_rerun_completes_one_that_gave_up(
    key_backend: keys.Pkcs8KeyBackend,
) -> None:
    repo = _BusyChild("issuing")
    engine = api.CAEngine(repo, key_backend)
    await _hierarchy(engine)
    # A few lost races: re-read and re-applied, the renew completes.
    repo.losses = lifecycle._RACE_ATTEMPTS - 1
    first = await engine.renew_ca("mid", actor=OP)
    assert (await engine.get_ca("issuing")).chain_der[0] == first.ca.cert_der
    # Lost on every try: the renewal is stored, the error says how to finish.
    repo.losses = lifecycle._RACE_ATTEMPTS
    with pytest.raises(EngineError) as err:
        await engine.renew_ca("mid", actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    assert "run `privca ca renew mid` again to finish" in err.value.detail
    renewed = await engine.get_ca("mid")
    assert renewed.cert_der != first.ca.cert_der
    assert (await engine.get_ca("issuing")).chain_der[0] == first.ca.cert_der  # stale
    # The re-run re-derives the chain from mid as stored: the stale one is fixed too.
    last = await engine.renew_ca("mid", actor=OP)
    issuing = await engine.get_ca("issuing")
    assert issuing.chain_der == (last.ca.cert_der, *last.ca.chain_der)
    assert openssl_verify(await _issue(engine), await engine.chain_of(issuing)).returncode == 0


async def test_renew_refusals(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    await engine.disable_ca("mid", actor=OP)
    # A disabled parent issues nothing, not even a renewed child certificate.
    with pytest.raises(EngineError, match=r"ca\.state: CA mid is disabled"):
        await engine.renew_ca("issuing", actor=OP)
    await engine.renew_ca("mid", actor=OP)  # a disabled CA itself may be renewed
    assert (await engine.get_ca("mid")).status is CAStatus.DISABLED
    with pytest.raises(EngineError, match="at least 1"):
        await engine.renew_ca("root", actor=OP, days=0)
    await engine.revoke_ca("mid", reason=RevocationReason.UNSPECIFIED, actor=OP)
    with pytest.raises(EngineError, match="cannot renew"):
        await engine.renew_ca("mid", actor=OP)


async def test_renewed_ca_capped_by_parent(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    mid = await engine.get_ca("mid")
    renewal = await engine.renew_ca("issuing", actor=OP, days=100_000)
    assert renewal.certificate.not_valid_after_utc <= mid.certificate.not_valid_after_utc


async def test_ocsp_after_rekey_signs_with_the_new_key(env: Env) -> None:
    await env.hierarchy()
    await env.leaf()
    await env.engine.renew_ca("issuing", actor=OP, rekey=True)
    leaf = await env.leaf()
    issuing = (await env.engine.get_ca("issuing")).certificate
    resp = ocsp.load_der_ocsp_response(
        (await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    key = issuing.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


# ---------------------------------------------------------------- the repro, EST login


async def test_revoked_sub_ca_client_certificates_no_longer_log_in(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    csr, _ = make_csr((), subject="dev1")
    # Enrolled over EST on the default label (renewal is bound to the label).
    device = await engine.issue(
        csr,
        grant=grants.DEVICE_IDENTITY,
        principal=Principal("est-user", "default/dev1"),
        profile="device",
        ca="issuing",
    )
    der = device.certificate.public_bytes(DER)
    clock = FakeClock(engine.now())
    before = est_api.EstService(engine, MemoryEstRepository(), clock=clock)
    label = await before.get_label(None)
    assert (await before.authenticate_certificate(label, der, for_reenroll=True)).issuer_ca
    await engine.revoke_ca("issuing", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    after = est_api.EstService(engine, MemoryEstRepository(), clock=clock)
    for_reenroll = (False, True)
    for reenroll in for_reenroll:
        with pytest.raises(EngineError) as err:
            await after.authenticate_certificate(label, der, for_reenroll=reenroll)
        assert err.value.kind is ProblemKind.UNAUTHORIZED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"external": True}, "signed outside privca", id="fail/imported"),
        pytest.param({"kind": CAKind.MATTER_PAI}, "not supported", id="fail/matter-kind"),
    ],
)
async def test_renew_refuses_imported_and_matter_cas(
    engine: api.CAEngine,
    memory_repo: MemoryRepository,
    change: dict[str, object],
    message: str,
) -> None:
    await _hierarchy(engine)
    mid = await engine.get_ca("mid")
    await memory_repo.update_ca(
        dataclasses.replace(mid, **change),  # type: ignore[arg-type]
        expected_version=mid.version,
        audit=AuditEvent(at=engine.now(), actor="test", action="test", target="mid"),
    )
    with pytest.raises(EngineError, match=message) as err:
        await engine.renew_ca(mid.id, actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT


async def test_delegated_ocsp_signer_reissued_after_rekey(
    key_backend: keys.Pkcs8KeyBackend,
) -> None:
    env = Env(key_backend, delegated_signer=True)
    old = await env.hierarchy()
    leaf = await env.leaf()
    resp = ocsp.load_der_ocsp_response(
        (await env.status.ocsp(ocsp_request(old, [leaf.serial_number]))).der
    )
    resp.certificates[0].verify_directly_issued_by(old)
    await env.engine.renew_ca("issuing", actor=OP, rekey=True)
    leaf = await env.leaf()
    issuing = (await env.engine.get_ca("issuing")).certificate
    resp = ocsp.load_der_ocsp_response(
        (await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    (signer,) = resp.certificates
    signer.verify_directly_issued_by(issuing)  # not the signer the old key certified
