"""Admin API handlers: authenticate, parse, one ``AdminService`` call, render.

Authentication comes first in every handler, so a request without valid
credentials gets 401 whatever else is wrong with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from aiohttp import web

from protocols.admin import auth, links, messages, openapi
from server.ca import types
from server.ca.admin import api as admin_api
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CertStatus

__all__ = [
    "MAX_BODY",
    "SERVICE",
    "activate_import",
    "approve_pending",
    "ca_certificate",
    "create_directory",
    "create_eab_key",
    "create_icac",
    "create_import",
    "create_label",
    "create_paa",
    "create_pai",
    "create_rcac",
    "create_root",
    "create_subordinate",
    "delete_directory",
    "delete_label",
    "delete_user",
    "disable_ca",
    "enable_ca",
    "export_audit",
    "get_ca",
    "get_certificate",
    "get_directory",
    "get_label",
    "issue",
    "issue_dac",
    "issue_dacs",
    "issue_noc",
    "list_audit",
    "list_cas",
    "list_certificates",
    "list_directories",
    "list_eab_keys",
    "list_labels",
    "list_pending",
    "list_users",
    "openapi_document",
    "put_user",
    "regenerate_crl",
    "reject_pending",
    "renew_ca",
    "revoke_ca",
    "revoke_certificate",
    "revoke_eab_key",
    "whoami",
]

SERVICE: Final = web.AppKey("admin_service", admin_api.AdminService)
MAX_BODY: Final = web.AppKey("admin_max_body", int)
_DEFAULT_LIMIT: Final = 100


def _json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def _body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    return await messages.read_json(request, limit=request.app[MAX_BODY], optional=optional)


async def _who(request: web.Request) -> tuple[admin_api.AdminService, admin_api.AdminPrincipal]:
    service = request.app[SERVICE]
    return service, await auth.authenticate(request, service)


def _created(view: admin_api.CAView) -> web.Response:
    """Return the 201 answer for a new CA: its JSON, and its URL in Location."""
    return _json(
        messages.ca_to_wire(view), status=201, headers={"Location": links.ca_url(view.ca.name)}
    )


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: this API's OpenAPI 3.1 description (public)."""
    return _json(openapi.DOCUMENT)


async def whoami(request: web.Request) -> web.Response:
    """GET /whoami: the caller's identity, role, scope and permissions."""
    service, who = await _who(request)
    return _json(messages.principal_to_wire(service.whoami(who)))


async def list_cas(request: web.Request) -> web.Response:
    """GET /cas: the CAs in the caller's scope."""
    service, who = await _who(request)
    return _json({"items": [messages.ca_to_wire(v) for v in await service.list_cas(who)]})


async def get_ca(request: web.Request) -> web.Response:
    """GET /cas/{ca}."""
    service, who = await _who(request)
    return _json(messages.ca_to_wire(await service.get_ca(who, request.match_info["ca"])))


async def ca_certificate(request: web.Request) -> web.Response:
    """GET /cas/{ca}/certificate: the CA certificate and its issuers (PEM)."""
    service, who = await _who(request)
    chain = await service.ca_chain(who, request.match_info["ca"])
    return web.Response(body=messages.pem_chain(chain), content_type=messages.PEM_CHAIN)


async def create_root(request: web.Request) -> web.Response:
    """POST /cas: a new root CA (unscoped owners)."""
    service, who = await _who(request)
    req = messages.parse_create_ca(await _body(request))
    view = await service.create_root(
        who,
        req.name,
        key_algorithm=req.key_algorithm,
        days=req.days,
        path_length=req.path_length,
        mode=req.mode,
        options=req.options,
    )
    return _created(view)


async def create_import(request: web.Request) -> web.Response:
    """POST /cas/imports: a pending CA and its CSR for an external signer (unscoped owners)."""
    service, who = await _who(request)
    req = messages.parse_import(await _body(request))
    view = await service.import_request(
        who,
        req.name,
        key_algorithm=req.key_algorithm,
        subject=req.subject,
        mode=req.mode,
        key_backend=req.key_backend,
    )
    return _created(view)


