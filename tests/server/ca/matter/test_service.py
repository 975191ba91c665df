"""Matter PKI through the engine: PAA/PAI/DAC and RCAC/ICAC/NOC, storage, refusals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from server.ca import api, grants
from server.ca.errors import EngineError, ProblemKind
from server.ca.matter import api as matter_api
from server.ca.matter import oids, rules, tlv
from server.ca.matter.rules import MatterKind
from server.ca.types import CAKind, CertQuery, KeyAlgorithm, Principal
from server.store.memory import MemoryRepository
from tests.support import lint_errors, make_csr, openssl_verify

OP = Principal("operator", "test")
VID, PID = 0xFFF1, 0x8000
FABRIC = 0xFAB0_0000_0000_001D


def _csr(
    *,
    curve: ec.EllipticCurve | None = None,
    subject: list[x509.NameAttribute[str]] | None = None,
    extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
) -> bytes:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject or []))
    for ext, critical in extensions or []:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _dac_csr(vid: int | None = VID, pid: int | None = PID) -> bytes:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, "factory device 1")]
    if vid is not None:
        attrs.append(x509.NameAttribute(oids.VENDOR_ID, f"{vid:04X}"))
    if pid is not None:
        attrs.append(x509.NameAttribute(oids.PRODUCT_ID, f"{pid:04X}"))
    return _csr(subject=attrs)


async def _attestation(
    engine: api.CAEngine, *, vid_scoped: bool = True
) -> matter_api.MatterService:
    service = matter_api.MatterService(engine)
    await service.create_paa("paa", actor=OP, vid=VID if vid_scoped else None)
    await service.create_pai("pai", paa="paa", vid=VID, pid=PID, actor=OP)
    return service


async def _operational(engine: api.CAEngine) -> matter_api.MatterService:
    service = matter_api.MatterService(engine)
    await service.create_rcac("rcac", actor=OP, fabric_id=FABRIC)
    await service.create_icac("icac", rcac="rcac", actor=OP)
    return service


def _chain(engine_chain: tuple[x509.Certificate, ...]) -> list[x509.Certificate]:
    return list(engine_chain)


def _has_revocation_urls(cert: x509.Certificate) -> bool:
    oids_present = {ext.oid for ext in cert.extensions}
    return bool(
        oids_present
        & {
            ExtensionOID.CRL_DISTRIBUTION_POINTS,
            ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        }
    )


# ---------------------------------------------------------------------- attestation PKI


@pytest.mark.parametrize("vid_scoped", [True, False], ids=["ok/vid-scoped-paa", "ok/non-vid-paa"])
async def test_paa_pai_dac_hierarchy(
    engine: api.CAEngine, memory_repo: MemoryRepository, vid_scoped: bool
) -> None:
    service = await _attestation(engine, vid_scoped=vid_scoped)
    paa = await service.info("paa")
    pai = await service.info("pai")
    assert paa.ca.kind is CAKind.MATTER_PAA
    assert pai.ca.kind is CAKind.MATTER_PAI
    assert paa.vendor_id == (VID if vid_scoped else None)
    assert paa.product_id is None
    assert (pai.vendor_id, pai.product_id) == (VID, PID)
    assert pai.ca.parent_id == paa.ca.id
    assert pai.ca.tier == 2
    rules.validate_chain(paa.ca.certificate, MatterKind.PAA, [])
    rules.validate_chain(pai.ca.certificate, MatterKind.PAI, [paa.ca.certificate])

    creds = [
        c
        async for batch in service.issue_dacs(
            pai="pai", vid=VID, pid=PID, grant=grants.OPERATOR, actor=OP, count=7, batch_size=3
        )
        for c in batch
    ]
    assert [c.index for c in creds] == list(range(1, 8))
    chain = [pai.ca.certificate, paa.ca.certificate]
    for cred in creds:
        cert = cred.certificate
        rules.validate_chain(cert, MatterKind.DAC, chain)
        assert rules.extract_vid_pid(cert).vendor_id == VID
        assert not _has_revocation_urls(cert)
        # 64 bits from the CSPRNG plus the marker bit: 65-bit positive serials.
        assert cert.serial_number.bit_length() == 65
        result = openssl_verify(cert, chain)
        assert result.returncode == 0, result.stderr
        key = serialization.load_pem_private_key(cred.private_key_pem or b"", None)
        assert key.public_key() == cert.public_key()
        stored = memory_repo.certs[(pai.ca.id, cert.serial_number)]
        assert stored.profile == "matter-dac"
        assert stored.der == cred.record.der
    audits = [e for e in memory_repo.audit if e.action == "cert.issue" and "pai/" in e.target]
    assert len(audits) == 7


async def test_dac_chain_fails_openssl_against_another_paa(engine: api.CAEngine) -> None:
    service = await _attestation(engine)
    other = matter_api.MatterService(engine)
    await other.create_paa("other-paa", actor=OP, vid=VID)
    issued = await service.issue_dac(_dac_csr(), pai="pai", grant=grants.OPERATOR, actor=OP)
    pai = (await service.info("pai")).ca.certificate
    wrong_root = (await service.info("other-paa")).ca.certificate
    result = openssl_verify(issued.certificate, [pai, wrong_root])
    assert result.returncode != 0
    with pytest.raises(ValueError, match="chain-"):
        rules.validate_chain(issued.certificate, MatterKind.DAC, [pai, wrong_root])


async def test_engine_issue_dispatches_matter_dac(
    engine: api.CAEngine, memory_repo: MemoryRepository
) -> None:
    """What an EST label with ca=<PAI>, profile=matter-dac does: the ordinary issue path."""
    service = await _attestation(engine)
    assert engine.profile("matter-dac").allowed_key_algorithms == {KeyAlgorithm.EC_P256}
    issued = await engine.issue(
        _dac_csr(), grant=grants.OPERATOR, principal=OP, profile="matter-dac", ca="pai"
    )
    cert = issued.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "factory device 1"
    rules.validate_chain(cert, MatterKind.DAC, list(issued.chain))
    assert issued.record.profile == "matter-dac"
    assert memory_repo.certs[(issued.record.ca_id, issued.record.serial)] == issued.record
    # The CSR carries no VID/PID: both come from the PID-scoped PAI.
    bare = await engine.issue(
        _csr(), grant=grants.OPERATOR, principal=OP, profile="matter-dac", ca="pai"
    )
    assert rules.extract_vid_pid(bare.certificate) == rules.VidPid(VID, PID)
    generated = await engine.issue_with_generated_key(
        grant=grants.OPERATOR,
        principal=OP,
        profile="matter-dac",
        key_algorithm=KeyAlgorithm.EC_P256,
        subject=x509.Name([]),
        ca="pai",
    )
    assert generated.private_key_pem is not None
    rules.validate_chain(generated.certificate, MatterKind.DAC, list(generated.chain))
    assert (await service.info("pai")).ca.kind is CAKind.MATTER_PAI


async def test_bulk_dacs_from_csrs(engine: api.CAEngine, memory_repo: MemoryRepository) -> None:
    service = await _attestation(engine)
    csrs = [(f"dev{i}.pem", _csr()) for i in range(3)]
    creds = [
        c
        async for batch in service.issue_dacs(
            pai="pai", vid=VID, pid=PID, grant=grants.OPERATOR, actor=OP, csrs=csrs
        )
        for c in batch
    ]
    assert [c.source for c in creds] == ["dev0.pem", "dev1.pem", "dev2.pem"]
    assert all(c.private_key_pem is None for c in creds)
    for cred, (_, data) in zip(creds, csrs, strict=True):
        assert cred.certificate.public_key() == x509.load_pem_x509_csr(data).public_key()


async def _count(memory_repo: MemoryRepository) -> tuple[int, int]:
    return len(memory_repo.certs), len(memory_repo.cas)


Refusal = Callable[[matter_api.MatterService, api.CAEngine], Awaitable[object]]


async def _drain(service: matter_api.MatterService, **kwargs: object) -> None:
    async for _ in service.issue_dacs(actor=OP, grant=grants.OPERATOR, **kwargs):  # type: ignore[arg-type]  # test helper
        pass


REFUSALS: list[tuple[str, Refusal, ProblemKind, str]] = [
    (
        "wrong-curve",
        lambda s, e: e.issue(
            _csr(curve=ec.SECP384R1()),
            grant=grants.OPERATOR,
            principal=OP,
            profile="matter-dac",
            ca="pai",
        ),
        ProblemKind.BAD_PUBLIC_KEY,
        "matter-curve",
    ),
    (
        "wrong-curve-bulk-csr",
        lambda s, e: _drain(
            s, pai="pai", vid=VID, pid=PID, csrs=[("bad.pem", _csr(curve=ec.SECP384R1()))]
        ),
        ProblemKind.BAD_PUBLIC_KEY,
        "matter-curve",
    ),
    (
        "missing-vid-pai",
        lambda s, e: s.create_pai("pai2", paa="paa", vid=None, actor=OP),
        ProblemKind.POLICY,
        "pai-vid-required",
    ),
    (
        "vid-mismatch-pai",
        lambda s, e: s.create_pai("pai2", paa="paa", vid=0xFFF2, actor=OP),
        ProblemKind.POLICY,
        "chain-vid-mismatch",
    ),
    (
        "vid-mismatch-dac",
        lambda s, e: e.issue(
            _dac_csr(vid=0xFFF2),
            grant=grants.OPERATOR,
            principal=OP,
            profile="matter-dac",
            ca="pai",
        ),
        ProblemKind.POLICY,
        "chain-vid-mismatch",
    ),
    (
        "pid-mismatch-dac",
        lambda s, e: e.issue(
            _dac_csr(pid=0x8001),
            grant=grants.OPERATOR,
            principal=OP,
            profile="matter-dac",
            ca="pai",
        ),
        ProblemKind.POLICY,
        "chain-pid-mismatch",
    ),
    (
        "pid-mismatch-bulk",
        lambda s, e: _drain(s, pai="pai", vid=VID, pid=0x8001, count=2),
        ProblemKind.POLICY,
        "chain-pid-mismatch",
    ),
    (
        "bad-vid-format-csr",
        lambda s, e: e.issue(
            _csr(subject=[x509.NameAttribute(oids.VENDOR_ID, "fff1")]),
            grant=grants.OPERATOR,
            principal=OP,
            profile="matter-dac",
            ca="pai",
        ),
        ProblemKind.BAD_CSR,
        "matter-vid-format",
    ),
    (
        "wrong-key-usage",
        lambda s, e: e.issue(
            _csr(
                extensions=[
                    (
                        x509.KeyUsage(
                            digital_signature=True,
                            content_commitment=False,
                            key_encipherment=False,
                            data_encipherment=False,
                            key_agreement=False,
                            key_cert_sign=True,
                            crl_sign=False,
                            encipher_only=False,
                            decipher_only=False,
                        ),
                        True,
                    )
                ]
            ),
            grant=grants.OPERATOR,
            principal=OP,
            profile="matter-dac",
            ca="pai",
        ),
        ProblemKind.BAD_CSR,
        "dac-key-usage",
    ),
    (
        "ca-requested",
        lambda s, e: e.issue(
            _csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]),
            grant=grants.OPERATOR,
            principal=OP,
            profile="matter-dac",
            ca="pai",
        ),
        ProblemKind.BAD_CSR,
        "dac-ca",
    ),
    (
        "too-deep-pai-under-pai",
        lambda s, e: s.create_pai("pai2", paa="pai", vid=VID, actor=OP),
        ProblemKind.POLICY,
        "chain-depth",
    ),
    (
        "too-deep-icac-under-icac",
        lambda s, e: s.create_icac("icac2", rcac="icac", actor=OP),
        ProblemKind.POLICY,
        "chain-depth",
    ),
    (
        "dac-from-paa",
        lambda s, e: e.issue(
            _dac_csr(), grant=grants.OPERATOR, principal=OP, profile="matter-dac", ca="paa"
        ),
        ProblemKind.POLICY,
        "chain-issuer-kind",
    ),
    (
        "dac-from-general-ca",
        lambda s, e: e.issue(
            _dac_csr(), grant=grants.OPERATOR, principal=OP, profile="matter-dac", ca="general"
        ),
        ProblemKind.POLICY,
        "chain-issuer-kind",
    ),
    (
        "tls-server-from-pai",
        lambda s, e: e.issue(
            make_csr(["dns:x.internal"])[0],
            grant=grants.OPERATOR,
            principal=OP,
            profile="tls-server",
            ca="pai",
        ),
        ProblemKind.POLICY,
        "cannot issue",
    ),
    (
        "noc-from-pai",
        lambda s, e: s.issue_noc(
            _csr(), ca="pai", grant=grants.OPERATOR, actor=OP, fabric_id=FABRIC, node_id=1
        ),
        ProblemKind.POLICY,
        "chain-issuer-kind",
    ),
    (
        "noc-fabric-mismatch",
        lambda s, e: s.issue_noc(
            _csr(), ca="icac", grant=grants.OPERATOR, actor=OP, fabric_id=FABRIC + 1, node_id=1
        ),
        ProblemKind.POLICY,
        "chain-fabric-mismatch",
    ),
    (
        "noc-node-id-out-of-range",
        lambda s, e: s.issue_noc(
            _csr(), ca="icac", grant=grants.OPERATOR, actor=OP, node_id=0xFFFF_FFF0_0000_0000
        ),
        ProblemKind.BAD_CSR,
        "noc-node-id",
    ),
    (
        "noc-four-cats",
        lambda s, e: s.issue_noc(
            _csr(),
            ca="icac",
            grant=grants.OPERATOR,
            actor=OP,
            node_id=1,
            cats=[0x10001, 0x20001, 0x30001, 0x40001],
        ),
        ProblemKind.BAD_CSR,
        "noc-cat-count",
    ),
    (
        "noc-cat-version-zero",
        lambda s, e: s.issue_noc(
            _csr(), ca="icac", grant=grants.OPERATOR, actor=OP, node_id=1, cats=[0x10000]
        ),
        ProblemKind.BAD_CSR,
        "noc-cat-version",
    ),
    (
        "noc-with-san",
        lambda s, e: s.issue_noc(
            _csr(extensions=[(x509.SubjectAlternativeName([x509.DNSName("n.internal")]), False)]),
            ca="icac",
            grant=grants.OPERATOR,
            actor=OP,
            node_id=1,
        ),
        ProblemKind.BAD_CSR,
        "subjectAltName",
    ),
    (
        "paa-vid-out-of-range",
        lambda s, e: s.create_paa("paa2", actor=OP, vid=0xFFF5),
        ProblemKind.POLICY,
        "matter-vid-range",
    ),
]


@pytest.mark.parametrize(
    ("refusal", "kind", "text"),
    [pytest.param(f, k, t, id=f"fail/{name}") for name, f, k, t in REFUSALS],
)
async def test_refusals_name_the_rule_and_store_nothing(
    engine: api.CAEngine,
    memory_repo: MemoryRepository,
    refusal: Refusal,
    kind: ProblemKind,
    text: str,
) -> None:
    service = await _attestation(engine)
    await _operational(engine)
    await engine.create_root("general", actor=OP)
    before = await _count(memory_repo)
    audit_before = len(memory_repo.audit)
    with pytest.raises(EngineError) as err:
        await refusal(service, engine)
    assert err.value.kind is kind, err.value.detail
    assert text in err.value.detail
    assert await _count(memory_repo) == before
    assert len(memory_repo.audit) == audit_before


async def test_non_vid_paa_accepts_any_vid_pai(engine: api.CAEngine) -> None:
    service = matter_api.MatterService(engine)
    await service.create_paa("paa", actor=OP)
    await service.create_pai("pai-a", paa="paa", vid=0xFFF2, actor=OP)
    await service.create_pai("pai-b", paa="paa", vid=0xFFF3, actor=OP)
    # A PAI without PID: the DAC's PID comes from the request (or its CSR).
    issued = await service.issue_dac(
        _csr(), pai="pai-b", grant=grants.OPERATOR, actor=OP, pid=0x1234
    )
    assert rules.extract_vid_pid(issued.certificate) == rules.VidPid(0xFFF3, 0x1234)
    with pytest.raises(EngineError, match="dac-pid-required") as err:
        await engine.issue(
            _csr(), grant=grants.OPERATOR, principal=OP, profile="matter-dac", ca="pai-b"
        )
    assert err.value.kind is ProblemKind.BAD_CSR


async def test_dac_validity_nests_in_a_pai_with_expiry(engine: api.CAEngine) -> None:
    service = matter_api.MatterService(engine)
    await service.create_paa("paa", actor=OP, vid=VID, lifetime=timedelta(days=3650))
    pai = await service.create_pai("pai", paa="paa", vid=VID, actor=OP, lifetime=timedelta(days=30))
    issued = await service.issue_dac(
        _dac_csr(), pai="pai", grant=grants.OPERATOR, actor=OP, lifetime=timedelta(days=90)
    )
    assert issued.certificate.not_valid_after_utc == pai.certificate.not_valid_after_utc
    assert issued.certificate.not_valid_before_utc >= pai.certificate.not_valid_before_utc
    rules.validate_chain(issued.certificate, MatterKind.DAC, list(issued.chain))


# ---------------------------------------------------------------------- operational PKI


async def test_rcac_icac_noc(engine: api.CAEngine, memory_repo: MemoryRepository) -> None:
    service = await _operational(engine)
    rcac = await service.info("rcac")
    icac = await service.info("icac")
    assert rcac.fabric_id == FABRIC
    assert rcac.rcac_id is not None
    assert icac.fabric_id == FABRIC, "the ICAC inherits the RCAC's fabric id"
    assert icac.ca.kind is CAKind.MATTER_ICAC
    cats = [0xFFFF_0001, 0xFFFE_0001, 0xFFFD_0001]
    # Worst case for size: three CATs under an ICAC that carries a fabric id.
    issued = await service.issue_noc(
        _csr(), ca="icac", grant=grants.OPERATOR, actor=OP, node_id=0xFFFF_FFEF_FFFF_FFFF, cats=cats
    )
    cert = issued.certificate
    assert len(issued.record.der) <= tlv.MAX_DER_LENGTH
    assert tlv.tlv_to_x509(tlv.x509_to_tlv(issued.record.der)) == issued.record.der
    rules.validate_chain(cert, MatterKind.NOC, list(issued.chain))
    ids = rules.extract_operational_ids(cert)
    assert (ids.node_id, ids.fabric_id, sorted(ids.cats)) == (
        0xFFFF_FFEF_FFFF_FFFF,
        FABRIC,
        sorted(cats),
    )
    assert not _has_revocation_urls(cert)
    assert issued.record.profile == "matter-noc"
    assert memory_repo.certs[(icac.ca.id, issued.record.serial)] == issued.record
    # Directly under the RCAC, through the ordinary issue path with Matter parameters.
    direct = await engine.issue(
        _csr(),
        grant=grants.OPERATOR,
        principal=OP,
        profile="matter-noc",
        ca="rcac",
        matter=matter_api.MatterRequest(node_id=0x42),
    )
    rules.validate_chain(direct.certificate, MatterKind.NOC, list(direct.chain))
    assert rules.extract_operational_ids(direct.certificate).node_id == 0x42
    openssl = openssl_verify(cert, list(issued.chain))
    assert openssl.returncode == 0, openssl.stderr


async def test_noc_needs_a_fabric_id(engine: api.CAEngine) -> None:
    service = matter_api.MatterService(engine)
    await service.create_rcac("rcac", actor=OP)
    with pytest.raises(EngineError, match="noc-fabric-id") as err:
        await service.issue_noc(_csr(), ca="rcac", grant=grants.OPERATOR, actor=OP)
    assert err.value.kind is ProblemKind.MALFORMED
    issued = await service.issue_noc(
        _csr(), ca="rcac", grant=grants.OPERATOR, actor=OP, fabric_id=7
    )
    ids = rules.extract_operational_ids(issued.certificate)
    assert ids.fabric_id == 7
    assert ids.node_id is not None
    assert ids.node_id >= 1


@pytest.mark.parametrize(
    ("text", "digits", "value"),
    [
        pytest.param("FFF1", 4, 0xFFF1, id="ok/vid"),
        pytest.param("0x8000", 4, 0x8000, id="ok/0x-prefix"),
        pytest.param("fab000000000001d", 16, FABRIC, id="ok/lowercase-fabric"),
        pytest.param("FFFF1", 4, None, id="fail/too-long"),
        pytest.param("XYZ", 4, None, id="fail/not-hex"),
        pytest.param("", 4, None, id="fail/empty"),
    ],
)
def test_parse_hex_id(text: str, digits: int, value: int | None) -> None:
    if value is None:
        with pytest.raises(EngineError) as err:
            matter_api.parse_hex_id(text, digits=digits, what="an id")
        assert err.value.kind is ProblemKind.MALFORMED
    else:
        assert matter_api.parse_hex_id(text, digits=digits, what="an id") == value


# ---------------------------------------------------------------------- SQL storage


async def test_matter_on_sql(sql_engine: api.CAEngine) -> None:
    """Matter CAs and a multi-batch bulk run on SQLite and PostgreSQL."""
    service = await _attestation(sql_engine)
    await _operational(sql_engine)
    pai = await service.info("pai")
    assert pai.ca.kind is CAKind.MATTER_PAI
    assert pai.vendor_id == VID
    creds = [
        c
        async for batch in service.issue_dacs(
            pai="pai", vid=VID, pid=PID, grant=grants.OPERATOR, actor=OP, count=600, batch_size=256
        )
        for c in batch
    ]
    assert len({c.record.serial for c in creds}) == 600
    stored = await sql_engine.find_certificates(CertQuery(ca_id=pai.ca.id, limit=1000))
    assert len(stored) == 600
    assert {r.profile for r in stored} == {"matter-dac"}
    audits = await sql_engine.audit_log(limit=2000)
    assert sum(1 for e in audits if e.target.startswith("pai/")) == 600
    noc = await service.issue_noc(_csr(), ca="icac", grant=grants.OPERATOR, actor=OP, node_id=5)
    assert (await sql_engine.get_certificate("icac", noc.record.serial)).profile == "matter-noc"
    # Refused: nothing more is stored.
    with pytest.raises(EngineError, match="chain-pid-mismatch"):
        await _drain(service, pai="pai", vid=VID, pid=0x8001, count=3)
    assert len(await sql_engine.find_certificates(CertQuery(ca_id=pai.ca.id, limit=1000))) == 600
    # Reopened from storage, the kinds and ids are still derived from the certificates.
    reloaded = await sql_engine.list_cas()
    kinds = {c.name: c.kind for c in reloaded}
    assert kinds["paa"] is CAKind.MATTER_PAA
    assert kinds["icac"] is CAKind.MATTER_ICAC


async def test_every_matter_certificate_passes_pkilint(engine: api.CAEngine) -> None:
    """The Matter profiles stay RFC 5280 certificates (pkilint, severity ERROR)."""
    attestation = await _attestation(engine)
    operational = await _operational(engine)
    dac = await attestation.issue_dac(_dac_csr(), pai="pai", grant=grants.OPERATOR, actor=OP)
    noc = await operational.issue_noc(
        _csr(), ca="icac", grant=grants.OPERATOR, actor=OP, node_id=9, cats=[0x10001]
    )
    certs = {
        "paa": (await attestation.info("paa")).ca.certificate,
        "pai": (await attestation.info("pai")).ca.certificate,
        "dac": dac.certificate,
        "rcac": (await operational.info("rcac")).ca.certificate,
        "icac": (await operational.info("icac")).ca.certificate,
        "noc": noc.certificate,
    }
    assert {name: lint_errors(cert) for name, cert in certs.items()} == {key: [] for key in certs}
