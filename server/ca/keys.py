"""Key algorithms, key policy and CA key backends.

The only module that touches CA private keys. Backends hide where a key lives
(encrypted PKCS#8 blob in storage by default; a PKCS#11 token through
``server.ca.hsm``; an offline CA's file through ``server.ca.custody``), and
``KeyBackends`` lets each CA pick its own. Must not import aiohttp, josepy or
sqlalchemy.
"""

from __future__ import annotations

import logging
import secrets
from typing import Final, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)

from server.ca import der, pkcs8
from server.ca.errors import EngineError, ProblemKind
from server.ca.signer import Signer
from server.ca.types import KeyAlgorithm, KeyHandle

__all__ = [
    "KeyBackend",
    "KeyBackends",
    "KeyDestroyer",
    "KeySigner",
    "Pkcs8KeyBackend",
    "SignatureHash",
    "algorithm_of",
    "as_signer",
    "choose",
    "destroy",
    "generate_private_key",
    "rewrap",
    "sign",
    "signature_algorithm",
    "signature_hash",
]

log = logging.getLogger(__name__)

_RSA_SIZES: Final = {
    KeyAlgorithm.RSA_2048: 2048,
    KeyAlgorithm.RSA_3072: 3072,
    KeyAlgorithm.RSA_4096: 4096,
}
_EC_CURVES: Final[dict[KeyAlgorithm, ec.EllipticCurve]] = {
    KeyAlgorithm.EC_P256: ec.SECP256R1(),
    KeyAlgorithm.EC_P384: ec.SECP384R1(),
    KeyAlgorithm.EC_P521: ec.SECP521R1(),
}
_CURVE_ALGS: Final = {curve.name: alg for alg, curve in _EC_CURVES.items()}
_MIN_RSA_BITS: Final = 2048
_MAX_RSA_BITS: Final = 8192


def generate_private_key(alg: KeyAlgorithm) -> CertificateIssuerPrivateKeyTypes:
    """Generate a new private key of the given algorithm."""
    if alg in _RSA_SIZES:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_SIZES[alg])
    if alg in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[alg])
    if alg is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if alg is KeyAlgorithm.ML_DSA_44:
        return mldsa.MLDSA44PrivateKey.generate()
    if alg is KeyAlgorithm.ML_DSA_65:
        return mldsa.MLDSA65PrivateKey.generate()
    return mldsa.MLDSA87PrivateKey.generate()


def algorithm_of(public_key: CertificatePublicKeyTypes | object) -> KeyAlgorithm:
    """Classify a public key, refusing weak or unsupported ones.

    Raises:
        EngineError: BAD_PUBLIC_KEY for RSA < 2048 bits, a small or even exponent,
            curves other than P-256/P-384/P-521, and any other key type.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        exponent = public_key.public_numbers().e
        if bits < _MIN_RSA_BITS or bits > _MAX_RSA_BITS:
            raise EngineError(
                ProblemKind.BAD_PUBLIC_KEY, f"RSA key of {bits} bits refused (2048-8192 allowed)"
            )
        if exponent < 65537 or exponent % 2 == 0:
            raise EngineError(ProblemKind.BAD_PUBLIC_KEY, f"RSA public exponent {exponent} refused")
        if bits <= 2048:
            return KeyAlgorithm.RSA_2048
        return KeyAlgorithm.RSA_3072 if bits <= 3072 else KeyAlgorithm.RSA_4096
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _CURVE_ALGS.get(public_key.curve.name)
        if alg is None:
            raise EngineError(
                ProblemKind.BAD_PUBLIC_KEY,
                f"elliptic curve {public_key.curve.name} refused (P-256, P-384, P-521 allowed)",
            )
        return alg
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    if isinstance(public_key, mldsa.MLDSA44PublicKey):
        return KeyAlgorithm.ML_DSA_44
    if isinstance(public_key, mldsa.MLDSA65PublicKey):
        return KeyAlgorithm.ML_DSA_65
    if isinstance(public_key, mldsa.MLDSA87PublicKey):
        return KeyAlgorithm.ML_DSA_87
    name = "Ed448" if isinstance(public_key, ed448.Ed448PublicKey) else type(public_key).__name__
    raise EngineError(ProblemKind.BAD_PUBLIC_KEY, f"key type {name} is not supported")


SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def signature_hash(
    key: CertificateIssuerPrivateKeyTypes | CertificateIssuerPublicKeyTypes,
) -> SignatureHash | None:
    """Return the hash to sign with: SHA-256/384/512 by key strength, None for EdDSA/ML-DSA.

    Either half of the key answers the same (a token key is known by its public half).
    """
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return hashes.SHA256() if key.key_size < 3072 else hashes.SHA384()
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        size = key.curve.key_size
        if size <= 256:
            return hashes.SHA256()
        return hashes.SHA384() if size <= 384 else hashes.SHA512()
    return None


class KeyBackend(Protocol):
    """Creates and loads CA private keys without callers knowing where they live."""

    @property
    def name(self) -> str:
        """Return the backend's name as stored in ``KeyHandle.backend``."""
        ...

    def create(
        self, alg: KeyAlgorithm, *, label: str
    ) -> tuple[KeyHandle, CertificatePublicKeyTypes]:
        """Create a key; return its handle (to store with the CA) and public key."""
        ...

    def load(self, handle: KeyHandle) -> Signer:
        """Return a signer for a handle made by this backend (the key stays inside)."""
        ...


