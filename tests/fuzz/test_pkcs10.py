"""PKCS#10 under DER mutation: the engine's loader raises EngineError only; EST answers < 500."""

from __future__ import annotations

import base64
import contextlib
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from hypothesis import given, settings
from hypothesis import strategies as st

from server.ca import issuance
from server.ca.errors import EngineError
from tests.fuzz import strategies
from tests.fuzz.conftest import EST_PASSWORD, Stack
from tests.support import make_csr

_KEYS: Final[list[CertificateIssuerPrivateKeyTypes]] = [
    ec.generate_private_key(ec.SECP256R1()),
    rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ed25519.Ed25519PrivateKey.generate(),
]
PEM_SEEDS: Final = [
    make_csr(["dns:fuzz.internal", "ip:10.0.0.1"], key=key, subject="fuzz")[0] for key in _KEYS
]
DER_SEEDS: Final = [base64.b64decode(b"".join(pem.splitlines()[1:-1])) for pem in PEM_SEEDS]
_BASIC: Final = "Basic " + base64.b64encode(f"dev1:{EST_PASSWORD}".encode()).decode()


def _load(data: bytes) -> None:
    with contextlib.suppress(EngineError):
        issuance.load_csr(data)


@settings(max_examples=strategies.examples(4))
@given(data=st.sampled_from(DER_SEEDS).flatmap(strategies.mutated))
def test_load_csr_raises_only_engine_error(data: bytes) -> None:
    strategies.count("test_load_csr_raises_only_engine_error")
    _load(data)


@settings(max_examples=strategies.examples(3))
@given(seed=st.integers(0, 2**64 - 1))
def test_load_csr_mutation_batch(seed: int) -> None:
    for data in strategies.batch(seed, DER_SEEDS + PEM_SEEDS):
        strategies.count("test_load_csr_mutation_batch")
        _load(data)


@settings(max_examples=strategies.examples(2))
@given(
    der=st.sampled_from(DER_SEEDS).flatmap(strategies.mutated),
    armour=st.sampled_from(["base64", "base64-lines", "der"]),
)
async def test_est_simpleenroll_mutated_csr_answers_below_500(
    stack: Stack, der: bytes, armour: str
) -> None:
    strategies.count("test_est_simpleenroll_mutated_csr_answers_below_500")
    if armour == "der":
        body = der
    else:
        raw = base64.b64encode(der)
        body = (
            b"\n".join(raw[i : i + 64] for i in range(0, len(raw), 64))
            if "lines" in armour
            else raw
        )
    resp = await strategies.within_deadline(
        stack.https.post(
            "/.well-known/est/simpleenroll",
            data=body,
            headers={"Content-Type": "application/pkcs10", "Authorization": _BASIC},
        )
    )
    await resp.read()
    assert resp.status < 500, (resp.status, body)
