"""Offline CA keys the operator carries: out of the database, brought to each ceremony.

When a software-key (``pkcs8``) CA goes offline, its encrypted PKCS#8 key moves to a
file the operator takes away (``privca ca set-offline --key-out FILE``); the CA's row
keeps a handle of backend ``carried`` whose ``blob`` is the public key
(SubjectPublicKeyInfo DER) and whose ``ref`` is the old key's. A copy of the database
and the passphrase then unlock nothing of that CA. A ceremony (``sign-offline``,
``create-sub``/``renew`` under it) ``attach``es the file for its process: the key must
decrypt with the CA passphrase and match the stored public key, or it is refused.
``bring_back`` turns the file into a ``pkcs8`` handle again (``set-online --key FILE``).
The file is the ``pkcs8`` backend's own format (PBES2 under the CA passphrase), so
``openssl pkey`` reads it. Token (``pkcs11``) keys are never carried: they already
stay out of the database. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from server.ca import keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.signer import Signer
from server.ca.types import KeyAlgorithm, KeyHandle

__all__ = ["CARRIED", "CarriedKeys", "is_carried"]

CARRIED: Final = "carried"


def is_carried(handle: KeyHandle) -> bool:
    """Return whether ``handle`` names a key kept outside the database."""
    return handle.backend == CARRIED


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class CarriedKeys:
    """The ``KeyBackend`` of carried keys: it signs only with keys attached in this process."""

    name: Final[str] = CARRIED

    def __init__(self, software: keys.Pkcs8KeyBackend) -> None:
        self._software = software
        self._attached: dict[str, Signer] = {}

    def create(
        self, alg: KeyAlgorithm, *, label: str
    ) -> tuple[KeyHandle, CertificatePublicKeyTypes]:
        """Refuse: a carried key is made elsewhere (rekey the CA once it is back online).

        Raises:
            EngineError: CONFLICT always.
        """
        raise EngineError(
            ProblemKind.CONFLICT,
            f"CA {label}'s key is carried outside the database: bring it back "
            f"(`privca ca set-online {label} --key FILE`) before making it a new key",
        )

    def load(self, handle: KeyHandle) -> Signer:
        """Return the signer attached for ``handle`` in this process.

        Raises:
            EngineError: POLICY when no key file was given for it.
        """
        signer = self._attached.get(handle.ref)
        if signer is None:
            raise EngineError(
                ProblemKind.POLICY,
                f"ca.key-carried: CA key {handle.ref} is kept outside the database: "
                "give its key file (--key FILE, the file --key-out wrote)",
            )
        return signer

    def carry_out(self, handle: KeyHandle) -> tuple[KeyHandle, bytes]:
        """Return the carried handle replacing a ``pkcs8`` handle, and the file to write.

        The file is the key re-encrypted with today's KDF parameters.

        Raises:
            EngineError: CONFLICT (not a software key), SERVER_INTERNAL (wrong passphrase).
        """
        if handle.backend != self._software.name:
            raise EngineError(
                ProblemKind.CONFLICT,
                f"only {self._software.name} keys are carried out; "
                f"a {handle.backend} key stays where it is",
            )
        current = self._software.rewrap(handle) or handle
        public_key = self._software.load(current).public_key()
        carried = KeyHandle(backend=CARRIED, ref=handle.ref, blob=_spki(public_key))
        return carried, current.blob

    def open(self, handle: KeyHandle, key_file: bytes) -> tuple[KeyHandle, Signer]:
        """Check a key file against a carried handle; return its ``pkcs8`` handle and signer.

        Raises:
            EngineError: MALFORMED when the file does not decrypt with the CA passphrase
                or holds another key; CONFLICT when ``handle`` is not carried.
        """
        if not is_carried(handle):
            raise EngineError(
                ProblemKind.CONFLICT, f"CA key {handle.ref} is not carried: give no key file"
            )
        software = KeyHandle(backend=self._software.name, ref=handle.ref, blob=key_file)
        try:
            signer = self._software.load(software)
        except EngineError as exc:
            raise EngineError(
                ProblemKind.MALFORMED,
                "the key file does not decrypt with the CA passphrase (or is not a key)",
            ) from exc
        if _spki(signer.public_key()) != handle.blob:
            raise EngineError(
                ProblemKind.MALFORMED, f"the key file does not hold CA key {handle.ref}"
            )
        return software, signer

    def attach(self, handle: KeyHandle, key_file: bytes) -> None:
        """Let this process sign with the carried key of ``handle`` (see ``open``)."""
        _, signer = self.open(handle, key_file)
        self._attached[handle.ref] = signer
