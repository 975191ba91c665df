"""The PKCS#11 ``KeyBackend`` and ``Signer``: keys made in the token, signatures made by it.

Keys are generated inside the token, sensitive and non-extractable, stored as
token objects whose CKA_ID and CKA_LABEL are the handle's ``ref``; the handle's
``blob`` keeps the public key (SubjectPublicKeyInfo DER), so loading a CA never
needs the token and a missing token shows up per signature, not at startup.
cryptography's builders sign only with in-process keys, so certificates, CRLs
and CSRs are drafted with a throwaway "stand-in" key of the same signature
algorithm; the draft's TBS is then signed by the token and the DER reassembled
(SEQUENCE of TBS, AlgorithmIdentifier, BIT STRING). Supported: RSA (PKCS#1 v1.5,
SHA-256 below 3072 bits, SHA-384 above), ECDSA P-256/P-384/P-521 (the token's raw
r||s converted to DER), Ed25519 where the token has CKM_EDDSA. ML-DSA is refused.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.util import ec as ec_util

from server.ca import der, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.hsm.pool import Lease, SessionPool
from server.ca.signer import Signer
from server.ca.types import KeyAlgorithm, KeyHandle

__all__ = ["Pkcs11KeyBackend", "Pkcs11Signer"]

log = logging.getLogger(__name__)

_RSA_BITS: Final = {
    KeyAlgorithm.RSA_2048: 2048,
    KeyAlgorithm.RSA_3072: 3072,
    KeyAlgorithm.RSA_4096: 4096,
}
_EC_CURVES: Final[dict[KeyAlgorithm, tuple[str, ec.EllipticCurve]]] = {
    KeyAlgorithm.EC_P256: ("1.2.840.10045.3.1.7", ec.SECP256R1()),
    KeyAlgorithm.EC_P384: ("1.3.132.0.34", ec.SECP384R1()),
    KeyAlgorithm.EC_P521: ("1.3.132.0.35", ec.SECP521R1()),
}
_ED25519_OID: Final = "1.3.101.112"
_RSA_MECHANISMS: Final = {"sha256": Mechanism.SHA256_RSA_PKCS, "sha384": Mechanism.SHA384_RSA_PKCS}
_PRIVATE_TEMPLATE: Final = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
}
_PUBLIC_TEMPLATE: Final = {Attribute.TOKEN: True, Attribute.VERIFY: True}


class Pkcs11KeyBackend:
    """CA keys generated and kept inside one PKCS#11 token."""

    name: Final[str] = "pkcs11"

    def __init__(self, pool: SessionPool) -> None:
        self._pool = pool

    def create(
        self, alg: KeyAlgorithm, *, label: str
    ) -> tuple[KeyHandle, CertificatePublicKeyTypes]:
        """Generate a key pair in the token; return its handle and public key.

        Raises:
            EngineError: POLICY (ML-DSA, or Ed25519 on a token without CKM_EDDSA),
                UNAVAILABLE (token absent, PIN refused, token errors).
        """
        if alg not in _RSA_BITS and alg not in _EC_CURVES and alg is not KeyAlgorithm.ED25519:
            raise EngineError(
                ProblemKind.POLICY, f"the PKCS#11 key backend does not support {alg} keys"
            )

        def generate(lease: Lease) -> tuple[str, CertificatePublicKeyTypes]:
            # A fresh ref per attempt: a retried generation must not reuse a CKA_ID.
            ref = f"{label}-{secrets.token_hex(8)}"
            return ref, _generate(lease, alg, ref)

        ref, public_key = self._pool.run(f"generate a {alg} key", generate)
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return KeyHandle(backend=self.name, ref=ref, blob=spki), public_key

    def load(self, handle: KeyHandle) -> Signer:
        """Return a signer over the token key of ``handle`` (the token is used only to sign).

        Raises:
            EngineError: SERVER_INTERNAL when the handle's public key is damaged.
        """
        try:
            public_key = serialization.load_der_public_key(handle.blob)
            keys.algorithm_of(public_key)
        except (ValueError, EngineError) as exc:
            raise EngineError(
                ProblemKind.SERVER_INTERNAL, f"PKCS#11 key {handle.ref} has a damaged public key"
            ) from exc
        return Pkcs11Signer(self._pool, ref=handle.ref, public_key=public_key)  # type: ignore[arg-type]  # checked by algorithm_of

    def destroy(self, handle: KeyHandle) -> None:
        """Destroy the token's private and public key objects of ``handle`` (CKA_ID and label).

        A key already gone is not an error, so a destruction interrupted before its
        record was dropped can run again.

        Raises:
            EngineError: UNAVAILABLE when the token cannot be reached.
        """
        gone = self._pool.run(
            f"destroy key {handle.ref}", lambda lease: _destroy(lease, handle.ref)
        )
        log.info(
            "PKCS#11 token %r: destroyed %d object(s) of key %s", self._pool.label, gone, handle.ref
        )

    def close(self) -> None:
        """Close the token sessions."""
        self._pool.close()