async def activate_import(request: web.Request) -> web.Response:
    """POST /cas/{ca}/activate: a pending imported CA takes its signed certificate."""
    service, who = await _who(request)
    pem = messages.parse_activate(await _body(request))
    view = await service.activate_import(who, request.match_info["ca"], pem=pem)
    return _json(messages.ca_to_wire(view))


async def create_subordinate(request: web.Request) -> web.Response:
    """POST /cas/{ca}/subordinates: a CA signed by {ca}."""
    service, who = await _who(request)
    req = messages.parse_create_ca(await _body(request), subordinate=True)
    view = await service.create_subordinate(
        who,
        request.match_info["ca"],
        req.name,
        key_algorithm=req.key_algorithm,
        days=req.days,
        path_length=req.path_length,
        mode=req.mode,
        options=req.options,
    )
    return _created(view)


async def disable_ca(request: web.Request) -> web.Response:
    """POST /cas/{ca}/disable."""
    service, who = await _who(request)
    return _json(messages.ca_to_wire(await service.disable_ca(who, request.match_info["ca"])))


async def enable_ca(request: web.Request) -> web.Response:
    """POST /cas/{ca}/enable."""
    service, who = await _who(request)
    return _json(messages.ca_to_wire(await service.enable_ca(who, request.match_info["ca"])))


async def revoke_ca(request: web.Request) -> web.Response:
    """POST /cas/{ca}/revoke: the CA and its subtree, with a CRLReason."""
    service, who = await _who(request)
    reason = messages.parse_revoke(await _body(request, optional=True))
    view = await service.revoke_ca(who, request.match_info["ca"], reason=reason)
    return _json(messages.ca_to_wire(view))


async def renew_ca(request: web.Request) -> web.Response:
    """POST /cas/{ca}/renew: a new CA certificate (same key unless rekey)."""
    service, who = await _who(request)
    rekey, days = messages.parse_renew(await _body(request, optional=True))
    view, renewal = await service.renew_ca(who, request.match_info["ca"], rekey=rekey, days=days)
    return _json(
        {
            "ca": messages.ca_to_wire(view),
            "serial": format(renewal.certificate.serial_number, "X"),
            "rekeyed": renewal.rekeyed,
            "orphaned_leaves": renewal.orphaned_leaves,
        }
    )


async def regenerate_crl(request: web.Request) -> web.Response:
    """POST /cas/{ca}/crl: publish the CA's CRL now."""
    service, who = await _who(request)
    return _json(messages.crl_to_wire(await service.regenerate_crl(who, request.match_info["ca"])))


async def issue(request: web.Request) -> web.Response:
    """POST /cas/{ca}/certificates: issue from a CSR; 201 with leaf + chain (no root) in PEM."""
    service, who = await _who(request)
    req = messages.parse_issue(await _body(request))
    issued = await service.issue(
        who,
        request.match_info["ca"],
        req.csr,
        profile=req.profile,
        days=req.days,
        hours=req.hours,
    )
    return _issued(issued)


