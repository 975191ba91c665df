"""The admin API's OpenAPI 3.1 document, served at /admin/v1/openapi.json.

Kept beside the routes it describes: ``tests/protocols/admin/test_openapi.py``
checks that it names exactly the routes ``routes.ROUTES`` mounts, and a
schemathesis run checks live responses against it. Adding a resource is a
handlers function, a ``ROUTES`` row and an entry in ``_PATHS`` here.
"""

from __future__ import annotations

from typing import Any, Final

from protocols.admin import links
from server.ca.admin import api as admin_api
from server.ca.est import api as est_api
from server.ca.types import CAMode, CertStatus, KeyAlgorithm, RevocationReason

__all__ = ["DOCUMENT"]

_NULLABLE_STR: Final = {"type": ["string", "null"]}
_NULLABLE_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_TIME: Final = {"type": "string", "format": "date-time"}
_CA_REF: Final = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_SERIAL: Final = {"type": "string", "pattern": "^[0-9A-Fa-f]{1,40}$"}
_DAYS: Final = {"type": "integer", "minimum": 1, "maximum": admin_api.MAX_DAYS}
_NULLABLE_DAYS: Final = {"type": ["integer", "null"], "minimum": 1}
_LABEL: Final = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_DIRECTORY: Final = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}
_TOKEN_ID: Final = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_USERNAME: Final = {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,128}$"}
_STRINGS: Final = {
    "type": "array",
    "maxItems": 64,
    "items": {"type": "string", "minLength": 1, "maxLength": 253},
}
_VID: Final = {"type": "string", "pattern": "^[0-9A-Fa-f]{1,4}$", "description": "hex"}
_ID64: Final = {"type": "string", "pattern": "^[0-9A-Fa-f]{1,16}$", "description": "hex"}
_NULLABLE_STRINGS: Final = {"type": ["array", "null"], "items": {"type": "string"}}
_KEY_BACKEND: Final = {
    "type": "string",
    "enum": sorted(admin_api.KEY_BACKENDS),
    "description": "where the CA key lives (default: the server's default backend); "
    "a backend this server has not configured is a 400",
}
_OID: Final = {"type": "string", "pattern": "^[0-2](\\.[0-9]+)+$", "maxLength": 128}
_CSR_ATTR: Final = {
    "type": "object",
    "properties": {"oid": _OID, "values": {"type": "array", "maxItems": 16, "items": _OID}},
    "required": ["oid"],
    "additionalProperties": False,
}
_CA_CREATE: Final = {
    "name": _CA_REF,
    "key_type": {"type": "string", "enum": list(KeyAlgorithm)},
    "days": _DAYS,
    "path_length": {"type": "integer", "minimum": 0, "maximum": 4},
    "mode": {"type": "string", "enum": list(CAMode)},
    "subject": {
        "type": "string",
        "minLength": 1,
        "maxLength": 1024,
        "description": "RFC 4514 DN (default CN=<name>)",
    },
    "permit_dns": {
        "type": "array",
        "maxItems": 64,
        "items": {"type": "string", "minLength": 1, "maxLength": 253},
        "description": "NameConstraints: permitted DNS subtrees",
    },
    "permit_ip": {
        "type": "array",
        "maxItems": 64,
        "items": {"type": "string", "minLength": 1, "maxLength": 253},
        "description": "NameConstraints: permitted IP networks (CIDR)",
    },
    "key_backend": _KEY_BACKEND,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        "additionalProperties": False,
    }


