"""ACME POST bodies whose Content-Encoding lies: a problem document, never 500 (issue 13).

Known finding, owned by the protocols/acme rewrite (not fixed here): a body that is not
what ``Content-Encoding: gzip|br|deflate`` says answers 500 serverInternal.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies
from tests.fuzz.conftest import Stack

FINDING = (
    "finding (protocols/acme, issue 13): POST /acme/* with Content-Encoding gzip/br/deflate "
    "and a body that does not decode answers 500 serverInternal"
)


@pytest.mark.xfail(strict=True, reason=FINDING)
@settings(max_examples=strategies.examples(1))
@given(
    encoding=st.sampled_from(["gzip", "br", "deflate"]),
    body=st.binary(min_size=1, max_size=256),
    path=st.sampled_from(["/acme/new-account", "/acme/new-order", "/acme/new-nonce"]),
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
    assert resp.status < 500, (resp.status, encoding, path, body)
