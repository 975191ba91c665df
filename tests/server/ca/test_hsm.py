"""CA keys in a PKCS#11 token (SoftHSM2): hierarchy, leaves, CRLs and OCSP signed by the token,
keys that cannot leave it, a token that fails and comes back, and concurrent signing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11

from server.ca import api, grants, hsm, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.hsm import backend as hsm_backend
from server.ca.hsm import pool as hsm_pool
from server.ca.signer import Signer
from server.ca.status import api as status_api
from server.ca.status import responder
from server.ca.types import KeyAlgorithm, KeyHandle, Principal, Serial
from server.store.memory import MemoryRepository, MemoryStatusRepository
from tests.support import FakeClock, SoftHsm, lint_errors, make_csr, openssl_verify

OP = Principal("operator", "test")
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm test")])


class _Pin:
    """A PIN source the test can change (as an operator edits the PIN file)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self) -> str:
        return self.value


def _pool(
    softhsm: SoftHsm, pin: _Pin | None = None, *, size: int = 4, retry: float = 0.0
) -> hsm.SessionPool:
    return hsm.SessionPool(
        hsm.TokenSettings(
            module=softhsm.module, token_label=softhsm.label, pool_size=size, retry_seconds=retry
        ),
        pin or _Pin(softhsm.pin),
    )


@pytest.fixture
def token(softhsm: SoftHsm) -> Iterator[hsm.Pkcs11KeyBackend]:
    backend = hsm.Pkcs11KeyBackend(_pool(softhsm))
    yield backend
    backend.close()


@pytest.fixture
def hsm_engine(
    memory_repo: MemoryRepository,
    key_backend: keys.Pkcs8KeyBackend,
    token: hsm.Pkcs11KeyBackend,
) -> api.CAEngine:
    """An engine whose CAs pick pkcs8 (default) or pkcs11."""
    return api.CAEngine(
        memory_repo,
        keys.KeyBackends(key_backend, token),
        settings=api.EngineSettings(default_ca="issuing"),
    )


def _verify(public_key: CertificateIssuerPublicKeyTypes, signature: bytes, data: bytes) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        digest = hashes.SHA256() if public_key.key_size < 3072 else hashes.SHA384()
        public_key.verify(signature, data, padding.PKCS1v15(), digest)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        digest = hashes.SHA256() if public_key.curve.key_size <= 256 else hashes.SHA384()
        public_key.verify(signature, data, ec.ECDSA(digest))
    else:
        assert isinstance(public_key, ed25519.Ed25519PublicKey)
        public_key.verify(signature, data)


def _ocsp_request(issuer: x509.Certificate, serial: int) -> bytes:
    name_hash = hashes.Hash(hashes.SHA1())  # noqa: S303 - RFC 5019 CertID
    name_hash.update(issuer.subject.public_bytes())
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            name_hash.finalize(),
            x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest,
            serial,
            hashes.SHA1(),  # noqa: S303 - RFC 5019 CertID
        )
        .build()
        .public_bytes(serialization.Encoding.DER)
    )


