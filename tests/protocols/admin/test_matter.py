"""Matter through the admin API: role x endpoint x scope, and what the endpoints make.

Beside the fixture's teamA/teamB tree: PAA ``paa`` with PAIs ``paiA`` and ``paiB``,
RCAC ``rcac`` (fabric FAB000000000001D) with ICACs ``icacA`` and ``icacB``. PAAs
and RCACs are roots (unscoped owners); PAIs and ICACs are made by owners of their
parent; DACs and NOCs are issued by issuers of their CA.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.ca.admin import api as admin_api
from server.ca.matter import api as matter_api
from server.ca.matter import oids, rules
from server.ca.matter.rules import MatterKind
from server.ca.types import CertQuery
from tests.protocols.admin.conftest import OP, AdminEnv

Role = admin_api.Role
P = admin_api.Permission
VID, PID = 0xFFF1, 0x8000
FABRIC = 0xFAB0_0000_0000_001D
_IDS: Final = {"vid": "FFF1", "pid": "8000"}


def _csr(subject: list[x509.NameAttribute[str]] | None = None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject or []))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _dac_csr() -> str:
    return _csr(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "device 1"),
            x509.NameAttribute(oids.VENDOR_ID, f"{VID:04X}"),
            x509.NameAttribute(oids.PRODUCT_ID, f"{PID:04X}"),
        ]
    )


async def _matter(env: AdminEnv) -> None:
    service = matter_api.MatterService(env.engine)
    await service.create_paa("paa", actor=OP, vid=VID)
    await service.create_rcac("rcac", actor=OP, fabric_id=FABRIC)
    for side in ("A", "B"):
        await service.create_pai(f"pai{side}", paa="paa", vid=VID, pid=PID, actor=OP)
        await service.create_icac(f"icac{side}", rcac="rcac", actor=OP)


@dataclass(frozen=True)
class Endpoint:
    """A Matter operation, the lineage of what it acts on (empty: a new root)."""

    name: str
    path: str
    permission: P
    lineage: tuple[str, ...]
    body: Callable[[], Any]
    created: str | None = None


ENDPOINTS = (
    Endpoint("create-paa", "/matter/paa", P.CREATE_ROOT, (), lambda: {"name": "newpaa"}, "newpaa"),
    Endpoint(
        "create-rcac",
        "/matter/rcac",
        P.CREATE_ROOT,
        (),
        lambda: {"name": "newrcac", "fabric_id": "1D"},
        "newrcac",
    ),
    Endpoint(
        "create-pai",
        "/cas/paa/matter/pai",
        P.MANAGE_CA,
        ("paa",),
        lambda: {"name": "newpai", "vid": "FFF1"},
        "newpai",
    ),
    Endpoint(
        "create-icac",
        "/cas/rcac/matter/icac",
        P.MANAGE_CA,
        ("rcac",),
        lambda: {"name": "newicac"},
        "newicac",
    ),
    Endpoint(
        "issue-dac",
        "/cas/paiA/matter/dac",
        P.ISSUE,
        ("paiA", "paa"),
        lambda: {"csr": _dac_csr(), "days": 365},
    ),
    Endpoint(
        "issue-dacs",
        "/cas/paiA/matter/dacs",
        P.ISSUE,
        ("paiA", "paa"),
        lambda: {"csrs": [_dac_csr(), _dac_csr()], "vid": "FFF1", "pid": "8000", "days": 365},
    ),
    Endpoint(
        "issue-noc",
        "/cas/icacA/matter/noc",
        P.ISSUE,
        ("icacA", "rcac"),
        lambda: {"csr": _csr(), "node_id": "1234", "cats": ["FFFF0001"]},
    ),
)
SCOPES = (None, "paa", "paiA", "icacB")


def _cases() -> list[Any]:
    out = []
    for role in Role:
        for scope in SCOPES:
            for ep in ENDPOINTS:
                allowed = ep.permission in admin_api.PERMISSIONS[role] and (
                    scope is None or scope in ep.lineage
                )
                verdict = "ok" if allowed else "deny"
                out.append(
                    pytest.param(
                        role, scope, ep, allowed, id=f"{verdict}/{role}-{scope or 'all'}/{ep.name}"
                    )
                )
    return out


async def _leaves(env: AdminEnv) -> int:
    ids = frozenset({(await env.engine.get_ca(n)).id for n in ("paiA", "icacA")})
    return len(await env.engine.find_certificates(CertQuery(ca_ids=ids)))


@pytest.mark.parametrize(("role", "scope", "ep", "allowed"), _cases())
async def test_matter_role_scope_matrix(
    env: AdminEnv, role: Role, scope: str | None, ep: Endpoint, allowed: bool
) -> None:
    await _matter(env)
    token = await env.token("alice", role, scope)
    status, body, ctype = await env.call("POST", ep.path, token=token, json=ep.body())
    denials = await env.denials()
    if allowed:
        assert status == 201, body
        assert denials == []
        return
    assert status == 403, body
    assert ctype == "application/problem+json"
    (denial,) = denials
    assert (denial.actor, denial.detail["action"]) == ("admin:alice", str(ep.permission))
    for name in ("newpaa", "newrcac", "newpai", "newicac"):
        assert await env.engine.find_ca(name) is None
    assert await _leaves(env) == 0


async def test_matter_endpoints_refuse_bad_credentials(env: AdminEnv) -> None:
    await _matter(env)
    for ep in ENDPOINTS:
        status, body, _ = await env.call("POST", ep.path, json=ep.body())
        assert status == 401, (ep.name, body)
    assert len(await env.denials()) == len(ENDPOINTS)
    assert await _leaves(env) == 0


async def test_dac_and_noc_chains(env: AdminEnv) -> None:
    await _matter(env)
    issuer = await env.token("issuer", Role.ISSUER, "paa")
    status, body, ctype = await env.call(
        "POST", "/cas/paiA/matter/dac", token=issuer, json={"csr": _dac_csr()}
    )
    assert status == 201, body
    assert ctype == "application/pem-certificate-chain"
    dac, pai = x509.load_pem_x509_certificates(body.encode())
    rules.validate_chain(dac, MatterKind.DAC, [pai, (await env.engine.get_ca("paa")).certificate])
    # The NOC issuer is scoped to the PAA: the operational tree is outside it.
    status, body, _ = await env.call(
        "POST", "/cas/icacA/matter/noc", token=issuer, json={"csr": _csr()}
    )
    assert status == 403
    noc_issuer = await env.token("noc", Role.ISSUER, "rcac")
    status, body, _ = await env.call(
        "POST",
        "/cas/icacA/matter/noc",
        token=noc_issuer,
        json={"csr": _csr(), "node_id": "ABCD", "cats": ["FFFF0001"]},
    )
    assert status == 201, body
    noc = x509.load_pem_x509_certificates(body.encode())[0]
    ids = rules.extract_operational_ids(noc)
    assert (ids.node_id, ids.fabric_id, ids.cats) == (0xABCD, FABRIC, (0xFFFF0001,))


async def test_dac_batch_issues_one_dac_per_csr_in_order(env: AdminEnv) -> None:
    await _matter(env)
    issuer = await env.token("issuer", Role.ISSUER, "paiA")
    csrs = [_dac_csr() for _ in range(3)]
    status, body, ctype = await env.call(
        "POST", "/cas/paiA/matter/dacs", token=issuer, json={"csrs": csrs, **_IDS}
    )
    assert status == 201, body
    assert ctype == "application/json"
    pai = x509.load_pem_x509_certificate(body["pai"].encode())
    assert pai == (await env.engine.get_ca("paiA")).certificate
    paa = (await env.engine.get_ca("paa")).certificate
    assert len(body["items"]) == 3
    for csr, item in zip(csrs, body["items"], strict=True):
        dac = x509.load_pem_x509_certificate(item["certificate"].encode())
        rules.validate_chain(dac, MatterKind.DAC, [pai, paa])
        assert dac.public_key() == x509.load_pem_x509_csr(csr.encode()).public_key()
        assert item["serial"] == format(dac.serial_number, "X")
        record = await env.engine.get_certificate("paiA", dac.serial_number)
        assert record.requester == "admin:issuer"
    assert await _leaves(env) == 3
    # One bad CSR refuses the whole request: nothing is issued.
    key = ec.generate_private_key(ec.SECP384R1())
    p384 = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    status, problem, _ = await env.call(
        "POST", "/cas/paiA/matter/dacs", token=issuer, json={"csrs": [_dac_csr(), p384], **_IDS}
    )
    assert 400 <= status < 500, problem
    assert "csrs[1]" in problem["detail"]
    assert await _leaves(env) == 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/matter/paa", {"name": "p", "vid": "XYZ"}, id="fail/vid-not-hex"),
        pytest.param("/matter/paa", {"name": "p", "vid": 65521}, id="fail/vid-number"),
        pytest.param("/matter/rcac", {"name": "r", "rcac_id": "1" * 17}, id="fail/id-too-long"),
        pytest.param("/cas/paa/matter/pai", {"name": "p"}, id="fail/pai-without-vid"),
        pytest.param("/cas/rcac/matter/pai", {"name": "p", "vid": "FFF1"}, id="fail/pai-on-rcac"),
        pytest.param("/cas/paiA/matter/dac", {"csr": "junk"}, id="fail/csr-not-pem"),
        pytest.param(
            "/cas/icacA/matter/noc", {"csr": "x", "cats": ["1", "2", "3", "4"]}, id="fail/cats"
        ),
        pytest.param("/cas/paiA/matter/noc", {"csr": _csr()}, id="fail/noc-under-pai"),
        pytest.param("/matter/paa", {"name": "p", "key_backend": "carried"}, id="fail/backend"),
        pytest.param("/cas/paiA/matter/dacs", {"csrs": [], **_IDS}, id="fail/dacs-empty"),
        pytest.param("/cas/paiA/matter/dacs", {"csrs": "x", **_IDS}, id="fail/dacs-not-list"),
        pytest.param("/cas/paiA/matter/dacs", {"csrs": ["junk"], **_IDS}, id="fail/dacs-not-pem"),
        pytest.param(
            "/cas/paiA/matter/dacs", {"csrs": [_dac_csr()], "vid": "FFF1"}, id="fail/dacs-no-pid"
        ),
        pytest.param(
            "/cas/paiA/matter/dacs", {"csrs": [_dac_csr()] * 101, **_IDS}, id="fail/dacs-101"
        ),
        pytest.param(
            "/cas/paiA/matter/dacs",
            {"csrs": [_dac_csr()], "vid": "FFF2", "pid": "8000"},
            id="fail/dacs-other-vid",
        ),
        pytest.param("/cas/paa/matter/dacs", {"csrs": [_dac_csr()], **_IDS}, id="fail/dacs-on-paa"),
    ],
)
async def test_matter_bad_requests_are_4xx(env: AdminEnv, path: str, body: Any) -> None:
    await _matter(env)
    owner = await env.token("owner", Role.OWNER, None)
    issuer = await env.token("issuer", Role.ISSUER, None)
    token = issuer if path.endswith(("dac", "dacs", "noc")) else owner
    status, problem, ctype = await env.call("POST", path, token=token, json=body)
    assert 400 <= status < 500, problem
    assert ctype == "application/problem+json"


# What each Matter endpoint records, as (action, target pattern): a new CA is also its
# certificate entering the issuer's inventory; a leaf is one record.
RECORDED: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "create-paa": (("ca.create-root", "newpaa"), ("cert.issue", "newpaa/*")),
    "create-rcac": (("ca.create-root", "newrcac"), ("cert.issue", "newrcac/*")),
    "create-pai": (("ca.create-sub", "newpai"), ("cert.issue", "paa/*")),
    "create-icac": (("ca.create-sub", "newicac"), ("cert.issue", "rcac/*")),
    "issue-dac": (("cert.issue", "paiA/*"),),
    "issue-dacs": (("cert.issue", "paiA/*"), ("cert.issue", "paiA/*")),
    "issue-noc": (("cert.issue", "icacA/*"),),
}


@pytest.mark.parametrize("ep", ENDPOINTS, ids=[f"ok/{ep.name}" for ep in ENDPOINTS])
async def test_each_matter_endpoint_writes_its_records(env: AdminEnv, ep: Endpoint) -> None:
    await _matter(env)
    role = next(r for r in Role if ep.permission in admin_api.PERMISSIONS[r])
    token = await env.token("alice", role, None)
    seq = await env.last_seq()
    status, body, _ = await env.call("POST", ep.path, token=token, json=ep.body())
    assert status == 201, body
    found = await env.records_after(seq)
    assert [(e.actor, e.source) for e in found] == [("admin:alice", "127.0.0.1")] * len(found)
    assert len(found) == len(RECORDED[ep.name]), [(e.action, e.target) for e in found]
    for event, (action, target) in zip(found, RECORDED[ep.name], strict=True):
        assert event.action == action
        assert fnmatch.fnmatchcase(event.target, target), (event.target, target)
