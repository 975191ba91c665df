"""EST enrollment on memory storage: issuing, the re-enrollment identity rule, manual approval."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est import enrollment
from server.ca.types import Principal
from server.store.est_memory import MemoryEstRepository
from tests.server.ca.est.conftest import OP
from tests.support import make_csr

DEVICE = est_api.ClientIdentity(principal=Principal("est-user", "default/dev1"))
ENROLL = est_api.EstOperation.ENROLL
REENROLL = est_api.EstOperation.REENROLL


def _csr(*names: str, subject: str | None = "dev1") -> x509.CertificateSigningRequest:
    """A CSR; without names a device identity (subject only), what the default label grants."""
    pem, _ = make_csr(names, subject=subject)
    return x509.load_pem_x509_csr(pem)


async def _enrolled(
    service: est_api.EstService,
    label: est_api.EstLabel,
    csr: x509.CertificateSigningRequest,
    *,
    client: est_api.ClientIdentity = DEVICE,
    operation: est_api.EstOperation = ENROLL,
) -> est_api.Enrolled:
    outcome = await service.enroll(label, csr, client=client, operation=operation)
    assert isinstance(outcome, est_api.Enrolled)
    return outcome


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(b"", id="fail/empty"),
        pytest.param(b"-----BEGIN CERTIFICATE REQUEST-----", id="fail/pem"),
        pytest.param(b"\x30\x03\x02\x01\x00", id="fail/not-pkcs10"),
    ],
)
def test_parse_csr_refuses_non_der(der: bytes) -> None:
    with pytest.raises(EngineError) as err:
        enrollment.parse_csr(der)
    assert err.value.kind is ProblemKind.BAD_CSR


async def test_enroll_issues_from_the_label_ca(service: est_api.EstService) -> None:
    label = await service.get_label(None)
    csr = _csr()
    issued = await _enrolled(service, label, csr)
    assert issued.certificate.public_key() == csr.public_key()
    assert [c.subject for c in issued.chain] == [c.subject for c in await service.ca_certs(label)]
    assert issued.private_key_der is None


async def test_reenroll_keeps_identity(service: est_api.EstService) -> None:
    await service.add_label(est_api.EstLabel(name="net", dns_suffixes=("internal",)), actor=OP)
    label = await service.get_label("net")
    user = est_api.ClientIdentity(principal=Principal("est-user", "net/dev1"))
    first = await _enrolled(service, label, _csr("dns:dev1.internal"), client=user)
    der = first.certificate.public_bytes(serialization.Encoding.DER)
    device = await service.authenticate_certificate(label, der, for_reenroll=True)
    renewed = await _enrolled(
        service, label, _csr("dns:dev1.internal"), client=device, operation=REENROLL
    )
    assert renewed.certificate.serial_number != first.certificate.serial_number
    for csr, what in (
        (_csr("dns:dev2.internal"), "subjectAltName"),
        (_csr("dns:dev1.internal", subject="dev2"), "subject"),
    ):
        with pytest.raises(EngineError, match=what) as err:
            await service.enroll(label, csr, client=device, operation=REENROLL)
        assert err.value.kind is ProblemKind.UNAUTHORIZED
        # A privca certificate used to log in for simpleenroll binds the identity too.
        with pytest.raises(EngineError, match=what):
            await service.enroll(label, csr, client=device, operation=ENROLL)
    with pytest.raises(EngineError, match="needs a valid client certificate") as err:
        await service.enroll(label, _csr(), client=user, operation=REENROLL)
    assert err.value.kind is ProblemKind.UNAUTHORIZED


async def test_identity_change_is_held_for_approval(service: est_api.EstService) -> None:
    """allow_subject_change: the renewal under another name waits for an operator."""
    await service.add_label(
        est_api.EstLabel(name="net", dns_suffixes=("internal",), allow_subject_change=True),
        actor=OP,
    )
    label = await service.get_label("net")
    user = est_api.ClientIdentity(principal=Principal("est-user", "net/dev1"))
    first = await _enrolled(service, label, _csr("dns:dev1.internal"), client=user)
    der = first.certificate.public_bytes(serialization.Encoding.DER)
    device = await service.authenticate_certificate(label, der, for_reenroll=True)
    # The same identity renews straight through...
    await _enrolled(service, label, _csr("dns:dev1.internal"), client=device, operation=REENROLL)
    # ...another one (renewal or login with the certificate) is held.
    changed = _csr("dns:dev2.internal")
    for csr, operation in ((changed, REENROLL), (_csr("dns:dev3.internal"), ENROLL)):
        held = await service.enroll(label, csr, client=device, operation=operation)
        assert isinstance(held, est_api.EnrollmentPending)
    (pending,) = [p for p in await service.list_pending() if p.operation is REENROLL]
    await service.decide(pending.id, approve=True, actor=OP)
    issued = await _enrolled(service, label, changed, client=device, operation=REENROLL)
    assert issued.certificate.subject == changed.subject
    # A change the grant does not allow is refused before it is held.
    with pytest.raises(EngineError, match=r"grant\.dns-suffix"):
        await service.enroll(label, _csr("dns:vault.corp"), client=device, operation=REENROLL)
    assert [p.operation for p in await service.list_pending()] == [ENROLL]


async def test_approval_holds_then_issues_once(
    service: est_api.EstService, est_repo: MemoryEstRepository
) -> None:
    await service.add_label(est_api.EstLabel(name="manual", approval_required=True), actor=OP)
    label = await service.get_label("manual")
    csr = _csr()
    held = await service.enroll(label, csr, client=DEVICE, operation=ENROLL)
    assert isinstance(held, est_api.EnrollmentPending)
    assert held.retry_after == 60
    again = await service.enroll(label, csr, client=DEVICE, operation=ENROLL)
    assert again == held  # the retry finds the same request, no second one
    (pending,) = await service.list_pending()
    assert pending.id == held.id
    assert pending.requester == "est-user:default/dev1"
    await service.decide(held.id, approve=True, actor=OP)
    issued = await _enrolled(service, label, csr)
    stored = est_repo.pending[held.id]
    assert stored.status is est_api.PendingStatus.ISSUED
    assert stored.serial == issued.certificate.serial_number
    # The device lost the response and retries: the same certificate, not a second one.
    replay = await _enrolled(service, label, csr)
    assert replay.certificate == issued.certificate
    assert await service.list_pending() == []


async def test_rejected_enrollment_is_refused(service: est_api.EstService) -> None:
    await service.add_label(est_api.EstLabel(name="manual", approval_required=True), actor=OP)
    label = await service.get_label("manual")
    csr = _csr()
    held = await service.enroll(label, csr, client=DEVICE, operation=ENROLL)
    assert isinstance(held, est_api.EnrollmentPending)
    await service.decide(held.id, approve=False, actor=OP)
    with pytest.raises(EngineError, match="rejected") as err:
        await service.enroll(label, csr, client=DEVICE, operation=ENROLL)
    assert err.value.kind is ProblemKind.UNAUTHORIZED


async def test_bad_request_is_not_held(
    service: est_api.EstService, est_repo: MemoryEstRepository
) -> None:
    await service.add_label(
        est_api.EstLabel(name="manual", profile="tls-server", approval_required=True), actor=OP
    )
    label = await service.get_label("manual")
    with pytest.raises(EngineError):
        await service.enroll(label, _csr("email:a@b.example"), client=DEVICE, operation=ENROLL)
    assert est_repo.pending == {}


async def test_decide_twice_is_conflict(
    service: est_api.EstService, est_repo: MemoryEstRepository
) -> None:
    pending = est_api.PendingEnrollment(
        id=est_api.PendingId("p1"),
        label="default",
        operation=est_api.EstOperation.ENROLL,
        requester="est-user:default/dev1",
        key_fingerprint="ab" * 32,
        subject="CN=x",
        csr_der=b"\x30\x00",
        status=est_api.PendingStatus.PENDING,
        created_at=datetime.now(UTC),
    )
    await est_repo.add_pending(pending)
    assert (
        await est_repo.find_pending("default", pending.requester, pending.key_fingerprint)
    ) == pending
    await service.decide("p1", approve=True, actor=OP)
    with pytest.raises(EngineError) as err:
        await service.decide("p1", approve=False, actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    with pytest.raises(EngineError) as err:
        await service.decide("nope", approve=True, actor=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND
    got = await est_repo.get_pending(est_api.PendingId("p1"))
    assert got is not None
    assert got.status is est_api.PendingStatus.APPROVED
    assert got.decided_by == "operator:test"
    assert [e.action for e in est_repo.audit] == ["est.approve"]
    assert await service.list_pending() == []
    assert len(await service.list_pending(None)) == 1
