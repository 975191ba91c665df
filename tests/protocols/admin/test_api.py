"""Admin API behaviour beyond the matrix: issuance, search pages, problem documents, tokens."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from cryptography import x509
from sqlalchemy import text

from protocols.admin import openapi, routes
from server.ca.admin import api as admin_api
from server.ca.errors import EngineError
from server.store.database import Database
from tests.protocols.admin.conftest import OP, AdminEnv, csr_pem

Role = admin_api.Role


async def test_issuer_issues_under_its_subtree_only(env: AdminEnv) -> None:
    token = await env.token("team-a-issuer", Role.ISSUER, "teamA")
    status, body, ctype = await env.call(
        "POST", "/cas/teamA/certificates", token=token, json={"csr": csr_pem("web.example.com")}
    )
    assert status == 201, body
    assert ctype == "application/pem-certificate-chain"
    leaf, *chain = x509.load_pem_x509_certificates(body.encode())
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=teamA,O=privca"]
    issued = await env.engine.get_certificate("teamA", leaf.serial_number)
    assert issued.requester == "admin:team-a-issuer"
    # Neither the sibling team's CA nor the root above.
    for ca in ("teamB", "root"):
        status, body, _ = await env.call(
            "POST", f"/cas/{ca}/certificates", token=token, json={"csr": csr_pem()}
        )
        assert status == 403, body


async def test_certificate_search_pages_with_cursor(env: AdminEnv) -> None:
    token = await env.token("reader", Role.AUDITOR, "teamA")
    issuer = await env.token("writer", Role.ISSUER, None)
    for i in range(4):
        status, _, _ = await env.call(
            "POST",
            "/cas/teamA/certificates",
            token=issuer,
            json={"csr": csr_pem(f"host{i}.example.com")},
        )
        assert status == 201
    seen: list[str] = []
    cursor = None
    while True:
        query = "/certificates?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await env.call("GET", query, token=token)
        assert status == 200, body
        seen += [c["subject"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Newest first, teamA's only (the teamB leaf is out of the auditor's scope).
    assert seen == [
        *(f"CN=host{i}.example.com" for i in (3, 2, 1, 0)),
        "CN=teama.example.com",
    ]
    status, body, _ = await env.call("GET", "/certificates?q=HOST2", token=token)
    assert [c["subject"] for c in body["items"]] == ["CN=host2.example.com"]
    status, body, _ = await env.call("GET", "/certificates?q=host_", token=token)
    assert body["items"] == []  # a substring: '_' is no wildcard
    status, body, _ = await env.call("GET", "/certificates?cursor=bm9wZQ", token=token)
    assert status == 400
    assert body["type"] == "urn:privca:problem:malformed"
    status, body, _ = await env.call("GET", "/certificates?ca=teamB", token=token)
    assert status == 403


async def test_revoke_certificate_then_filter(env: AdminEnv) -> None:
    token = await env.token("issuer", Role.ISSUER, "teamA")
    serial = env.leaves["teamA"].serial_hex
    status, body, _ = await env.call(
        "POST", f"/certificates/{serial}/revoke", token=token, json={"reason": "keyCompromise"}
    )
    assert status == 200, body
    assert body["status"] == "revoked"
    assert body["revocation_reason"] == "keyCompromise"
    status, body, _ = await env.call("GET", "/certificates?status=revoked", token=token)
    assert [c["serial"] for c in body["items"]] == [serial]
    status, body, _ = await env.call("POST", f"/certificates/{serial}/revoke", token=token)
    assert status == 400  # already revoked
    assert body["type"] == "urn:privca:problem:alreadyRevoked"


async def test_revoking_a_ca_certificate_needs_its_owner(env: AdminEnv) -> None:
    team_a = await env.engine.get_ca("teamA")
    serial = format(team_a.certificate.serial_number, "X")
    issuer = await env.token("issuer", Role.ISSUER, None)
    status, _, _ = await env.call("POST", f"/certificates/{serial}/revoke", token=issuer)
    assert status == 403
    owner = await env.token("owner", Role.OWNER, "teamA")
    status, body, _ = await env.call("POST", f"/certificates/{serial}/revoke", token=owner)
    assert status == 200, body
    assert (await env.engine.get_ca("teamA")).status == "revoked"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param(b"{not json", "application/json", 400, id="fail/not-json"),
        pytest.param(b"[1, 2]", "application/json", 400, id="fail/not-object"),
        pytest.param(
            b'{"name": "x", "bogus": 1}', "application/json", 400, id="fail/unknown-field"
        ),
        pytest.param(b'{"name": "x", "days": 10e9}', "application/json", 400, id="fail/float-days"),
        pytest.param(
            b'{"name": "x", "days": 99999999999}', "application/json", 400, id="fail/huge-days"
        ),
        pytest.param(b'{"name": "x", "key_type": 7}', "application/json", 400, id="fail/key-type"),
        pytest.param(b'{"name": "x"}', "text/plain", 415, id="fail/content-type"),
        pytest.param(b"[" * 100_000, "application/json", 413, id="fail/too-large"),
        pytest.param(b'{"name": "bad name!"}', "application/json", 400, id="fail/ca-name"),
    ],
)
async def test_bad_bodies_are_problem_documents(
    env: AdminEnv, body: bytes, content_type: str, status: int
) -> None:
    token = await env.token("owner", Role.OWNER, None)
    resp = await env.client.post(
        "/admin/v1/cas",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    assert resp.status == status
    assert resp.content_type == routes.PROBLEM_JSON
    doc = await resp.json(content_type=None)
    assert doc["status"] == status
    assert {"type", "title", "detail", "instance"} <= set(doc)


async def test_unknown_route_and_method_are_problems(env: AdminEnv) -> None:
    resp = await env.client.get("/admin/v1/nothing")
    assert resp.status == 404
    assert resp.content_type == routes.PROBLEM_JSON
    resp = await env.client.delete("/admin/v1/cas")
    assert resp.status == 405
    assert resp.content_type == routes.PROBLEM_JSON
    assert "POST" in resp.headers["Allow"]


def test_openapi_describes_exactly_the_routes() -> None:
    mounted = {(m.lower(), p) for m, p, _ in routes.ROUTES}
    described = {
        (method, path) for path, ops in openapi.DOCUMENT["paths"].items() for method in ops
    }
    assert mounted == described
    schemes = openapi.DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["mutualTLS"]["type"] == "mutualTLS"


async def test_openapi_is_served_without_credentials(env: AdminEnv) -> None:
    resp = await env.client.get("/admin/v1/openapi.json")
    assert resp.status == 200
    assert (await resp.json())["openapi"] == "3.1.0"


async def test_tokens_are_stored_as_hashes_only(env: AdminEnv, database: Database) -> None:
    secret = await env.token("hashed", Role.AUDITOR, "teamA")
    assert secret.startswith("pca_")
    assert len(secret) == 47
    status, body, _ = await env.call("GET", "/whoami", token=secret)
    assert status == 200
    assert body["name"] == "hashed"
    dump = await _dump_tables(database)
    assert secret not in dump
    assert secret[4:] not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump
    (token,) = await env.service.list_tokens()
    assert token.last_used_at is not None


async def test_token_scope_must_name_a_managed_ca(env: AdminEnv) -> None:
    for scope in ("nope", "privca-admin"):
        with pytest.raises(EngineError):
            await env.service.create_token(
                "x", role=Role.OWNER, scope=scope, lifetime=timedelta(days=1), actor=OP
            )


async def _dump_tables(database: Database) -> str:
    """Every value of every table, as text (what a stolen database would show)."""
    out = []
    async with database.read() as conn:
        if database.is_sqlite:
            names = [
                r[0]
                for r in (
                    await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
                ).all()
            ]
        else:
            names = [
                r[0]
                for r in (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                ).all()
            ]
        for name in names:
            rows = (await conn.execute(text(f'SELECT * FROM "{name}"'))).all()  # noqa: S608 - catalog names
            out.append(repr(rows))
    return "\n".join(out)


@pytest.mark.parametrize("coding", ["gzip", "br", "identity, deflate"])
async def test_compressed_bodies_are_refused_with_accept_encoding(
    env: AdminEnv, coding: str
) -> None:
    token = await env.token("owner", Role.OWNER, None)
    resp = await env.client.post(
        "/admin/v1/cas",
        data=b'{"name": "zipped"}',
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": coding,
        },
    )
    assert resp.status == 415
    assert resp.content_type == routes.PROBLEM_JSON
    assert resp.headers["Accept-Encoding"] == "identity"
    assert await env.engine.find_ca("zipped") is None
