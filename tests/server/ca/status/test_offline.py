"""Offline CAs: the flag, the ceremony, what a serving engine refuses, serves and warns about.

A ceremony engine and a serving engine share one memory repository, as the CLI and
``serve`` share one database; the serving engine's key backend records every load.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509 import ocsp

from server.ca import api, grants, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.signer import Signer
from server.ca.status import api as status_api
from server.ca.status import crls, responder
from server.ca.status import ports as status_ports
from server.ca.types import CA, KeyAlgorithm, KeyHandle, Principal, RevocationReason
from server.store.memory import MemoryRepository, MemoryStatusRepository
from tests.server.ca.status.test_responder import ocsp_request
from tests.support import FakeClock, make_csr

OP = Principal("operator", "test")
DAYS = 30


class SpyBackend:
    """A key backend that records every handle it is asked to load."""

    def __init__(self, inner: keys.Pkcs8KeyBackend) -> None:
        self._inner = inner
        self.loaded: list[KeyHandle] = []

    @property
    def name(self) -> str:
        return self._inner.name

    def create(
        self, alg: KeyAlgorithm, *, label: str
    ) -> tuple[KeyHandle, CertificatePublicKeyTypes]:
        return self._inner.create(alg, label=label)

    def load(self, handle: KeyHandle) -> Signer:
        self.loaded.append(handle)
        return self._inner.load(handle)


class Env:
    """The CLI's ceremony engine and a serving engine over the same storage and clock."""

    def __init__(self, key_backend: keys.Pkcs8KeyBackend, *, delegated: bool = False) -> None:
        self.clock = FakeClock()
        self._settings = status_api.StatusSettings(
            ocsp=responder.ResponderSettings(delegated_signer=delegated)
        )
        self.repo = MemoryRepository()
        self.store = MemoryStatusRepository(self.repo)
        self.ceremony = api.CAEngine(self.repo, key_backend, clock=self.clock)
        self.ceremony.begin_ceremony()
        self.ceremony_status = self._status(self.ceremony)
        self.keys = SpyBackend(key_backend)
        self.engine = api.CAEngine(self.repo, self.keys, clock=self.clock)
        self.status = self._status(self.engine)

    def _status(self, engine: api.CAEngine) -> status_api.StatusService:
        return status_api.StatusService(
            engine, self.repo, self.store, settings=self._settings, clock=self.clock
        ).attach()

    async def hierarchy(self, *, signer: bool = False) -> tuple[CA, CA]:
        """Root + sub-CA, root marked offline, one ceremony; return (root, sub)."""
        await self.ceremony.create_root("root", actor=OP)
        await self.ceremony.create_subordinate("sub", parent="root", actor=OP)
        root = await self.ceremony.set_ca_offline("root", offline=True, actor=OP)
        await self.ceremony_status.sign_offline(
            "root", days=DAYS, ocsp_signer=signer, actor="operator:test"
        )
        await self.status.start()
        return root, await self.engine.get_ca("sub")

    def root_loads(self, root: CA) -> list[KeyHandle]:
        return [h for h in self.keys.loaded if h.ref == root.key.ref]


@pytest.fixture
def env(key_backend: keys.Pkcs8KeyBackend) -> Env:
    return Env(key_backend)


def _answer(der: bytes) -> ocsp.OCSPResponse:
    return ocsp.load_der_ocsp_response(der)


async def test_set_offline_and_online_are_audited_and_refuse_no_change(env: Env) -> None:
    await env.engine.create_root("root", actor=OP)
    root = await env.engine.set_ca_offline("root", offline=True, actor=OP)
    assert root.offline
    assert (await env.repo.get_ca(root.id)) == root
    with pytest.raises(EngineError, match="already offline") as exc:
        await env.engine.set_ca_offline("root", offline=True, actor=OP)
    assert exc.value.kind is ProblemKind.CONFLICT
    assert not (await env.engine.set_ca_offline("root", offline=False, actor=OP)).offline
    actions = [e.action for e in await env.engine.audit_log()]
    assert actions[:2] == ["ca.set-online", "ca.set-offline"]


