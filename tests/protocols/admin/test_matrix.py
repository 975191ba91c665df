"""Role x endpoint x scope: every admin endpoint allows exactly what the role table says.

Hierarchy root -> teamA, teamB, each with a leaf, an EST label, account and held
enrollment, and an ACME directory. A teamA-scoped identity acts on teamA's only; an
unscoped one on every CA's. EAB keys and the audit log belong to no CA: only
unscoped identities reach them. Each refusal is a 403 problem document and one
``admin.denied`` audit record naming the identity and the client address; every
request without valid credentials is a 401 problem document and an audit record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from server.ca.admin import api as admin_api
from server.ca.est import api as est_api
from server.ca.types import CAStatus, CertStatus
from tests.protocols.admin.conftest import OP, AdminEnv, csr_pem, directory_of, label_of
from tests.support import external_ca_chain

Role = admin_api.Role
P = admin_api.Permission


@dataclass(frozen=True)
class Endpoint:
    """One admin operation aimed at a CA (``target``), its permission and success status."""

    name: str
    method: str
    path: str
    permission: P
    ok: int
    body: Callable[[str], Any] | None = None
    prepare: Callable[[AdminEnv, str], Awaitable[None]] | None = None
    # A body only the prepared fixture can give (a certificate signed for its CSR).
    env_body: Callable[[AdminEnv], Any] | None = None
    targeted: bool = True
    # A resource of no CA subtree (EAB keys): only unscoped identities may act on it.
    unscoped_only: bool = False


async def _disable(env: AdminEnv, target: str) -> None:
    await env.engine.disable_ca(target, actor=OP)


IMPORTED = "imported"


async def _pending_import(env: AdminEnv, target: str) -> None:
    """A CA waiting for its certificate, and that certificate signed by an external root."""
    ca = await env.engine.create_import_request(IMPORTED, actor=OP)
    env.scratch[IMPORTED] = external_ca_chain(ca.csr_der or b"", now=env.clock.now()).decode()


def body_of(env: AdminEnv, ep: Endpoint, target: str) -> Any:
    """Return the JSON body an endpoint is called with."""
    if ep.env_body is not None:
        return ep.env_body(env)
    return ep.body(target) if ep.body else None


def _leaf(env: AdminEnv, target: str) -> str:
    return env.leaves[target].serial_hex


ENDPOINTS = (
    Endpoint("whoami", "GET", "/whoami", P.READ, 200, targeted=False),
    Endpoint("list-cas", "GET", "/cas", P.READ, 200, targeted=False),
    Endpoint(
        "create-root",
        "POST",
        "/cas",
        P.CREATE_ROOT,
        201,
        lambda _: {"name": "newroot"},
        targeted=False,
    ),
    Endpoint(
        "import-ca",
        "POST",
        "/cas/imports",
        P.CREATE_ROOT,
        201,
        lambda _: {"name": "newimport", "subject": "CN=New Import,O=Elsewhere Inc"},
        targeted=False,
    ),
    # A pending import has no parent here: only unscoped owners reach it.
    Endpoint(
        "activate",
        "POST",
        f"/cas/{IMPORTED}/activate",
        P.MANAGE_CA,
        200,
        prepare=_pending_import,
        env_body=lambda env: {"certificate": env.scratch.get(IMPORTED, "")},
        targeted=False,
        unscoped_only=True,
    ),
    Endpoint("get-ca", "GET", "/cas/{ca}", P.READ, 200),
    Endpoint("ca-cert", "GET", "/cas/{ca}/certificate", P.READ, 200),
    Endpoint(
        "create-sub",
        "POST",
        "/cas/{ca}/subordinates",
        P.MANAGE_CA,
        201,
        lambda _: {"name": "newsub"},
    ),
    Endpoint("disable", "POST", "/cas/{ca}/disable", P.MANAGE_CA, 200),
    Endpoint("enable", "POST", "/cas/{ca}/enable", P.MANAGE_CA, 200, prepare=_disable),
    Endpoint(
        "revoke-ca",
        "POST",
        "/cas/{ca}/revoke",
        P.MANAGE_CA,
        200,
        lambda _: {"reason": "superseded"},
    ),
    Endpoint("renew", "POST", "/cas/{ca}/renew", P.MANAGE_CA, 200, lambda _: {"days": 30}),
    Endpoint("crl", "POST", "/cas/{ca}/crl", P.MANAGE_CA, 200),
    Endpoint(
        "issue",
        "POST",
        "/cas/{ca}/certificates",
        P.ISSUE,
        201,
        lambda _: {"csr": csr_pem(), "profile": "tls-server", "days": 10},
    ),
    Endpoint("list-certs", "GET", "/certificates?ca={ca}", P.READ, 200),
    Endpoint("get-cert", "GET", "/certificates/{serial}?ca={ca}", P.READ, 200),
    Endpoint(
        "revoke-cert",
        "POST",
        "/certificates/{serial}/revoke?ca={ca}",
        P.REVOKE,
        200,
        lambda _: {"reason": "keyCompromise"},
    ),
    # EST
    Endpoint("list-labels", "GET", "/est/labels", P.READ, 200, targeted=False),
    Endpoint(
        "create-label",
        "POST",
        "/est/labels",
        P.MANAGE_CA,
        201,
        lambda ca: {"name": "newlabel", "ca": ca},
    ),
    Endpoint("get-label", "GET", "/est/labels/{label}", P.READ, 200),
    Endpoint("delete-label", "DELETE", "/est/labels/{label}", P.MANAGE_CA, 204),
    Endpoint("list-users", "GET", "/est/labels/{label}/users", P.READ, 200),
    Endpoint(
        "put-user",
        "POST",
        "/est/labels/{label}/users",
        P.MANAGE_CA,
        200,
        lambda _: {"username": "device1", "password": "a-new-password"},
    ),
    Endpoint("delete-user", "DELETE", "/est/labels/{label}/users/device1", P.MANAGE_CA, 204),
    Endpoint("list-pending", "GET", "/est/pending", P.READ, 200, targeted=False),
    Endpoint("approve", "POST", "/est/pending/{pending}/approve", P.APPROVE, 200),
    Endpoint("reject", "POST", "/est/pending/{pending}/reject", P.APPROVE, 200),
    # ACME
    Endpoint("list-dirs", "GET", "/acme/directories", P.READ, 200, targeted=False),
    Endpoint(
        "create-dir",
        "POST",
        "/acme/directories",
        P.MANAGE_CA,
        201,
        lambda ca: {"name": "newdir", "ca": ca, "allow_dns": ["example.com"]},
    ),
    Endpoint("get-dir", "GET", "/acme/directories/{directory}", P.READ, 200),
    Endpoint("delete-dir", "DELETE", "/acme/directories/{directory}", P.MANAGE_CA, 204),
    Endpoint("list-eab", "GET", "/acme/eab-keys", P.READ, 200, targeted=False, unscoped_only=True),
    Endpoint(
        "create-eab",
        "POST",
        "/acme/eab-keys",
        P.MANAGE_CA,
        201,
        targeted=False,
        unscoped_only=True,
    ),
    Endpoint(
        "revoke-eab",
        "POST",
        "/acme/eab-keys/{kid}/revoke",
        P.MANAGE_CA,
        200,
        lambda _: {"deactivate_accounts": True},
        targeted=False,
        unscoped_only=True,
    ),
    # The audit log
    Endpoint("audit", "GET", "/audit", P.AUDIT, 200, targeted=False, unscoped_only=True),
    Endpoint(
        "audit-export", "GET", "/audit/export", P.AUDIT, 200, targeted=False, unscoped_only=True
    ),
)

# (identity scope, target CA): an unscoped identity on teamB, a teamA one on teamA and teamB.
PLACES = ((None, "teamB"), ("teamA", "teamA"), ("teamA", "teamB"))


def _cases() -> list[Any]:
    out = []
    for role in Role:
        for scope, target in PLACES:
            for ep in ENDPOINTS:
                if not ep.targeted and target == "teamB" and scope == "teamA":
                    continue  # no CA to be outside of: covered by the teamA/teamA row
                allowed = ep.permission in admin_api.PERMISSIONS[role] and (
                    scope is None
                    or (ep.targeted and target == scope)
                    or (
                        not ep.targeted
                        and not ep.unscoped_only
                        and ep.permission is not P.CREATE_ROOT
                    )
                )
                where = "all" if scope is None else ("in" if target == scope else "out")
                verdict = "ok" if allowed else "deny"
                out.append(
                    pytest.param(
                        role, scope, target, ep, allowed, id=f"{verdict}/{role}-{where}/{ep.name}"
                    )
                )
    return out


def _path(env: AdminEnv, ep: Endpoint, target: str) -> str:
    return ep.path.format(
        ca=target,
        serial=_leaf(env, target),
        label=label_of(target),
        pending=env.pending[target],
        directory=directory_of(target),
        kid=env.eab_kid,
    )


async def _assert_untouched(env: AdminEnv, target: str, *, disabled: bool = False) -> None:
    """Nothing a refused request aimed at happened."""
    ca = await env.engine.get_ca(target)
    assert ca.status is (CAStatus.DISABLED if disabled else CAStatus.ACTIVE)
    leaf = env.leaves[target]
    assert (await env.engine.get_certificate(leaf.ca_id, leaf.serial)).status is CertStatus.VALID
    assert await env.engine.find_ca("newroot") is None
    assert await env.engine.find_ca("newsub") is None
    assert await env.engine.find_ca("newimport") is None
    imported = await env.engine.find_ca(IMPORTED)
    assert imported is None or imported.status is CAStatus.PENDING
    labels = {lb.name for lb in await env.est.list_labels()}
    assert label_of(target) in labels
    assert "newlabel" not in labels
    (user,) = await env.est.list_users(label_of(target))
    assert est_api.verify_password_hash("fixture-password", user.password_hash)
    held = await env.est.get_pending(env.pending[target])
    assert held.status is est_api.PendingStatus.PENDING
    directories = {d.name for d in await env.directories.list_all()}
    assert directories == {directory_of("teamA"), directory_of("teamB")}
    keys = await env.acme.accounts.list_eab_keys()
    assert [(k.kid, k.revoked) for k in keys] == [(env.eab_kid, False)]


@pytest.mark.parametrize(("role", "scope", "target", "ep", "allowed"), _cases())
async def test_role_scope_matrix(
    env: AdminEnv, role: Role, scope: str | None, target: str, ep: Endpoint, allowed: bool
) -> None:
    token = await env.token("alice", role, scope)
    if ep.prepare is not None:
        await ep.prepare(env, target)
    status, body, ctype = await env.call(
        ep.method, _path(env, ep, target), token=token, json=body_of(env, ep, target)
    )
    denials = await env.denials()
    if allowed:
        assert status == ep.ok, body
        assert denials == []
        return
    assert status == 403, body
    assert ctype == "application/problem+json"
    assert body["status"] == 403
    assert body["type"] == "urn:privca:problem:unauthorized"
    (denial,) = denials
    assert denial.actor == "admin:alice"
    assert denial.source == "127.0.0.1"
    assert denial.detail["action"] == str(ep.permission)
    assert denial.detail["role"] == str(role)
    await _assert_untouched(env, target, disabled=ep.prepare is _disable)


async def _bad_credentials(env: AdminEnv, kind: str) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "garbage":
        return {"Authorization": "Bearer pca_not-a-token"}
    if kind == "basic":
        return {"Authorization": "Basic YWRtaW46YWRtaW4="}
    if kind == "unknown":
        return {"Authorization": "Bearer pca_" + "A" * 43}
    token = await env.token("bob", Role.OWNER, None, days=1)
    if kind == "expired":
        env.clock.advance(timedelta(days=2))
    else:
        await env.service.revoke_token("bob", actor=OP)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("kind", ["none", "garbage", "basic", "unknown", "expired", "revoked"])
async def test_every_endpoint_refuses_bad_credentials(env: AdminEnv, kind: str) -> None:
    headers = await _bad_credentials(env, kind)
    for ep in ENDPOINTS:
        resp = await env.client.request(
            ep.method,
            "/admin/v1" + _path(env, ep, "teamA"),
            headers=headers,
            json=body_of(env, ep, "teamA"),
        )
        body = await resp.json(content_type=None)
        assert resp.status == 401, (ep.name, body)
        assert resp.content_type == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["type"] == "urn:privca:problem:unauthenticated"
    denials = await env.denials()
    assert len(denials) == len(ENDPOINTS)
    expected_actor = "admin:bob" if kind in {"expired", "revoked"} else "admin:anonymous"
    assert {d.actor for d in denials} == {expected_actor}
    assert {d.source for d in denials} == {"127.0.0.1"}
    await _assert_untouched(env, "teamA")