@pytest.mark.parametrize(
    "alg",
    [KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_3072, KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384],
    ids=["ok/rsa2048", "ok/rsa3072", "ok/ec-p256", "ok/ec-p384"],
)
async def test_hierarchy_leaves_crl_ocsp_signed_by_token(
    hsm_engine: api.CAEngine, memory_repo: MemoryRepository, alg: KeyAlgorithm
) -> None:
    root = await hsm_engine.create_root("root", actor=OP, key_algorithm=alg, key_backend="pkcs11")
    sub = await hsm_engine.create_subordinate(
        "issuing", parent="root", actor=OP, key_algorithm=alg, key_backend="pkcs11"
    )
    assert root.key.backend == sub.key.backend == "pkcs11"
    # The handle holds only the public key: nothing in storage can sign.
    assert serialization.load_der_public_key(sub.key.blob) == sub.certificate.public_key()
    root_cert, sub_cert = root.certificate, sub.certificate
    root_cert.verify_directly_issued_by(root_cert)
    sub_cert.verify_directly_issued_by(root_cert)
    csr, _ = make_csr(["dns:hsm.internal"])
    leaf = await hsm_engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    leaf.certificate.verify_directly_issued_by(sub_cert)
    for cert in (root_cert, sub_cert, leaf.certificate):
        assert lint_errors(cert) == []
    result = openssl_verify(leaf.certificate, leaf.chain)
    assert result.returncode == 0, result.stderr

    status = status_api.StatusService(
        hsm_engine,
        memory_repo,
        MemoryStatusRepository(memory_repo),
        settings=status_api.StatusSettings(ocsp=responder.ResponderSettings()),
    ).attach()
    await status.start()
    other, _ = make_csr(["dns:revoked.hsm.internal"])
    bad = await hsm_engine.issue(other, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    await hsm_engine.revoke(bad.certificate.serial_number, principal=OP)
    crl_rec = await status.crls.regenerate(await hsm_engine.get_ca("issuing"), actor=str(OP))
    root_crl = await status.crls.regenerate(await hsm_engine.get_ca("root"), actor=str(OP))
    assert crl_rec is not None
    assert root_crl is not None
    crl = x509.load_der_x509_crl(crl_rec.der)
    assert crl.is_signature_valid(sub_cert.public_key())  # type: ignore[arg-type]
    checked = openssl_verify(
        leaf.certificate, leaf.chain, extra=["-crl_check_all"], crls=[crl_rec.der, root_crl.der]
    )
    assert checked.returncode == 0, checked.stderr
    revoked = openssl_verify(bad.certificate, bad.chain, extra=["-crl_check"], crls=[crl_rec.der])
    assert b"certificate revoked" in revoked.stderr + revoked.stdout

    answer = await status.ocsp(_ocsp_request(sub_cert, leaf.certificate.serial_number))
    resp = ocsp.load_der_ocsp_response(answer.der)
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    _verify(sub_cert.public_key(), resp.signature, resp.tbs_response_bytes)  # type: ignore[arg-type]


async def test_import_csr_signed_by_token(hsm_engine: api.CAEngine) -> None:
    ca = await hsm_engine.create_import_request(
        "imported", actor=OP, key_algorithm=KeyAlgorithm.EC_P384, key_backend="pkcs11"
    )
    csr = x509.load_der_x509_csr(ca.csr_der or b"")
    assert csr.is_signature_valid
    assert csr.public_key() == serialization.load_der_public_key(ca.key.blob)
    assert ca.key.backend == "pkcs11"


async def test_pkcs8_and_pkcs11_cas_coexist(
    hsm_engine: api.CAEngine, memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend
) -> None:
    root = await hsm_engine.create_root("root", actor=OP)
    sub = await hsm_engine.create_subordinate(
        "issuing", parent="root", actor=OP, key_backend="pkcs11"
    )
    assert (root.key.backend, sub.key.backend) == ("pkcs8", "pkcs11")
    csr, _ = make_csr()
    leaf = await hsm_engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    assert openssl_verify(leaf.certificate, leaf.chain).returncode == 0
    with pytest.raises(EngineError) as err:
        await hsm_engine.create_root("other", actor=OP, key_backend="vault")
    assert err.value.kind is ProblemKind.MALFORMED
    # A process without [pkcs11] cannot load the token CA, and says why.
    plain = api.CAEngine(memory_repo, keys.KeyBackends(key_backend))
    with pytest.raises(EngineError) as err:
        await plain.key_signer(sub.key)
    assert err.value.kind is ProblemKind.SERVER_INTERNAL
    assert "'pkcs11', which is not configured" in err.value.detail


def test_ed25519_in_token_and_ml_dsa_refused(token: hsm.Pkcs11KeyBackend) -> None:
    handle, public = token.create(KeyAlgorithm.ED25519, label="ed")
    signer = token.load(handle)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(signer.sign(b"tbs"), b"tbs")
    with pytest.raises(EngineError) as err:
        token.create(KeyAlgorithm.ML_DSA_44, label="pq")
    assert err.value.kind is ProblemKind.POLICY


def test_ed25519_refused_without_eddsa(
    token: hsm.Pkcs11KeyBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hsm_backend._has_eddsa
    monkeypatch.setattr(
        hsm_backend, "_has_eddsa", lambda mechanisms: real(mechanisms - {pkcs11.Mechanism.EDDSA})
    )
    with pytest.raises(EngineError) as err:
        token.create(KeyAlgorithm.ED25519, label="ed")
    assert err.value.kind is ProblemKind.POLICY
    assert "no CKM_EDDSA" in err.value.detail


def _token_session(softhsm: SoftHsm) -> pkcs11.Session:
    token = pkcs11.lib(softhsm.module).get_token(token_label=softhsm.label)
    try:
        return token.open(rw=True, user_pin=softhsm.pin)
    except p11.UserAlreadyLoggedIn:
        return token.open(rw=True)


@pytest.mark.parametrize(
    "alg", [KeyAlgorithm.RSA_2048, KeyAlgorithm.EC_P256], ids=["rsa2048", "ec-p256"]
)
def test_key_cannot_leave_the_token(
    token: hsm.Pkcs11KeyBackend, softhsm: SoftHsm, alg: KeyAlgorithm
) -> None:
    handle, _ = token.create(alg, label="custody")
    session = _token_session(softhsm)
    try:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=handle.ref.encode())
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        secret = Attribute.PRIVATE_EXPONENT if alg is KeyAlgorithm.RSA_2048 else Attribute.VALUE
        with pytest.raises(p11.AttributeSensitive):
            key[secret]
        wrapper = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True})
        with pytest.raises(p11.PKCS11Error):
            wrapper.wrap_key(key)  # type: ignore[attr-defined]
        # Negative control: the same export works on a key made extractable.
        _, loose = session.generate_keypair(
            KeyType.RSA,
            2048,
            private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
        assert wrapper.wrap_key(loose)  # type: ignore[attr-defined]
    finally:
        session.close()
    # SoftHSM2 would default to the same; other tokens need the template to say so.
    assert hsm_backend._PRIVATE_TEMPLATE[Attribute.EXTRACTABLE] is False
    assert hsm_backend._PRIVATE_TEMPLATE[Attribute.SENSITIVE] is True


def _draft(public_key: CertificateIssuerPublicKeyTypes, serial: int) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_NAME)
        .issuer_name(_NAME)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )


