"""Matter rule slugs and the one exception the Matter package raises.

Imports nothing from the engine but the stdlib-only ``server.ca.der`` (``from_der``
turns its ``MalformedError`` into ``MatterError``), so the engine can map ``MatterError`` to its own
``EngineError`` kinds (a refused request is ``badCSR``/``policy``; a broken issuer is
``serverInternal``) without this package depending on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import ParamSpec, TypeVar

from server.ca import der

__all__ = ["MatterError", "Rule", "from_der"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Rule(StrEnum):
    """Stable short names of the Matter rules; they appear in error messages and logs."""

    # Any Matter certificate (Matter Core Specification 6.2.2, 6.5.x; matter-profiles.md §1).
    DER = "matter-der"
    DER_SIZE = "matter-der-size"
    VERSION = "matter-version"
    SERIAL = "matter-serial"
    SIG_ALG = "matter-sig-alg"
    CURVE = "matter-curve"
    VALIDITY = "matter-validity"
    UNIQUE_ID = "matter-unique-id"
    EXT_DUPLICATE = "matter-ext-duplicate"
    EXT_CRITICAL = "matter-ext-critical"
    BASIC_CONSTRAINTS = "matter-basic-constraints"
    KEY_USAGE = "matter-key-usage"
    EKU = "matter-eku"
    SKI = "matter-ski"
    AKI = "matter-aki"
    NAME = "matter-name"
    # Distinguished names.
    DN = "matter-dn"
    DN_VALUE = "matter-dn-value"
    VID_FORMAT = "matter-vid-format"
    PID_FORMAT = "matter-pid-format"
    VIDPID_FALLBACK = "matter-vidpid-fallback"
    VID_RANGE = "matter-vid-range"
    PID_RANGE = "matter-pid-range"
    FABRIC_ID = "matter-fabric-id"
    # Matter TLV certificate form (6.5.x, CHIPCertFromX509.cpp / CHIPCertToX509.cpp).
    TLV = "matter-tlv"
    TLV_SIZE = "matter-tlv-size"
    TLV_ROUND_TRIP = "matter-tlv-round-trip"
    # PAA.
    PAA_CA = "paa-ca"
    PAA_PATHLEN = "paa-pathlen"
    PAA_KEY_USAGE = "paa-key-usage"
    PAA_PID_PRESENT = "paa-pid-present"
    PAA_AKI = "paa-aki"
    PAA_SELF_SIGNED = "paa-self-signed"
    # PAI.
    PAI_CA = "pai-ca"
    PAI_PATHLEN = "pai-pathlen"
    PAI_KEY_USAGE = "pai-key-usage"
    PAI_VID_REQUIRED = "pai-vid-required"
    # DAC.
    DAC_CA = "dac-ca"
    DAC_PATHLEN = "dac-pathlen"
    DAC_KEY_USAGE = "dac-key-usage"
    DAC_VID_REQUIRED = "dac-vid-required"
    DAC_PID_REQUIRED = "dac-pid-required"
    # RCAC.
    RCAC_CA = "rcac-ca"
    RCAC_PATHLEN = "rcac-pathlen"
    RCAC_KEY_USAGE = "rcac-key-usage"
    RCAC_EKU = "rcac-eku"
    RCAC_SUBJECT = "rcac-subject"
    RCAC_AKI = "rcac-aki"
    RCAC_SELF_SIGNED = "rcac-self-signed"
    # ICAC.
    ICAC_CA = "icac-ca"
    ICAC_PATHLEN = "icac-pathlen"
    ICAC_KEY_USAGE = "icac-key-usage"
    ICAC_EKU = "icac-eku"
    ICAC_SUBJECT = "icac-subject"
    ICAC_ISSUER = "icac-issuer"
    # NOC.
    NOC_CA = "noc-ca"
    NOC_PATHLEN = "noc-pathlen"
    NOC_KEY_USAGE = "noc-key-usage"
    NOC_EKU = "noc-eku"
    NOC_SUBJECT = "noc-subject"
    NOC_ISSUER = "noc-issuer"
    NOC_NODE_ID = "noc-node-id"
    NOC_FABRIC_ID = "noc-fabric-id"
    NOC_CAT_COUNT = "noc-cat-count"
    NOC_CAT_VERSION = "noc-cat-version"
    NOC_CAT_DUPLICATE = "noc-cat-duplicate"
    # Chains (issuer/child pairs and whole chains).
    CHAIN_ISSUER_DN = "chain-issuer-dn"
    CHAIN_ISSUER_KIND = "chain-issuer-kind"
    CHAIN_ISSUER_KEY = "chain-issuer-key"
    CHAIN_AKI = "chain-aki"
    CHAIN_SIGNATURE = "chain-signature"
    CHAIN_VALIDITY = "chain-validity"
    CHAIN_VID_MISMATCH = "chain-vid-mismatch"
    CHAIN_PID_MISMATCH = "chain-pid-mismatch"
    CHAIN_FABRIC_MISMATCH = "chain-fabric-mismatch"
    CHAIN_PATHLEN = "chain-pathlen"
    CHAIN_DEPTH = "chain-depth"
    CHAIN_INCOMPLETE = "chain-incomplete"


class MatterError(ValueError):
    """A certificate, chain or request that breaks a Matter rule.

    ``str(err)`` is ``"<rule>: <detail>"``; ``rule`` is stable, ``detail`` is for humans
    and never contains key material.
    """

    def __init__(self, rule: Rule, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


def from_der(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Report ``der.MalformedError`` from ``func`` as ``Rule.DER`` (times: ``Rule.VALIDITY``)."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except der.MalformedTimeError as exc:
            raise MatterError(Rule.VALIDITY, str(exc)) from exc
        except der.MalformedError as exc:
            raise MatterError(Rule.DER, str(exc)) from exc

    return wrapper
