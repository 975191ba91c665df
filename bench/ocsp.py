#!/usr/bin/env python3
"""OCSP throughput (wrk, 64 connections) vs OpenSSL's responder, and CRL regeneration time.

    .venv/bin/python bench/ocsp.py [--certs 100000] [--workers 2] [--duration 10] \
        [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres] \
        [--crl-sizes 100000,1000000] [--skip-ocsp] [--skip-crl]

OCSP: a fresh PostgreSQL database gets the default hierarchy and ``--certs``
real leaf certificates (5% revoked) through a bulk path (COPY), each with
its pre-signed OCSP response, as issuance would have left them. Then
``privca serve --workers N`` and ``openssl ocsp -index ... -multi 2`` (started
in a loopback-only network namespace: ``unshare -n``, readiness via
``ss -ltn``, because OpenSSL 3.0's responder binds every address) serve the
same set, and wrk (Lua scripts rotating over 1,000 distinct requests, one
thread by default: ``--threads``) measures POST and GET at 64 connections, each
for ``--duration`` seconds after a warm-up.

CRL: for each size, the same revoked entries are signed once by a bare
cryptography CertificateRevocationListBuilder (list given in one go) and once
through privca's full regeneration (read from PostgreSQL, build, sign, store).

Every load loop is bounded (wrk -d) and targets loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.ca import keys
from server.ca.status import ocsp_codec
from server.ca.status import ports as status_ports
from server.ca.types import CA, RevocationReason
from server.config import load_settings
from server.wiring import ensure_first_start, load_passphrase, open_services

ROOT = Path(__file__).resolve().parent.parent
PRIVCA = ROOT / ".venv" / "bin" / "privca"
DISTINCT = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def create_db(base_url: str) -> str:
    name = f"privca_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pg_dsn(base_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base_url.rsplit("/", 1)[0] + "/" + name


async def drop_db(base_url: str, url: str) -> None:
    conn = await asyncpg.connect(pg_dsn(base_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


# ---------------------------------------------------------------------- data set


def ca_private_key(settings: Any, ca: CA) -> Any:
    """Return a PKCS#8-backed CA's key in process: the peer (openssl ocsp) and the bare
    builder need it; privca itself only signs through its key backend."""
    key = serialization.load_pem_private_key(
        ca.key.blob, password=load_passphrase(settings, create=False)
    )
    return key, keys.signature_hash(key)  # type: ignore[arg-type]  # a CA key type


async def populate(settings: Any, count: int, revoked_fraction: float, out: Path) -> dict[str, Any]:
    """Create the hierarchy, COPY ``count`` leaves and their pre-signed responses."""
    async with open_services(settings, create=True, serving=True) as svc:
        await ensure_first_start(svc)
        ca = await svc.engine.get_ca(None)
        root = (await svc.engine.chain_of(ca))[-1]
        issuer = await svc.engine.status_issuer(ca)
        issuer_key, issuer_hash = ca_private_key(settings, ca)
        if svc.status is None:
            raise RuntimeError("no status service")
        responder = svc.status.responder
        await responder.reload()
        info = responder._cas[ca.id]
        signer = (await responder._signer(info)).key
        leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        now = datetime.now(UTC).replace(microsecond=0)
        not_after = now + timedelta(days=90)
        validity = responder.settings.validity
        certs: list[tuple[Any, ...]] = []
        responses: list[tuple[Any, ...]] = []
        index_lines: list[str] = []
        serials: list[int] = []
        started = time.perf_counter()
        for i in range(count):
            serial = random.getrandbits(127) | (1 << 64)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"h{i}.bench.internal")])
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(issuer.certificate.subject)
                .public_key(leaf_key)
                .serial_number(serial)
                .not_valid_before(now - timedelta(minutes=1))
                .not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .add_extension(issuer.aki, False)
                .sign(issuer_key, issuer_hash)
            )
            revoked = random.random() < revoked_fraction
            der = cert.public_bytes(serialization.Encoding.DER)
            certs.append(
                (
                    ca.id, format(serial, "X"), der, "tls-server", f"CN=h{i}.bench.internal",
                    f"dns:h{i}.bench.internal", now, not_after, now, "bench",
                    "revoked" if revoked else "valid", now if revoked else None,
                    "keyCompromise" if revoked else None, False,
                )
            )  # fmt: skip
            single = ocsp_codec.SingleStatus(
                cert_id=ocsp_codec.cert_id(
                    "sha1", name_der=info.name_der, key_bits=info.key_bits, serial=serial
                ),
                status="revoked" if revoked else "good",
                revoked_at=now if revoked else None,
                reason_code=1 if revoked else None,
            )
            resp = ocsp_codec.encode_response(
                signer, [single], this_update=now, next_update=now + validity
            )
            responses.append(
                (ca.id, format(serial, "X"), resp, single.status, now, now + validity, now)
            )
            exp = not_after.strftime("%y%m%d%H%M%SZ")
            if revoked:
                rev = now.strftime("%y%m%d%H%M%SZ") + ",keyCompromise"
                index_lines.append(f"R\t{exp}\t{rev}\t{serial:X}\tunknown\t/CN=h{i}.bench.internal")
            else:
                index_lines.append(f"V\t{exp}\t\t{serial:X}\tunknown\t/CN=h{i}.bench.internal")
            serials.append(serial)
        built = time.perf_counter() - started
        started = time.perf_counter()
        conn = await asyncpg.connect(pg_dsn(settings.db_url))
        try:
            await conn.copy_records_to_table(
                "certificates",
                records=certs,
                columns=[
                    "ca_id", "serial", "der", "profile", "subject", "sans", "not_before",
                    "not_after", "issued_at", "requester", "status", "revoked_at",
                    "revocation_reason", "is_ca",
                ],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "ocsp_responses",
                records=responses,
                columns=[
                    "ca_id", "serial", "der", "cert_status", "this_update", "next_update",
                    "updated_at",
                ],
            )  # fmt: skip
            total = await conn.fetchval("SELECT count(*) FROM certificates")
            # Settle the bulk load now: otherwise autovacuum/analyze of the fresh rows runs
            # during the measurement and takes CPU from whichever server is being measured.
            for table in ("certificates", "ocsp_responses"):
                await conn.execute(f"VACUUM ANALYZE {table}")
        finally:
            await conn.close()
        copied = time.perf_counter() - started
        (out / "index.txt").write_text("\n".join(index_lines) + "\n")
        (out / "index.txt.attr").write_text("unique_subject = no\n")
        (out / "issuing.pem").write_bytes(
            issuer.certificate.public_bytes(serialization.Encoding.PEM)
        )
        (out / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
        key_pem = issuer_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(out / "issuing.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        sample = random.sample(serials, min(DISTINCT, len(serials)))
        requests = [
            (
                x509_ocsp.OCSPRequestBuilder()
                .add_certificate_by_hash(
                    issuer_name_hash=info_hash(issuer.certificate.subject.public_bytes()),
                    issuer_key_hash=info.key_sha1,
                    serial_number=s,
                    algorithm=hashes.SHA1(),  # noqa: S303 - RFC 5019 CertID
                )
                .build()
                .public_bytes(serialization.Encoding.DER)
            )
            for s in sample
        ]
        return {
            "ca_id": ca.id,
            "requests": requests,
            "rows": total,
            "build_s": built,
            "copy_s": copied,
        }


def info_hash(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA1())  # noqa: S303 - RFC 5019 CertID
    h.update(data)
    return h.finalize()


# ---------------------------------------------------------------------- wrk


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b:03d}" for b in data) + '"'


def write_lua(path: Path, requests: list[bytes], method: str) -> None:
    if method == "POST":
        items = ",\n".join(
            f'  wrk.format("POST", "/ocsp", {{["Content-Type"]="application/ocsp-request"}}, '
            f"{lua_string(r)})"
            for r in requests
        )
    else:
        items = ",\n".join(
            '  wrk.format("GET", "/ocsp/'
            + urllib.parse.quote(base64.b64encode(r).decode(), safe="")
            + '")'
            for r in requests
        )
    path.write_text(
        "local reqs = {}\n"
        "local n = 0\n"
        "init = function(args)\n"
        f"  reqs = {{\n{items}\n  }}\n"
        "  n = math.random(#reqs)\n"
        "end\n"
        "request = function()\n"
        "  n = n % #reqs + 1\n"
        "  return reqs[n]\n"
        "end\n"
    )


def run_wrk(
    url: str, script: Path, *, duration: int, connections: int, threads: int, prefix: list[str]
) -> dict[str, Any]:
    cmd = [
        *prefix, "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
        "--latency", "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    if not rps:
        text += out.stderr
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "raw": text if not rps else "",
    }


def check_answer(url: str, body: bytes, *, prefix: list[str]) -> str:
    """POST one request with curl and return the certificate status it reports."""
    out = subprocess.run(
        [
            *prefix, "curl", "-sf", "--data-binary", "@-", "-H",
            "Content-Type: application/ocsp-request", url,
        ],
        input=body, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    try:
        resp = x509_ocsp.load_der_ocsp_response(out.stdout)
        return str(resp.certificate_status.name)
    except ValueError:
        return f"bad response ({out.returncode})"


# ---------------------------------------------------------------------- servers


def start_privca(tmp: Path, db_url: str, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port, https = free_port(), free_port()
    log = (tmp / "privca.log").open("wb")
    proc = subprocess.Popen(
        [
            str(PRIVCA), "serve", "--data-dir", str(tmp / "data"), "--database-url", db_url,
            "--http-port", str(port), "--https-port", str(https), "--workers", str(workers),
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "trust bundle" in (tmp / "privca.log").read_text(errors="replace"):
            # every worker process binds the port itself (SO_REUSEPORT): wait for all of them
            ss = subprocess.run(
                ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False
            )
            if len(ss.stdout.splitlines()) >= workers:
                return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError("privca did not start:\n" + (tmp / "privca.log").read_text())


def start_openssl(tmp: Path, multi: int) -> tuple[subprocess.Popen[bytes], int]:
    port = 8888
    script = (
        "ip link set lo up && exec openssl ocsp -index index.txt -port "
        f"{port} -rsigner issuing.pem -rkey issuing.key -CA issuing.pem -multi {multi} -ndays 4"
    )
    # No new session here: `openssl ocsp -multi` calls setsid() itself and exits if it fails.
    proc = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", script],
        cwd=tmp,
        stdout=(tmp / "openssl.log").open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ss = subprocess.run(
            ["nsenter", "-t", str(proc.pid), "-n", "ss", "-ltn"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if f":{port} " in ss.stdout:
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError("openssl ocsp did not start:\n" + (tmp / "openssl.log").read_text())


def stop(proc: subprocess.Popen[bytes], *, group: bool = True) -> None:
    """Stop a server this script started: its process group, or it and its children."""
    if proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=5)
    if not group:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


# ---------------------------------------------------------------------- CRL


def make_entries(n: int) -> list[status_ports.RevokedEntry]:
    now = datetime.now(UTC).replace(microsecond=0)
    reasons = [None, RevocationReason.KEY_COMPROMISE, RevocationReason.SUPERSEDED]
    return [
        status_ports.RevokedEntry(
            serial=random.getrandbits(127) | (1 << 64),
            revoked_at=now - timedelta(seconds=i % 86400),
            reason=reasons[i % 3],
        )
        for i in range(n)
    ]


def bare_builder(
    issuer: Any, key: Any, hash_: Any, entries: list[status_ports.RevokedEntry]
) -> tuple[float, int]:
    """The baseline: RevokedCertificateBuilder per entry + one CRL builder given the list."""
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    flags = {
        None: [],
        RevocationReason.KEY_COMPROMISE: [
            x509.Extension(
                x509.CRLReason.oid, False, x509.CRLReason(x509.ReasonFlags.key_compromise)
            )
        ],
        RevocationReason.SUPERSEDED: [
            x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(x509.ReasonFlags.superseded))
        ],
    }
    revoked = [
        x509.RevokedCertificateBuilder(
            serial_number=e.serial, revocation_date=e.revoked_at, extensions=flags[e.reason]
        ).build()
        for e in entries
    ]
    crl = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.certificate.subject,
        last_update=now,
        next_update=now + timedelta(days=1),
        revoked_certificates=revoked,
    ).sign(key, hash_)
    der = crl.public_bytes(serialization.Encoding.DER)
    return time.perf_counter() - started, len(der)


async def crl_bench(base_url: str, sizes: list[int], tmp: Path) -> list[dict[str, Any]]:
    results = []
    for size in sizes:
        url = await create_db(base_url)
        try:
            settings = load_settings(None, data_dir=tmp / f"crl{size}", database_url=url)
            async with open_services(settings, create=True, serving=True) as svc:
                await ensure_first_start(svc)
                ca = await svc.engine.get_ca(None)
                issuer = await svc.engine.status_issuer(ca)
                issuer_key, issuer_hash = ca_private_key(settings, ca)
                entries = make_entries(size)
                conn = await asyncpg.connect(pg_dsn(url))
                try:
                    now = datetime.now(UTC)
                    reason_name = {
                        None: "unspecified",
                        RevocationReason.KEY_COMPROMISE: "keyCompromise",
                        RevocationReason.SUPERSEDED: "superseded",
                    }
                    await conn.copy_records_to_table(
                        "certificates",
                        records=[
                            (ca.id, format(e.serial, "X"), b"\x00", "tls-server", "", "", now,
                             now + timedelta(days=90), now, "bench", "revoked", e.revoked_at,
                             reason_name[e.reason], False)
                            for e in entries
                        ],
                        columns=[
                            "ca_id", "serial", "der", "profile", "subject", "sans", "not_before",
                            "not_after", "issued_at", "requester", "status", "revoked_at",
                            "revocation_reason", "is_ca",
                        ],
                    )  # fmt: skip
                    await conn.execute("ANALYZE certificates")
                finally:
                    await conn.close()
                bare_s, bare_len = bare_builder(issuer, issuer_key, issuer_hash, entries)
                if svc.status is None:
                    raise RuntimeError("no status service")
                started = time.perf_counter()
                record = await svc.status.crls.regenerate(ca)
                privca_s = time.perf_counter() - started
                if record is None or len(x509.load_der_x509_crl(record.der)) != size:
                    raise RuntimeError("the regenerated CRL does not hold every entry")
                # Steady state: one more revocation, then the next full CRL (what every
                # debounced or scheduled regeneration does once the process has run one).
                extra = make_entries(1)[0]
                conn = await asyncpg.connect(pg_dsn(url))
                try:
                    await conn.execute(
                        "INSERT INTO certificates (ca_id, serial, der, profile, subject, sans, "
                        "not_before, not_after, issued_at, requester, status, revoked_at, "
                        "revocation_reason, is_ca) VALUES ($1, $2, '\\x00', 'tls-server', '', '', "
                        "now(), now() + interval '90 days', now(), 'bench', 'revoked', now(), "
                        "'keyCompromise', false)",
                        ca.id,
                        format(extra.serial, "X"),
                    )
                finally:
                    await conn.close()
                started = time.perf_counter()
                again = await svc.status.crls.regenerate(ca)
                warm_s = time.perf_counter() - started
                if again is None or len(x509.load_der_x509_crl(again.der)) != size + 1:
                    raise RuntimeError("the next CRL does not hold the new revocation")
                results.append(
                    {
                        "entries": size,
                        "bare_builder_s": round(bare_s, 2),
                        "privca_first_s": round(privca_s, 2),
                        "ratio_first": round(privca_s / bare_s, 2),
                        "privca_next_s": round(warm_s, 2),
                        "ratio_next": round(warm_s / bare_s, 2),
                        "crl_bytes": len(record.der),
                        "bare_crl_bytes": bare_len,
                    }
                )
                del entries
        finally:
            await drop_db(base_url, url)
    return results


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--certs", type=int, default=100_000)
    ap.add_argument("--revoked-fraction", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--openssl-multi", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    # One wrk thread: 64 connections need far less than a core, and on a 2-core machine
    # a second load thread only takes CPU from the server under test (any of them).
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--crl-sizes", default="100000,1000000")
    ap.add_argument("--skip-ocsp", action="store_true")
    ap.add_argument("--skip-crl", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if shutil.which("wrk") is None and not args.skip_ocsp:
        raise SystemExit("wrk is not installed")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="privca-ocsp-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if not args.skip_ocsp:
            report["ocsp"] = asyncio.run(ocsp_part(args, tmp))
        if not args.skip_crl:
            sizes = [int(s) for s in args.crl_sizes.split(",") if s]
            report["crl"] = asyncio.run(crl_bench(args.pg_url, sizes, tmp))
    print_report(report, args)
    if args.json:
        print(json.dumps(report))


async def ocsp_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    db_url = await create_db(args.pg_url)
    try:
        settings = load_settings(None, data_dir=tmp / "data", database_url=db_url)
        data = await populate(settings, args.certs, args.revoked_fraction, tmp)
        print(
            f"populated {data['rows']} certificates (built+pre-signed {data['build_s']:.1f} s, "
            f"COPY {data['copy_s']:.1f} s)",
            flush=True,
        )
        requests: list[bytes] = data["requests"]
        for method in ("POST", "GET"):
            write_lua(tmp / f"{method.lower()}.lua", requests, method)
        results: dict[str, Any] = {"certs": data["rows"], "workers": args.workers}
        proc, port = await asyncio.to_thread(start_privca, tmp, db_url, args.workers)
        try:
            url = f"http://127.0.0.1:{port}"
            results["privca_check"] = check_answer(url + "/ocsp", requests[0], prefix=[])
            for method in ("POST", "GET"):
                script = tmp / f"{method.lower()}.lua"
                # warm-up: every distinct request once into each worker's cache
                run_wrk(url, script, duration=5, connections=args.connections,
                        threads=args.threads, prefix=[])  # fmt: skip
                results[f"privca_{method}"] = run_wrk(
                    url, script, duration=args.duration, connections=args.connections,
                    threads=args.threads, prefix=[],
                )  # fmt: skip
        finally:
            stop(proc)
        # OpenSSL 3.0's responder stops answering for good once a connection closes
        # without a request (wrk does that at the end of a run): a fresh one per method.
        for method in ("POST", "GET"):
            oproc, oport = await asyncio.to_thread(start_openssl, tmp, args.openssl_multi)
            try:
                prefix = ["nsenter", "-t", str(oproc.pid), "-n"]
                url = f"http://127.0.0.1:{oport}"
                if method == "POST":
                    results["openssl_check"] = check_answer(url + "/", requests[0], prefix=prefix)
                script = tmp / f"openssl_{method.lower()}.lua"
                text = (tmp / f"{method.lower()}.lua").read_text()
                text = text.replace('"/ocsp/', '"/').replace('"/ocsp"', '"/"')
                script.write_text(text)
                results[f"openssl_{method}"] = run_wrk(
                    url, script, duration=args.duration, connections=args.connections,
                    threads=args.threads, prefix=prefix,
                )  # fmt: skip
            finally:
                stop(oproc, group=False)
        return results
    finally:
        await drop_db(args.pg_url, db_url)


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    if "ocsp" in report:
        o = report["ocsp"]
        print(
            f"\n## OCSP ({o['certs']} certificates in PostgreSQL, wrk -t{args.threads} "
            f"-c{args.connections} -d{args.duration}s, 1,000 distinct requests)\n"
        )
        print(f"checks: privca says {o['privca_check']}, openssl says {o['openssl_check']}\n")
        print("| server | method | responses/s | p99 ms | non-2xx | socket errors |")
        print("|---|---|---:|---:|---:|---|")
        for server in ("privca", "openssl"):
            for method in ("POST", "GET"):
                r = o[f"{server}_{method}"]
                label = (
                    f"privca ({o['workers']} worker processes)"
                    if server == "privca"
                    else f"openssl ocsp -multi {args.openssl_multi}"
                )
                print(
                    f"| {label} | {method} | {r['rps']:,.0f} | {r['p99_ms']} | {r['non_2xx']} | "
                    f"{r['socket_errors'] or '-'} |"
                )
                if r["raw"]:
                    print(r["raw"])
        for method in ("POST", "GET"):
            base = o[f"openssl_{method}"]["rps"]
            if base:
                print(f"\n{method}: privca / openssl = {o[f'privca_{method}']['rps'] / base:.1f}x")
    if "crl" in report:
        print("\n## CRL regeneration (PostgreSQL, P-256 issuing CA)\n")
        print(
            "First = first regeneration in a process (reads every revocation from PostgreSQL);"
            "\nnext = the following one after one more revocation (reads only new ones).\n"
        )
        print(
            "| revoked entries | bare builder s | privca first s (ratio) | privca next s (ratio) |"
        )
        print("|---:|---:|---:|---:|")
        for r in report["crl"]:
            print(
                f"| {r['entries']:,} | {r['bare_builder_s']} | {r['privca_first_s']} "
                f"({r['ratio_first']}x) | {r['privca_next_s']} ({r['ratio_next']}x) |"
            )


if __name__ == "__main__":
    main()