def _signs(signer: Signer) -> bool:
    cert = signer.sign_certificate(_draft(signer.public_key(), 1))
    cert.verify_directly_issued_by(cert)
    return True


def test_wrong_pin_refused_clearly_and_not_retried(softhsm: SoftHsm) -> None:
    hsm_pool.reinitialize(softhsm.module)  # no other login in this process
    pin = _Pin("wrong-pin")
    backend = hsm.Pkcs11KeyBackend(_pool(softhsm, pin))
    maker = hsm.Pkcs11KeyBackend(_pool(softhsm))
    handle, _ = maker.create(KeyAlgorithm.EC_P256, label="pin")
    maker.close()
    hsm_pool.reinitialize(softhsm.module)
    signer = backend.load(handle)  # loading needs no token
    with pytest.raises(EngineError) as err:
        signer.sign(b"x")
    assert err.value.kind is ProblemKind.UNAVAILABLE
    assert err.value.retry_after is not None
    assert "refused the PIN" in err.value.detail
    assert pin.value not in err.value.detail
    # The same PIN is not offered again (a real token locks after a few tries).
    with pytest.raises(EngineError) as err:
        signer.sign(b"x")
    assert "not retried until the PIN changes" in err.value.detail
    pin.value = softhsm.pin
    assert _signs(signer)
    backend.close()


def test_token_removed_then_back(softhsm: SoftHsm, token: hsm.Pkcs11KeyBackend) -> None:
    handle, _ = token.create(KeyAlgorithm.EC_P256, label="removable")
    signer = token.load(handle)
    assert _signs(signer)
    (token_dir,) = softhsm.tokens.iterdir()
    away = softhsm.tokens.parent / "away"
    token_dir.rename(away)
    try:
        with pytest.raises(EngineError) as err:
            signer.sign(b"x")
        assert err.value.kind is ProblemKind.UNAVAILABLE
        assert repr(softhsm.label) in err.value.detail
    finally:
        away.rename(token_dir)
    assert _signs(signer)


def test_failed_connect_waits_before_trying_again(softhsm: SoftHsm) -> None:
    now = [0.0]
    pin = _Pin("")
    pool = hsm.SessionPool(
        hsm.TokenSettings(module=softhsm.module, token_label="no-such-token", retry_seconds=5),
        pin,
        monotonic=lambda: now[0],
    )
    with pytest.raises(EngineError):
        pool.run("test", lambda lease: None)
    # Fixed meanwhile, but within retry_seconds the stored failure answers without the token.
    pool.settings = hsm.TokenSettings(
        module=softhsm.module, token_label=softhsm.label, retry_seconds=5
    )
    pin.value = softhsm.pin
    with pytest.raises(EngineError) as err:
        pool.run("test", lambda lease: None)
    assert "no-such-token" in err.value.detail
    now[0] = 6.0
    pool.run("test", lambda lease: None)
    pool.close()


