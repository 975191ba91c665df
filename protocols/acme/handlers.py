"""ACME endpoints (RFC 8555 §7, RFC 9773 ARI): one ``async def`` per endpoint.

Each handler authenticates the JWS, converts the payload, makes one engine
call and renders the result. Errors are raised and rendered by the middleware.
"""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from protocols.acme import jws, links, messages
from protocols.acme.middleware import MAX_BODY, AcmeProblemError, links_for, service_of
from protocols.common import body as body_reader
from protocols.common import problem
from server.ca.acme import api as acme_api
from server.ca.errors import EngineError, ProblemKind

__all__ = [
    "account",
    "authz",
    "certificate",
    "challenge",
    "directory",
    "finalize",
    "key_change",
    "new_account",
    "new_authz",
    "new_nonce",
    "new_order",
    "order",
    "orders",
    "renewal_info",
    "revoke_cert",
]

JOSE: Final = "application/jose+json"
PEM_CHAIN: Final = "application/pem-certificate-chain"


def _url(request: web.Request) -> str:
    return str(request.url.with_query(None))


async def _auth(
    request: web.Request, *, use_jwk: bool = False, allow_both: bool = False
) -> jws.Verified:
    if request.content_type != JOSE:
        raise AcmeProblemError(
            problem.Problem(
                kind=ProblemKind.MALFORMED,
                detail=f"Content-Type must be {JOSE}",
                status=415,
            )
        )
    body = await body_reader.read(request, limit=request.app[MAX_BODY])
    lk = links_for(request)
    return await jws.authenticate(
        body,
        url=_url(request),
        registration=service_of(request),
        account_id_of=lk.account_id,
        use_jwk=use_jwk,
        allow_both=allow_both,
    )


def _account(v: jws.Verified) -> acme_api.Account:
    if v.account is None:  # authenticate() guarantees an account for kid requests
        raise EngineError(ProblemKind.MALFORMED, "this request must use kid")
    return v.account


def _require_post_as_get(v: jws.Verified) -> None:
    if not v.is_post_as_get:
        raise EngineError(ProblemKind.MALFORMED, "this resource is fetched with POST-as-GET")


