"""OCSP responder: pre-signing, statuses, issuers, nonces, delegated signers, refresh."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from server.ca import api, grants, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.status import api as status_api
from server.ca.status import ocsp_codec, responder
from server.ca.status import ports as status_ports
from server.ca.types import CAId, CAMode, Principal, RevocationReason, Serial
from server.store.memory import MemoryRepository, MemoryStatusRepository
from tests.support import FakeClock, make_csr, openssl, pem

OP = Principal("operator", "test")


def _w(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _seq(*parts: bytes) -> bytes:
    return _w(0x30, b"".join(parts))


def ocsp_request(
    issuer: x509.Certificate,
    serials: list[int],
    *,
    nonce: bytes | None = None,
    hash_name: str = "sha1",
) -> bytes:
    """Return a DER OCSPRequest for serials under ``issuer`` (several allowed)."""
    bits = ocsp_codec.public_key_bits(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ids = [
        ocsp_codec.cert_id(
            hash_name, name_der=issuer.subject.public_bytes(), key_bits=bits, serial=s
        )
        for s in serials
    ]
    tbs = [_seq(*(_seq(cid) for cid in ids))]
    if nonce is not None:
        tbs.append(_w(0xA2, _seq(_seq(bytes.fromhex("06092b0601050507300102"), _w(0x04, nonce)))))
    return _seq(_seq(*tbs))


class Env:
    """An engine on the memory repository with a fake clock and the status service."""

    def __init__(
        self, key_backend: keys.Pkcs8KeyBackend, *, real_clock: bool = False, **ocsp_options: object
    ) -> None:
        self.clock = FakeClock(datetime.now(UTC) if real_clock else None)
        self.repo = MemoryRepository()
        self.store = MemoryStatusRepository(self.repo)
        self.engine = api.CAEngine(
            self.repo,
            key_backend,
            settings=api.EngineSettings(default_ca="issuing"),
            clock=self.clock,
        )
        settings = status_api.StatusSettings(
            ocsp=dataclasses.replace(responder.ResponderSettings(), **ocsp_options)  # type: ignore[arg-type]
        )
        self.status = status_api.StatusService(
            self.engine, self.repo, self.store, settings=settings, clock=self.clock
        ).attach()

    async def hierarchy(self) -> x509.Certificate:
        await self.engine.create_root("root", actor=OP)
        await self.engine.create_subordinate("issuing", parent="root", actor=OP)
        await self.status.start()
        return (await self.engine.get_ca("issuing")).certificate

    async def leaf(self, ca: str = "issuing") -> x509.Certificate:
        csr, _ = make_csr(["dns:leaf.internal"])
        return (
            await self.engine.issue(
                csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca=ca
            )
        ).certificate


@pytest.fixture
def env(key_backend: keys.Pkcs8KeyBackend) -> Env:
    return Env(key_backend)


def _load(der: bytes) -> ocsp.OCSPResponse:
    resp = ocsp.load_der_ocsp_response(der)
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return resp


def _verify(resp: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


async def test_presigned_at_issuance_then_revoked(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    stored = await env.store.get_response(
        (await env.engine.get_ca("issuing")).id,
        leaf.serial_number,  # type: ignore[arg-type]
    )
    assert stored is not None
    assert stored.cert_status == "good"
    answer = await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))
    assert answer.der == stored.der  # a lookup, not a new signature
    resp = _load(answer.der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.next_update_utc is not None
    assert resp.next_update_utc - resp.this_update_utc == timedelta(days=4)
    _verify(resp, issuing)

    env.clock.advance(timedelta(minutes=1))
    await env.engine.revoke(
        leaf.serial_number, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    resp = _load((await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is x509.ReasonFlags.key_compromise
    assert resp.revocation_time_utc == env.clock.now()


async def test_unknown_serial_answered_and_not_stored(env: Env) -> None:
    issuing = await env.hierarchy()
    before = await env.store.count_responses()
    resp = _load((await env.status.ocsp(ocsp_request(issuing, [0xDEADBEEF]))).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert await env.store.count_responses() == before


async def test_unknown_issuer_is_unauthorized(env: Env) -> None:
    await env.hierarchy()
    other = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "elsewhere")])
    foreign = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(other.public_key())
        .serial_number(1)
        .not_valid_before(env.clock.now())
        .not_valid_after(env.clock.now() + timedelta(days=1))
        .sign(other, hashes.SHA256())
    )
    before = await env.store.count_responses()
    with pytest.raises(EngineError) as err:
        await env.status.ocsp(ocsp_request(foreign, [1]))
    assert err.value.kind is ProblemKind.UNAUTHORIZED
    assert await env.store.count_responses() == before


async def test_mixed_issuers_in_one_request_unauthorized(env: Env) -> None:
    issuing = await env.hierarchy()
    root = (await env.engine.get_ca("root")).certificate
    a = ocsp_request(issuing, [1])
    b = ocsp_request(root, [2])
    # splice: the requestList of a followed by b's single Request
    req_a = ocsp_codec.parse_request(a).items[0].raw
    req_b = ocsp_codec.parse_request(b).items[0].raw
    body = _seq(_seq(_seq(_seq(req_a), _seq(req_b))))
    with pytest.raises(EngineError) as err:
        await env.status.ocsp(body)
    assert err.value.kind is ProblemKind.UNAUTHORIZED


async def test_garbage_is_malformed(env: Env) -> None:
    await env.hierarchy()
    with pytest.raises(EngineError) as err:
        await env.status.ocsp(b"\x30\x03garbage")
    assert err.value.kind is ProblemKind.MALFORMED


async def test_multiple_certificates_answered_together(env: Env) -> None:
    issuing = await env.hierarchy()
    good, bad = await env.leaf(), await env.leaf()
    await env.engine.revoke(bad.serial_number, principal=OP, reason=RevocationReason.SUPERSEDED)
    der = (
        await env.status.ocsp(ocsp_request(issuing, [good.serial_number, bad.serial_number, 42]))
    ).der
    resp = _load(der)
    got = [(r.serial_number, r.certificate_status) for r in resp.responses]
    assert got == [
        (good.serial_number, ocsp.OCSPCertStatus.GOOD),
        (bad.serial_number, ocsp.OCSPCertStatus.REVOKED),
        (42, ocsp.OCSPCertStatus.UNKNOWN),
    ]
    _verify(resp, issuing)


async def test_sha256_certid_answered_with_same_certid(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    body = ocsp_request(issuing, [leaf.serial_number], hash_name="sha256")
    resp = _load((await env.status.ocsp(body)).der)
    assert isinstance(resp.hash_algorithm, hashes.SHA256)
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD


@pytest.mark.parametrize(
    ("echo", "expect_nonce"),
    [
        pytest.param(False, False, id="ok/nonce-ignored"),
        pytest.param(True, True, id="ok/nonce-echo"),
    ],
)
async def test_nonce(key_backend: keys.Pkcs8KeyBackend, echo: bool, expect_nonce: bool) -> None:
    env = Env(key_backend, nonce_echo=echo)
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    nonce = _w(0x04, b"0123456789abcdef")
    answer = await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number], nonce=nonce))
    resp = _load(answer.der)
    try:
        got = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        got = None
    assert got == (b"0123456789abcdef" if expect_nonce else None)
    assert answer.cacheable is not expect_nonce
    if expect_nonce:
        again = await env.status.ocsp(
            ocsp_request(issuing, [leaf.serial_number], nonce=_w(0x04, b"other"))
        )
        assert (
            _load(again.der).extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            == b"other"
        )


async def test_delegated_signer_chain_and_rotation(key_backend: keys.Pkcs8KeyBackend) -> None:
    env = Env(key_backend, delegated_signer=True, signer_lifetime=timedelta(days=30))
    issuing = await env.hierarchy()
    root = (await env.engine.get_ca("root")).certificate
    leaf = await env.leaf()
    resp = _load((await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der)
    assert len(resp.certificates) == 1
    signer = resp.certificates[0]
    assert signer.issuer == issuing.subject
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    # RFC 6960 §4.2.2.2.1: id-pkix-ocsp-nocheck with a NULL value (non-critical here).
    nocheck = signer.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert (nocheck.critical, nocheck.value) == (False, x509.OCSPNoCheck())
    assert (
        resp.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(signer.public_key()).digest
    )
    _verify(resp, signer)
    signer.verify_directly_issued_by(issuing)
    # openssl accepts the delegated signer for this issuer (at the fake clock's time).
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "resp.der").write_bytes(resp.public_bytes(serialization.Encoding.DER))
        (d / "issuing.pem").write_bytes(pem(issuing))
        (d / "root.pem").write_bytes(pem(root))
        (d / "leaf.pem").write_bytes(pem(leaf))
        out = openssl(
            "ocsp",
            "-respin",
            str(d / "resp.der"),
            "-issuer",
            str(d / "issuing.pem"),
            "-cert",
            str(d / "leaf.pem"),
            "-CAfile",
            str(d / "root.pem"),
            "-verify_other",
            str(d / "issuing.pem"),
            "-attime",
            str(int(env.clock.now().timestamp()) + 60),
            # the fake clock is in the past: widen the thisUpdate/nextUpdate check
            "-validity_period",
            "100000000",
        )
        assert out.returncode == 0, out.stderr
        assert b"Response verify OK" in out.stderr + out.stdout
        assert b"leaf.pem: good" in out.stdout, out.stdout
    # the signer is in the inventory under its CA
    ca = await env.engine.get_ca("issuing")
    rec = await env.repo.get_certificate(ca.id, signer.serial_number)  # type: ignore[arg-type]
    assert rec is not None
    assert rec.profile == "ocsp-signer"
    # past half its life a new signer takes over
    env.clock.advance(timedelta(days=16))
    resp2 = _load((await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der)
    assert resp2.certificates[0].serial_number != signer.serial_number
    assert len([s for s in env.store.signers if s.ca_id == ca.id]) == 2


async def test_refresh_before_next_update(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    body = ocsp_request(issuing, [leaf.serial_number])
    first = _load((await env.status.ocsp(body)).der)
    env.clock.advance(timedelta(days=1))
    assert await env.status.responder.refresh_stale() == 0
    env.clock.advance(timedelta(days=1, minutes=1))
    assert await env.status.responder.refresh_stale() >= 1
    second = _load((await env.status.ocsp(body)).der)
    assert second.this_update_utc - first.this_update_utc == timedelta(days=2, minutes=1)
    assert second.next_update_utc is not None
    assert second.next_update_utc > env.clock.now() + timedelta(days=3)


async def test_stale_response_resigned_on_read_when_refresh_lags(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    body = ocsp_request(issuing, [leaf.serial_number])
    await env.status.ocsp(body)
    env.clock.advance(timedelta(days=3))
    env.status.responder.invalidate([((await env.engine.get_ca("issuing")).id, leaf.serial_number)])
    resp = _load((await env.status.ocsp(body)).der)
    assert resp.this_update_utc == env.clock.now().replace(microsecond=0)


async def test_revoked_intermediate_on_parent_ocsp(env: Env) -> None:
    await env.hierarchy()
    root = (await env.engine.get_ca("root")).certificate
    issuing = await env.engine.get_ca("issuing")
    await env.engine.revoke(
        issuing.certificate.serial_number,
        principal=OP,
        reason=RevocationReason.CA_COMPROMISE,
        ca="root",
    )
    resp = _load(
        (await env.status.ocsp(ocsp_request(root, [issuing.certificate.serial_number]))).der
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is x509.ReasonFlags.ca_compromise


async def test_short_lived_revocation_reflected(env: Env) -> None:
    await env.hierarchy()
    await env.engine.create_subordinate(
        "short", parent="root", actor=OP, mode=CAMode.SHORT_LIVED, path_length=0
    )
    short = (await env.engine.get_ca("short")).certificate
    leaf = await env.leaf("short")
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=7)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    await env.engine.revoke(leaf.serial_number, principal=OP, ca="short")
    resp = _load((await env.status.ocsp(ocsp_request(short, [leaf.serial_number]))).der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is None  # unspecified is omitted (RFC 5280 §5.3.1)


def test_answer_etag_is_content_hash() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    a = responder.OcspAnswer.signed(b"x", this_update=now, next_update=now, cacheable=True)
    assert a.etag == '"' + hashlib.sha1(b"x", usedforsecurity=False).hexdigest() + '"'
    assert a.last_modified == "Mon, 01 Jun 2026 00:00:00 GMT"


async def test_other_process_change_invalidates_cache_once(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    body = ocsp_request(issuing, [leaf.serial_number])
    # a second node: same storage, its own cache, not attached to this engine
    other = status_api.StatusService(env.engine, env.repo, env.store, clock=env.clock)
    await other.start()
    await other.responder.poll_changes()
    assert _load((await other.ocsp(body)).der).certificate_status is ocsp.OCSPCertStatus.GOOD
    env.clock.advance(timedelta(seconds=1))
    await env.engine.revoke(leaf.serial_number, principal=OP)  # handled by env.status only
    assert other.cached_ocsp(body) is not None  # still the old answer until it polls
    assert await other.responder.poll_changes() == 1
    assert other.cached_ocsp(body) is None
    assert _load((await other.ocsp(body)).der).certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert await other.responder.poll_changes() == 0  # handled once
    env.clock.advance(timedelta(seconds=30))
    assert await other.responder.poll_changes() == 0
    assert other.cached_ocsp(body) is not None


async def test_poll_reads_nothing_while_nothing_is_cached(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await env.hierarchy()
    await env.leaf()
    reads: list[datetime] = []
    real = env.store.changed_since

    async def spy(since: datetime, *, limit: int) -> Any:
        reads.append(since)
        return await real(since, limit=limit)

    monkeypatch.setattr(env.store, "changed_since", spy)
    other = status_api.StatusService(env.engine, env.repo, env.store, clock=env.clock)
    assert await other.responder.poll_changes() == 0
    assert reads == []


async def test_concurrent_misses_share_one_lookup(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    body = ocsp_request(issuing, [leaf.serial_number])
    env.status.responder.invalidate([((await env.engine.get_ca("issuing")).id, leaf.serial_number)])
    reads = 0
    original = env.store.get_response

    async def counting(ca_id: CAId, serial: Serial) -> status_ports.StoredResponse | None:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        return await original(ca_id, serial)

    env.store.get_response = counting  # type: ignore[method-assign]
    answers = await asyncio.gather(*(env.status.ocsp(body) for _ in range(20)))
    assert reads == 1
    assert len({a.der for a in answers}) == 1


async def test_cache_can_be_turned_off(key_backend: keys.Pkcs8KeyBackend) -> None:
    env = Env(key_backend, cache_entries=0)
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    body = ocsp_request(issuing, [leaf.serial_number])
    assert _load((await env.status.ocsp(body)).der).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert env.status.cached_ocsp(body) is None


def _padded(issuer: x509.Certificate, serial: int, pad: bytes) -> bytes:
    """Return a request for one serial with ``pad`` as its requestorName (a URI)."""
    plain = ocsp_request(issuer, [serial])
    request_list = ocsp_codec.parse_request(plain).items[0].raw
    return _seq(_seq(_w(0xA1, _w(0x86, pad)), _seq(_seq(request_list))))


async def test_padded_requests_share_one_bounded_entry(env: Env) -> None:
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    cache = env.status.responder.cache
    first = await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))
    size = cache.size_bytes
    # 3,000 requests of ~8 KiB for the same certificate, each padded differently.
    for i in range(3000):
        body = _padded(issuing, leaf.serial_number, b"%05d" % i + b"a" * 8000)
        assert len(body) > 8000
        answer = await env.status.ocsp(body)
        assert answer.der == first.der
    assert len(cache) == 1
    assert cache.size_bytes == size < 4096  # one answer and one short alias: no body kept


async def test_cache_is_bounded_in_bytes(key_backend: keys.Pkcs8KeyBackend) -> None:
    env = Env(key_backend, cache_bytes=64 * 1024, live_signatures_per_second=0)
    issuing = await env.hierarchy()
    for serial in range(1, 2001):  # unknown serials: each a distinct answer
        body = _padded(issuing, serial, b"p" * 8000)
        resp = _load((await env.status.ocsp(body)).der)
        assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
        assert resp.serial_number == serial
        assert env.status.responder.cache.size_bytes <= 64 * 1024
    assert 10 < len(env.status.responder.cache) < 2000


async def test_unknown_serial_flood_does_not_sign_per_request(
    key_backend: keys.Pkcs8KeyBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(key_backend, live_signatures_per_second=5)
    issuing = await env.hierarchy()
    leaf = await env.leaf()
    signed: list[int] = []
    encode = ocsp_codec.encode_response

    def spy(*args: Any, **kwargs: Any) -> bytes:
        signed.append(1)
        return encode(*args, **kwargs)

    monkeypatch.setattr(ocsp_codec, "encode_response", spy)
    refused = 0
    for serial in range(10_000, 10_200):  # 200 distinct unknown serials, no time passes
        if len(signed) < 10:
            resp = _load((await env.status.ocsp(ocsp_request(issuing, [serial]))).der)
            assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
            continue
        with pytest.raises(EngineError) as err:
            await env.status.ocsp(ocsp_request(issuing, [serial]))
        assert err.value.kind is ProblemKind.RATE_LIMITED  # tryLater on the wire
        refused += 1
    assert len(signed) == 10  # the burst (2 s of 5 a second), then tryLater
    assert refused == 190
    # Answers already signed are cached by CertID: asking again signs nothing.
    for serial in range(10_000, 10_010):
        await env.status.ocsp(ocsp_request(issuing, [serial], nonce=b"n%d" % serial))
    assert len(signed) == 10
    # Issued certificates are pre-signed: the flood never delays them.
    good = _load((await env.status.ocsp(ocsp_request(issuing, [leaf.serial_number]))).der)
    assert good.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert len(signed) == 10
    env.clock.advance(timedelta(seconds=1))
    await env.status.ocsp(ocsp_request(issuing, [20_000]))
    assert len(signed) == 11  # the budget refills with time
