"""EST request bodies and headers (RFC 7030, RFC 8951): every answer is below 500.

fullcmc is not implemented and answers 501, which RFC 7030 §4.3 allows.
"""

from __future__ import annotations

import base64
from typing import Final

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies
from tests.fuzz.conftest import EST_PASSWORD, Stack
from tests.fuzz.test_pkcs10 import DER_SEEDS

_OPS: Final = ["simpleenroll", "simplereenroll", "serverkeygen", "fullcmc", "csrattrs", "cacerts"]
_LABELS: Final = ["", "default/", "ghost/", "..%2f/", "%00/", "a" * 300 + "/"]
_BASIC: Final = "Basic " + base64.b64encode(f"dev1:{EST_PASSWORD}".encode()).decode()
_AUTH: Final = st.sampled_from(
    [
        None,
        _BASIC,
        "Basic " + base64.b64encode(b"dev1:wrong").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
        "Bearer x",
        "Basic",
    ]
)
_TYPES: Final = st.sampled_from(
    [
        "application/pkcs10",
        "application/pkcs10; charset=utf-8",
        "APPLICATION/PKCS10",
        "application/pkcs7-mime",
        "multipart/mixed; boundary=x",
        "multipart/form-data",
        "text/plain",
        "application/octet-stream",
        "",
    ]
)


def _multipart(parts: list[bytes], boundary: str) -> bytes:
    out = b"".join(
        f"--{boundary}\r\nContent-Type: application/pkcs10\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    )
    return out + f"--{boundary}--\r\n".encode()


_CSR_B64: Final = st.sampled_from(DER_SEEDS).flatmap(strategies.mutated).map(base64.b64encode)
bodies = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(base64.b64encode),
    _CSR_B64,
    st.sampled_from(DER_SEEDS).flatmap(strategies.mutated),
    st.tuples(_CSR_B64, st.sampled_from([b"\n", b"\r\n", b" ", b"\t", b"=", b"-----"])).map(
        lambda t: t[1].join(t[0][i : i + 17] for i in range(0, len(t[0]), 17))
    ),
    st.tuples(_CSR_B64, st.sampled_from(["BEGIN CERTIFICATE REQUEST", "BEGIN X", ""])).map(
        lambda t: f"-----{t[1]}-----\n".encode() + t[0] + b"\n-----END-----\n"
    ),
    st.tuples(
        st.lists(st.one_of(_CSR_B64, st.binary(max_size=64)), max_size=3),
        st.text("abcxyz-_=", min_size=0, max_size=70),
    ).map(lambda t: _multipart(t[0], t[1])),
    st.text(max_size=512).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=strategies.examples(3))
@given(
    op=st.sampled_from(_OPS),
    label=st.sampled_from(_LABELS),
    method=st.sampled_from(["POST", "POST", "GET", "PUT", "HEAD"]),
    body=bodies,
    content_type=_TYPES,
    auth=_AUTH,
    encoding=st.sampled_from([None, "base64", "binary", "8bit", "x"]),
    compression=st.sampled_from([None, None, "gzip", "br", "deflate", "x-garbage"]),
)
async def test_est_answers_below_500(
    stack: Stack,
    op: str,
    label: str,
    method: str,
    body: bytes,
    content_type: str,
    auth: str | None,
    encoding: str | None,
    compression: str | None,
) -> None:
    strategies.count("test_est_answers_below_500")
    headers = {"Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = auth
    if encoding is not None:
        headers["Content-Transfer-Encoding"] = encoding
    if compression is not None:
        headers["Content-Encoding"] = compression
    url = f"/.well-known/est/{label}{op}"
    status, _ = await strategies.answer(
        stack.https.request(
            method, url, data=body, headers=headers, skip_auto_headers={"Content-Type"}
        )
    )
    allowed = status < 500 or (status == 501 and op == "fullcmc")
    assert allowed, (status, method, url, headers, body)