class Pkcs11Signer:
    """A ``Signer`` whose private key is a token object; every signature is made by the token."""

    __slots__ = ("_algorithm", "_hash", "_pool", "_public_key", "_ref", "_stand_in")

    def __init__(
        self, pool: SessionPool, *, ref: str, public_key: CertificateIssuerPublicKeyTypes
    ) -> None:
        self._pool = pool
        self._ref = ref
        self._public_key = public_key
        self._hash = keys.signature_hash(public_key)
        self._algorithm = keys.signature_algorithm(public_key)
        self._stand_in = _stand_in(public_key)

    @property
    def algorithm(self) -> bytes:
        """Return the DER AlgorithmIdentifier of this key's signatures."""
        return self._algorithm

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        """Return the public half of the key."""
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """Sign DER ``data`` in the token as the X.509 builders would.

        Raises:
            EngineError: UNAVAILABLE when the token cannot sign.
        """
        return self._pool.run(f"sign with key {self._ref}", lambda lease: self._sign(lease, data))

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a certificate builder in the token."""
        draft = builder.sign(self._stand_in, self._hash)
        return x509.load_der_x509_certificate(self._assemble(draft.tbs_certificate_bytes))

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL builder in the token."""
        draft = builder.sign(self._stand_in, self._hash)
        return x509.load_der_x509_crl(self._assemble(draft.tbs_certlist_bytes))

    def sign_csr(
        self, builder: x509.CertificateSigningRequestBuilder
    ) -> x509.CertificateSigningRequest:
        """Sign a PKCS#10 request builder in the token."""
        draft = builder.sign(self._stand_in, self._hash)
        # A request carries its signer's public key: put the token key's in place of the
        # stand-in's (CertificationRequestInfo: version, subject, subjectPKInfo, attributes).
        version, subject, _, attributes = der.children(der.parse(draft.tbs_certrequest_bytes))
        spki = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        tbs = der.seq(version.encoded, subject.encoded, spki, attributes.encoded)
        return x509.load_der_x509_csr(self._assemble(tbs))

    def _assemble(self, tbs: bytes) -> bytes:
        signature = der.wrap(der.BIT_STRING, b"\x00" + self.sign(tbs))
        return der.seq(tbs, self._algorithm, signature)

    def _sign(self, lease: Lease, data: bytes) -> bytes:
        key = lease.private_key(self._ref)
        public = self._public_key
        if isinstance(public, rsa.RSAPublicKey) and self._hash is not None:
            return key.sign(data, mechanism=_RSA_MECHANISMS[self._hash.name])
        if isinstance(public, ec.EllipticCurvePublicKey) and self._hash is not None:
            # CKM_ECDSA over a digest made here: tokens differ in which CKM_ECDSA_SHA* they have.
            digest = hashes.Hash(self._hash)
            digest.update(data)
            raw = key.sign(digest.finalize(), mechanism=Mechanism.ECDSA)
            half = len(raw) // 2
            return utils.encode_dss_signature(
                int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            )
        return key.sign(data, mechanism=Mechanism.EDDSA)


