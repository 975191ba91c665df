"""OCSP requests (RFC 6960, RFC 5019 GET) under DER mutation: never HTTP 5xx, never internalError.

The aiohttp OCSP app answers POST and GET; ``messages.decode_get`` (the GET path decoder
the lean protocol shares) raises EngineError only.
"""

from __future__ import annotations

import base64
import contextlib
import random
from typing import Final
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ocsp import messages
from server.ca import grants
from server.ca.errors import EngineError
from tests.fuzz import strategies
from tests.fuzz.conftest import OP, Stack
from tests.support import make_csr

_INTERNAL_ERROR: Final = messages.unsuccessful_body(messages.INTERNAL_ERROR)


def request_der(
    cert: x509.Certificate, issuer: x509.Certificate, *, sha: bool, nonce: bool
) -> bytes:
    """Return a DER OCSPRequest for ``cert``."""
    algorithm = hashes.SHA256() if sha else hashes.SHA1()  # noqa: S303  # RFC 5019 CertID
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce:
        nonce_bytes = random.randbytes(16)  # noqa: S311  # a test nonce, not a secret
        builder = builder.add_extension(x509.OCSPNonce(nonce_bytes), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture
async def seeds(stack: Stack) -> list[bytes]:
    """Valid requests for a certificate of the stack's issuing CA."""
    csr, _ = make_csr(["dns:ocsp-fuzz.internal"])
    issued = await stack.services.engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server"
    )
    issuer = (await stack.services.engine.get_ca(None)).certificate
    return [
        request_der(issued.certificate, issuer, sha=sha, nonce=nonce)
        for sha in (False, True)
        for nonce in (False, True)
    ]


def _get_path(der: bytes, style: str) -> str:
    raw = base64.b64encode(der).decode()
    if style == "quoted":
        return quote(raw, safe="")
    if style == "urlsafe":
        return base64.urlsafe_b64encode(der).decode().rstrip("=")
    return raw  # "plain": '/' and '+' unescaped, as some clients send it


@settings(max_examples=strategies.examples(3))
@given(
    seed=st.integers(0, 2**64 - 1),
    method=st.sampled_from(["POST", "GET"]),
    style=st.sampled_from(["quoted", "urlsafe", "plain"]),
    content_type=st.sampled_from([messages.REQUEST_TYPE, "application/octet-stream", ""]),
    compression=st.sampled_from([None, None, None, "gzip", "br", "deflate", "x-garbage"]),
)
async def test_ocsp_answers_below_500(
    stack: Stack,
    seeds: list[bytes],
    seed: int,
    method: str,
    style: str,
    content_type: str,
    compression: str | None,
) -> None:
    strategies.count("test_ocsp_answers_below_500")
    rng = random.Random(seed)  # noqa: S311  # reproducible mutations, not secrets
    der = strategies.mutate(rng, rng.choice(seeds))
    headers = {"Content-Type": content_type}
    if compression is not None:
        headers["Content-Encoding"] = compression
    if method == "POST":
        call = stack.http.post(
            "/ocsp", data=der, headers=headers, skip_auto_headers={"Content-Type"}
        )
    else:
        call = stack.http.get("/ocsp/" + _get_path(der, style))
    status, body = await strategies.answer(call)
    assert status < 500, (status, method, compression, der.hex())
    assert body != _INTERNAL_ERROR, (method, compression, der.hex())


def _decode(tail: str) -> None:
    with contextlib.suppress(EngineError):
        messages.decode_get(tail, max_bytes=8192)


@settings(max_examples=strategies.examples(2))
@given(
    tail=st.one_of(
        st.text(max_size=300), st.binary(max_size=300).map(lambda b: quote(b, safe="/+="))
    )
)
def test_decode_get_raises_only_engine_error(tail: str) -> None:
    strategies.count("test_decode_get_raises_only_engine_error")
    _decode(tail)


@settings(max_examples=strategies.examples(2))
@given(seed=st.integers(0, 2**64 - 1))
def test_decode_get_mutation_batch(seed: int) -> None:
    plain = [base64.b64encode(bytes(range(i, i + 90))) for i in (0, 100, 160)]
    for data in strategies.batch(seed, [*plain, *(quote(p, safe="").encode() for p in plain)]):
        strategies.count("test_decode_get_mutation_batch")
        _decode(data.decode("latin-1"))
