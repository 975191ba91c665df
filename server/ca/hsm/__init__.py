"""CA keys inside a PKCS#11 token (an HSM, or SoftHSM2 in tests): generated, kept and used there.

``pool`` owns the token sessions (login, pooling, recovery after the token comes
back); ``backend`` is the ``KeyBackend`` and the ``Signer`` over them. Must not
import aiohttp, josepy or sqlalchemy; the PIN comes in through a callable.
"""

from server.ca.hsm.backend import Pkcs11KeyBackend, Pkcs11Signer
from server.ca.hsm.pool import PinSource, SessionPool, TokenSettings

__all__ = ["PinSource", "Pkcs11KeyBackend", "Pkcs11Signer", "SessionPool", "TokenSettings"]
