"""ACME through the admin API: directories within scope, EAB keys for unscoped identities."""

from __future__ import annotations

import base64

from server.ca.admin import api as admin_api
from tests.protocols.admin.conftest import AdminEnv, directory_of

Role = admin_api.Role


async def test_directories_within_scope(env: AdminEnv) -> None:
    owner = await env.token("a-owner", Role.OWNER, "teamA")
    status, body, _ = await env.call("GET", "/acme/directories", token=owner)
    assert status == 200
    assert [d["name"] for d in body["items"]] == [directory_of("teamA")]
    status, body, _ = await env.call(
        "POST",
        "/acme/directories",
        token=owner,
        json={
            "name": "web",
            "ca": "teamA",
            "allow_dns": ["web.corp"],
            "allow_ip": ["10.0.0.0/8"],
            "wildcard": False,
            "eab_required": True,
        },
    )
    assert status == 201, body
    assert body["links"]["self"] == "/admin/v1/acme/directories/web"
    stored = await env.directories.get("web")
    assert (stored.ca, stored.dns_suffixes, stored.wildcard, stored.eab_required) == (
        "teamA",
        ("web.corp",),
        False,
        True,
    )
    assert [str(n) for n in stored.ip_ranges] == ["10.0.0.0/8"]
    status, body, _ = await env.call(
        "POST", "/acme/directories", token=owner, json={"name": "other", "ca": "teamB"}
    )
    assert status == 403
    for bad in (
        {"name": "Upper", "ca": "teamA"},
        {"name": "x", "ca": "teamA", "profiles": ["nope"]},
        {"name": "x", "ca": "teamA", "allow_dns": ["not a suffix"]},
        {"name": "x", "ca": "teamA", "allow_ip": ["nope"]},
        {"name": "x"},
    ):
        status, body, _ = await env.call("POST", "/acme/directories", token=owner, json=bad)
        assert status == 400, (bad, body)
    status, _, _ = await env.call("DELETE", "/acme/directories/web", token=owner)
    assert status == 204
    status, _, _ = await env.call("GET", "/acme/directories/web", token=owner)
    assert status == 404


async def test_eab_key_secret_is_shown_once(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, body, _ = await env.call("POST", "/acme/eab-keys", token=owner)
    assert status == 201, body
    mac = base64.urlsafe_b64decode(body["hmac_key"] + "=" * (-len(body["hmac_key"]) % 4))
    keys = {k.kid: k for k in await env.acme.accounts.list_eab_keys()}
    assert keys[body["kid"]].hmac_key == mac
    status, listed, _ = await env.call("GET", "/acme/eab-keys", token=owner)
    assert status == 200
    assert {k["kid"] for k in listed["items"]} == {env.eab_kid, body["kid"]}
    assert "hmac_key" not in str(listed)
    status, body, _ = await env.call(
        "POST", f"/acme/eab-keys/{body['kid']}/revoke", token=owner, json={}
    )
    assert status == 200, body
    assert body["deactivated_accounts"] == []
    status, _, _ = await env.call("POST", "/acme/eab-keys/unknown-kid/revoke", token=owner)
    assert status == 404


async def test_scoped_owners_cannot_touch_eab_keys(env: AdminEnv) -> None:
    owner = await env.token("a-owner", Role.OWNER, "teamA")
    status, body, _ = await env.call("POST", "/acme/eab-keys", token=owner)
    assert status == 403
    assert "belongs to no CA subtree" in body["detail"]
    status, body, _ = await env.call("GET", "/acme/eab-keys", token=owner)
    assert status == 403
    assert len(await env.acme.accounts.list_eab_keys()) == 1
