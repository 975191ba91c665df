"""The HTTPS listener's certificate: configured names, renewal 2/3 through its life with the
clock moved forward, and reload into the live context (self-issued or operator-replaced)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server import private_files, wiring
from server.app import server_ssl_context
from server.ca import api, keys
from server.ca.errors import EngineError
from server.ca.types import KeyAlgorithm
from server.config import ConfigError, load_settings
from server.store.memory import MemoryRepository
from server.tls_listener import ListenerCertificate
from tests.support import FakeClock

_NAMES = ["ca.corp.internal", "10.0.0.5"]


@pytest.fixture
async def tls_engine(key_backend: keys.Pkcs8KeyBackend, clock: FakeClock) -> api.CAEngine:
    engine = api.CAEngine(
        MemoryRepository(),
        key_backend,
        settings=api.EngineSettings(default_ca="issuing"),
        clock=clock,
    )
    await engine.create_root("root", actor=wiring.SYSTEM)
    await engine.create_subordinate("issuing", parent="root", actor=wiring.SYSTEM, path_length=0)
    return engine


def _files(tmp_path: Path) -> wiring.TlsFiles:
    tls = tmp_path / "tls"
    return wiring.TlsFiles(cert=tls / "server.pem", key=tls / "server.key", bundle=tmp_path / "b")


def _leaf(files: wiring.TlsFiles) -> x509.Certificate:
    return x509.load_pem_x509_certificates(files.cert.read_bytes())[0]


async def test_certificate_carries_the_configured_names(
    tls_engine: api.CAEngine, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    assert await wiring.renew_tls(tls_engine, files, names=_NAMES)
    san = _leaf(files).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ca.corp.internal"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    # Other names: a new certificate for them.
    assert await wiring.renew_tls(tls_engine, files, names=["localhost"])
    san = _leaf(files).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


async def test_renewed_two_thirds_through_its_life(
    tls_engine: api.CAEngine, clock: FakeClock, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    assert await wiring.renew_tls(tls_engine, files, names=_NAMES)
    first = _leaf(files)
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    clock.current = first.not_valid_before_utc + lifetime * 2 / 3 - timedelta(hours=1)
    assert not await wiring.renew_tls(tls_engine, files, names=_NAMES)
    assert _leaf(files).serial_number == first.serial_number
    clock.advance(timedelta(hours=2))
    assert await wiring.renew_tls(tls_engine, files, names=_NAMES)
    second = _leaf(files)
    assert second.serial_number != first.serial_number
    assert second.not_valid_after_utc > first.not_valid_after_utc


async def test_listener_grant_covers_exactly_the_configured_names(
    tls_engine: api.CAEngine,
) -> None:
    grant = wiring.listener_grant(_NAMES)
    for other in (x509.DNSName("evil.example"), x509.IPAddress(ipaddress.ip_address("10.0.0.6"))):
        with pytest.raises(EngineError, match="outside"):
            await tls_engine.issue_with_generated_key(
                principal=wiring.SYSTEM,
                grant=grant,
                profile="tls-server",
                key_algorithm=KeyAlgorithm.EC_P256,
                subject=x509.Name([]),
                names=[x509.DNSName("ca.corp.internal"), other],
            )


async def _served_serial(port: int) -> int:
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()


async def test_serving_context_reloads_renewed_and_replaced_files(
    tls_engine: api.CAEngine, clock: FakeClock, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    await wiring.renew_tls(tls_engine, files, names=_NAMES)
    first = _leaf(files)
    ctx = server_ssl_context(files)
    watcher = ListenerCertificate(ctx, files.cert, files.key)

    async def _close(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(_close, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await _served_serial(port) == first.serial_number
        assert not watcher.reload_if_changed()

        # Renewed by the main process (time moved past 2/3 of the life).
        clock.advance(timedelta(days=61))
        assert await wiring.renew_tls(tls_engine, files, names=_NAMES)
        assert watcher.reload_if_changed()
        renewed = _leaf(files)
        assert await _served_serial(port) == renewed.serial_number

        # Replaced by the operator, one file at a time: until the pair matches, the
        # loaded one keeps serving (a certificate without its key is never loaded).
        for key_first in (False, True):
            other = await tls_engine.issue_with_generated_key(
                principal=wiring.SYSTEM,
                grant=wiring.listener_grant(_NAMES),
                profile="tls-server",
                key_algorithm=KeyAlgorithm.EC_P256,
                subject=x509.Name([]),
                names=[x509.DNSName("ca.corp.internal")],
            )
            served = await _served_serial(port)
            halves = [
                (files.cert, other.certificate.public_bytes(serialization.Encoding.PEM)),
                (files.key, other.private_key_pem or b""),
            ]
            if key_first:
                halves.reverse()
            private_files.write_private(*halves[0])
            with pytest.raises(ssl.SSLError):
                watcher.reload_if_changed()
            assert await _served_serial(port) == served
            private_files.write_private(*halves[1])
            assert watcher.reload_if_changed()
            assert await _served_serial(port) == other.certificate.serial_number
    finally:
        server.close()
        await server.wait_closed()


async def test_operator_files_are_never_issued_over(tmp_path: Path) -> None:
    cert, key = tmp_path / "op.pem", tmp_path / "op.key"
    settings = load_settings(
        None, data_dir=tmp_path / "data", tls_cert_file=str(cert), tls_key_file=str(key)
    )
    files = wiring.listener_files(settings)
    assert (files.cert, files.key, files.managed) == (cert, key, False)
    assert wiring.listener_files(load_settings(None, data_dir=tmp_path / "d")).managed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"tls_cert_file": "/x.pem"}, "both tls_cert_file", id="fail/cert-only"),
        pytest.param({"tls_names": ["bad name"]}, "neither a DNS name", id="fail/bad-name"),
        pytest.param({"tls_names": ["*.corp"]}, "neither a DNS name", id="fail/wildcard"),
        pytest.param({"tls_names": []}, "tls_names", id="fail/empty"),
    ],
)
def test_bad_listener_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, **overrides)


def test_default_names() -> None:
    assert load_settings(None).tls_names == ["localhost", "127.0.0.1", "::1"]
