"""EST through the admin API: labels, accounts and approvals, each within the caller's scope."""

from __future__ import annotations

from server.ca.admin import api as admin_api
from server.ca.est import api as est_api
from tests.protocols.admin.conftest import AdminEnv, label_of

Role = admin_api.Role


async def test_labels_are_listed_within_scope(env: AdminEnv) -> None:
    scoped = await env.token("a-reader", Role.AUDITOR, "teamA")
    status, body, _ = await env.call("GET", "/est/labels", token=scoped)
    assert status == 200, body
    # The built-in default label has no CA: the default CA (teamA here) is its CA.
    assert {(lb["name"], lb["issuing_ca"]) for lb in body["items"]} == {
        ("default", "teamA"),
        ("teamA-est", "teamA"),
    }
    everyone = await env.token("reader", Role.AUDITOR, None)
    status, body, _ = await env.call("GET", "/est/labels", token=everyone)
    assert {lb["name"] for lb in body["items"]} == {"default", "teamA-est", "teamB-est"}
    status, body, _ = await env.call("GET", "/est/labels/teamA-est", token=scoped)
    assert status == 200
    assert body["ca"] == "teamA"
    assert body["approval_required"] is True
    assert body["links"]["self"] == "/admin/v1/est/labels/teamA-est"


async def test_label_without_ca_takes_the_default_ca_for_scope(env: AdminEnv) -> None:
    team_a = await env.token("a-owner", Role.OWNER, "teamA")
    team_b = await env.token("b-owner", Role.OWNER, "teamB")
    # teamB's owner may not make a label that issues from the default CA (teamA).
    status, body, _ = await env.call(
        "POST", "/est/labels", token=team_b, json={"name": "sensors", "allow_dns": ["iot.corp"]}
    )
    assert status == 403, body
    assert "teamA is outside scope teamB" in body["detail"]
    status, body, _ = await env.call(
        "POST",
        "/est/labels",
        token=team_a,
        json={"name": "sensors", "allow_dns": ["iot.corp"], "subject": ["CN=sensor-*"]},
    )
    assert status == 201, body
    assert body["ca"] is None
    assert body["issuing_ca"] == "teamA"
    stored = await env.est.get_label("sensors")
    assert stored.dns_suffixes == ("iot.corp",)
    assert stored.subject_patterns == ("CN=sensor-*",)