def test_concurrent_signing_uses_the_pool(token: hsm.Pkcs11KeyBackend) -> None:
    handle, _ = token.create(KeyAlgorithm.EC_P256, label="busy")
    signer = token.load(handle)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        certs = list(
            pool.map(
                lambda n: signer.sign_certificate(_draft(signer.public_key(), n)), range(1, 51)
            )
        )
    for cert in certs:
        cert.verify_directly_issued_by(cert)
    assert len({c.serial_number for c in certs}) == 50


def test_calls_into_the_module_are_serialised(softhsm: SoftHsm) -> None:
    pool = _pool(softhsm, size=4)
    lock = threading.Lock()
    active: set[int] = set()
    peak = [0]

    def hold(lease: hsm_pool.Lease) -> None:
        with lock:
            assert id(lease) not in active, "a session leased to two threads at once"
            active.add(id(lease))
            peak[0] = max(peak[0], len(active))
        time.sleep(0.02)
        with lock:
            active.discard(id(lease))

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as threads:
        list(threads.map(lambda _: pool.run("hold", hold), range(50)))
    # C_Initialize(NULL) promises no locking: one call into the module at a time.
    assert peak[0] == 1
    pool.close()


async def test_concurrent_issuance(hsm_engine: api.CAEngine) -> None:
    await hsm_engine.create_root("root", actor=OP, key_backend="pkcs11")
    await hsm_engine.create_subordinate("issuing", parent="root", actor=OP, key_backend="pkcs11")
    csrs = [make_csr([f"dns:n{i}.internal"])[0] for i in range(50)]
    issued = await asyncio.gather(
        *(
            hsm_engine.issue(c, grant=grants.OPERATOR, principal=OP, profile="tls-server")
            for c in csrs
        )
    )
    for leaf in issued:
        leaf.certificate.verify_directly_issued_by(leaf.chain[0])


def test_damaged_handle_refused(token: hsm.Pkcs11KeyBackend) -> None:
    with pytest.raises(EngineError) as err:
        token.load(KeyHandle(backend="pkcs11", ref="x", blob=b"not a key"))
    assert err.value.kind is ProblemKind.SERVER_INTERNAL


def test_missing_key_is_a_clear_error(token: hsm.Pkcs11KeyBackend) -> None:
    handle, _ = token.create(KeyAlgorithm.EC_P256, label="gone")
    signer = token.load(handle.__class__(backend="pkcs11", ref="gone-missing", blob=handle.blob))
    with pytest.raises(EngineError) as err:
        signer.sign(b"x")
    assert err.value.kind is ProblemKind.UNAVAILABLE
    assert "NoSuchKey" in err.value.detail


async def test_delegated_ocsp_signer_key_follows_the_ca_into_the_token(
    hsm_engine: api.CAEngine, memory_repo: MemoryRepository
) -> None:
    """A token CA's delegated OCSP signer key is made in the token too; a software CA's is not."""
    await hsm_engine.create_root("root", actor=OP, key_backend="pkcs11")
    await hsm_engine.create_subordinate("issuing", parent="root", actor=OP, key_backend="pkcs11")
    await hsm_engine.create_subordinate("soft", parent="root", actor=OP)
    store = MemoryStatusRepository(memory_repo)
    status = status_api.StatusService(
        hsm_engine,
        memory_repo,
        store,
        settings=status_api.StatusSettings(ocsp=responder.ResponderSettings(delegated_signer=True)),
    ).attach()
    for name, backend in (("issuing", "pkcs11"), ("soft", "pkcs8")):
        ca = await hsm_engine.get_ca(name)
        csr, _ = make_csr([f"dns:{name}.hsm.internal"])
        leaf = await hsm_engine.issue(
            csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca=name
        )
        answer = await status.ocsp(_ocsp_request(ca.certificate, leaf.certificate.serial_number))
        resp = ocsp.load_der_ocsp_response(answer.der)
        assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
        record = await store.current_signer(ca.id)
        assert record is not None
        assert record.key.backend == backend
        (signer_cert,) = resp.certificates
        assert signer_cert.public_bytes(serialization.Encoding.DER) == record.cert_der
        signer_cert.verify_directly_issued_by(ca.certificate)
        _verify(signer_cert.public_key(), resp.signature, resp.tbs_response_bytes)  # type: ignore[arg-type]
        if backend == "pkcs11":
            # The database row holds the signer's public key only.
            assert serialization.load_der_public_key(record.key.blob) == signer_cert.public_key()
    # An offline token CA's ceremony makes its signer for serving processes, which
    # may not have the token: that key goes to the default backend.
    await hsm_engine.set_ca_offline("root", offline=True, actor=OP)
    hsm_engine.begin_ceremony()
    done = await status.sign_offline("root", days=7, ocsp_signer=True, actor=str(OP))
    assert done.signer is not None
    assert done.signer.key.backend == "pkcs8"


