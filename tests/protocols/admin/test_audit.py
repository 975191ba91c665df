"""The audit log through the admin API: search pages, JSON Lines export, unscoped auditors."""

from __future__ import annotations

import fnmatch
import json
from datetime import timedelta
from typing import Final

import pytest

from server.ca.admin import api as admin_api
from server.ca.types import AuditEvent
from tests.protocols.admin import test_matrix as matrix
from tests.protocols.admin.conftest import AdminEnv, directory_of, label_of

Role = admin_api.Role


async def test_search_filters_and_pages(env: AdminEnv) -> None:
    auditor = await env.token("auditor", Role.AUDITOR, None)
    owner = await env.token("owner", Role.OWNER, None)
    start = env.clock.now()
    env.clock.advance(timedelta(minutes=1))
    for name in ("web", "api", "db"):
        status, _, _ = await env.call(
            "POST", "/acme/directories", token=owner, json={"name": name, "ca": "teamA"}
        )
        assert status == 201
        env.clock.advance(timedelta(minutes=1))
    status, body, _ = await env.call(
        "GET", "/audit?actor=admin:owner&action=acme.directory-add&limit=2", token=auditor
    )
    assert status == 200, body
    assert [e["target"] for e in body["items"]] == ["db", "api"]
    assert body["items"][0]["detail"]["ca"] == "teamA"
    cursor = body["next_cursor"]
    status, body, _ = await env.call(
        "GET",
        f"/audit?actor=admin:owner&action=acme.directory-add&limit=2&cursor={cursor}",
        token=auditor,
    )
    assert [e["target"] for e in body["items"]] == ["web"]
    assert body["next_cursor"] is None
    status, body, _ = await env.call("GET", "/audit?target=api", token=auditor)
    assert [e["action"] for e in body["items"]] == ["acme.directory-add"]
    # since inclusive, until exclusive: the minute of "api" only.
    since = (start + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    until = (start + timedelta(minutes=3)).isoformat().replace("+00:00", "Z")
    status, body, _ = await env.call("GET", f"/audit?since={since}&until={until}", token=auditor)
    assert status == 200, body
    assert [e["target"] for e in body["items"]] == ["api"]
    for bad in ("since=yesterday", "until=2024-01-01T00:00:00", "limit=0", "cursor=eA", "actor="):
        status, body, _ = await env.call("GET", f"/audit?{bad}", token=auditor)
        assert status == 400, (bad, body)


async def test_export_streams_every_record_oldest_first(env: AdminEnv) -> None:
    auditor = await env.token("auditor", Role.AUDITOR, None)
    everything = list(reversed(await env.engine.audit_log(limit=10_000)))
    status, body, ctype = await env.call("GET", "/audit/export", token=auditor)
    assert status == 200
    assert ctype == "application/jsonl"
    lines = [json.loads(line) for line in body.splitlines()]
    assert [e["id"] for e in lines] == [e.id for e in everything]
    assert lines[0]["action"] == everything[0].action
    status, body, _ = await env.call("GET", "/audit/export?action=est.label-add", token=auditor)
    assert [json.loads(line)["target"] for line in body.splitlines()] == ["teamA-est", "teamB-est"]


async def test_export_pages_through_a_long_log(env: AdminEnv) -> None:
    auditor = await env.token("auditor", Role.AUDITOR, None)
    # More records than one export page (500): every one arrives once, in order.
    for i in range(520):
        await env.engine.record_audit(
            AuditEvent(at=env.clock.now(), actor="test", action="test.fill", target=str(i))
        )
    status, body, _ = await env.call("GET", "/audit/export", token=auditor)
    assert status == 200
    ids = [json.loads(line)["id"] for line in body.splitlines()]
    assert len(ids) == len(set(ids)) == len(await env.engine.audit_log(limit=10_000))
    assert ids == sorted(ids)
    assert len(ids) > 520


async def test_scoped_auditors_are_refused_with_a_reason(env: AdminEnv) -> None:
    scoped = await env.token("a-auditor", Role.AUDITOR, "teamA")
    for path in ("/audit", "/audit/export"):
        status, body, ctype = await env.call("GET", path, token=scoped)
        assert status == 403
        assert ctype == "application/problem+json"
        assert "belongs to no CA subtree" in body["detail"]
    denials = await env.denials()
    assert [(d.actor, d.detail["action"]) for d in denials] == [
        ("admin:a-auditor", "audit.read")
    ] * 2


# What each state-changing endpoint of test_matrix records, as (action, target pattern):
# one record per state change. Making or renewing a CA is two (the CA, and its new
# certificate entering the issuer's inventory), as is revoking a sub-CA (its certificate
# at the parent, the CA).
RECORDED: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "create-root": (("ca.create-root", "newroot"), ("cert.issue", "newroot/*")),
    "create-sub": (("ca.create-sub", "newsub"), ("cert.issue", "{ca}/*")),
    "import-ca": (("ca.import-csr", "newimport"),),
    "activate": (("ca.import-activate", matrix.IMPORTED),),
    "disable": (("ca.disable", "{ca}"),),
    "enable": (("ca.enable", "{ca}"),),
    "revoke-ca": (("cert.revoke", "{ca_serial}"), ("ca.revoke", "{ca}")),
    "renew": (("ca.renew", "{ca}"), ("cert.issue", "root/*")),
    "crl": (("crl.generate", "{ca}"),),
    "issue": (("cert.issue", "{ca}/*"),),
    "revoke-cert": (("cert.revoke", "{serial}"),),
    "create-label": (("est.label-add", "newlabel"),),
    "delete-label": (("est.label-remove", "{label}"),),
    "put-user": (("est.user-add", "{label}/device1"),),
    "delete-user": (("est.user-remove", "{label}/device1"),),
    "approve": (("est.approve", "{pending}"),),
    "reject": (("est.reject", "{pending}"),),
    "create-dir": (("acme.directory-add", "newdir"),),
    "delete-dir": (("acme.directory-remove", "{directory}"),),
    "create-eab": (("acme.eab-create", "*"),),
    "revoke-eab": (("acme.eab-revoke", "{kid}"),),
}
CHANGES = [ep for ep in matrix.ENDPOINTS if ep.method != "GET"]


