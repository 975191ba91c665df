"""The privca command line against a data dir, and `privca serve` as a real process."""

from __future__ import annotations

import os
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

from server.cli import main
from tests.support import make_csr, openssl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _privca(*args: str) -> int:
    return main(list(args))


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    # Nothing works before the data dir exists, with a clear message.
    assert _privca("cert", "list", "--data-dir", data) == 2
    assert "run `privca serve` first" in capsys.readouterr().err
    assert _privca("ca", "create-root", "--data-dir", data, "root") == 0
    assert (
        _privca(
            "ca",
            "create-sub",
            "--data-dir",
            data,
            "issuing",
            "--parent",
            "root",
            "--path-len",
            "0",
            "--key-type",
            "ec-p384",
        )
        == 0
    )
    assert (tmp_path / "data" / "ca-key.passphrase").stat().st_mode & 0o777 == 0o600
    csr, _ = make_csr(["dns:cli.internal"])
    (tmp_path / "req.pem").write_bytes(csr)
    out = tmp_path / "leaf.pem"
    assert (
        _privca(
            "cert",
            "issue",
            "--data-dir",
            data,
            "--csr",
            str(tmp_path / "req.pem"),
            "--profile",
            "tls-server",
            "--out",
            str(out),
        )
        == 0
    )
    certs = x509.load_pem_x509_certificates(out.read_bytes())
    assert len(certs) == 2  # leaf + issuing, no root
    capsys.readouterr()
    assert _privca("ca", "export", "--data-dir", data, "root") == 0
    (tmp_path / "root.pem").write_text(capsys.readouterr().out)
    result = openssl(
        "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(out), str(out)
    )
    assert result.returncode == 0, result.stderr
    serial = format(certs[0].serial_number, "X")
    assert _privca("cert", "list", "--data-dir", data, "--search", "cli.internal") == 0
    assert serial in capsys.readouterr().out
    assert _privca("cert", "revoke", "--data-dir", data, serial, "--reason", "keyCompromise") == 0
    assert _privca("cert", "revoke", "--data-dir", data, serial) == 1
    assert "already revoked" in capsys.readouterr().err
    assert _privca("crl", "generate", "--data-dir", data, "--out", str(tmp_path / "c.crl")) == 0
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "c.crl"), "-noout", "-text")
    assert serial.encode() in text.stdout.replace(b":", b"").upper()
    capsys.readouterr()
    assert _privca("cert", "show", "--data-dir", data, serial) == 0
    assert '"status": "revoked"' in capsys.readouterr().out
    assert _privca("audit", "--data-dir", data) == 0
    log = capsys.readouterr().out
    for action in ("ca.create-root", "ca.create-sub", "cert.issue", "cert.revoke", "crl.generate"):
        assert action in log
    assert _privca("ca", "list", "--data-dir", data) == 0
    listing = capsys.readouterr().out
    assert "issuing" in listing
    assert "ec-p384" in listing
    # Generated-key issuance with a free-form device subject.
    assert (
        _privca(
            "cert",
            "issue",
            "--data-dir",
            data,
            "--profile",
            "device",
            "--subject",
            "CN=fire-sensor-123,serialNumber=XJ-9",
            "--key-out",
            str(tmp_path / "dev.key"),
            "--out",
            str(tmp_path / "dev.pem"),
        )
        == 0
    )
    assert (tmp_path / "dev.key").stat().st_mode & 0o777 == 0o600
    dev = x509.load_pem_x509_certificates((tmp_path / "dev.pem").read_bytes())[0]
    assert dev.subject.rfc4514_string() == "CN=fire-sensor-123,2.5.4.5=XJ-9"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["cert", "issue", "--profile", "nope", "--san", "dns:a.internal"],
            "unknown profile",
            id="fail/unknown-profile",
        ),
        pytest.param(
            ["cert", "issue", "--ca", "ghost", "--san", "dns:a.internal"],
            "unknown CA",
            id="fail/unknown-ca",
        ),
        pytest.param(
            ["cert", "issue", "--san", "dns:a.internal", "--days", "400"],
            "exceeds the maximum",
            id="fail/too-long",
        ),
        pytest.param(
            ["ca", "create-sub", "x", "--parent", "issuing"],
            "pathLenConstraint is 0",
            id="fail/below-issuing",
        ),
        pytest.param(["cert", "revoke", "ABCDEF"], "no certificate", id="fail/unknown-serial"),
        pytest.param(
            ["cert", "issue", "--csr", "CSRFILE"], "not a valid PKCS#10", id="fail/garbage-csr"
        ),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    data = str(tmp_path / "data")
    assert _privca("ca", "create-root", "--data-dir", data, "root") == 0
    assert (
        _privca(
            "ca", "create-sub", "--data-dir", data, "issuing", "--parent", "root", "--path-len", "0"
        )
        == 0
    )
    (tmp_path / "garbage.csr").write_text("hello")
    args = [a.replace("CSRFILE", str(tmp_path / "garbage.csr")) for a in args]
    capsys.readouterr()
    assert _privca(*args[:2], "--data-dir", data, *args[2:]) == 1
    assert message in capsys.readouterr().err


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