_SCHEMAS: Final[dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem document",
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "subproblems": {
                "type": "array",
                "items": _object(
                    {
                        "kind": {"type": "string"},
                        "detail": {"type": "string"},
                        "identifier": _NULLABLE_STR,
                    }
                ),
            },
        },
        "required": ["type", "title", "status", "detail"],
    },
    "Links": _object({"self": {"type": "string"}}),
    "CA": _object(
        {
            "name": {"type": "string"},
            "id": {"type": "string"},
            "tier": {"type": "integer"},
            "state": {
                "type": "string",
                "enum": ["pending-import", "active", "disabled", "revoked", "expired"],
            },
            "status": {"type": "string"},
            "mode": {"type": "string", "enum": list(CAMode)},
            "kind": {"type": "string"},
            "key_algorithm": {"type": "string", "enum": list(KeyAlgorithm)},
            "parent": _NULLABLE_STR,
            "external": {"type": "boolean"},
            "offline": {"type": "boolean"},
            "subject": _NULLABLE_STR,
            "serial": _NULLABLE_STR,
            "not_before": _NULLABLE_TIME,
            "not_after": _NULLABLE_TIME,
            "csr": {
                "type": ["string", "null"],
                "description": "PEM PKCS#10 request of a pending imported CA (for its signer)",
            },
            "links": _ref("Links"),
        }
    ),
    "CAList": _object({"items": {"type": "array", "items": _ref("CA")}}),
    "CreateRoot": _object(_CA_CREATE, required=["name"]),
    "CreateSubordinate": _object(
        {
            **_CA_CREATE,
            "allow_dns": {**_STRINGS, "description": "identifier policy: DNS suffixes"},
            "allow_ip": {**_STRINGS, "description": "identifier policy: IP networks (CIDR)"},
            "publish_revocation": {
                "type": "boolean",
                "description": "CDP/OCSP URLs in leaves (default: true unless short-lived)",
            },
        },
        required=["name"],
    ),
    "ImportCA": _object(
        {
            "name": _CA_REF,
            "key_type": {"type": "string", "enum": list(KeyAlgorithm)},
            "subject": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1024,
                "description": "RFC 4514 subject of the CSR (default CN=<name>,O=<organization>)",
            },
            "mode": {"type": "string", "enum": list(CAMode)},
            "key_backend": _KEY_BACKEND,
        },
        required=["name"],
    ),
    "Activate": _object(
        {
            "certificate": {
                "type": "string",
                "description": "PEM: the CA certificate, then its issuers up to the root",
            }
        }
    ),
    "Revoke": _object({"reason": {"type": "string", "enum": list(RevocationReason)}}, required=[]),
    "Renew": _object({"rekey": {"type": "boolean"}, "days": _DAYS}, required=[]),
    "Renewal": _object(
        {
            "ca": _ref("CA"),
            "serial": {"type": "string"},
            "rekeyed": {"type": "boolean"},
            "orphaned_leaves": {"type": "integer", "minimum": 0},
        }
    ),
    "Issue": _object(
        {
            "csr": {"type": "string", "description": "PEM PKCS#10 request"},
            "profile": {"type": "string", "default": "tls-server"},
            "days": _DAYS,
            "hours": {
                "type": "integer",
                "minimum": 1,
                "maximum": admin_api.MAX_HOURS,
                "description": "lifetime in hours (not with days)",
            },
        },
        required=["csr"],
    ),
    "Certificate": _object(
        {
            "serial": {"type": "string"},
            "ca_id": {"type": "string"},
            "status": {"type": "string", "enum": [*CertStatus, "expired"]},
            "subject": {"type": "string"},
            "sans": {"type": "array", "items": {"type": "string"}},
            "profile": {"type": "string"},
            "is_ca": {"type": "boolean"},
            "not_before": _TIME,
            "not_after": _TIME,
            "issued_at": _TIME,
            "requester": {"type": "string"},
            "revoked_at": _NULLABLE_TIME,
            "revocation_reason": _NULLABLE_STR,
            "links": _ref("Links"),
        }
    ),
    "CertificatePage": _object(
        {
            "items": {"type": "array", "items": _ref("Certificate")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as ?cursor= for the next page; null on the last page",
            },
        }
    ),
    "Crl": _object(
        {
            "ca_id": {"type": "string"},
            "number": {"type": "integer", "minimum": 1},
            "this_update": _TIME,
            "next_update": _TIME,
        }
    ),
    "Label": _object(
        {
            "name": {"type": "string"},
            "ca": _NULLABLE_STR,
            "issuing_ca": _NULLABLE_STR,
            "profile": {"type": "string"},
            "auth": {"type": "array", "items": {"type": "string", "enum": list(est_api.AuthMode)}},
            "trust_anchors": {"type": "integer", "minimum": 0},
            "approval_required": {"type": "boolean"},
            "allow_subject_change": {"type": "boolean"},
            "csrattrs": {
                "type": ["array", "null"],
                "items": _CSR_ATTR,
                "description": "null: derived from the profile",
            },
            "allow_dns": {"type": "array", "items": {"type": "string"}},
            "allow_wildcard": {"type": "boolean"},
            "allow_ip": {"type": "array", "items": {"type": "string"}},
            "allow_uri": {"type": "array", "items": {"type": "string"}},
            "allow_email": {"type": "array", "items": {"type": "string"}},
            "subject": {"type": "array", "items": {"type": "string"}},
            "max_days": _NULLABLE_DAYS,
            "source": {"type": "string"},
            "links": _ref("Links"),
        }
    ),
    "LabelList": _object({"items": {"type": "array", "items": _ref("Label")}}),
    "CreateLabel": _object(
        {
            "name": _LABEL,
            "ca": {**_CA_REF, "description": "issuing CA (default: the default issuing CA)"},
            "profile": {"type": "string", "default": "device"},
            "auth": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "enum": list(est_api.AuthMode)},
            },
            "trust_anchors": {
                "type": "string",
                "description": "PEM CA certificates trusted for client certificates",
            },
            "approval_required": {"type": "boolean"},
            "allow_subject_change": {"type": "boolean"},
            "csrattrs": {
                "type": "array",
                "maxItems": 64,
                "items": _CSR_ATTR,
                "description": "what GET csrattrs answers (RFC 7030 §4.5.2): bare OIDs, or "
                "attributes with OID values (default: derived from the profile)",
            },
            "allow_dns": _STRINGS,
            "allow_wildcard": {"type": "boolean"},
            "allow_ip": {**_STRINGS, "description": "CIDR ranges"},
            "allow_uri": _STRINGS,
            "allow_email": _STRINGS,
            "subject": {**_STRINGS, "description": "shell patterns over the RFC 4514 subject"},
            "max_days": _DAYS,
        },
        required=["name"],
    ),
    "User": _object(
        {
            "label": {"type": "string"},
            "username": {"type": "string"},
            "created_at": _TIME,
            "allow_dns": _NULLABLE_STRINGS,
            "subject": _NULLABLE_STRINGS,
            "max_days": _NULLABLE_DAYS,
        }
    ),
    "UserList": _object({"items": {"type": "array", "items": _ref("User")}}),
    "PutUser": _object(
        {
            "username": {"type": "string", "minLength": 1, "maxLength": 128},
            "password": {"type": "string", "minLength": 8, "maxLength": 1024},
            "allow_dns": _STRINGS,
            "subject": _STRINGS,
            "max_days": _DAYS,
        },
        required=["username", "password"],
    ),
    "Pending": _object(
        {
            "id": {"type": "string"},
            "label": {"type": "string"},
            "operation": {"type": "string", "enum": list(est_api.EstOperation)},
            "requester": {"type": "string"},
            "subject": {"type": "string"},
            "key_fingerprint": {"type": "string"},
            "status": {"type": "string", "enum": list(est_api.PendingStatus)},
            "created_at": _TIME,
            "decided_at": _NULLABLE_TIME,
            "decided_by": _NULLABLE_STR,
            "ca_id": _NULLABLE_STR,
            "serial": _NULLABLE_STR,
        }
    ),
    "PendingList": _object({"items": {"type": "array", "items": _ref("Pending")}}),
    "Directory": _object(
        {
            "name": {"type": "string"},
            "ca": {"type": "string"},
            "profiles": _NULLABLE_STRINGS,
            "allow_dns": {"type": "array", "items": {"type": "string"}},
            "allow_ip": {"type": "array", "items": {"type": "string"}},
            "wildcard": {"type": "boolean"},
            "eab_required": {"type": ["boolean", "null"]},
            "source": {"type": "string"},
            "links": _ref("Links"),
        }
    ),
    "DirectoryList": _object({"items": {"type": "array", "items": _ref("Directory")}}),
    "CreateDirectory": _object(
        {
            "name": _DIRECTORY,
            "ca": _CA_REF,
            "profiles": {**_STRINGS, "description": "ACME profiles offered (default: all)"},
            "allow_dns": {**_STRINGS, "description": "DNS suffixes ('*': any name)"},
            "allow_ip": {**_STRINGS, "description": "CIDR ranges"},
            "wildcard": {"type": "boolean", "default": True},
            "eab_required": {"type": "boolean"},
        },
        required=["name", "ca"],
    ),
    "EabKey": _object(
        {
            "kid": {"type": "string"},
            "created_at": _TIME,
            "revoked": {"type": "boolean"},
            "accounts": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "EabKeyList": _object({"items": {"type": "array", "items": _ref("EabKey")}}),
    "NewEabKey": _object(
        {
            "kid": {"type": "string"},
            "created_at": _TIME,
            "revoked": {"type": "boolean"},
            "accounts": {"type": "array", "items": {"type": "string"}},
            "hmac_key": {
                "type": "string",
                "description": "base64url MAC key (HS256): shown only in this response",
            },
        }
    ),
    "EabRevoke": _object({"deactivate_accounts": {"type": "boolean"}}, required=[]),
    "EabRevoked": _object(
        {
            "kid": {"type": "string"},
            "deactivated_accounts": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "CreatePaa": _object(
        {"name": _CA_REF, "vid": _VID, "days": _DAYS, "key_backend": _KEY_BACKEND},
        required=["name"],
    ),
    "CreatePai": _object(
        {"name": _CA_REF, "vid": _VID, "pid": _VID, "days": _DAYS, "key_backend": _KEY_BACKEND},
        required=["name", "vid"],
    ),
    "CreateRcac": _object(
        {
            "name": _CA_REF,
            "fabric_id": _ID64,
            "rcac_id": _ID64,
            "days": _DAYS,
            "key_backend": _KEY_BACKEND,
        },
        required=["name"],
    ),
    "CreateIcac": _object(
        {
            "name": _CA_REF,
            "fabric_id": _ID64,
            "icac_id": _ID64,
            "days": _DAYS,
            "key_backend": _KEY_BACKEND,
        },
        required=["name"],
    ),
    "IssueDacs": _object(
        {
            "csrs": {
                "type": "array",
                "minItems": 1,
                "maxItems": admin_api.MAX_DAC_BATCH,
                "items": {"type": "string", "description": "PEM PKCS#10 request (P-256)"},
            },
            "vid": _VID,
            "pid": _VID,
            "days": _DAYS,
        },
        required=["csrs", "vid", "pid"],
    ),
    "DacBatch": _object(
        {
            "pai": {"type": "string", "description": "the PAI certificate (PEM)"},
            "items": {
                "type": "array",
                "items": _object(
                    {
                        "serial": {"type": "string"},
                        "subject": {"type": "string"},
                        "certificate": {"type": "string", "description": "the DAC (PEM)"},
                        "links": _ref("Links"),
                    }
                ),
            },
        }
    ),
    "IssueDac": _object(
        {
            "csr": {"type": "string", "description": "PEM PKCS#10 request"},
            "vid": _VID,
            "pid": _VID,
            "days": _DAYS,
        },
        required=["csr"],
    ),
    "IssueNoc": _object(
        {
            "csr": {"type": "string", "description": "PEM NOCSR (PKCS#10)"},
            "node_id": _ID64,
            "fabric_id": _ID64,
            "cats": {
                "type": "array",
                "maxItems": 3,
                "items": {"type": "string", "pattern": "^[0-9A-Fa-f]{1,8}$"},
            },
            "days": _DAYS,
        },
        required=["csr"],
    ),
    "AuditEvent": _object(
        {
            "id": {"type": "integer"},
            "at": _TIME,
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "target": {"type": "string"},
            "detail": {"type": "object", "additionalProperties": {"type": "string"}},
            "source": {"type": "string", "description": "client address, or cli@host"},
            "seq": {"type": ["integer", "null"], "description": "position in the hash chain"},
            "prev_hash": {"type": "string", "description": "hex SHA-256 of the record before"},
            "hash": {
                "type": "string",
                "description": "hex SHA-256 over this record and prev_hash (`privca audit verify`)",
            },
        }
    ),
    "AuditPage": _object(
        {
            "items": {"type": "array", "items": _ref("AuditEvent")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as ?cursor= for the next page; null on the last page",
            },
        }
    ),
    "Whoami": _object(
        {
            "name": {"type": "string"},
            "role": {"type": "string", "enum": list(admin_api.Role)},
            "scope": _NULLABLE_STR,
            "via": {"type": "string", "enum": ["token", "certificate"]},
            "permissions": {
                "type": "array",
                "items": {"type": "string", "enum": list(admin_api.Permission)},
            },
        }
    ),
}

_PROBLEMS: Final = {
    "400": "malformed request",
    "401": "no, unknown, expired or revoked credentials",
    "403": "the role or scope does not allow this, or policy refuses it",
    "404": "no such CA, certificate, label, account, enrollment, directory or key",
    "409": "conflicts with the current state",
    "413": "body too large",
    "415": "the body is not application/json",
    "503": "storage, or the revocation, EST or ACME service, is unavailable",
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _pem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/pem-certificate-chain": {"schema": {"type": "string"}}},
    }


def _op(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    body_required: bool = True,
    parameters: list[dict[str, Any]] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "responses": responses | ({} if public else {k: _problem(v) for k, v in _PROBLEMS.items()}),
    }
    if public:
        out["security"] = []
    if body is not None:
        out["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if parameters:
        out["parameters"] = parameters
    return out


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_CA_PARAM: Final = [_path_param("ca", _CA_REF)]
_LABEL_PARAM: Final = [_path_param("label", _LABEL)]
_DIRECTORY_PARAM: Final = [_path_param("name", _DIRECTORY)]
_PENDING_PARAM: Final = [_path_param("id", _TOKEN_ID)]
_DELETED: Final = {"204": {"description": "deleted"}}
_AUDIT_FILTERS: Final = [
    _query("since", {"type": "string", "format": "date-time"}, "at or after this time"),
    _query("until", {"type": "string", "format": "date-time"}, "before this time"),
    _query("actor", {"type": "string", "maxLength": 255}, "exactly this actor"),
    _query("action", {"type": "string", "maxLength": 255}, "exactly this action"),
    _query("target", {"type": "string", "maxLength": 255}, "exactly this target"),
]
_SERIAL_PARAMS: Final = [
    _path_param("serial", _SERIAL),
    _query("ca", _CA_REF, "the issuing CA (name or id) when the serial exists under several"),
]

_PATHS: Final[dict[str, Any]] = {
    links.OPENAPI: {
        "get": _op(
            "getOpenApi",
            "This document",
            {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
            public=True,
        )
    },
    "/whoami": {
        "get": _op("whoami", "The caller's identity", {"200": _json("Whoami", "identity")})
    },
    "/cas": {
        "get": _op("listCas", "CAs in the caller's scope", {"200": _json("CAList", "CAs")}),
        "post": _op(
            "createRoot",
            "Create a root CA (unscoped owners)",
            {"201": _json("CA", "created")},
            body="CreateRoot",
        ),
    },
    "/cas/imports": {
        "post": _op(
            "importCa",
            "Create a pending CA and its CSR for an external signer (unscoped owners)",
            {"201": _json("CA", "pending; its csr is in the body")},
            body="ImportCA",
        )
    },
    "/cas/{ca}/activate": {
        "post": _op(
            "activateImportedCa",
            "Activate a pending imported CA with its signed certificate and chain (owners)",
            {"200": _json("CA", "active")},
            body="Activate",
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}": {
        "get": _op("getCa", "One CA", {"200": _json("CA", "the CA")}, parameters=_CA_PARAM)
    },
    "/cas/{ca}/certificate": {
        "get": _op(
            "getCaCertificate",
            "The CA certificate and its issuers (PEM)",
            {"200": _pem("CA certificate chain")},
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/subordinates": {
        "post": _op(
            "createSubordinate",
            "Create a CA under {ca} (owners)",
            {"201": _json("CA", "created")},
            body="CreateSubordinate",
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/disable": {
        "post": _op(
            "disableCa",
            "Stop a CA issuing (owners)",
            {"200": _json("CA", "disabled")},
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/enable": {
        "post": _op(
            "enableCa",
            "Let a disabled CA issue (owners)",
            {"200": _json("CA", "enabled")},
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/revoke": {
        "post": _op(
            "revokeCa",
            "Revoke a CA and its subtree (owners)",
            {"200": _json("CA", "revoked")},
            body="Revoke",
            body_required=False,
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/renew": {
        "post": _op(
            "renewCa",
            "Give a CA a new certificate (owners)",
            {"200": _json("Renewal", "renewed")},
            body="Renew",
            body_required=False,
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/crl": {
        "post": _op(
            "regenerateCrl",
            "Publish the CA's CRL now (owners)",
            {"200": _json("Crl", "published")},
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/certificates": {
        "post": _op(
            "issueCertificate",
            "Issue a certificate from a CSR (issuers); leaf and chain without the root",
            {"201": _pem("issued certificate chain")},
            body="Issue",
            parameters=_CA_PARAM,
        )
    },
    "/certificates": {
        "get": _op(
            "listCertificates",
            "Search certificates of CAs in scope, newest first",
            {"200": _json("CertificatePage", "one page")},
            parameters=[
                _query("ca", _CA_REF, "only this CA (name or id)"),
                _query("status", {"type": "string", "enum": list(CertStatus)}, "stored status"),
                _query("q", {"type": "string", "maxLength": 200}, "substring of subject or SAN"),
                _query(
                    "expiring_before",
                    {"type": "string", "format": "date-time"},
                    "notAfter before this",
                ),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 500},
                    "page size (default 100)",
                ),
                _query(
                    "cursor",
                    {"type": "string", "maxLength": 64},
                    "next_cursor of the previous page",
                ),
            ],
        )
    },
    "/certificates/{serial}": {
        "get": _op(
            "getCertificate",
            "One certificate",
            {"200": _json("Certificate", "the certificate")},
            parameters=_SERIAL_PARAMS,
        )
    },
    "/certificates/{serial}/revoke": {
        "post": _op(
            "revokeCertificate",
            "Revoke a certificate (issuers; a CA's certificate: its owners)",
            {"200": _json("Certificate", "revoked")},
            body="Revoke",
            body_required=False,
            parameters=_SERIAL_PARAMS,
        )
    },
    "/est/labels": {
        "get": _op(
            "listLabels", "EST labels of CAs in scope", {"200": _json("LabelList", "labels")}
        ),
        "post": _op(
            "createLabel",
            "Create an EST label on a CA in scope (owners)",
            {"201": _json("Label", "created")},
            body="CreateLabel",
        ),
    },
    "/est/labels/{label}": {
        "get": _op(
            "getLabel",
            "One EST label",
            {"200": _json("Label", "the label")},
            parameters=_LABEL_PARAM,
        ),
        "delete": _op(
            "deleteLabel",
            "Delete a stored label and its accounts (owners)",
            _DELETED,
            parameters=_LABEL_PARAM,
        ),
    },
    "/est/labels/{label}/users": {
        "get": _op(
            "listUsers",
            "A label's HTTP Basic accounts (no password hashes)",
            {"200": _json("UserList", "accounts")},
            parameters=_LABEL_PARAM,
        ),
        "post": _op(
            "putUser",
            "Create an account or reset its password (owners)",
            {"200": _json("User", "the account")},
            body="PutUser",
            parameters=_LABEL_PARAM,
        ),
    },
    "/est/labels/{label}/users/{username}": {
        "delete": _op(
            "deleteUser",
            "Delete an account (owners)",
            _DELETED,
            parameters=[*_LABEL_PARAM, _path_param("username", _USERNAME)],
        )
    },
    "/est/pending": {
        "get": _op(
            "listPending",
            "EST enrollments held for approval, of labels in scope",
            {"200": _json("PendingList", "held enrollments, oldest first")},
            parameters=[
                _query(
                    "status",
                    {"type": "string", "enum": [*est_api.PendingStatus, "all"]},
                    "only this status (default pending)",
                )
            ],
        )
    },
    "/est/pending/{id}/approve": {
        "post": _op(
            "approvePending",
            "Approve a held enrollment (approvers)",
            {"200": _json("Pending", "approved")},
            parameters=_PENDING_PARAM,
        )
    },
    "/est/pending/{id}/reject": {
        "post": _op(
            "rejectPending",
            "Reject a held enrollment (approvers)",
            {"200": _json("Pending", "rejected")},
            parameters=_PENDING_PARAM,
        )
    },
    "/acme/directories": {
        "get": _op(
            "listDirectories",
            "Named ACME directories of CAs in scope",
            {"200": _json("DirectoryList", "directories")},
        ),
        "post": _op(
            "createDirectory",
            "Create /acme/{name}/directory on a CA in scope (owners)",
            {"201": _json("Directory", "created")},
            body="CreateDirectory",
        ),
    },
    "/acme/directories/{name}": {
        "get": _op(
            "getDirectory",
            "One named ACME directory",
            {"200": _json("Directory", "the directory")},
            parameters=_DIRECTORY_PARAM,
        ),
        "delete": _op(
            "deleteDirectory",
            "Delete a stored directory (owners)",
            _DELETED,
            parameters=_DIRECTORY_PARAM,
        ),
    },
    "/acme/eab-keys": {
        "get": _op(
            "listEabKeys",
            "External Account Binding keys (unscoped identities)",
            {"200": _json("EabKeyList", "keys, without MAC keys")},
        ),
        "post": _op(
            "createEabKey",
            "Create an EAB key (unscoped owners); the MAC key is shown once",
            {"201": _json("NewEabKey", "created")},
        ),
    },
    "/acme/eab-keys/{kid}/revoke": {
        "post": _op(
            "revokeEabKey",
            "Revoke an EAB key (unscoped owners)",
            {"200": _json("EabRevoked", "revoked")},
            body="EabRevoke",
            body_required=False,
            parameters=[_path_param("kid", _TOKEN_ID)],
        )
    },
    "/audit": {
        "get": _op(
            "listAudit",
            "Search the audit log, newest first (unscoped auditors)",
            {"200": _json("AuditPage", "one page")},
            parameters=[
                *_AUDIT_FILTERS,
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 500},
                    "page size (default 100)",
                ),
                _query(
                    "cursor",
                    {"type": "string", "maxLength": 64},
                    "next_cursor of the previous page",
                ),
            ],
        )
    },
    "/audit/export": {
        "get": _op(
            "exportAudit",
            "Every matching audit record, oldest first, as JSON Lines (unscoped auditors)",
            {
                "200": {
                    "description": "one AuditEvent JSON object a line",
                    "content": {"application/jsonl": {"schema": {"type": "string"}}},
                }
            },
            parameters=_AUDIT_FILTERS,
        )
    },
    "/matter/paa": {
        "post": _op(
            "createPaa",
            "Create a Matter PAA (unscoped owners)",
            {"201": _json("CA", "created")},
            body="CreatePaa",
        )
    },
    "/matter/rcac": {
        "post": _op(
            "createRcac",
            "Create a Matter RCAC (unscoped owners)",
            {"201": _json("CA", "created")},
            body="CreateRcac",
        )
    },
    "/cas/{ca}/matter/pai": {
        "post": _op(
            "createPai",
            "Create a PAI under the PAA {ca} (owners)",
            {"201": _json("CA", "created")},
            body="CreatePai",
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/matter/icac": {
        "post": _op(
            "createIcac",
            "Create an ICAC under the RCAC {ca} (owners)",
            {"201": _json("CA", "created")},
            body="CreateIcac",
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/matter/dac": {
        "post": _op(
            "issueDac",
            "Issue a DAC under the PAI {ca} (issuers); DAC and PAI in PEM",
            {"201": _pem("issued certificate chain")},
            body="IssueDac",
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/matter/dacs": {
        "post": _op(
            "issueDacs",
            f"Issue one DAC per CSR (1..{admin_api.MAX_DAC_BATCH}) under the PAI {{ca}} "
            "(issuers); every CSR is checked before any DAC is issued",
            {"201": _json("DacBatch", "the DACs, in request order, and the PAI")},
            body="IssueDacs",
            parameters=_CA_PARAM,
        )
    },
    "/cas/{ca}/matter/noc": {
        "post": _op(
            "issueNoc",
            "Issue a NOC under the ICAC or RCAC {ca} (issuers); chain without the RCAC",
            {"201": _pem("issued certificate chain")},
            body="IssueNoc",
            parameters=_CA_PARAM,
        )
    },
}

DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "privca admin API",
        "version": "1",
        "description": (
            "Manage CAs, certificates, EST labels, accounts and approvals, ACME "
            "directories and EAB keys, Matter PKIs. Errors are RFC 9457 problem documents."
        ),
    },
    "servers": [{"url": links.PREFIX}],
    "security": [{"bearer": []}, {"mutualTLS": []}],
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "`privca admin token create NAME --role ROLE [--scope CA]`",
            },
            "mutualTLS": {
                "type": "mutualTLS",
                "description": "an admin client certificate (`privca admin cert create`)",
            },
        },
    },
}
