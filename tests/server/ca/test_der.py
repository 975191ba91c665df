"""The strict DER toolkit: every refusal, and encodings that read back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.ca import der


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"\x30", "truncated", id="fail/truncated"),
        pytest.param(b"\x1f\x01\x00", "high-tag-number", id="fail/high-tag"),
        pytest.param(b"\x30\x80\x00\x00", "indefinite", id="fail/indefinite-length"),
        pytest.param(b"\x04\x81\x05hello", "minimally", id="fail/long-form-short-length"),
        pytest.param(b"\x04\x82\x00\x80" + b"x" * 128, "minimally", id="fail/leading-zero-length"),
        pytest.param(
            b"\x04\x85\x00\x00\x00\x00\x01x", "out of range", id="fail/five-length-octets"
        ),
        pytest.param(b"\x04\x03ab", "runs past", id="fail/past-end"),
        pytest.param(b"\x04\x01ab", "trailing", id="fail/trailing-data"),
    ],
)
def test_parse_refuses(data: bytes, message: str) -> None:
    with pytest.raises(der.MalformedError, match=message):
        der.parse(data)


def test_read_tlv_stays_inside_its_container() -> None:
    data = der.seq(der.integer(5), der.integer(6))
    with pytest.raises(der.MalformedError, match="runs past"):
        der.read_tlv(data, 2, 4)
    assert der.read_tlv(data, 2, len(data)) == (0x02, 4, 5)


@pytest.mark.parametrize(
    "size", [pytest.param(n, id=f"ok/{n}") for n in (0, 127, 128, 255, 256, 70000)]
)
def test_wrap_writes_minimal_lengths_that_parse(size: int) -> None:
    encoded = der.wrap(der.OCTET_STRING, b"x" * size)
    node = der.parse(encoded)
    assert (node.tag, node.content, node.encoded) == (der.OCTET_STRING, b"x" * size, encoded)


def test_children_and_require() -> None:
    node = der.parse(der.seq(der.integer(1), der.wrap(der.BOOLEAN, b"\xff")))
    first, second = der.children(node)
    assert der.read_unsigned(first, "n") == 1
    assert der.read_boolean(second, "b") is True
    with pytest.raises(der.MalformedError, match="not constructed"):
        der.children(first)
    with pytest.raises(der.MalformedError, match="expected tag 0x01, found 0x02"):
        der.require(first, der.BOOLEAN, "flag")


@pytest.mark.parametrize(
    ("value", "content"),
    [
        pytest.param(0, b"\x00", id="ok/zero"),
        pytest.param(127, b"\x7f", id="ok/127"),
        pytest.param(128, b"\x00\x80", id="ok/128-leading-zero"),
        pytest.param(0x1234, b"\x12\x34", id="ok/two-octets"),
    ],
)
def test_integer_round_trip(value: int, content: bytes) -> None:
    node = der.parse(der.integer(value))
    assert node.content == content
    assert der.read_unsigned(node, "n") == value


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="fail/empty"),
        pytest.param(b"\x00\x01", id="fail/leading-zero"),
        pytest.param(b"\xff\x80", id="fail/leading-ff"),
        pytest.param(b"\x80", id="fail/negative"),
    ],
)
def test_read_unsigned_refuses(content: bytes) -> None:
    with pytest.raises(der.MalformedError, match="minimal non-negative"):
        der.read_unsigned(der.parse(der.wrap(der.INTEGER, content)), "n")


def test_is_minimal_integer_accepts_minimal_negatives() -> None:
    assert der.is_minimal_integer(b"\xff\x7f")
    assert not der.is_minimal_integer(b"\xff\xff")


@pytest.mark.parametrize("content", [b"\x01", b"\x00\x00", b""])
def test_read_boolean_refuses_non_der(content: bytes) -> None:
    with pytest.raises(der.MalformedError, match="DER BOOLEAN"):
        der.read_boolean(der.parse(der.wrap(der.BOOLEAN, content)), "b")


@pytest.mark.parametrize(
    ("flags", "encoded"),
    [
        pytest.param(0, b"\x03\x01\x00", id="ok/none"),
        pytest.param(0x01, b"\x03\x02\x07\x80", id="ok/digital-signature"),
        pytest.param(0x60, b"\x03\x02\x01\x06", id="ok/cert-and-crl-sign"),
        pytest.param(0x100, b"\x03\x03\x07\x00\x80", id="ok/decipher-only"),
    ],
)
def test_named_bits_round_trip(flags: int, encoded: bytes) -> None:
    assert der.named_bits(flags) == encoded
    assert der.read_named_bits(der.parse(encoded), "keyUsage") == flags


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        pytest.param(b"\x03\x00", "valid BIT STRING", id="fail/empty"),
        pytest.param(b"\x03\x01\x01", "valid BIT STRING", id="fail/unused-bits-without-octets"),
        pytest.param(b"\x03\x02\x08\x80", "valid BIT STRING", id="fail/eight-unused-bits"),
        pytest.param(b"\x03\x02\x00\x80", "trailing zero bits", id="fail/trailing-zero-bits"),
    ],
)
def test_read_named_bits_refuses(encoded: bytes, message: str) -> None:
    with pytest.raises(der.MalformedError, match=message):
        der.read_named_bits(der.parse(encoded), "keyUsage")


@pytest.mark.parametrize(
    ("when", "tag"),
    [
        pytest.param(datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), der.UTC_TIME, id="ok/2049"),
        pytest.param(datetime(2050, 1, 1, tzinfo=UTC), der.GENERALIZED_TIME, id="ok/2050"),
        pytest.param(datetime(1950, 1, 1, tzinfo=UTC), der.UTC_TIME, id="ok/1950"),
    ],
)
def test_validity_time_follows_rfc5280(when: datetime, tag: int) -> None:
    node = der.parse(der.validity_time(when))
    assert node.tag == tag
    assert der.read_time(node, "notAfter") == when


def test_gtime_is_always_generalized() -> None:
    node = der.parse(der.gtime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert (node.tag, node.content) == (der.GENERALIZED_TIME, b"20260102030405Z")


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        pytest.param(der.wrap(der.UTC_TIME, b"2601020304Z"), "UTCTime", id="fail/no-seconds"),
        pytest.param(der.wrap(der.UTC_TIME, b"260102030405+0000"), "UTCTime", id="fail/offset"),
        pytest.param(
            der.wrap(der.GENERALIZED_TIME, b"20260102030405.5Z"), "UTCTime", id="fail/frac"
        ),
        pytest.param(der.wrap(der.OCTET_STRING, b"260102030405Z"), "UTCTime", id="fail/wrong-tag"),
        pytest.param(der.wrap(der.UTC_TIME, b"261302030405Z"), "valid date", id="fail/month-13"),
    ],
)
def test_read_time_refuses(encoded: bytes, message: str) -> None:
    with pytest.raises(der.MalformedTimeError, match=message):
        der.read_time(der.parse(encoded), "notBefore")


@pytest.mark.parametrize(
    "dotted",
    [
        "1.2.840.10045.4.3.2",
        "2.5.29.19",
        "1.3.6.1.4.1.37244.2.1",
        "2.999.3",
        "0.9.2342.19200300.100.1.25",
    ],
)
def test_oid_round_trip(dotted: str) -> None:
    node = der.parse(der.wrap(der.OBJECT_ID, der.oid(dotted)))
    assert der.oid_text(node.content) == dotted


def test_oid_known_encoding() -> None:
    assert der.oid("1.2.840.10045.4.3.2") == bytes.fromhex("2a8648ce3d040302")
    assert der.oid_text(b"") == "<empty>"


def test_expect_returns_content_bounds() -> None:
    data = der.seq(der.integer(7))
    assert der.expect(data, 0, len(data), der.SEQUENCE) == (2, len(data))
    with pytest.raises(der.MalformedError, match="expected tag 0x2, got 0x30"):
        der.expect(data, 0, len(data), der.INTEGER)
