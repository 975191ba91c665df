"""Matter PKI certificates: profiles, validator and Matter TLV codec.

``profiles`` builds PAA/PAI/DAC and RCAC/ICAC/NOC certificates, ``rules`` validates
certificates and chains against the Matter Core Specification (ch. 6), ``tlv`` converts
between X.509 DER and the Matter TLV certificate form, and ``errors`` holds
``MatterError`` and the ``Rule`` slugs. Pure: imports only cryptography and the
standard library, never aiohttp, josepy, sqlalchemy or the rest of the engine.
"""

from server.ca.matter import errors, oids, profiles, rules, tlv

__all__ = ["errors", "oids", "profiles", "rules", "tlv"]
