"""`privca serve`: its flags over the config file, and the server as a real process."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server import private_files
from server.cli import build_parser, main, serve
from server.config import ConfigError, load_settings
from tests import serve_process
from tests.support import make_csr


def _privca(*args: str) -> int:
    return main(list(args))


def test_serve_flags_override_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text('[acme]\nhttp01_port = 8888\ndns_resolver = "127.0.0.1:53"\n')
    args = build_parser().parse_args(
        [
            "serve",
            "--config",
            str(cfg),
            "--acme-resolve-all-to",
            "127.0.0.1",
            "--acme-tlsalpn01-port",
            "5001",
        ]
    )
    settings = serve.apply_acme_flags(load_settings(cfg), args)
    assert settings.acme.http01_port == 8888
    assert settings.acme.tlsalpn01_port == 5001
    assert settings.acme.resolve_all_to == "127.0.0.1"
    engine = settings.acme.to_engine()
    assert engine.validation.http01_port == 8888
    assert engine.validation.resolve_all_to == "127.0.0.1"


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(["--acme-resolve-all-to", "not-an-ip"], id="fail/resolve-all-to"),
        pytest.param(["--acme-dns-resolver", "nohostport"], id="fail/dns-resolver"),
        pytest.param(["--acme-http01-port", "70000"], id="fail/port"),
    ],
)
def test_bad_serve_flags_are_config_errors(flags: list[str]) -> None:
    args = build_parser().parse_args(["serve", *flags])
    with pytest.raises(ConfigError):
        serve.apply_acme_flags(load_settings(None), args)


def test_serve_first_start_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    https, http = serve_process.free_port(), serve_process.free_port()
    proc = serve_process.serve(data, https, http)
    try:
        banner = serve_process.wait_for(proc, "trust bundle")
        assert f"https://localhost:{https}/acme/directory" in banner
        bundle = data / "ca-bundle.pem"
        ctx = ssl.create_default_context(cafile=str(bundle))
        for host in ("localhost", "127.0.0.1"):
            with urllib.request.urlopen(
                f"https://{host}:{https}/", context=ctx, timeout=10
            ) as resp:
                assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/", timeout=10) as resp:
            assert resp.status == 200
        # Negative control: the system trust store does not know privca's root.
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(
                f"https://localhost:{https}/", context=ssl.create_default_context(), timeout=10
            )
        root_before = bundle.read_bytes()
    finally:
        serve_process.stop(proc)
    proc = serve_process.serve(data, https, http)
    try:
        serve_process.wait_for(proc, "trust bundle")
        assert bundle.read_bytes() == root_before
    finally:
        serve_process.stop(proc)
    # The CLI now writes the serve node's HTTP URL into certificates.
    csr, _ = make_csr(["dns:after.internal"])
    (tmp_path / "req.pem").write_bytes(csr)
    assert (
        _privca(
            "cert",
            "issue",
            "--data-dir",
            str(data),
            "--csr",
            str(tmp_path / "req.pem"),
            "--out",
            str(tmp_path / "leaf.pem"),
        )
        == 0
    )
    leaf = x509.load_pem_x509_certificates((tmp_path / "leaf.pem").read_bytes())[0]
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name is not None
    assert str(cdp[0].full_name[0].value).startswith(f"http://127.0.0.1:{http}/crl/")


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param(
            '[acme.directories.team]\nca = "nope"\n',
            "acme.directories.team: unknown CA 'nope'",
            id="directory-of-an-unknown-ca",
        ),
        # Checked as a stored label's are: otherwise every GET csrattrs of it would fail.
        pytest.param(
            '[est.labels.sensors]\ncsrattrs = ["1.2.840.10045.2.1=not-an-oid"]\n',
            "label sensors: csrattrs: 'not-an-oid' is not an OID",
            id="label-with-a-bad-csrattrs-oid",
        ),
    ],
)
def test_serve_refuses_a_bad_configured_resource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, error: str
) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text(config)
    args = ["serve", "--config", str(cfg), "--data-dir", str(tmp_path / "data")]
    https, http = serve_process.free_port(), serve_process.free_port()
    args += ["--https-port", str(https), "--http-port", str(http)]
    assert main(args) == 1
    assert error in capsys.readouterr().err


def _self_signed(tmp_path: Path, name: str) -> tuple[bytes, bytes, int]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, cert.serial_number


def _served_serial(port: int) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_every_serving_process_reloads_replaced_operator_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "op.pem", tmp_path / "op.key"
    first = _self_signed(tmp_path, "first")
    private_files.write_private(cert, first[0], mode=0o644)
    private_files.write_private(key, first[1])
    cfg = tmp_path / "privca.toml"
    cfg.write_text(f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n[revocation]\nworkers = 2\n')
    https, http = serve_process.free_port(), serve_process.free_port()
    proc = serve_process.serve(tmp_path / "data", https, http, "--config", str(cfg))
    try:
        serve_process.wait_for(proc, "trust bundle")
        assert _served_serial(https) == first[2]
        second = _self_signed(tmp_path, "second")
        private_files.write_private(key, second[1])
        private_files.write_private(cert, second[0], mode=0o644)
        # Both processes listen on the port (SO_REUSEPORT): once every one reloaded,
        # twenty connections in a row all see the new certificate, with no restart.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(_served_serial(https) == second[2] for _ in range(20)):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the replaced certificate was not served by every process")
        assert not (tmp_path / "data" / "tls").exists()  # never issued over the operator's
    finally:
        serve_process.stop(proc)