def _generate(lease: Lease, alg: KeyAlgorithm, ref: str) -> CertificatePublicKeyTypes:
    """Generate a token key pair labelled ``ref``; return its public key."""
    session = lease.session
    caps = MechanismFlag.SIGN | MechanismFlag.VERIFY
    if alg in _RSA_BITS:
        public, _ = session.generate_keypair(
            KeyType.RSA,
            _RSA_BITS[alg],
            id=ref.encode(),
            label=ref,
            store=True,
            capabilities=caps,
            public_template=_PUBLIC_TEMPLATE,
            private_template=_PRIVATE_TEMPLATE,
        )
        return rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        ).public_key()
    if alg in _EC_CURVES:
        oid, curve = _EC_CURVES[alg]
        key_type, mechanism = KeyType.EC, Mechanism.EC_KEY_PAIR_GEN
    else:
        if not _has_eddsa(session.token.slot.get_mechanisms()):
            raise EngineError(
                ProblemKind.POLICY,
                f"PKCS#11 token {session.token.label!r} has no CKM_EDDSA: "
                "Ed25519 CA keys are not available",
            )
        oid, curve = _ED25519_OID, None
        key_type, mechanism = KeyType.EC_EDWARDS, Mechanism.EC_EDWARDS_KEY_PAIR_GEN
    params = session.create_domain_parameters(
        key_type, {Attribute.EC_PARAMS: ec_util.encode_named_curve_parameters(oid)}, local=True
    )
    public, _ = params.generate_keypair(
        id=ref.encode(),
        label=ref,
        store=True,
        capabilities=caps,
        mechanism=mechanism,
        public_template=_PUBLIC_TEMPLATE,
        private_template=_PRIVATE_TEMPLATE,
    )
    point = _point(public[Attribute.EC_POINT])
    if curve is None:
        return ed25519.Ed25519PublicKey.from_public_bytes(point)
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)


def _destroy(lease: Lease, ref: str) -> int:
    """Destroy the key pair whose CKA_ID and CKA_LABEL are ``ref``; return how many objects."""
    lease.private_keys.pop(ref, None)
    gone = 0
    for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
        template = {Attribute.CLASS: object_class, Attribute.ID: ref.encode(), Attribute.LABEL: ref}
        for found in list(lease.session.get_objects(template)):
            found.destroy()
            gone += 1
    return gone


def _has_eddsa(mechanisms: set[Mechanism]) -> bool:
    return {Mechanism.EDDSA, Mechanism.EC_EDWARDS_KEY_PAIR_GEN} <= mechanisms


def _point(value: bytes) -> bytes:
    """Return the point of a CKA_EC_POINT: DER OCTET STRING per PKCS#11, raw from some tokens."""
    try:
        node = der.parse(value)
    except der.MalformedError:
        return value
    return node.content if node.tag == der.OCTET_STRING else value


_STAND_INS: dict[str, CertificateIssuerPrivateKeyTypes] = {}
_STAND_IN_LOCK: Final = threading.Lock()


def _stand_in(public_key: CertificateIssuerPublicKeyTypes) -> CertificateIssuerPrivateKeyTypes:
    """Return a throwaway in-process key that drafts the same signature algorithm.

    Only the draft's TBS is kept, so the key's size does not matter, only its type:
    the hash passed to the builder picks the AlgorithmIdentifier. A small RSA key keeps
    the wasted draft signature cheap.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        kind = "rsa"
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        kind = "ec"
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        kind = "ed25519"
    else:
        raise EngineError(
            ProblemKind.SERVER_INTERNAL,
            f"the PKCS#11 backend cannot sign with {type(public_key).__name__}",
        )
    with _STAND_IN_LOCK:
        key = _STAND_INS.get(kind)
        if key is None:
            if kind == "rsa":
                key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - drafts only, never signs anything kept
            elif kind == "ec":
                key = ec.generate_private_key(ec.SECP256R1())
            else:
                key = ed25519.Ed25519PrivateKey.generate()
            _STAND_INS[kind] = key
        return key