def _json(
    body: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _source(request: web.Request) -> str:
    """Return where a request came from, for the audit trail and per-address limits."""
    return request.remote or ""


# ----------------------------------------------------------------- directory and nonces


async def directory(request: web.Request) -> web.Response:
    """GET directory (RFC 8555 §7.1.1)."""
    acme = service_of(request)
    lk = links_for(request)
    meta: dict[str, object] = {
        "externalAccountRequired": acme.settings.eab_required,
        "profiles": acme.orders.profiles(),
    }
    if acme.settings.terms_of_service:
        meta["termsOfService"] = acme.settings.terms_of_service
    if acme.settings.website:
        meta["website"] = acme.settings.website
    if acme.settings.caa_identities:
        meta["caaIdentities"] = list(acme.settings.caa_identities)
    return _json(
        {
            "newNonce": lk.endpoint(links.NEW_NONCE),
            "newAccount": lk.endpoint(links.NEW_ACCOUNT),
            "newOrder": lk.endpoint(links.NEW_ORDER),
            "newAuthz": lk.endpoint(links.NEW_AUTHZ),
            "revokeCert": lk.endpoint(links.REVOKE_CERT),
            "keyChange": lk.endpoint(links.KEY_CHANGE),
            "renewalInfo": lk.renewal_info(),
            "meta": meta,
        }
    )


async def new_nonce(request: web.Request) -> web.Response:
    """HEAD/GET newNonce (RFC 8555 §7.2): 200 for HEAD, 204 for GET, never cached."""
    status = 200 if request.method == "HEAD" else 204
    return web.Response(status=status, headers={"Cache-Control": "no-store"})


# ----------------------------------------------------------------- accounts


async def new_account(request: web.Request) -> web.Response:
    """POST newAccount (RFC 8555 §7.3, §7.3.4 EAB)."""
    v = await _auth(request, use_jwk=True)
    lk = links_for(request)
    payload = messages.NewAccount.from_wire(v.payload_json())
    binding = None
    if payload.eab is not None:
        binding = jws.verify_eab(
            payload.eab, outer_jwk=v.jws.protected["jwk"], url=lk.endpoint(links.NEW_ACCOUNT)
        )
    acme = service_of(request)
    acct, created = await acme.accounts.new_account(
        v.account_key,
        contact=payload.contact,
        tos_agreed=payload.tos_agreed,
        only_return_existing=payload.only_return_existing,
        eab=binding,
        client=_source(request),
    )
    return _json(
        messages.account_to_wire(acct, lk),
        status=201 if created else 200,
        headers={"Location": lk.account(acct.id)},
    )


def _own_account(request: web.Request, v: jws.Verified) -> acme_api.Account:
    acct = _account(v)
    if acct.id != request.match_info["account_id"]:
        raise EngineError(ProblemKind.UNAUTHORIZED, "the kid does not match this account URL")
    return acct


async def account(request: web.Request) -> web.Response:
    """POST account: fetch, update contacts, deactivate (RFC 8555 §7.3.2, §7.3.6)."""
    v = await _auth(request)
    acct = _own_account(request, v)
    lk = links_for(request)
    if not v.is_post_as_get:
        update = messages.AccountUpdate.from_wire(v.payload_json())
        acct = await service_of(request).accounts.update_account(
            acct, contact=update.contact, deactivate=update.deactivate, source=_source(request)
        )
    return _json(messages.account_to_wire(acct, lk), headers={"Location": lk.account(acct.id)})


async def orders(request: web.Request) -> web.Response:
    """POST-as-GET an account's orders list (RFC 8555 §7.1.2.1)."""
    v = await _auth(request)
    acct = _own_account(request, v)
    _require_post_as_get(v)
    lk = links_for(request)
    ids = await service_of(request).orders.list_orders(acct)
    return _json({"orders": [lk.order(i) for i in ids]})


async def key_change(request: web.Request) -> web.Response:
    """POST keyChange: roll an account over to a new key (RFC 8555 §7.3.5)."""
    v = await _auth(request)
    acct = _account(v)
    lk = links_for(request)
    inner = jws.parse(v.jws.payload)
    header = inner.protected
    if "jwk" not in header or "kid" in header:
        raise EngineError(ProblemKind.MALFORMED, "the inner JWS must carry the new key as jwk")
    if "nonce" in header:
        raise EngineError(ProblemKind.MALFORMED, "the inner JWS must not carry a nonce")
    if header.get("url") != v.jws.protected.get("url"):
        raise EngineError(ProblemKind.MALFORMED, "the inner and outer url headers differ")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in jws.ALGORITHMS:
        raise EngineError(ProblemKind.BAD_SIGNATURE_ALGORITHM, f"unsupported algorithm {alg!r}")
    new_key, new_account_key = jws.load_jwk(header["jwk"])
    jws.verify_signature(alg, new_key, inner.signing_input, inner.signature)
    body = jws.json_object(inner.payload, "the inner payload")
    if set(body) != {"account", "oldKey"}:
        raise EngineError(ProblemKind.MALFORMED, "the inner payload needs account and oldKey")
    if body["account"] != lk.account(acct.id):
        raise EngineError(ProblemKind.MALFORMED, "the inner account does not match the kid")
    _, old = jws.load_jwk(body["oldKey"])
    if old.thumbprint != acct.key.thumbprint:
        raise EngineError(ProblemKind.MALFORMED, "oldKey is not the account's current key")
    if new_account_key.thumbprint == acct.key.thumbprint:
        raise EngineError(ProblemKind.MALFORMED, "the new key is the current key")
    acme = service_of(request)
    holder = await acme.accounts.find_account(new_account_key.thumbprint)
    if holder is not None:
        raise AcmeProblemError(
            problem.Problem(
                kind=ProblemKind.CONFLICT,
                detail="the new key is already used by another account",
                status=409,
                headers={"Location": lk.account(holder.id)},
            )
        )
    updated = await acme.accounts.change_key(acct, new_account_key, source=_source(request))
    return _json(messages.account_to_wire(updated, lk), headers={"Location": lk.account(acct.id)})


# ----------------------------------------------------------------- orders


def _order_response(
    request: web.Request, order_obj: acme_api.Order, *, status: int = 200
) -> web.Response:
    acme = service_of(request)
    lk = links_for(request)
    headers = {"Location": lk.order(order_obj.id)}
    retry = acme.orders.retry_after(order_obj)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    body = messages.order_to_wire(
        order_obj, lk, profile=acme.orders.acme_profile(order_obj.profile)
    )
    return _json(body, status=status, headers=headers)


async def new_order(request: web.Request) -> web.Response:
    """POST newOrder (RFC 8555 §7.4; RFC 8738 ip; RFC 9773 replaces; profiles)."""
    v = await _auth(request)
    payload = messages.NewOrder.from_wire(v.payload_json())
    created = await service_of(request).orders.new_order(
        _account(v),
        payload.identifiers,
        not_before=payload.not_before,
        not_after=payload.not_after,
        profile=payload.profile,
        replaces=payload.replaces,
        source=_source(request),
    )
    return _order_response(request, created, status=201)


async def order(request: web.Request) -> web.Response:
    """POST-as-GET an order (RFC 8555 §7.1.3)."""
    v = await _auth(request)
    _require_post_as_get(v)
    found = await service_of(request).orders.get_order(_account(v), request.match_info["order_id"])
    return _order_response(request, found)


async def finalize(request: web.Request) -> web.Response:
    """POST finalize: CSR in, certificate issued (RFC 8555 §7.4)."""
    v = await _auth(request)
    csr = messages.finalize_csr(v.payload_json(), jws.b64u_decode)
    done = await service_of(request).finalizer.finalize(
        _account(v), request.match_info["order_id"], csr, source=_source(request)
    )
    return _order_response(request, done)


# ----------------------------------------------------------------- authorizations


async def new_authz(request: web.Request) -> web.Response:
    """POST newAuthz: pre-authorization (RFC 8555 §7.4.1)."""
    v = await _auth(request)
    kind, value = messages.new_authz_identifier(v.payload_json())
    created = await service_of(request).orders.new_authz(
        _account(v), kind, value, source=_source(request)
    )
    lk = links_for(request)
    return _json(
        messages.authz_to_wire(created, lk), status=201, headers={"Location": lk.authz(created.id)}
    )


async def authz(request: web.Request) -> web.Response:
    """POST authorization: POST-as-GET or deactivate (RFC 8555 §7.5, §7.5.2)."""
    v = await _auth(request)
    acme = service_of(request)
    authz_id = request.match_info["authz_id"]
    if v.is_post_as_get:
        found = await acme.orders.get_authz(_account(v), authz_id)
    else:
        payload = v.payload_json()
        if payload != {"status": "deactivated"}:
            raise EngineError(
                ProblemKind.MALFORMED, 'an authorization update must be {"status": "deactivated"}'
            )
        found = await acme.orders.deactivate_authz(_account(v), authz_id, source=_source(request))
    return _json(messages.authz_to_wire(found, links_for(request)))


async def challenge(request: web.Request) -> web.Response:
    """POST challenge: start validation, or POST-as-GET its state (RFC 8555 §7.5.1)."""
    v = await _auth(request)
    acme = service_of(request)
    authz_id, kind = request.match_info["authz_id"], request.match_info["type"]
    lk = links_for(request)
    if v.is_post_as_get:
        found = await acme.orders.get_authz(_account(v), authz_id)
        chall = found.challenge(acme_api.ChallengeType(kind)) if kind in _TYPES else None
        if chall is None:
            raise EngineError(ProblemKind.NOT_FOUND, "no such challenge")
    else:
        if v.payload_json():
            raise EngineError(ProblemKind.MALFORMED, "a challenge response payload must be {}")
        found, chall = await acme.orders.respond_challenge(
            _account(v), authz_id, kind, source=_source(request)
        )
    headers = {"Link": f'<{lk.authz(found.id)}>;rel="up"'}
    return _json(messages.challenge_to_wire(found.id, chall, lk), headers=headers)


_TYPES: Final = frozenset(str(t) for t in acme_api.ChallengeType)


# ----------------------------------------------------------------- certificates


async def certificate(request: web.Request) -> web.Response:
    """POST-as-GET a certificate chain (RFC 8555 §7.4.2), with alternate chains."""
    v = await _auth(request)
    _require_post_as_get(v)
    ref = request.match_info["cert_ref"]
    alternate = request.match_info.get("alt")
    if alternate not in (None, "1"):
        raise EngineError(ProblemKind.NOT_FOUND, "no such certificate chain")
    leaf, chain = await service_of(request).finalizer.certificate_chain(_account(v), ref)
    # Default: leaf + intermediates. Alternate 1: the same path including the root,
    # for clients whose trust store lacks the private root.
    certs = (leaf, *chain) if alternate else (leaf, *chain[:-1])
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    lk = links_for(request)
    other = lk.certificate(ref) if alternate else lk.certificate(ref, alternate=1)
    response = web.Response(body=pem, headers={"Content-Type": PEM_CHAIN})
    response.headers.add("Link", f'<{other}>;rel="alternate"')
    return response


async def revoke_cert(request: web.Request) -> web.Response:
    """POST revokeCert by the account or by the certificate's key (RFC 8555 §7.6)."""
    v = await _auth(request, allow_both=True)
    payload = messages.Revocation.from_wire(v.payload_json(), jws.b64u_decode)
    await service_of(request).revocation.revoke(
        payload.certificate,
        reason_code=payload.reason,
        account=v.account,
        key_spki=None if v.account is not None else v.account_key.spki,
        source=_source(request),
    )
    return web.Response(status=200)


async def renewal_info(request: web.Request) -> web.Response:
    """GET renewalInfo (RFC 9773 §4.2): the suggested renewal window."""
    window = await service_of(request).renewal.renewal_info(request.match_info["cert_id"])
    return _json(
        {
            "suggestedWindow": {
                "start": messages.rfc3339(window.start),
                "end": messages.rfc3339(window.end),
            }
        },
        headers={"Retry-After": str(window.retry_after)},
    )