def _query_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EngineError(ProblemKind.MALFORMED, f"{name} must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise EngineError(ProblemKind.MALFORMED, f"{name} needs a time zone (Z or +hh:mm)")
    return parsed


def _query_limit(value: str | None) -> int:
    if value is None:
        return _DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= messages.MAX_LIMIT:
        raise EngineError(ProblemKind.MALFORMED, f"limit must be 1..{messages.MAX_LIMIT}")
    return int(value)


async def list_certificates(request: web.Request) -> web.Response:
    """GET /certificates: search (ca, status, q, expiring_before), limit + cursor pages."""
    service, who = await _who(request)
    q = request.query
    status = q.get("status")
    if status is not None and status not in set(CertStatus):
        raise EngineError(ProblemKind.MALFORMED, f"status must be one of {', '.join(CertStatus)}")
    page = await service.page_certificates(
        who,
        ca=q.get("ca"),
        status=CertStatus(status) if status is not None else None,
        text=q.get("q") or None,
        expires_before=_query_time(q.get("expiring_before"), "expiring_before"),
        limit=_query_limit(q.get("limit")),
        cursor=messages.decode_cursor(q.get("cursor")),
    )
    return _json(messages.page_to_wire(page, now=service.now()))


async def get_certificate(request: web.Request) -> web.Response:
    """GET /certificates/{serial}[?ca=]."""
    service, who = await _who(request)
    serial = messages.parse_serial(request.match_info["serial"])
    record = await service.get_certificate(who, serial, ca=request.query.get("ca"))
    return _json(messages.certificate_to_wire(record, now=service.now()))


async def revoke_certificate(request: web.Request) -> web.Response:
    """POST /certificates/{serial}/revoke[?ca=] with ``{"reason": ...}``."""
    service, who = await _who(request)
    serial = messages.parse_serial(request.match_info["serial"])
    reason = messages.parse_revoke(await _body(request, optional=True))
    record = await service.revoke_certificate(
        who, serial, reason=reason, ca=request.query.get("ca")
    )
    return _json(messages.certificate_to_wire(record, now=service.now()))


# ---------------------------------------------------------------------- EST


async def list_labels(request: web.Request) -> web.Response:
    """GET /est/labels: EST labels whose CA is in scope (RFC 7030 §3.2.2 path labels)."""
    service, who = await _who(request)
    views = await service.est.list_labels(who)
    return _json({"items": [messages.label_to_wire(v) for v in views]})


async def get_label(request: web.Request) -> web.Response:
    """GET /est/labels/{label}."""
    service, who = await _who(request)
    view = await service.est.get_label(who, request.match_info["label"])
    return _json(messages.label_to_wire(view))


async def create_label(request: web.Request) -> web.Response:
    """POST /est/labels: a label on a CA in scope (owners)."""
    service, who = await _who(request)
    label = messages.parse_label(await _body(request))
    view = await service.est.create_label(who, label)
    return _json(
        messages.label_to_wire(view),
        status=201,
        headers={"Location": links.label_url(view.label.name)},
    )


async def delete_label(request: web.Request) -> web.Response:
    """DELETE /est/labels/{label}: the label and its accounts (owners)."""
    service, who = await _who(request)
    await service.est.delete_label(who, request.match_info["label"])
    return web.Response(status=204)


async def list_users(request: web.Request) -> web.Response:
    """GET /est/labels/{label}/users: HTTP Basic accounts, without password hashes."""
    service, who = await _who(request)
    users = await service.est.list_users(who, request.match_info["label"])
    return _json({"items": [messages.user_to_wire(u) for u in users]})


async def put_user(request: web.Request) -> web.Response:
    """POST /est/labels/{label}/users: create an account or reset its password (owners)."""
    service, who = await _who(request)
    req = messages.parse_user(await _body(request))
    user = await service.est.put_user(
        who,
        request.match_info["label"],
        req.username,
        req.password,
        dns_suffixes=req.dns_suffixes,
        subject_patterns=req.subject_patterns,
        max_days=req.max_days,
    )
    return _json(messages.user_to_wire(user))


async def delete_user(request: web.Request) -> web.Response:
    """DELETE /est/labels/{label}/users/{username} (owners)."""
    service, who = await _who(request)
    await service.est.delete_user(who, request.match_info["label"], request.match_info["username"])
    return web.Response(status=204)


async def list_pending(request: web.Request) -> web.Response:
    """GET /est/pending[?status=]: enrollments held for approval (RFC 7030 §4.2.3)."""
    service, who = await _who(request)
    status = messages.parse_pending_status(request.query.get("status"))
    items = await service.est.list_pending(who, status)
    return _json({"items": [messages.pending_to_wire(p) for p in items]})


async def approve_pending(request: web.Request) -> web.Response:
    """POST /est/pending/{id}/approve (approvers): the client's next poll gets its cert."""
    service, who = await _who(request)
    done = await service.est.decide(who, request.match_info["id"], approve=True)
    return _json(messages.pending_to_wire(done))


async def reject_pending(request: web.Request) -> web.Response:
    """POST /est/pending/{id}/reject (approvers)."""
    service, who = await _who(request)
    done = await service.est.decide(who, request.match_info["id"], approve=False)
    return _json(messages.pending_to_wire(done))


# ---------------------------------------------------------------------- ACME


async def list_directories(request: web.Request) -> web.Response:
    """GET /acme/directories: named ACME directories whose CA is in scope."""
    service, who = await _who(request)
    views = await service.acme.list_directories(who)
    return _json({"items": [messages.directory_to_wire(v) for v in views]})


async def get_directory(request: web.Request) -> web.Response:
    """GET /acme/directories/{name}."""
    service, who = await _who(request)
    view = await service.acme.get_directory(who, request.match_info["name"])
    return _json(messages.directory_to_wire(view))


async def create_directory(request: web.Request) -> web.Response:
    """POST /acme/directories: /acme/{name}/directory on a CA in scope (owners)."""
    service, who = await _who(request)
    directory = messages.parse_directory(await _body(request))
    view = await service.acme.create_directory(who, directory)
    return _json(
        messages.directory_to_wire(view),
        status=201,
        headers={"Location": links.directory_url(view.directory.name)},
    )


async def delete_directory(request: web.Request) -> web.Response:
    """DELETE /acme/directories/{name} (owners): its accounts can no longer log in."""
    service, who = await _who(request)
    await service.acme.delete_directory(who, request.match_info["name"])
    return web.Response(status=204)


async def list_eab_keys(request: web.Request) -> web.Response:
    """GET /acme/eab-keys: External Account Binding keys, never their MAC keys."""
    service, who = await _who(request)
    keys = await service.acme.list_eab_keys(who)
    return _json({"items": [messages.eab_key_to_wire(k) for k in keys]})


async def create_eab_key(request: web.Request) -> web.Response:
    """POST /acme/eab-keys (RFC 8555 §7.3.4): kid and MAC key, shown this once."""
    service, who = await _who(request)
    key = await service.acme.create_eab_key(who)
    return _json(
        messages.eab_key_to_wire(key, with_secret=True),
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def revoke_eab_key(request: web.Request) -> web.Response:
    """POST /acme/eab-keys/{kid}/revoke, optionally deactivating its accounts."""
    service, who = await _who(request)
    deactivate = messages.parse_eab_revoke(await _body(request, optional=True))
    kid = request.match_info["kid"]
    done = await service.acme.revoke_eab_key(who, kid, deactivate_accounts=deactivate)
    return _json({"kid": kid, "deactivated_accounts": list(done)})


# ---------------------------------------------------------------------- Matter


async def _matter_ca_created(service: admin_api.AdminService, ca: types.CA) -> web.Response:
    return _created(await service.view(ca))


async def create_paa(request: web.Request) -> web.Response:
    """POST /matter/paa: a Product Attestation Authority (unscoped owners; Matter Core §6.2)."""
    service, who = await _who(request)
    req = messages.parse_matter_ca(await _body(request), ids=("vid",))
    ca = await service.matter.create_paa(
        who, req.name, vid=req.ids["vid"], days=req.days, key_backend=req.key_backend
    )
    return await _matter_ca_created(service, ca)


async def create_rcac(request: web.Request) -> web.Response:
    """POST /matter/rcac: an operational Root CA (unscoped owners; Matter Core §6.1)."""
    service, who = await _who(request)
    req = messages.parse_matter_ca(await _body(request), ids=("fabric_id", "rcac_id"))
    ca = await service.matter.create_rcac(
        who,
        req.name,
        fabric_id=req.ids["fabric_id"],
        rcac_id=req.ids["rcac_id"],
        days=req.days,
        key_backend=req.key_backend,
    )
    return await _matter_ca_created(service, ca)


async def create_pai(request: web.Request) -> web.Response:
    """POST /cas/{ca}/matter/pai: a PAI under the PAA {ca} (its owners)."""
    service, who = await _who(request)
    req = messages.parse_matter_ca(await _body(request), ids=("vid", "pid"))
    ca = await service.matter.create_pai(
        who,
        request.match_info["ca"],
        req.name,
        vid=req.ids["vid"],
        pid=req.ids["pid"],
        days=req.days,
        key_backend=req.key_backend,
    )
    return await _matter_ca_created(service, ca)


async def create_icac(request: web.Request) -> web.Response:
    """POST /cas/{ca}/matter/icac: an ICAC under the RCAC {ca} (its owners)."""
    service, who = await _who(request)
    req = messages.parse_matter_ca(await _body(request), ids=("fabric_id", "icac_id"))
    ca = await service.matter.create_icac(
        who,
        request.match_info["ca"],
        req.name,
        fabric_id=req.ids["fabric_id"],
        icac_id=req.ids["icac_id"],
        days=req.days,
        key_backend=req.key_backend,
    )
    return await _matter_ca_created(service, ca)


def _issued(issued: types.IssuedCertificate) -> web.Response:
    record = issued.record
    return web.Response(
        status=201,
        body=messages.pem_chain([issued.certificate, *issued.chain[:-1]]),
        content_type=messages.PEM_CHAIN,
        headers={"Location": links.certificate_url(record.serial_hex, record.ca_id)},
    )


async def issue_dac(request: web.Request) -> web.Response:
    """POST /cas/{ca}/matter/dac: a DAC from a CSR under the PAI {ca} (issuers)."""
    service, who = await _who(request)
    req = messages.parse_matter_leaf(await _body(request), ids=("vid", "pid"))
    issued = await service.matter.issue_dac(
        who,
        request.match_info["ca"],
        req.csr,
        vid=req.ids["vid"],
        pid=req.ids["pid"],
        days=req.days,
    )
    return _issued(issued)


async def issue_dacs(request: web.Request) -> web.Response:
    """POST /cas/{ca}/matter/dacs: one DAC per CSR (at most MAX_DAC_BATCH) under the PAI {ca}."""
    service, who = await _who(request)
    req = messages.parse_dac_batch(await _body(request))
    creds, pai = await service.matter.issue_dacs(
        who, request.match_info["ca"], req.csrs, vid=req.vid, pid=req.pid, days=req.days
    )
    return _json(messages.dac_batch_to_wire(creds, pai), status=201)


async def issue_noc(request: web.Request) -> web.Response:
    """POST /cas/{ca}/matter/noc: a NOC from a NOCSR under the ICAC or RCAC {ca} (issuers)."""
    service, who = await _who(request)
    req = messages.parse_matter_leaf(await _body(request), ids=("node_id", "fabric_id"))
    issued = await service.matter.issue_noc(
        who,
        request.match_info["ca"],
        req.csr,
        node_id=req.ids["node_id"],
        fabric_id=req.ids["fabric_id"],
        cats=req.cats,
        days=req.days,
    )
    return _issued(issued)


# ---------------------------------------------------------------------- audit


def _audit_query(request: web.Request, *, limit: int) -> types.AuditQuery:
    q = request.query
    return messages.parse_audit_query(
        q,
        since=_query_time(q.get("since"), "since"),
        until=_query_time(q.get("until"), "until"),
        limit=limit,
    )


async def list_audit(request: web.Request) -> web.Response:
    """GET /audit: search the audit log (since, until, actor, action, target), newest first."""
    service, who = await _who(request)
    query = _audit_query(request, limit=_query_limit(request.query.get("limit")))
    cursor = messages.decode_cursor(request.query.get("cursor"))
    page = await service.audit.page(who, query, cursor=cursor)
    return _json(messages.audit_page_to_wire(page))


async def export_audit(request: web.Request) -> web.StreamResponse:
    """GET /audit/export: every matching record, oldest first, as JSON Lines (streamed)."""
    service, who = await _who(request)
    query = _audit_query(request, limit=_DEFAULT_LIMIT)
    events = await service.audit.export(who, query)
    response = web.StreamResponse(headers={"Cache-Control": "no-store"})
    response.content_type = messages.JSONL
    await response.prepare(request)
    async for event in events:
        await response.write(messages.audit_line(event))
    await response.write_eof()
    return response
