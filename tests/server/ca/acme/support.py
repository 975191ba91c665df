"""Helpers for ACME engine tests: fake validation ports, accounts, ready orders, CSRs."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from server.ca.acme import types as at
from server.ca.acme import validation
from server.ca.acme.ports import FetchResult, NetworkError
from server.ca.acme.service import AcmeService
from tests.support import make_csr


class FakePorts:
    """Validation ports answering http-01 from a dict; DNS and TLS always fail."""

    def __init__(self) -> None:
        self.http_answers: dict[str, str] = {}
        self.requests: list[str] = []

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> FetchResult:
        self.requests.append(host)
        token = path.rsplit("/", 1)[-1]
        if token in self.http_answers:
            return FetchResult(200, self.http_answers[token].encode())
        return FetchResult(404, b"not found")

    async def txt(self, name: str) -> Sequence[str]:
        raise NetworkError("dns", "SERVFAIL")

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        raise NetworkError("tls", "no certificate")

    def ports(self) -> validation.ValidationPorts:
        return validation.ValidationPorts(http=self, dns=self, tls=self)


def account_key(name: str) -> at.AccountKey:
    """Return a stand-in account key (the engine compares thumbprints, never parses JWKs)."""
    return at.AccountKey(jwk=f'{{"kid":"{name}"}}', thumbprint=f"thumb-{name}", spki=b"")


async def new_account(service: AcmeService, name: str = "alice") -> at.Account:
    """Create an account with a stand-in key."""
    account, created = await service.accounts.new_account(account_key(name))
    assert created
    return account


async def validate_http01(
    service: AcmeService, net: FakePorts, account: at.Account, authz: at.Authorization
) -> at.Authorization:
    """Answer and complete the http-01 challenge of ``authz``; return it afterwards."""
    chall = authz.challenge(at.ChallengeType.HTTP_01)
    assert chall is not None
    net.http_answers[chall.token] = validation.key_authorization(
        chall.token, account.key.thumbprint
    )
    await service.orders.respond_challenge(account, authz.id, "http-01")
    await service.orders.wait_idle()
    return await service.orders.get_authz(account, authz.id)


async def ready_order(
    service: AcmeService, net: FakePorts, account: at.Account, *names: str
) -> at.Order:
    """Create an order for DNS ``names`` and validate all of its authorizations."""
    order = await service.orders.new_order(account, [("dns", n) for n in names])
    for authz in order.authorizations:
        await validate_http01(service, net, account, authz)
    ready = await service.orders.get_order(account, order.id)
    assert ready.status is at.OrderStatus.READY
    return ready


def csr_der(
    *names: str, key: CertificateIssuerPrivateKeyTypes | None = None
) -> tuple[bytes, CertificateIssuerPrivateKeyTypes]:
    """Return a DER CSR for DNS ``names`` and its key."""
    pem, k = make_csr([f"dns:{n}" for n in names], key=key)
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    return der, k