async def test_label_create_checks_and_delete(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    for bad, kind in (
        ({"name": "x", "ca": "nope"}, "notFound"),
        ({"name": "cacerts", "ca": "teamA"}, "malformed"),
        ({"name": "x", "ca": "teamA", "profile": "nope"}, "invalidProfile"),
        ({"name": "x", "ca": "teamA", "allow_ip": ["not-an-ip"]}, "malformed"),
        ({"name": "x", "ca": "teamA", "auth": ["kerberos"]}, "malformed"),
        ({"name": "x", "ca": "teamA", "trust_anchors": "junk"}, "malformed"),
        ({"name": "teamA-est", "ca": "teamA"}, "conflict"),
        ({"name": "x", "extra": 1}, "malformed"),
    ):
        status, body, _ = await env.call("POST", "/est/labels", token=owner, json=bad)
        assert 400 <= status < 500, (bad, body)
        assert body["type"] == f"urn:privca:problem:{kind}", (bad, body)
    # A label named by the CA's id is stored under the CA's name.
    ca = await env.engine.get_ca("teamB")
    status, body, _ = await env.call(
        "POST", "/est/labels", token=owner, json={"name": "by-id", "ca": ca.id}
    )
    assert status == 201, body
    assert body["ca"] == "teamB"
    status, _, _ = await env.call("DELETE", "/est/labels/by-id", token=owner)
    assert status == 204
    status, body, _ = await env.call("GET", "/est/labels/by-id", token=owner)
    assert status == 404
    # The built-in default label is not stored: nothing to delete.
    status, body, _ = await env.call("DELETE", "/est/labels/default", token=owner)
    assert status == 404


async def test_accounts_never_show_password_hashes(env: AdminEnv) -> None:
    owner = await env.token("a-owner", Role.OWNER, "teamA")
    label = label_of("teamA")
    before = (await env.est.list_users(label))[0].password_hash
    status, body, _ = await env.call(
        "POST",
        f"/est/labels/{label}/users",
        token=owner,
        json={"username": "device1", "password": "a-new-password", "max_days": 30},
    )
    assert status == 200, body
    assert body == {
        "label": label,
        "username": "device1",
        "created_at": body["created_at"],
        "allow_dns": None,
        "subject": None,
        "max_days": 30,
    }
    (user,) = await env.est.list_users(label)
    assert user.password_hash != before
    assert est_api.verify_password_hash("a-new-password", user.password_hash)
    status, body, _ = await env.call("GET", f"/est/labels/{label}/users", token=owner)
    assert status == 200
    assert [u["username"] for u in body["items"]] == ["device1"]
    assert "pbkdf2" not in str(body)
    status, body, _ = await env.call(
        "POST",
        f"/est/labels/{label}/users",
        token=owner,
        json={"username": "d2", "password": "short"},
    )
    assert status == 400
    status, _, _ = await env.call("DELETE", f"/est/labels/{label}/users/device1", token=owner)
    assert status == 204
    assert await env.est.list_users(label) == []
    status, _, _ = await env.call("DELETE", f"/est/labels/{label}/users/device1", token=owner)
    assert status == 404


async def test_approver_decides_held_enrollments_in_scope(env: AdminEnv) -> None:
    approver = await env.token("a-approver", Role.APPROVER, "teamA")
    status, body, _ = await env.call("GET", "/est/pending", token=approver)
    assert status == 200
    assert [p["id"] for p in body["items"]] == [env.pending["teamA"]]
    held = env.pending["teamA"]
    status, body, _ = await env.call("POST", f"/est/pending/{held}/approve", token=approver)
    assert status == 200, body
    assert body["status"] == "approved"
    assert body["decided_by"] == "admin:a-approver"
    log = await env.engine.audit_log(limit=5)
    assert (log[0].action, log[0].actor, log[0].target) == ("est.approve", "admin:a-approver", held)
    # Decided once only.
    status, body, _ = await env.call("POST", f"/est/pending/{held}/reject", token=approver)
    assert status == 409, body
    status, body, _ = await env.call("GET", "/est/pending", token=approver)
    assert body["items"] == []
    status, body, _ = await env.call("GET", "/est/pending?status=all", token=approver)
    assert [p["status"] for p in body["items"]] == ["approved"]
    status, body, _ = await env.call("GET", "/est/pending?status=bogus", token=approver)
    assert status == 400
    # teamB's enrollment: outside the scope, refused and left pending.
    other = env.pending["teamB"]
    status, body, _ = await env.call("POST", f"/est/pending/{other}/reject", token=approver)
    assert status == 403
    assert (await env.est.get_pending(other)).status is est_api.PendingStatus.PENDING
    status, body, _ = await env.call(
        "POST", "/est/pending/ffffffffffffffff/approve", token=approver
    )
    assert status == 404


async def test_enrollments_of_a_removed_label_are_unscoped_only(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, _, _ = await env.call("DELETE", f"/est/labels/{label_of('teamA')}", token=owner)
    assert status == 204
    approver = await env.token("a-approver", Role.APPROVER, "teamA")
    held = env.pending["teamA"]
    status, body, _ = await env.call("POST", f"/est/pending/{held}/approve", token=approver)
    assert status == 403
    assert "no CA subtree" in body["detail"]
    status, body, _ = await env.call("GET", "/est/pending", token=approver)
    assert body["items"] == []
    root_approver = await env.token("approver", Role.APPROVER, None)
    status, body, _ = await env.call("POST", f"/est/pending/{held}/reject", token=root_approver)
    assert status == 200
    assert body["status"] == "rejected"


async def test_label_csrattrs_are_stored_and_served(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    attrs = [
        {"oid": "1.2.840.113549.1.9.7", "values": []},
        {"oid": "1.2.840.10045.2.1", "values": ["1.3.132.0.34"]},
    ]
    status, body, _ = await env.call(
        "POST",
        "/est/labels",
        token=owner,
        json={"name": "attrs", "ca": "teamA", "csrattrs": attrs},
    )
    assert status == 201, body
    assert body["csrattrs"] == attrs
    stored = await env.est.get_label("attrs")
    expected = (
        est_api.CsrAttr("1.2.840.113549.1.9.7"),
        est_api.CsrAttr("1.2.840.10045.2.1", ("1.3.132.0.34",)),
    )
    assert stored.csrattrs == expected
    # What GET /.well-known/est/attrs/csrattrs answers: these, and no derived template.
    assert env.est.csr_attributes(stored) == expected
    assert env.est.csr_template(stored) is None
    # Without csrattrs the label derives them from its profile (null on the wire).
    status, body, _ = await env.call("GET", f"/est/labels/{label_of('teamA')}", token=owner)
    assert body["csrattrs"] is None
    assert env.est.csr_template(await env.est.get_label(label_of("teamA"))) is not None


async def test_label_csrattrs_refuse_bad_values(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    for bad in (
        "1.2.840.113549.1.9.7",
        [{"oid": "1.2.3."}],
        [{"oid": "abc"}],
        [{"oid": "3.1"}],
        [{"oid": "01.2"}],
        [{"oid": "1.2", "values": ["9.9"]}],
        [{"oid": "1.2", "values": "1.3"}],
        [{"oid": "1.2", "extra": 1}],
        [{"values": ["1.2"]}],
        [{"oid": 12}],
        ["1.2.3"],
    ):
        status, body, _ = await env.call(
            "POST", "/est/labels", token=owner, json={"name": "x", "ca": "teamA", "csrattrs": bad}
        )
        assert status == 400, (bad, body)
        assert body["type"] == "urn:privca:problem:malformed", (bad, body)
    assert "x" not in {lb.name for lb in await env.est.list_labels()}