def _token_objects(softhsm: SoftHsm, ref: str) -> int:
    """Return how many objects (private and public keys) the token holds with CKA_ID ``ref``."""
    pool = _pool(softhsm, size=1)
    try:
        return pool.run(
            "count objects",
            lambda lease: len(list(lease.session.get_objects({Attribute.ID: ref.encode()}))),
        )
    finally:
        pool.close()


async def test_retired_ocsp_signer_keys_leave_the_token(
    memory_repo: MemoryRepository,
    key_backend: keys.Pkcs8KeyBackend,
    token: hsm.Pkcs11KeyBackend,
    softhsm: SoftHsm,
) -> None:
    """Rotated and expired signers' key pairs are destroyed; the current one and valid ones stay."""
    clock = FakeClock()
    lifetime = timedelta(days=30)
    engine = api.CAEngine(
        memory_repo,
        keys.KeyBackends(key_backend, token),
        settings=api.EngineSettings(default_ca="issuing"),
        clock=clock,
    )
    await engine.create_root("root", actor=OP)
    issuing = await engine.create_subordinate(
        "issuing", parent="root", actor=OP, key_backend="pkcs11"
    )
    store = MemoryStatusRepository(memory_repo)
    status = status_api.StatusService(
        engine,
        memory_repo,
        store,
        settings=status_api.StatusSettings(
            ocsp=responder.ResponderSettings(delegated_signer=True, signer_lifetime=lifetime)
        ),
        clock=clock,
    ).attach()
    await status.start()
    csr, _ = make_csr(["dns:rotate.hsm.internal"])
    await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    first = await store.current_signer(issuing.id)
    assert first is not None
    assert first.key.backend == "pkcs11"
    # Half-life: refreshing the stale answer rotates to a new signer, also in the token.
    clock.advance(lifetime / 2 + timedelta(hours=1))
    assert await status.responder.refresh_stale() == 1
    second = await store.current_signer(issuing.id)
    assert second is not None
    assert second.serial != first.serial
    assert second.key.backend == "pkcs11"
    assert _token_objects(softhsm, first.key.ref) == _token_objects(softhsm, second.key.ref) == 2

    # Replaced but valid, then expired within the margin: the key pair stays.
    assert await status.retire_signers() == 0
    clock.current = first.not_after + timedelta(hours=23)
    assert await status.retire_signers() == 0
    assert _token_objects(softhsm, first.key.ref) == 2

    # A record naming a CA's key (a mix-up) never destroys that key.
    store.signers.insert(0, dataclasses.replace(first, serial=Serial(7), key=issuing.key))
    clock.current = first.not_after + timedelta(days=1, seconds=1)
    assert await status.retire_signers() == 1
    assert _token_objects(softhsm, first.key.ref) == 0  # private and public key destroyed
    assert _token_objects(softhsm, issuing.key.ref) == 2
    assert _token_objects(softhsm, second.key.ref) == 2
    assert [s.serial for s in await store.list_signers(issuing.id)] == [7, second.serial]
    assert [e.target for e in memory_repo.audit if e.action == "ocsp.signer-key-destroy"] == [
        f"issuing/{first.serial:X}"
    ]
    # The current signer's key and the CA's key still sign in the token.
    for handle in (second.key, issuing.key):
        signer = await engine.key_signer(handle)
        _verify(signer.public_key(), signer.sign(b"still here"), b"still here")
    # Destroying again finds nothing and is not an error (a retried round).
    token.destroy(first.key)

    # The current signer stays even after it expired, until one replaces it.
    store.signers.pop(0)
    clock.current = second.not_after + timedelta(days=30)
    assert await status.retire_signers() == 0
    assert _token_objects(softhsm, second.key.ref) == 2
