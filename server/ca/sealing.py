"""Server secrets at rest: AES-256-GCM under a key derived from the CA key passphrase.

EAB HMAC keys must be recoverable (the server verifies the client's JWS with
them) and the nonce MAC key is shared by every node, so neither can be a hash:
storage keeps them sealed with a key HKDF-SHA256 derives from the master
passphrase, each bound (AAD) to what it is so sealed values cannot be swapped
between rows. A copy of the database without the passphrase yields neither.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SealedError", "Sealer", "is_sealed"]

_MAGIC: Final = b"pcs1"
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_INFO: Final = b"privca server secrets v1"


class SealedError(ValueError):
    """A sealed value does not open: another passphrase, or damaged."""


class Sealer:
    """Seal and open server secrets with the installation's master key."""

    __slots__ = ("_aead",)

    def __init__(self, passphrase: bytes) -> None:
        # HKDF, not a slow KDF: the passphrase privca generates is 256 random bits, and
        # an operator-chosen one must be at least 16 bytes (Pkcs8KeyBackend checks).
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(passphrase)
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, *, context: bytes) -> bytes:
        """Return ``plain`` encrypted and bound to ``context``."""
        nonce = os.urandom(_NONCE_BYTES)
        return _MAGIC + nonce + self._aead.encrypt(nonce, plain, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        """Return the plain text of a sealed value.

        Raises:
            SealedError: not sealed, sealed under another passphrase or context, or damaged.
        """
        if not is_sealed(sealed):
            raise SealedError("the value is not sealed")
        nonce = sealed[len(_MAGIC) : len(_MAGIC) + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[len(_MAGIC) + _NONCE_BYTES :], context)
        except InvalidTag as exc:
            raise SealedError("the sealed value does not open with this passphrase") from exc


def is_sealed(value: bytes) -> bool:
    """Return whether ``value`` was made by ``Sealer.seal`` (legacy values are 32 raw bytes)."""
    return value.startswith(_MAGIC) and len(value) > len(_MAGIC) + _NONCE_BYTES + _TAG_BYTES
