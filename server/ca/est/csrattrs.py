"""EST CSR attributes (RFC 7030 §4.5) and the RFC 9908 request template, from a label's profile.

Pure functions over a label and its profile (looked up through an injected
function, only when the label does not configure its attributes by hand): what
key type, signature algorithm, subject attributes and extensions a client
should put in its CSR.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from server.ca.est.ports import CsrAttr, CsrTemplate, EstLabel
from server.ca.profiles import Profile
from server.ca.types import KeyAlgorithm

__all__ = ["csr_attributes", "csr_template"]

_OID_EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"
_OID_SECP256R1: Final = "1.2.840.10045.3.1.7"
_OID_SECP384R1: Final = "1.3.132.0.34"
_OID_ECDSA_SHA256: Final = "1.2.840.10045.4.3.2"
_OID_RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
_OID_SHA256_RSA: Final = "1.2.840.113549.1.1.11"
_OID_SERIAL_NUMBER: Final = "2.5.4.5"
_OID_COMMON_NAME: Final = "2.5.4.3"
_OID_SUBJECT_ALT_NAME: Final = "2.5.29.17"

# The key a profile prefers, in order: (key type, key algorithm OID, curve OID, signature
# algorithm OID to advertise). csrattrs and its RFC 9908 template both say this one.
_KEY_HINTS: Final = (
    (KeyAlgorithm.EC_P256, _OID_EC_PUBLIC_KEY, _OID_SECP256R1, _OID_ECDSA_SHA256),
    (KeyAlgorithm.EC_P384, _OID_EC_PUBLIC_KEY, _OID_SECP384R1, None),
    (KeyAlgorithm.RSA_2048, _OID_RSA_ENCRYPTION, None, _OID_SHA256_RSA),
)


def _key_hint(
    allowed: frozenset[KeyAlgorithm],
) -> tuple[KeyAlgorithm, str, str | None, str | None] | None:
    return next((hint for hint in _KEY_HINTS if hint[0] in allowed), None)


def csr_attributes(label: EstLabel, *, profile_of: Callable[[str], Profile]) -> tuple[CsrAttr, ...]:
    """Return the CSR attributes to advertise for a label (RFC 7030 §4.5).

    Configured attributes win; otherwise they follow the profile: the
    preferred key type and signature algorithm, plus serialNumber for
    device profiles that keep the subject.
    """
    if label.csrattrs is not None:
        return label.csrattrs
    profile = profile_of(label.profile)
    out: list[CsrAttr] = []
    hint = _key_hint(profile.allowed_key_algorithms)
    if hint is not None:
        _, algorithm, curve, signature = hint
        out.append(CsrAttr(algorithm, (curve,) if curve else ()))
        if signature is not None:
            out.append(CsrAttr(signature))
    if profile.keep_subject:
        out.append(CsrAttr(_OID_SERIAL_NUMBER))
    return tuple(out)


def csr_template(label: EstLabel, *, profile_of: Callable[[str], Profile]) -> CsrTemplate | None:
    """Return the RFC 9908 request template for a label, or None.

    It says what ``csr_attributes`` says, as a template: the subject's
    attribute types (values for the device to fill in) for profiles that keep
    the subject, the preferred key type, and subjectAltName for profiles that
    require names. None when the label's attributes are configured by hand: a
    template-aware client would follow the template instead of them.
    """
    if label.csrattrs is not None:
        return None
    profile = profile_of(label.profile)
    hint = _key_hint(profile.allowed_key_algorithms)
    return CsrTemplate(
        subject_types=(_OID_COMMON_NAME, _OID_SERIAL_NUMBER) if profile.keep_subject else (),
        key_algorithm=hint[1] if hint else None,
        key_curve=hint[2] if hint else None,
        extensions=(_OID_SUBJECT_ALT_NAME,) if profile.require_san else (),
    )
