"""An ACME test client (JWS signing with cryptography) and fake validation network ports."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from yarl import URL

from server.ca.acme import api as acme_api
from tests.support import make_csr

JOSE = "application/jose+json"
URN = "urn:ietf:params:acme:error:"

AnyKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def jwk_of(key: AnyKey) -> dict[str, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        nums = key.public_key().public_numbers()
        n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
        e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "n": b64u(n), "e": b64u(e)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        pn = key.public_key().public_numbers()
        crv = {256: "P-256", 384: "P-384", 521: "P-521"}[key.curve.key_size]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64u(pn.x.to_bytes(size, "big")),
            "y": b64u(pn.y.to_bytes(size, "big")),
        }
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}


def alg_of(key: AnyKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]
    return "EdDSA"


def thumbprint(key: AnyKey) -> str:
    jwk = jwk_of(key)
    return b64u(hashlib.sha256(dumps(dict(sorted(jwk.items())))).digest())


def sign_raw(key: AnyKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest[key.curve.key_size])))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return key.sign(data)


def jws(
    key: AnyKey,
    payload: Any,
    *,
    url: str,
    nonce: str | None,
    kid: str | None = None,
    extra: dict[str, Any] | None = None,
    alg: str | None = None,
) -> dict[str, str]:
    """Return a flattened JWS; payload None is POST-as-GET, bytes are sent as they are."""
    protected: dict[str, Any] = {"alg": alg or alg_of(key), "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid is None:
        protected["jwk"] = jwk_of(key)
    else:
        protected["kid"] = kid
    protected.update(extra or {})
    p64 = b64u(dumps(protected))
    if payload is None:
        body64 = ""
    elif isinstance(payload, bytes):
        body64 = b64u(payload)
    else:
        body64 = b64u(dumps(payload))
    sig = sign_raw(key, f"{p64}.{body64}".encode())
    return {"protected": p64, "payload": body64, "signature": b64u(sig)}


def eab_binding(kid: str, hmac_key: bytes, jwk: dict[str, str], url: str) -> dict[str, str]:
    p64 = b64u(dumps({"alg": "HS256", "kid": kid, "url": url}))
    body64 = b64u(dumps(jwk))
    mac = hmac.new(hmac_key, f"{p64}.{body64}".encode(), hashlib.sha256).digest()
    return {"protected": p64, "payload": body64, "signature": b64u(mac)}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    links: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_type(self) -> str:
        return str(self.json().get("type", "")).removeprefix(URN)


class AcmeClient:
    """Drives the ACME app through an aiohttp TestClient."""

    def __init__(
        self, http: TestClient[Any, Any], key: AnyKey | None = None, *, prefix: str = "/acme"
    ) -> None:
        self.http = http
        self.prefix = prefix
        self.key: AnyKey = key or ec.generate_private_key(ec.SECP256R1())
        self.kid: str | None = None
        self.dir: dict[str, Any] = {}
        self.nonce: str | None = None

    def url(self, path: str) -> str:
        return str(self.http.make_url(path))

    async def directory(self) -> dict[str, Any]:
        resp = await self.http.get(f"{self.prefix}/directory")
        assert resp.status == 200
        self.dir = await resp.json()
        return self.dir

    async def new_nonce(self) -> str:
        resp = await self.http.head(f"{self.prefix}/new-nonce")
        assert resp.status == 200
        return resp.headers["Replay-Nonce"]

    async def send(
        self, url: str, body: bytes | dict[str, Any], *, content_type: str = JOSE
    ) -> Reply:
        data = body if isinstance(body, bytes) else dumps(body)
        path = URL(url).raw_path if URL(url).absolute else url
        resp = await self.http.post(path, data=data, headers={"Content-Type": content_type})
        raw = await resp.read()
        if "Replay-Nonce" in resp.headers:
            self.nonce = resp.headers["Replay-Nonce"]
        return Reply(resp.status, dict(resp.headers), raw, resp.headers.getall("Link", []))

    async def post(
        self,
        url: str,
        payload: Any,
        *,
        use_jwk: bool = False,
        key: AnyKey | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Reply:
        if not self.dir:
            await self.directory()
        nonce = self.nonce or await self.new_nonce()
        self.nonce = None
        body = jws(
            key or self.key,
            payload,
            url=url,
            nonce=nonce,
            kid=None if use_jwk else self.kid,
            extra=extra,
        )
        return await self.send(url, body)

    async def new_account(self, **payload: Any) -> Reply:
        if not self.dir:
            await self.directory()
        body = {"termsOfServiceAgreed": True, **payload}
        reply = await self.post(self.dir["newAccount"], body, use_jwk=True)
        if reply.status in (200, 201):
            self.kid = reply.headers["Location"]
        return reply

    async def new_order(self, *names: str, **extra: Any) -> Reply:
        idents = [
            {"type": "ip" if n.replace(".", "").isdigit() or ":" in n else "dns", "value": n}
            for n in names
        ]
        return await self.post(self.dir["newOrder"], {"identifiers": idents, **extra})

    async def get(self, url: str) -> Reply:
        return await self.post(url, None)

    def key_authorization(self, token: str) -> str:
        return f"{token}.{thumbprint(self.key)}"


class FakeNetwork:
    """Validation ports answering from dicts; records what the validator asked."""

    def __init__(self) -> None:
        self.http_answers: dict[str, str] = {}
        self.txt_records: dict[str, list[str]] = {}
        self.alpn_certs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int, str]] = []
        self.fail_with: acme_api.NetworkError | None = None
        # When set, http-01 fetches wait for it (validations stay in flight).
        self.gate: asyncio.Event | None = None

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> acme_api.FetchResult:
        self.requests.append(("http", address, port, host))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        token = path.rsplit("/", 1)[-1]
        if token in self.http_answers:
            return acme_api.FetchResult(200, self.http_answers[token].encode())
        return acme_api.FetchResult(404, b"not found")

    async def txt(self, name: str) -> Sequence[str]:
        self.requests.append(("dns", name, 0, name))
        if self.fail_with is not None:
            raise self.fail_with
        return self.txt_records.get(name, [])

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        self.requests.append(("tls", address, port, server_name))
        if self.fail_with is not None:
            raise self.fail_with
        if server_name not in self.alpn_certs:
            raise acme_api.NetworkError("tls", "no certificate")
        return self.alpn_certs[server_name]

    def ports(self) -> acme_api.ValidationPorts:
        return acme_api.ValidationPorts(http=self, dns=self, tls=self)


def csr_der(names: Sequence[str], key: Any = None) -> tuple[bytes, Any]:
    pem, k = make_csr([("ip:" if n[0].isdigit() else "dns:") + n for n in names], key=key)
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    return der, k
