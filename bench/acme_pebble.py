"""Start a loopback-only Pebble (plus pebble-challtestsrv as its DNS) for bench/acme.py.

Pebble's Debian package ships no TLS certificate, so this makes a throwaway CA and a leaf
for 127.0.0.1/::1/localhost in a temporary directory. challtestsrv answers every A query
with 127.0.0.1 (and no AAAA), so Pebble's http-01 check for ``flowN.bench.internal``
reaches the bench's own listener on ``http01_port``. Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["PebbleInfo", "free_port", "missing_tools", "run_pebble"]

READY_TIMEOUT_S: Final = 15.0
STOP_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class PebbleInfo:
    """Where a started Pebble listens and which CA its HTTPS endpoint uses."""

    directory: str
    tls_ca_bundle: Path
    management_url: str
    log_path: Path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """Return a loopback port that is free right now (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_tools() -> list[str]:
    """Return the Pebble binaries that are not on PATH."""
    return [t for t in ("pebble", "pebble-challtestsrv") if shutil.which(t) is None]


def _write_tls_material(out: Path) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a loopback server cert; return (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "privca bench Pebble TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = out / "tls-ca.pem", out / "tls-cert.pem", out / "tls-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def _wait_https(url: str, ca: Path, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pebble exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=1) as resp:  # noqa: S310 - loopback https URL built here
                if resp.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"pebble not ready at {url} after {READY_TIMEOUT_S}s: {last}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def run_pebble(
    *,
    http01_port: int,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[PebbleInfo]:
    """Run Pebble and pebble-challtestsrv on 127.0.0.1 for the duration of the block.

    Args:
        http01_port: the port Pebble's VA fetches http-01 responses from (the bench listener).
        log_dir: where pebble.log and challtestsrv.log go (kept after the run).
        extra_env: PEBBLE_* overrides, e.g. {"PEBBLE_WFE_NONCEREJECT": "0"}.

    Yields:
        The directory URL, the TLS CA bundle for it and the log path.
    """
    if missing := missing_tools():
        raise RuntimeError(f"{', '.join(missing)} not found (Debian package 'pebble')")
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="privca-bench-pebble-"))
    acme_port, mgmt_port, tls_port = free_port(), free_port(), free_port()
    dns_port, dns_mgmt_port = free_port(socket.SOCK_DGRAM), free_port()
    ca, cert, key = _write_tls_material(tmp)
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{mgmt_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http01_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    config_path = tmp / "pebble-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
    env["PEBBLE_VA_NOSLEEP"] = "1"
    env.update(extra_env or {})
    pebble_log = log_dir / f"pebble-{stamp}.log"
    dns_log = log_dir / f"challtestsrv-{stamp}.log"
    dns_proc: subprocess.Popen[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        with dns_log.open("wb") as dns_out:
            dns_proc = subprocess.Popen(
                [
                    "pebble-challtestsrv",
                    "-dns01",
                    f"127.0.0.1:{dns_port}",
                    "-management",
                    f"127.0.0.1:{dns_mgmt_port}",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-defaultIPv4",
                    "127.0.0.1",
                    "-defaultIPv6",
                    "",
                ],
                stdout=dns_out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        with pebble_log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    "pebble",
                    "-config",
                    str(config_path),
                    "-dnsserver",
                    f"127.0.0.1:{dns_port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=tmp,
            )
        directory = f"https://127.0.0.1:{acme_port}/dir"
        _wait_https(directory, ca, time.monotonic() + READY_TIMEOUT_S, proc)
        yield PebbleInfo(
            directory=directory,
            tls_ca_bundle=ca,
            management_url=f"https://127.0.0.1:{mgmt_port}",
            log_path=pebble_log,
        )
    finally:
        _stop(proc)
        _stop(dns_proc)
        shutil.rmtree(tmp, ignore_errors=True)
