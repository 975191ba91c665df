"""PKCS#8 key encryption with a strong KDF: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC.

cryptography's ``BestAvailableEncryption`` writes PBES2 with 2,048 PBKDF2
iterations for PKCS#8, and (as of 50.x) ``encryption_builder`` cannot raise the
count for PKCS#8, so the EncryptedPrivateKeyInfo (RFC 5958 §3, RFC 8018 §6.2) is
assembled here from cryptography's own primitives. The result is a standard
``ENCRYPTED PRIVATE KEY`` PEM that cryptography and ``openssl pkey`` read back.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import base64
import os
from typing import Final

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from server.ca import der

__all__ = ["DEFAULT_ROUNDS", "MIN_ROUNDS", "encrypt", "kdf_rounds"]

# OWASP's 2023 figure for PBKDF2-HMAC-SHA256; ~0.3 s per unlock on a 2-core VM,
# paid once per CA per process.
DEFAULT_ROUNDS: Final = 600_000
# Stored keys wrapped with fewer rounds (or another PRF) are re-wrapped on unlock.
MIN_ROUNDS: Final = DEFAULT_ROUNDS

_PBES2: Final = "1.2.840.113549.1.5.13"
_PBKDF2: Final = "1.2.840.113549.1.5.12"
_HMAC_SHA256: Final = "1.2.840.113549.2.9"
_AES256_CBC: Final = "2.16.840.1.101.3.4.1.42"
_PEM_LABEL: Final = "ENCRYPTED PRIVATE KEY"


def encrypt(key: PrivateKeyTypes, passphrase: bytes, *, rounds: int = DEFAULT_ROUNDS) -> bytes:
    """Return ``key`` as an encrypted PKCS#8 PEM (PBES2, PBKDF2-SHA256 x ``rounds``, AES-256)."""
    plain = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = os.urandom(16)
    iv = os.urandom(16)
    kek = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=rounds).derive(
        passphrase
    )
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padded) + encryptor.finalize()
    params = der.seq(
        der.seq(
            der.wrap(der.OBJECT_ID, der.oid(_PBKDF2)),
            der.seq(
                der.wrap(der.OCTET_STRING, salt),
                der.integer(rounds),
                der.seq(der.wrap(der.OBJECT_ID, der.oid(_HMAC_SHA256)), der.wrap(der.NULL, b"")),
            ),
        ),
        der.seq(der.wrap(der.OBJECT_ID, der.oid(_AES256_CBC)), der.wrap(der.OCTET_STRING, iv)),
    )
    info = der.seq(
        der.seq(der.wrap(der.OBJECT_ID, der.oid(_PBES2)), params),
        der.wrap(der.OCTET_STRING, sealed),
    )
    body = base64.encodebytes(info).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        f"-----BEGIN {_PEM_LABEL}-----\n" + "\n".join(lines) + f"\n-----END {_PEM_LABEL}-----\n"
    ).encode("ascii")


def kdf_rounds(pem: bytes) -> int | None:
    """Return the PBKDF2-HMAC-SHA256 iteration count of an encrypted PKCS#8 PEM.

    None when it is not PBES2 with PBKDF2-HMAC-SHA256 (another scheme or PRF, or
    damaged): such a key is re-wrapped like a weak one.
    """
    try:
        text = pem.decode("ascii")
        head, tail = f"-----BEGIN {_PEM_LABEL}-----", f"-----END {_PEM_LABEL}-----"
        body = text[text.index(head) + len(head) : text.index(tail)]
        info = der.parse(base64.b64decode("".join(body.split()), validate=True))
        algorithm = der.children(der.children(info)[0])
        if der.oid_text(der.require(algorithm[0], der.OBJECT_ID, "scheme").content) != _PBES2:
            return None
        kdf = der.children(der.children(algorithm[1])[0])
        if der.oid_text(der.require(kdf[0], der.OBJECT_ID, "kdf").content) != _PBKDF2:
            return None
        fields = der.children(kdf[1])
        rounds = der.read_unsigned(fields[1], "iterationCount")
        prf = [f for f in fields[2:] if f.tag == der.SEQUENCE]
        # RFC 8018 A.2: an absent PRF means hmacWithSHA1.
        if not prf or der.oid_text(der.children(prf[0])[0].content) != _HMAC_SHA256:
            return None
        return rounds
    except (ValueError, IndexError):
        return None