@runtime_checkable
class KeyDestroyer(Protocol):
    """A key backend that can destroy a key it made (retired delegated OCSP signer keys)."""

    def destroy(self, handle: KeyHandle) -> None:
        """Destroy the key of ``handle``; a key already gone is not an error."""
        ...


class Pkcs8KeyBackend:
    """CA keys as passphrase-encrypted PKCS#8 PEM (PBES2: PBKDF2-SHA256, AES-256-CBC) in storage.

    ``kdf_rounds`` is the PBKDF2 iteration count of keys written from now on; keys
    stored with fewer (or another scheme) are re-wrapped by ``rewrap``.
    """

    name: Final[str] = "pkcs8"

    def __init__(self, passphrase: bytes, *, kdf_rounds: int = pkcs8.DEFAULT_ROUNDS) -> None:
        if len(passphrase) < 16:
            raise ValueError("the CA key passphrase must be at least 16 bytes")
        self._passphrase = passphrase
        self.kdf_rounds = kdf_rounds

    def create(
        self, alg: KeyAlgorithm, *, label: str
    ) -> tuple[KeyHandle, CertificatePublicKeyTypes]:
        """Generate a key and return it encrypted in a handle."""
        key = generate_private_key(alg)
        return self.wrap(key, label=label), key.public_key()

    def wrap(self, key: CertificateIssuerPrivateKeyTypes, *, label: str) -> KeyHandle:
        """Encrypt an existing private key into a handle."""
        blob = pkcs8.encrypt(key, self._passphrase, rounds=self.kdf_rounds)
        return KeyHandle(backend=self.name, ref=f"{label}-{secrets.token_hex(4)}", blob=blob)

    def rewrap(self, handle: KeyHandle) -> KeyHandle | None:
        """Return ``handle`` encrypted with today's parameters, or None if it already is.

        Raises:
            EngineError: SERVER_INTERNAL on a wrong passphrase or a damaged key.
        """
        rounds = pkcs8.kdf_rounds(handle.blob)
        if rounds is not None and rounds >= self.kdf_rounds:
            return None
        key = self._decrypt(handle)
        blob = pkcs8.encrypt(key, self._passphrase, rounds=self.kdf_rounds)
        return KeyHandle(backend=handle.backend, ref=handle.ref, blob=blob)

    def load(self, handle: KeyHandle) -> Signer:
        """Decrypt the handle's key into a signer; EngineError(SERVER_INTERNAL) on a wrong
        passphrase."""
        return KeySigner(self._decrypt(handle))

    def destroy(self, handle: KeyHandle) -> None:
        """Nothing to do here: the key is the handle's encrypted blob, which the caller drops."""
        del handle

    def _decrypt(self, handle: KeyHandle) -> CertificateIssuerPrivateKeyTypes:
        try:
            key = serialization.load_pem_private_key(handle.blob, password=self._passphrase)
        except (ValueError, TypeError) as exc:
            raise EngineError(
                ProblemKind.SERVER_INTERNAL,
                f"cannot decrypt CA key {handle.ref}: wrong passphrase or damaged key",
            ) from exc
        if isinstance(key, (ed448.Ed448PrivateKey,)) or not _is_issuer_key(key):
            raise EngineError(ProblemKind.SERVER_INTERNAL, f"CA key {handle.ref} has a bad type")
        return key  # type: ignore[return-value]  # narrowed by _is_issuer_key


