"""An EST label bound to a Matter PAI enrolls DACs (factory stations over EST)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.ca.est import api as est_api
from server.ca.matter import api as matter_api
from server.ca.matter import oids, rules
from tests.protocols.est.conftest import OP, PKCS10, PREFIX, EstEnv, b64, basic, certs_from_body
from tests.support import openssl_verify


def _nocsr(curve: ec.EllipticCurve, *, pid: str | None = None) -> bytes:
    key = ec.generate_private_key(curve)
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, "Factory DAC 0001")]
    if pid is not None:
        attrs.append(x509.NameAttribute(oids.PRODUCT_ID, pid))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attrs))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


async def test_pai_bound_label_enrolls_valid_dacs(est_env: EstEnv) -> None:
    matter = matter_api.MatterService(est_env.engine)
    await matter.create_paa("paa", actor=OP, vid=0xFFF1)
    await matter.create_pai("pai", paa="paa", vid=0xFFF1, pid=0x8000, actor=OP)
    await est_env.service.add_label(
        est_api.EstLabel(name="factory", ca="pai", profile="matter-dac"), actor=OP
    )
    await est_env.service.add_user("factory", "dev1", "correct-horse-battery", actor=OP)
    before = await est_env.cert_count()

    resp = await est_env.client.post(
        f"{PREFIX}/factory/simpleenroll",
        data=b64(_nocsr(ec.SECP256R1())),
        headers={**PKCS10, **basic()},
    )
    assert resp.status == 200, await resp.text()
    (dac,) = certs_from_body(await resp.read())
    chain_resp = await est_env.client.get(f"{PREFIX}/factory/cacerts")
    # certs-only PKCS#7 is a SET: order the chain by name, nearest issuer first.
    by_subject = {c.subject: c for c in certs_from_body(await chain_resp.read())}
    pai = (await est_env.engine.get_ca("pai")).certificate
    paa = (await est_env.engine.get_ca("paa")).certificate
    assert set(by_subject) == {pai.subject, paa.subject}
    chain = [by_subject[pai.subject], by_subject[paa.subject]]
    rules.validate_chain(dac, rules.MatterKind.DAC, chain)
    ids = rules.extract_vid_pid(dac)
    assert (ids.vendor_id, ids.product_id) == (0xFFF1, 0x8000)
    result = openssl_verify(dac, chain)
    assert result.returncode == 0, result.stderr
    assert await est_env.cert_count() == before + 1

    # Negative controls: a P-384 key and a PID outside the PAI's scope are refused
    # with the Matter rule named, and nothing is stored.
    # A wrong curve is a bad CSR (400); a PID outside the PAI's scope is refused by
    # policy (403).
    for body, rule, status in (
        (_nocsr(ec.SECP384R1()), "matter-curve", 400),
        (_nocsr(ec.SECP256R1(), pid="8001"), "chain-pid-mismatch", 403),
    ):
        resp = await est_env.client.post(
            f"{PREFIX}/factory/simpleenroll", data=b64(body), headers={**PKCS10, **basic()}
        )
        assert resp.status == status
        assert rule in (await resp.text()).lower()
    assert await est_env.cert_count() == before + 1