async def test_serving_engine_never_loads_an_offline_key(env: Env) -> None:
    root, _ = await env.hierarchy()
    for attempt in (
        env.engine.status_issuer(root),
        env.engine.issue_ocsp_signer(root, lifetime=timedelta(days=1)),
        env.engine.create_subordinate("sub2", parent="root", actor=OP),
        env.engine.renew_ca("root", actor=OP),
        env.status.generate_crl("root", actor="operator:test"),
    ):
        with pytest.raises(EngineError, match=r"ca\.offline") as exc:
            await attempt
        assert exc.value.kind is ProblemKind.POLICY
    assert env.root_loads(root) == []
    # Renewing the sub-CA needs the root's signature: refused too.
    with pytest.raises(EngineError, match=r"ca\.offline"):
        await env.engine.renew_ca("sub", actor=OP)
    assert env.root_loads(root) == []
    # The ceremony engine may: a sub-CA under the offline root.
    assert (await env.ceremony.create_subordinate("sub2", parent="root", actor=OP)).tier == 2


async def test_an_offline_ca_issues_no_leaves_even_in_a_ceremony(env: Env) -> None:
    await env.hierarchy()
    csr, _ = make_csr(["dns:leaf.internal"])
    for engine in (env.engine, env.ceremony):
        with pytest.raises(EngineError, match=r"ca\.offline: CA root is offline"):
            await engine.issue(
                csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="root"
            )
    issued = await env.engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="sub"
    )
    assert issued.record.ca_id == (await env.engine.get_ca("sub")).id


@pytest.mark.parametrize(
    ("online", "ceremony", "days", "kind"),
    [
        pytest.param(True, True, DAYS, ProblemKind.CONFLICT, id="fail/online-ca"),
        pytest.param(False, False, DAYS, ProblemKind.POLICY, id="fail/not-a-ceremony"),
        pytest.param(False, True, 0, ProblemKind.MALFORMED, id="fail/zero-days"),
    ],
)
async def test_sign_offline_refusals(
    env: Env, online: bool, ceremony: bool, days: int, kind: ProblemKind
) -> None:
    await env.ceremony.create_root("root", actor=OP)
    if not online:
        await env.ceremony.set_ca_offline("root", offline=True, actor=OP)
    status = env.ceremony_status if ceremony else env.status
    with pytest.raises(EngineError) as exc:
        await status.sign_offline("root", days=days, ocsp_signer=False, actor="operator:test")
    assert exc.value.kind is kind
    assert await env.repo.latest_crl((await env.engine.get_ca("root")).id) is None


