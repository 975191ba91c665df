"""ACME POST bodies whose Content-Encoding lies: a problem document, never 500 (issue 13).

A body that is not what ``Content-Encoding: gzip|br|deflate`` says answered 500
serverInternal (a fuzz finding); it is now 400 ``malformed``.
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
    # A body that does not decode is refused with 400: by our handler as a malformed
    # problem when it is read there, by aiohttp's parser when the body arrives whole.
    assert resp.status == 400, (resp.status, encoding, path, body)
