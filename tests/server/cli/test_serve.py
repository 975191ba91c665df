"""`privca serve`: its flags over the config file, and the server as a real process."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from server.cli import build_parser, main, serve
from server.config import ConfigError, load_settings
from tests.support import make_csr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _wait_for(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if marker in line:
            return seen
    raise AssertionError(f"server did not print {marker!r}:\n{seen}")


def _serve(data: Path, https: int, http: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--data-dir",
            str(data),
            "--https-port",
            str(https),
            "--http-port",
            str(http),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=20)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0


def test_serve_first_start_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    https, http = _free_port(), _free_port()
    proc = _serve(data, https, http)
    try:
        banner = _wait_for(proc, "trust bundle")
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
        _stop(proc)
    proc = _serve(data, https, http)
    try:
        _wait_for(proc, "trust bundle")
        assert bundle.read_bytes() == root_before
    finally:
        _stop(proc)
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


def test_serve_refuses_a_directory_of_an_unknown_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text('[acme.directories.team]\nca = "nope"\n')
    args = ["serve", "--config", str(cfg), "--data-dir", str(tmp_path / "data")]
    args += ["--https-port", str(_free_port()), "--http-port", str(_free_port())]
    assert main(args) == 1
    assert "acme.directories.team: unknown CA 'nope'" in capsys.readouterr().err