def test_every_state_change_has_an_expected_record() -> None:
    assert sorted(ep.name for ep in CHANGES) == sorted(RECORDED)


@pytest.mark.parametrize("ep", CHANGES, ids=[f"ok/{ep.name}" for ep in CHANGES])
async def test_each_state_change_writes_its_record(env: AdminEnv, ep: matrix.Endpoint) -> None:
    role = next(r for r in Role if ep.permission in admin_api.PERMISSIONS[r])
    token = await env.token("alice", role, None)
    if ep.prepare is not None:
        await ep.prepare(env, "teamA")
    ca_serial = format((await env.engine.get_ca("teamA")).certificate.serial_number, "X")
    seq = await env.last_seq()
    status, body, _ = await env.call(
        ep.method,
        matrix._path(env, ep, "teamA"),
        token=token,
        json=matrix.body_of(env, ep, "teamA"),
    )
    assert status == ep.ok, body
    found = await env.records_after(seq)
    assert [(e.actor, e.source) for e in found] == [("admin:alice", "127.0.0.1")] * len(found)
    names = {
        "ca": "teamA",
        "ca_serial": ca_serial,
        "serial": env.leaves["teamA"].serial_hex,
        "label": label_of("teamA"),
        "pending": env.pending["teamA"],
        "directory": directory_of("teamA"),
        "kid": env.eab_kid,
    }
    expected = [(action, target.format(**names)) for action, target in RECORDED[ep.name]]
    assert len(found) == len(expected), [(e.action, e.target) for e in found]
    for event, (action, target) in zip(found, expected, strict=True):
        assert event.action == action
        assert fnmatch.fnmatchcase(event.target, target), (event.target, target)
