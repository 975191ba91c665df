"""DER encoding of CRL entries and CRLs (RFC 5280 §5) at a million entries.

cryptography's CertificateRevocationListBuilder needs one Python object per
entry and costs about 8 µs an entry; a CRL of a million revoked certificates
is then seconds of work on every regeneration. Here each entry is encoded
once, straight to DER (a few bytes: serial, time, optional reasonCode), and
kept; a CRL is the issuer-specific frame cryptography builds with no entries,
with the concatenated entries spliced into its TBSCertList and the result
signed as the builder would sign it. Byte-for-byte the TBSCertList equals the
builder's for the same entries (tests compare them). Pure and synchronous;
must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives import serialization

from server.ca import der, revocation
from server.ca.issuance import Issuer
from server.ca.types import RevocationReason

__all__ = ["encode_entries", "sign"]

_REASON_CODE_OID: Final = der.oid("2.5.29.21")


def _reason_extensions() -> dict[RevocationReason | None, bytes]:
    out: dict[RevocationReason | None, bytes] = {None: b""}
    for reason in RevocationReason:
        if reason is RevocationReason.UNSPECIFIED:
            out[reason] = b""  # RFC 5280 §5.3.1: omit the reasonCode rather than unspecified
            continue
        enumerated = der.wrap(0x0A, bytes([reason.code]))
        out[reason] = der.seq(der.seq(der.wrap(0x06, _REASON_CODE_OID), der.wrap(0x04, enumerated)))
    return out


_REASON_EXTENSIONS: Final = _reason_extensions()


_TWO_DIGITS: Final = tuple(b"%02d" % i for i in range(100))


def _hour_prefix(hour: int) -> bytes:
    """Tag, length and YYMMDDHH (UTCTime through 2049, GeneralizedTime from 2050)."""
    dt = datetime.fromtimestamp(hour * 3600, UTC)
    if dt.year < 2050:
        return b"\x17\x0d" + dt.strftime("%y%m%d%H").encode()
    return b"\x18\x0f" + dt.strftime("%Y%m%d%H").encode()


def encode_entries(
    entries: Iterable[tuple[int, int | None, RevocationReason | None]],
    *,
    default_time: datetime,
) -> list[bytes]:
    """Encode (serial, revoked_at epoch seconds, reason) as revokedCertificates elements.

    A missing time becomes ``default_time``. Times are formatted per hour once
    (strftime costs microseconds; revocations cluster in time). Every
    element is shorter than 128 octets (serial <= 21, time <= 17, reason 14),
    so its length is one octet.
    """
    default = int(default_time.timestamp())
    hours: dict[int, bytes] = {}
    two = _TWO_DIGITS
    extensions = _REASON_EXTENSIONS
    out: list[bytes] = []
    append = out.append
    for serial, at, reason in entries:
        hour, rest = divmod(default if at is None else at, 3600)
        prefix = hours.get(hour)
        if prefix is None:
            prefix = hours[hour] = _hour_prefix(hour)
        minute, second = divmod(rest, 60)
        raw = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
        body = (
            b"\x02"
            + bytes((len(raw),))
            + raw
            + prefix
            + two[minute]
            + two[second]
            + b"Z"
            + extensions[reason]
        )
        append(b"\x30" + bytes((len(body),)) + body)
    return out


def sign(
    issuer: Issuer,
    entries: Sequence[bytes],
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    distribution_point: str | None,
) -> bytes:
    """Return the DER of a complete CRL holding ``entries`` (from ``encode_entries``)."""
    frame = revocation.sign_crl(
        issuer,
        (),
        number=number,
        this_update=this_update,
        next_update=next_update,
        distribution_point=distribution_point,
    )
    if not entries:
        return frame.public_bytes(serialization.Encoding.DER)
    tbs = frame.tbs_certlist_bytes
    start, end = der.expect(tbs, 0, len(tbs), 0x30)
    # version, signature, issuer, thisUpdate, nextUpdate, then [0] crlExtensions:
    # revokedCertificates goes right before the extensions.
    pos = start
    while pos < end:
        tag, _, stop = der.read_tlv(tbs, pos, end)
        if tag == 0xA0:
            break
        pos = stop
    body = b"".join(entries)
    revoked = b"\x30" + der.length(len(body)) + body
    new_tbs = der.wrap(0x30, tbs[start:pos] + revoked + tbs[pos:end])
    full = frame.public_bytes(serialization.Encoding.DER)
    outer_s, outer_e = der.expect(full, 0, len(full), 0x30)
    _, _, tbs_e = der.read_tlv(full, outer_s, outer_e)
    _, _, alg_e = der.read_tlv(full, tbs_e, outer_e)
    algorithm = full[tbs_e:alg_e]
    signature = der.wrap(0x03, b"\x00" + issuer.signer.sign(new_tbs))
    return der.seq(new_tbs, algorithm, signature)