class KeyBackends:
    """Key backends side by side, chosen per CA: new keys go to the one named, handles load
    from the backend that made them (``KeyHandle.backend``)."""

    def __init__(self, default: KeyBackend, *others: KeyBackend) -> None:
        self._default = default
        self._by_name = {backend.name: backend for backend in (default, *others)}

    @property
    def name(self) -> str:
        """Return the default backend's name."""
        return self._default.name

    def named(self, name: str | None) -> KeyBackend:
        """Return the backend called ``name`` (None: the default).

        Raises:
            EngineError: MALFORMED when no such backend is configured.
        """
        if name is None:
            return self._default
        backend = self._by_name.get(name)
        if backend is None:
            raise EngineError(
                ProblemKind.MALFORMED,
                f"key backend {name!r} is not configured "
                f"(configured: {', '.join(sorted(self._by_name))})",
            )
        return backend

    def create(
        self, alg: KeyAlgorithm, *, label: str
    ) -> tuple[KeyHandle, CertificatePublicKeyTypes]:
        """Create a key in the default backend."""
        return self._default.create(alg, label=label)

    def owner(self, handle: KeyHandle) -> KeyBackend | None:
        """Return the backend that made ``handle`` (None: not configured here)."""
        return self._by_name.get(handle.backend)

    def load(self, handle: KeyHandle) -> Signer:
        """Load a handle through the backend that made it.

        Raises:
            EngineError: SERVER_INTERNAL when that backend is not configured here.
        """
        backend = self._by_name.get(handle.backend)
        if backend is None:
            log.error("CA key %s needs key backend %r: not configured", handle.ref, handle.backend)
            raise EngineError(
                ProblemKind.SERVER_INTERNAL,
                f"CA key {handle.ref} lives in key backend {handle.backend!r}, "
                "which is not configured",
            )
        return backend.load(handle)


def rewrap(backend: KeyBackend, handle: KeyHandle) -> KeyHandle | None:
    """Return a software key's handle re-encrypted with today's KDF, None when not needed.

    Token keys (and handles of unconfigured backends) are never re-wrapped.

    Raises:
        EngineError: SERVER_INTERNAL on a wrong passphrase or a damaged key.
    """
    if isinstance(backend, KeyBackends):
        backend = backend.owner(handle) or backend
    if isinstance(backend, Pkcs8KeyBackend) and handle.backend == backend.name:
        return backend.rewrap(handle)
    return None


def destroy(backend: KeyBackend, handle: KeyHandle) -> None:
    """Destroy the key of ``handle`` in the backend that made it (``KeyBackends``: its owner).

    Raises:
        EngineError: SERVER_INTERNAL (that backend is not configured here), CONFLICT
            (the backend cannot destroy keys: a carried key), and the backend's own
            errors (UNAVAILABLE when a token cannot be reached).
    """
    owner = backend.owner(handle) if isinstance(backend, KeyBackends) else backend
    if owner is None or owner.name != handle.backend:
        raise EngineError(
            ProblemKind.SERVER_INTERNAL,
            f"key {handle.ref} lives in key backend {handle.backend!r}, which is not configured",
        )
    if not isinstance(owner, KeyDestroyer):
        raise EngineError(ProblemKind.CONFLICT, f"key backend {owner.name!r} does not destroy keys")
    owner.destroy(handle)


def choose(backend: KeyBackend, name: str | None) -> KeyBackend:
    """Return the backend called ``name`` from ``backend`` (None: ``backend`` itself).

    Raises:
        EngineError: MALFORMED when no backend of that name is configured.
    """
    if isinstance(backend, KeyBackends):
        return backend.named(name)
    if name is None or name == backend.name:
        return backend
    raise EngineError(ProblemKind.MALFORMED, f"key backend {name!r} is not configured")


