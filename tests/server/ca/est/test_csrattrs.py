"""EST CSR attributes and the RFC 9908 template, derived from a label's profile."""

from __future__ import annotations

import pytest

from server.ca import profiles
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est import csrattrs

EC_KEY = "1.2.840.10045.2.1"
P256 = "1.2.840.10045.3.1.7"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
SERIAL_NUMBER = "2.5.4.5"
COMMON_NAME = "2.5.4.3"
SAN = "2.5.29.17"


def test_device_profile_asks_for_p256_and_a_serial_number() -> None:
    label = est_api.EstLabel(name="default", profile="device")
    assert profiles.get_profile("device").keep_subject
    assert csrattrs.csr_attributes(label, profile_of=profiles.get_profile) == (
        est_api.CsrAttr(EC_KEY, (P256,)),
        est_api.CsrAttr(ECDSA_SHA256),
        est_api.CsrAttr(SERIAL_NUMBER),
    )
    template = csrattrs.csr_template(label, profile_of=profiles.get_profile)
    assert template is not None
    assert template.subject_types == (COMMON_NAME, SERIAL_NUMBER)
    assert (template.key_algorithm, template.key_curve) == (EC_KEY, P256)
    assert template.extensions == ()


def test_server_profile_asks_for_names_not_a_subject() -> None:
    label = est_api.EstLabel(name="web", profile="tls-server")
    assert csrattrs.csr_attributes(label, profile_of=profiles.get_profile) == (
        est_api.CsrAttr(EC_KEY, (P256,)),
        est_api.CsrAttr(ECDSA_SHA256),
    )
    template = csrattrs.csr_template(label, profile_of=profiles.get_profile)
    assert template is not None
    assert template.subject_types == ()
    assert template.extensions == (SAN,)


def test_configured_attributes_win_without_a_profile_lookup() -> None:
    attrs = (est_api.CsrAttr("1.2.840.113549.1.9.7"),)
    label = est_api.EstLabel(name="challenge", profile="no-such-profile", csrattrs=attrs)

    def no_lookup(name: str) -> profiles.Profile:
        raise AssertionError(name)

    assert csrattrs.csr_attributes(label, profile_of=no_lookup) == attrs
    assert csrattrs.csr_template(label, profile_of=no_lookup) is None


def test_unknown_profile_is_invalid() -> None:
    label = est_api.EstLabel(name="x", profile="no-such-profile")
    with pytest.raises(EngineError) as err:
        csrattrs.csr_attributes(label, profile_of=profiles.get_profile)
    assert err.value.kind is ProblemKind.INVALID_PROFILE
