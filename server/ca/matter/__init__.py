"""Matter PKI certificates: profiles, validator and Matter TLV codec.

``profiles`` builds PAA/PAI/DAC and RCAC/ICAC/NOC certificates, ``rules`` validates
certificates and chains against the Matter Core Specification (ch. 6), ``tlv`` converts
between X.509 DER and the Matter TLV certificate form, ``certificate`` is the strict
parsed view of a DER certificate those two read, ``oids`` holds the Matter OIDs, and
``errors`` holds ``MatterError`` and the ``Rule`` slugs. The codec is pure: it imports
only cryptography, the standard library and ``server.ca.der`` (the engine's one strict
DER toolkit, itself stdlib only), never aiohttp, josepy, sqlalchemy or the rest of
the engine.
"""

from server.ca.matter import certificate, errors, oids, profiles, rules, tlv

__all__ = ["certificate", "errors", "oids", "profiles", "rules", "tlv"]
