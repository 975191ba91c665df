"""The only place ACME URLs are built (and parsed back into ids).

Every URL is absolute and derived from the request's scheme and Host, so a
node behind any name answers with URLs the client can reach. Must not import
the engine beyond ``server.ca.acme.api``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Links"]

DIRECTORY: Final = "/directory"
NEW_NONCE: Final = "/new-nonce"
NEW_ACCOUNT: Final = "/new-account"
NEW_ORDER: Final = "/new-order"
NEW_AUTHZ: Final = "/new-authz"
REVOKE_CERT: Final = "/revoke-cert"
KEY_CHANGE: Final = "/key-change"
RENEWAL_INFO: Final = "/renewal-info"
ACCOUNT: Final = "/acct"
ORDER: Final = "/order"
AUTHZ: Final = "/authz"
CHALLENGE: Final = "/chall"
CERT: Final = "/cert"


@dataclass(frozen=True, slots=True)
class Links:
    """URLs under one base, e.g. ``https://localhost:8443/acme``."""

    base: str

    @classmethod
    def of(cls, scheme: str, host: str, prefix: str) -> Links:
        """Return the links for a request's scheme and Host under a mount prefix."""
        return cls(f"{scheme}://{host}{prefix}")

    def directory(self) -> str:
        """Return the directory URL."""
        return self.base + DIRECTORY

    def endpoint(self, path: str) -> str:
        """Return a directory endpoint URL (one of the module constants)."""
        return self.base + path

    def account(self, account_id: str) -> str:
        """Return an account URL (the ``kid`` of its requests)."""
        return f"{self.base}{ACCOUNT}/{account_id}"

    def account_id(self, kid: str) -> str | None:
        """Return the account id of a ``kid`` URL, None when it is not one of ours."""
        prefix = f"{self.base}{ACCOUNT}/"
        if not kid.startswith(prefix):
            return None
        rest = kid[len(prefix) :]
        return rest if rest and "/" not in rest else None

    def orders(self, account_id: str) -> str:
        """Return an account's orders-list URL."""
        return f"{self.base}{ACCOUNT}/{account_id}/orders"

    def order(self, order_id: str) -> str:
        """Return an order URL."""
        return f"{self.base}{ORDER}/{order_id}"

    def finalize(self, order_id: str) -> str:
        """Return an order's finalize URL."""
        return f"{self.base}{ORDER}/{order_id}/finalize"

    def authz(self, authz_id: str) -> str:
        """Return an authorization URL."""
        return f"{self.base}{AUTHZ}/{authz_id}"

    def challenge(self, authz_id: str, kind: str) -> str:
        """Return a challenge URL."""
        return f"{self.base}{CHALLENGE}/{authz_id}/{kind}"

    def certificate(self, cert_ref: str, *, alternate: int = 0) -> str:
        """Return a certificate URL (alternate chains get a numeric suffix)."""
        url = f"{self.base}{CERT}/{cert_ref}"
        return f"{url}/{alternate}" if alternate else url

    def renewal_info(self, cert_id: str | None = None) -> str:
        """Return the ARI base URL or one certificate's renewalInfo URL."""
        url = self.base + RENEWAL_INFO
        return f"{url}/{cert_id}" if cert_id else url
