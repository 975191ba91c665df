"""CA hierarchies: five tiers, path lengths, name constraints, ML-DSA, import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from server.ca import api, grants
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CAStatus, KeyAlgorithm, Principal
from tests.support import make_csr, openssl, openssl_verify, pem, san

OP = Principal("operator", "test")


async def build_tiers(engine: api.CAEngine, depth: int, alg: KeyAlgorithm) -> list[str]:
    names = ["tier1"]
    await engine.create_root("tier1", actor=OP, key_algorithm=alg)
    for tier in range(2, depth + 1):
        await engine.create_subordinate(
            f"tier{tier}", parent=f"tier{tier - 1}", actor=OP, key_algorithm=alg
        )
        names.append(f"tier{tier}")
    return names


async def test_five_tiers_verify_and_sixth_refused(engine: api.CAEngine) -> None:
    names = await build_tiers(engine, 5, KeyAlgorithm.EC_P256)
    path_lens = []
    for n in names:
        ca = await engine.get_ca(n)
        bc = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        path_lens.append(bc.path_length)
    assert path_lens == [4, 3, 2, 1, 0]
    csr, _ = make_csr(["dns:leaf.internal"])
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="tier5"
    )
    assert len(issued.chain) == 5
    result = openssl_verify(issued.certificate, issued.chain)
    assert result.returncode == 0, result.stderr
    with pytest.raises(EngineError) as err:
        await engine.create_subordinate("tier6", parent="tier5", actor=OP)
    assert err.value.kind is ProblemKind.POLICY
    assert "at most 5 tiers" in err.value.detail


async def test_path_length_zero_parent_refuses_children(engine: api.CAEngine) -> None:
    await engine.create_root("r", actor=OP)
    await engine.create_subordinate("issuing", parent="r", actor=OP, path_length=0)
    with pytest.raises(EngineError, match="pathLenConstraint is 0"):
        await engine.create_subordinate("below", parent="issuing", actor=OP)
    with pytest.raises(EngineError, match="not allowed here"):
        await engine.create_subordinate("wide", parent="r", actor=OP, path_length=9)


async def test_name_constraints_are_critical_and_enforced_by_openssl(engine: api.CAEngine) -> None:
    await engine.create_root("r", actor=OP)
    nc = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("corp.internal")], excluded_subtrees=None
    )
    ca = await engine.create_subordinate("issuing", parent="r", actor=OP, name_constraints=nc)
    ext = ca.certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    inside, _ = make_csr(["dns:a.corp.internal"])
    outside, _ = make_csr(["dns:evil.example"])
    good = await engine.issue(inside, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    assert openssl_verify(good.certificate, good.chain).returncode == 0
    # The engine refuses what a validator would reject, before signing anything.
    with pytest.raises(EngineError) as err:
        await engine.issue(outside, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    assert err.value.kind is ProblemKind.REJECTED_IDENTIFIER
    assert err.value.subproblems[0].identifier == "dns:evil.example"


@pytest.mark.parametrize(
    "alg", [KeyAlgorithm.ML_DSA_44, KeyAlgorithm.ML_DSA_65, KeyAlgorithm.ML_DSA_87]
)
async def test_ml_dsa_hierarchy_verifies_with_cryptography(
    engine: api.CAEngine, alg: KeyAlgorithm
) -> None:
    # Debian's OpenSSL 3.0 cannot verify ML-DSA; cryptography's verifier can.
    await build_tiers(engine, 3, alg)
    csr, _ = make_csr(["dns:pq.internal"], alg=alg)
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="tier3"
    )
    assert issued.certificate.signature_algorithm_oid.dotted_string.startswith(
        "2.16.840.1.101.3.4.3."
    )
    store = verification.Store([issued.chain[-1]])
    verifier = (
        verification.PolicyBuilder()
        .store(store)
        .time(datetime.now(UTC) + timedelta(minutes=1))
        .build_server_verifier(x509.DNSName("pq.internal"))
    )
    chain = verifier.verify(issued.certificate, list(issued.chain[:-1]))
    assert len(chain) == 4
    # Negative control: a chain missing the middle CA does not verify.
    with pytest.raises(verification.VerificationError):
        verifier.verify(issued.certificate, [issued.chain[0]])


def _external_root(tmp: Path, basic: str = "critical,CA:TRUE") -> tuple[Path, Path]:
    key, cert = tmp / "ext-root.key", tmp / "ext-root.pem"
    out = openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        "3650",
        "-subj",
        "/O=Acme Corp/CN=Acme Root",
        "-addext",
        f"basicConstraints={basic}",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    assert out.returncode == 0, out.stderr
    return key, cert


def _openssl_sign(tmp: Path, csr_pem: bytes, key: Path, cert: Path, ext: str) -> bytes:
    (tmp / "sub.csr").write_bytes(csr_pem)
    (tmp / "ext.cnf").write_text(f"[v3]\n{ext}\n")
    out = openssl(
        "x509",
        "-req",
        "-in",
        str(tmp / "sub.csr"),
        "-CA",
        str(cert),
        "-CAkey",
        str(key),
        "-CAcreateserial",
        "-days",
        "1000",
        "-extfile",
        str(tmp / "ext.cnf"),
        "-extensions",
        "v3",
        "-out",
        str(tmp / "sub.pem"),
    )
    assert out.returncode == 0, out.stderr
    return (tmp / "sub.pem").read_bytes()


_CA_EXT = (
    "basicConstraints=critical,CA:TRUE,pathlen:1\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid"
)


async def test_import_ca_signed_by_openssl_root(engine: api.CAEngine, tmp_path: Path) -> None:
    key, root = _external_root(tmp_path)
    pending = await engine.create_import_request("acme-issuing", actor=OP)
    assert pending.status is CAStatus.PENDING
    assert pending.csr_der
    csr_pem = x509.load_der_x509_csr(pending.csr_der).public_bytes(serialization.Encoding.PEM)
    signed = _openssl_sign(tmp_path, csr_pem, key, root, _CA_EXT)
    with pytest.raises(EngineError, match="chain up to the root is missing"):
        await engine.activate_import("acme-issuing", pem=signed, actor=OP)
    active = await engine.activate_import("acme-issuing", pem=signed + root.read_bytes(), actor=OP)
    assert active.status is CAStatus.ACTIVE
    assert active.tier == 2
    # The imported CA anchors the rest of the hierarchy and issues.
    await engine.create_subordinate("team", parent="acme-issuing", actor=OP)
    csr, _ = make_csr(["dns:svc.internal"])
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="team"
    )
    assert issued.chain[-1].subject.rfc4514_string() == "CN=Acme Root,O=Acme Corp"
    result = openssl_verify(issued.certificate, issued.chain)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("root_pathlen", "accepted"), [(0, False), (1, True)])
async def test_import_honours_the_root_path_length(
    engine: api.CAEngine, tmp_path: Path, root_pathlen: int, accepted: bool
) -> None:
    # Issue 12 repro: under a pathLen=0 root a CA was activated and its leaves failed to verify.
    key, root = _external_root(tmp_path, f"critical,CA:TRUE,pathlen:{root_pathlen}")
    pending = await engine.create_import_request("imp", actor=OP)
    csr_pem = x509.load_der_x509_csr(pending.csr_der or b"").public_bytes(
        serialization.Encoding.PEM
    )
    ext = _CA_EXT.replace("pathlen:1", "pathlen:0")
    signed = _openssl_sign(tmp_path, csr_pem, key, root, ext) + root.read_bytes()
    if not accepted:
        with pytest.raises(EngineError, match="pathLenConstraint forbids this chain") as err:
            await engine.activate_import("imp", pem=signed, actor=OP)
        assert err.value.kind is ProblemKind.MALFORMED
        assert (await engine.get_ca("imp")).status is CAStatus.PENDING
        return
    await engine.activate_import("imp", pem=signed, actor=OP)
    csr, _ = make_csr(["dns:svc.internal"])
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="imp"
    )
    result = openssl_verify(issued.certificate, issued.chain)
    assert result.returncode == 0, result.stderr


async def test_import_refuses_wrong_key_and_non_ca(engine: api.CAEngine, tmp_path: Path) -> None:
    key, root = _external_root(tmp_path)
    await engine.create_import_request("imp", actor=OP)
    other_csr, _ = make_csr(["dns:x.internal"])
    wrong_key = _openssl_sign(tmp_path, other_csr, key, root, _CA_EXT)
    with pytest.raises(EngineError, match="not for this CA's key"):
        await engine.activate_import("imp", pem=wrong_key + root.read_bytes(), actor=OP)
    ca = await engine.get_ca("imp")
    csr_pem = x509.load_der_x509_csr(ca.csr_der or b"").public_bytes(serialization.Encoding.PEM)
    not_ca = _openssl_sign(tmp_path, csr_pem, key, root, "basicConstraints=critical,CA:FALSE")
    with pytest.raises(EngineError, match="is not a CA"):
        await engine.activate_import("imp", pem=not_ca + root.read_bytes(), actor=OP)
    assert (await engine.get_ca("imp")).status is CAStatus.PENDING
    with pytest.raises(EngineError, match="not a PEM"):
        await engine.activate_import("imp", pem=b"garbage", actor=OP)


async def test_unknown_ca_and_duplicate_names(engine: api.CAEngine) -> None:
    await engine.create_root("r", actor=OP)
    with pytest.raises(EngineError) as err:
        await engine.create_root("r", actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    csr, _ = make_csr()
    with pytest.raises(EngineError) as err:
        await engine.issue(
            csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="nope"
        )
    assert err.value.kind is ProblemKind.NOT_FOUND
    with pytest.raises(EngineError) as err:
        await engine.create_root("bad name!", actor=OP)
    assert err.value.kind is ProblemKind.MALFORMED


def test_pem_helper_roundtrip() -> None:
    # Guard for the helpers the suites rely on.
    assert san("ip:10.0.0.1").value.exploded == "10.0.0.1"
    assert pem() == b""