async def test_stored_status_is_served_until_it_expires_never_regenerated(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(crls, "_CACHE_SECONDS", 0.0)  # kept 1 s of real time otherwise
    root, sub = await env.hierarchy()
    serial = sub.certificate.serial_number
    crl = await env.status.crl(root.id)
    assert crl.next_update - crl.this_update == timedelta(days=DAYS)
    answer = _answer((await env.status.ocsp(ocsp_request(root.certificate, [serial]))).der)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.next_update_utc is not None
    assert answer.next_update_utc - answer.this_update_utc == timedelta(days=DAYS)

    # Past the responder's refresh age (2 days) and the CRL's renewal point: still served.
    env.clock.advance(timedelta(days=DAYS - 1))
    env.status.responder.invalidate([(root.id, serial)])
    assert await env.status.crls.tick() == [sub.id]
    assert await env.status.responder.refresh_stale() == 0
    assert (await env.status.crl(root.id)).number == crl.number
    again = _answer((await env.status.ocsp(ocsp_request(root.certificate, [serial]))).der)
    assert again.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert again.this_update_utc == answer.this_update_utc

    # The background rounds did not even try the root (a refusal would be logged each time).
    assert "CA root" not in caplog.text
    # The re-sign round stops when a batch makes no progress (offline answers stay stale).
    started = time.monotonic()
    assert await env.status.responder.refresh_stale(batch=1, budget=3.0) == 0
    assert time.monotonic() - started < 1.0

    # Expired: nothing is signed in its place.
    env.clock.advance(timedelta(days=1, minutes=1))
    env.status.responder.invalidate([(root.id, serial)])
    with pytest.raises(EngineError, match="sign-offline") as exc:
        await env.status.crl(root.id)
    assert exc.value.kind is ProblemKind.UNAVAILABLE
    with pytest.raises(EngineError, match="offline") as exc:
        await env.status.ocsp(ocsp_request(root.certificate, [serial]))
    assert exc.value.kind is ProblemKind.UNAUTHORIZED
    assert env.root_loads(root) == []


async def test_a_delegated_signer_answers_what_the_ceremony_did_not_sign(env: Env) -> None:
    root, sub = await env.hierarchy(signer=True)
    signer = await env.store.current_signer(root.id)
    assert signer is not None
    assert signer.not_after - signer.not_before >= timedelta(days=DAYS)
    # An unknown serial: signed live, by the delegated signer, not the root.
    unknown = _answer((await env.status.ocsp(ocsp_request(root.certificate, [0x1234]))).der)
    assert unknown.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert [c.serial_number for c in unknown.certificates] == [signer.serial]
    # A revocation is published at once (no ceremony needed).
    await env.engine.revoke(
        sub.certificate.serial_number,
        principal=OP,
        reason=RevocationReason.KEY_COMPROMISE,
        ca=root.id,
    )
    stored = await env.store.get_response(root.id, sub.certificate.serial_number)  # type: ignore[arg-type]
    assert stored is not None
    assert stored.cert_status == "revoked"
    assert env.root_loads(root) == []
    assert any(h == signer.key for h in env.keys.loaded)
    # That answer lives 4 days, but is re-signed online: the signer's expiry is what counts.
    assert await env.status.offline.valid_until(root) - env.clock.now() > timedelta(days=DAYS - 1)
    # An expired signer signs nothing.
    env.clock.advance(timedelta(days=DAYS, minutes=1))
    await env.status.responder.reload()
    with pytest.raises(EngineError, match="offline") as exc:
        await env.status.ocsp(ocsp_request(root.certificate, [0x5678]))
    assert exc.value.kind is ProblemKind.UNAUTHORIZED


async def test_marking_a_ca_offline_drops_the_cached_signer(env: Env) -> None:
    await env.engine.create_root("root", actor=OP)
    await env.engine.create_subordinate("sub", parent="root", actor=OP)
    await env.status.start()
    root = await env.engine.get_ca("root")
    sub = await env.engine.get_ca("sub")
    record = await env.engine.get_certificate(root.id, sub.certificate.serial_number)
    assert await env.status.responder.presign(record) is not None  # root key cached
    await env.engine.set_ca_offline("root", offline=True, actor=OP)
    env.keys.loaded.clear()
    assert await env.status.responder.presign(record) is None
    with pytest.raises(EngineError, match=r"ca\.offline"):
        await env.status.crls.regenerate(await env.engine.get_ca("root"))
    assert env.root_loads(root) == []


async def test_expiry_warning_counts_answers_and_signer(env: Env) -> None:
    root, _ = await env.hierarchy()
    until = await env.status.offline.valid_until(root)
    assert until == env.clock.now().replace(microsecond=0) + timedelta(days=DAYS)
    # A CA never through a ceremony is due now.
    await env.ceremony.create_root("other", actor=OP)
    other = await env.ceremony.set_ca_offline("other", offline=True, actor=OP)
    assert await env.status.offline.valid_until(other) == env.clock.now()
    assert await env.status.offline.check() == ["other"]
    assert await env.status.offline.check() == []
    await env.ceremony_status.sign_offline("other", days=1, ocsp_signer=False, actor="op:test")
    env.clock.advance(timedelta(days=1))
    assert await env.status.offline.check() == ["other"]  # warned again a day later


async def test_a_foreign_signer_is_not_used(env: Env) -> None:
    """A stored signer the offline CA's key did not certify (a rekey, a bad row) signs nothing."""
    root, _ = await env.hierarchy()
    other = await env.engine.create_root("other", actor=OP)
    record, handle = await env.engine.issue_ocsp_signer(other, lifetime=timedelta(days=DAYS))
    await env.store.add_signer(
        status_ports.SignerRecord(
            ca_id=root.id,
            serial=record.serial,
            cert_der=record.der,
            key=handle,
            not_before=record.not_before,
            not_after=record.not_after,
            created_at=env.clock.now(),
        )
    )
    with pytest.raises(EngineError, match="offline") as exc:
        await env.status.ocsp(ocsp_request(root.certificate, [0x1234]))
    assert exc.value.kind is ProblemKind.UNAUTHORIZED


async def test_the_ceremony_signer_is_used_to_its_end_not_rotated(
    key_backend: keys.Pkcs8KeyBackend,
) -> None:
    """With ``ocsp_delegated_signer`` on, online CAs rotate at half-life; an offline one cannot."""
    env = Env(key_backend, delegated=True)
    root, _ = await env.hierarchy(signer=True)
    env.clock.advance(timedelta(days=DAYS * 3 // 4))
    for serial in (0x1234, 0x5678):
        answer = _answer((await env.status.ocsp(ocsp_request(root.certificate, [serial]))).der)
        assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    signer = await env.store.current_signer(root.id)
    assert signer is not None
    assert [h for h in env.keys.loaded if h == signer.key] == [signer.key]  # loaded once
    assert env.root_loads(root) == []