def _is_issuer_key(key: object) -> bool:
    return isinstance(
        key,
        (
            rsa.RSAPrivateKey,
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
            mldsa.MLDSA44PrivateKey,
            mldsa.MLDSA65PrivateKey,
            mldsa.MLDSA87PrivateKey,
        ),
    )


_SIG_OIDS: Final = {
    ("ec", "sha256"): "1.2.840.10045.4.3.2",
    ("ec", "sha384"): "1.2.840.10045.4.3.3",
    ("ec", "sha512"): "1.2.840.10045.4.3.4",
    ("rsa", "sha256"): "1.2.840.113549.1.1.11",
    ("rsa", "sha384"): "1.2.840.113549.1.1.12",
    ("rsa", "sha512"): "1.2.840.113549.1.1.13",
}
_PURE_OIDS: Final[tuple[tuple[tuple[type, ...], str], ...]] = (
    ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), "1.3.101.112"),
    ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "1.3.101.113"),
    ((mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey), "2.16.840.1.101.3.4.3.17"),
    ((mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey), "2.16.840.1.101.3.4.3.18"),
    ((mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey), "2.16.840.1.101.3.4.3.19"),
)


def signature_algorithm(
    key: CertificateIssuerPrivateKeyTypes | CertificateIssuerPublicKeyTypes,
) -> bytes:
    """Return the DER AlgorithmIdentifier ``sign`` produces for this key (either half)."""
    for kinds, dotted in _PURE_OIDS:
        if isinstance(key, kinds):
            return der.seq(der.wrap(der.OBJECT_ID, der.oid(dotted)))
    digest = signature_hash(key)
    if digest is None:
        raise TypeError(f"cannot sign with {type(key).__name__}")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return der.seq(
            der.wrap(der.OBJECT_ID, der.oid(_SIG_OIDS[("rsa", digest.name)])), b"\x05\x00"
        )
    return der.seq(der.wrap(der.OBJECT_ID, der.oid(_SIG_OIDS[("ec", digest.name)])))


def sign(key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    """Sign ``data`` as cryptography's X.509 builders do (PKCS#1 v1.5, ECDSA, pure EdDSA/ML-DSA)."""
    digest = signature_hash(key)
    if isinstance(key, rsa.RSAPrivateKey) and digest is not None:
        return key.sign(data, padding.PKCS1v15(), digest)
    if isinstance(key, ec.EllipticCurvePrivateKey) and digest is not None:
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(
        key,
        ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey
        | mldsa.MLDSA44PrivateKey
        | mldsa.MLDSA65PrivateKey
        | mldsa.MLDSA87PrivateKey,
    ):
        return key.sign(data)
    raise TypeError(f"cannot sign with {type(key).__name__}")


class KeySigner:
    """A ``Signer`` over an in-process private key (the PKCS#8 backend's, and tests')."""

    __slots__ = ("_algorithm", "_hash", "_key")

    def __init__(self, key: CertificateIssuerPrivateKeyTypes) -> None:
        self._key = key
        self._hash = signature_hash(key)
        self._algorithm = signature_algorithm(key)

    @property
    def algorithm(self) -> bytes:
        """Return the DER AlgorithmIdentifier of this key's signatures."""
        return self._algorithm

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        """Return the public half of the key."""
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        """Sign DER ``data`` as the X.509 builders do."""
        return sign(self._key, data)

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a certificate builder."""
        return builder.sign(self._key, self._hash)

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL builder."""
        return builder.sign(self._key, self._hash)

    def sign_csr(
        self, builder: x509.CertificateSigningRequestBuilder
    ) -> x509.CertificateSigningRequest:
        """Sign a PKCS#10 request builder."""
        return builder.sign(self._key, self._hash)


def as_signer(key: Signer | CertificateIssuerPrivateKeyTypes) -> Signer:
    """Return ``key`` as a ``Signer`` (in-process keys are wrapped; signers pass through)."""
    if _is_issuer_key(key) or isinstance(key, ed448.Ed448PrivateKey):
        return KeySigner(key)  # type: ignore[arg-type]  # an issuer key type
    return key  # type: ignore[return-value]  # a Signer
