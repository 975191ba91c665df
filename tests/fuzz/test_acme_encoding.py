"""ACME POST bodies with a Content-Encoding: a problem document, never 500 (issue 13).

A body that is not what ``Content-Encoding: gzip|br|deflate`` says answered 500
serverInternal (a fuzz finding), then aiohttp's own text/plain 400 whenever the body
arrived with the head; every content coding is now a 415 ``malformed`` problem.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies
from tests.fuzz.conftest import Stack


@settings(max_examples=strategies.examples(1))
@given(
    encoding=st.sampled_from(["gzip", "br", "deflate"]),
    body=st.binary(min_size=1, max_size=256),
    path=st.sampled_from(["/acme/new-account", "/acme/new-order", "/acme/revoke-cert"]),
)
async def test_acme_lying_content_encoding_answers_below_500(
    stack: Stack, encoding: str, body: bytes, path: str
) -> None:
    strategies.count("test_acme_lying_content_encoding_answers_below_500")
    resp = await strategies.within_deadline(
        stack.https.post(
            path,
            data=body,
            headers={"Content-Type": "application/jose+json", "Content-Encoding": encoding},
        )
    )
    await resp.read()
    assert resp.status == 415, (resp.status, encoding, path, body)
    assert resp.content_type == "application/problem+json", (encoding, path, body)
