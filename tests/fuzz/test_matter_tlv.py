"""Matter TLV certificates (server/ca/matter/tlv.py): damaged TLV and DER raise MatterError only."""

from __future__ import annotations

import contextlib
from typing import Final

from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from server.ca.matter import rules, tlv
from server.ca.matter.errors import MatterError
from tests.fuzz import strategies
from tests.support import MATTER_VECTORS

_PEMS: Final = [
    "operational/Chip-Test-Root01-Cert.pem",
    "operational/Chip-Test-ICA02-Cert.pem",
    "synthetic/op-rcac-valid.pem",
    "synthetic/op-icac-valid.pem",
    "synthetic/op-noc-valid.pem",
]
DER_SEEDS: Final = [
    rules.load_certificate((MATTER_VECTORS / p).read_bytes()).public_bytes(Encoding.DER)
    for p in _PEMS
]
TLV_SEEDS: Final = [tlv.x509_to_tlv(der) for der in DER_SEEDS]


def _tlv_to_x509(data: bytes) -> None:
    with contextlib.suppress(MatterError):
        tlv.tlv_to_x509(data)


tlv_inputs = st.one_of(
    st.sampled_from(TLV_SEEDS).flatmap(lambda seed: strategies.mutated(seed, max_ops=3)),
    st.binary(max_size=420),
)


@settings(max_examples=strategies.examples(4))
@given(data=tlv_inputs)
def test_tlv_to_x509_raises_only_matter_error(data: bytes) -> None:
    strategies.count("test_tlv_to_x509_raises_only_matter_error")
    _tlv_to_x509(data)


@settings(max_examples=strategies.examples(4))
@given(data=st.sampled_from(DER_SEEDS).flatmap(lambda seed: strategies.mutated(seed, max_ops=3)))
def test_x509_to_tlv_raises_only_matter_error(data: bytes) -> None:
    strategies.count("test_x509_to_tlv_raises_only_matter_error")
    with contextlib.suppress(MatterError):
        tlv.check_round_trip(data)


@settings(max_examples=strategies.examples(3))
@given(seed=st.integers(0, 2**64 - 1))
def test_tlv_to_x509_mutation_batch(seed: int) -> None:
    for data in strategies.batch(seed, TLV_SEEDS):
        strategies.count("test_tlv_to_x509_mutation_batch")
        _tlv_to_x509(data)
