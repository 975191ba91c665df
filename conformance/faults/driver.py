"""Faults under load against real `privca serve` nodes: kill -9, SIGTERM, a database outage.

Usage: driver.py PRIVCA PG_BASE_URL WORK_DIR

Two nodes (A with --workers 2, B) share one fresh PostgreSQL database; threads enroll
over EST and ask OCSP on both. Cases: kill -9 of node A mid-load and a restart; SIGTERM
of node B under load; a database outage of OUTAGE_S seconds mid-load; kill -9 of a node
on SQLite. After each: every certificate a client received is stored byte for byte with
exactly one audit record, no serial repeats, the node serves again; a revocation shows in
OCSP on every node within REVOCATION_BOUND_S. Prints figures and PASS/FAIL lines.

The database outage is simulated on this run's own database (ALLOW_CONNECTIONS false and
pg_terminate_backend, then allowed again): stopping the shared PostgreSQL server would
break every other user of it. To privca both look the same: connections dropped, new ones
refused.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncpg  # the project's own driver, for the invariant queries
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

OCSP_TYPE: Final = "application/ocsp-request"
PASSWORD: Final = "faults-correct-horse"  # noqa: S105 - a throwaway test account
OUTAGE_S: Final = 4.0
REVOCATION_BOUND_S: Final = 5.0
RECOVERY_BOUND_S: Final = 5.0
OUTAGE_LOG_LINES: Final = 20  # lines other than one per refused request
THREADS: Final = 6

passed = 0
failed = 0


def check(name: str, ok: bool, why: str = "") -> None:
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}: {why}", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One `privca serve` process (and its workers) on its own ports and data dir."""

    name: str
    privca: str
    data: Path
    db_url: str | None
    extra: tuple[str, ...] = ()
    https: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.data.with_suffix(".log")

    def args(self) -> list[str]:
        db = ["--database-url", self.db_url] if self.db_url else []
        return ["--data-dir", str(self.data), *db]

    def ports(self) -> list[str]:
        return ["--https-port", str(self.https), "--http-port", str(self.http)]

    def start(self) -> float:
        """Start; return seconds until it answered HTTPS."""
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.privca, "serve", *self.args(), *self.ports(), *self.extra],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = started + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            if self.answers():
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=2)
            conn.request("GET", "/")
            ok = conn.getresponse().status == 200
            conn.close()
        except OSError:
            return False
        return ok

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            if self.wait(20) is None:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [self.privca, *args, *self.args()],
            check=True,
            capture_output=True,
            text=True,
            env=os.environ,
        ).stdout


def csr_b64(cn: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER))


@dataclass
class Load:
    """EST enrollments and OCSP queries spread over nodes from THREADS threads."""

    nodes: list[Node]
    tls: ssl.SSLContext
    ocsp_der: bytes
    received: list[bytes] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    events: list[tuple[float, str, int]] = field(default_factory=list)  # (t, kind, status)
    missing_retry_after: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, kind: str, status: int, headers: http.client.HTTPMessage | None) -> None:
        with self._lock:
            self.statuses[f"{kind} {status or 'conn'}"] += 1
            self.events.append((time.monotonic(), kind, status))
            if kind == "est" and status == 503 and (headers is None or not headers["Retry-After"]):
                self.missing_retry_after += 1

    def _worker(self, n: int) -> None:
        auth = base64.b64encode(f"dev1:{PASSWORD}".encode()).decode()
        i = 0
        while not self._stop.is_set():
            node = self.nodes[(n + i) % len(self.nodes)]
            i += 1
            if i % 3 == 0:
                self._ocsp(node)
                continue
            try:
                conn = http.client.HTTPSConnection(
                    "localhost", node.https, context=self.tls, timeout=10
                )
                conn.request(
                    "POST",
                    "/.well-known/est/simpleenroll",
                    body=csr_b64(f"fault-{n}-{i}"),
                    headers={
                        "Authorization": f"Basic {auth}",
                        "Content-Type": "application/pkcs10",
                    },
                )
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
            except (OSError, http.client.HTTPException):
                self._record("est", 0, None)
                time.sleep(0.05)
                continue
            self._record("est", resp.status, resp.headers)
            if resp.status == 200:
                leaf = pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]
                with self._lock:
                    self.received.append(leaf.public_bytes(serialization.Encoding.DER))
            elif resp.status == 503:
                time.sleep(0.1)

    def _ocsp(self, node: Node) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", node.http, timeout=10)
            conn.request(
                "POST",
                "/ocsp",
                body=self.ocsp_der,
                headers={"Content-Type": "application/ocsp-request"},
            )
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
        except (OSError, http.client.HTTPException):
            self._record("ocsp", 0, None)
            return
        status = resp.status
        if status == 200:
            status = 200 + ocsp.load_der_ocsp_response(body).response_status.value
        self._record("ocsp", status, resp.headers)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._stop.clear()
        threads = [threading.Thread(target=self._worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            self._stop.set()
            for t in threads:
                t.join()

    def figures(self, label: str) -> None:
        total = sum(self.statuses.values())
        by = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        got = len(self.received)
        print(f"  figures {label} (cumulative): {total} requests, {got} certificates; {by}")


async def _pg_rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def pg(dsn: str, sql: str) -> list[tuple[object, ...]]:
    import asyncio

    return asyncio.run(_pg_rows(dsn, sql))


def check_invariants(
    label: str, received: list[bytes], rows: Callable[[str], list[tuple[object, ...]]]
) -> None:
    stored = {bytes(r[0]) for r in rows("SELECT der FROM certificates")}  # type: ignore[call-overload]
    lost = [d for d in received if d not in stored]
    check(f"{label}-every-received-cert-stored", not lost, f"{len(lost)} missing")
    dupes = rows(
        "SELECT ca_id, serial FROM certificates GROUP BY ca_id, serial HAVING count(*) > 1"
    )
    check(f"{label}-no-duplicate-serials", not dupes, f"{len(dupes)} duplicated")
    audits = Counter(
        str(r[0]).rsplit("/", 1)[1].upper()
        for r in rows("SELECT target FROM audit_log WHERE action = 'cert.issue'")
    )
    serials = [f"{x509.load_der_x509_certificate(d).serial_number:X}" for d in received]
    bad = [s for s in serials if audits[s] != 1]
    check(f"{label}-one-audit-record-each", not bad, f"{len(bad)} without exactly one")


def non_access_lines(log: bytes) -> list[str]:
    """Return the log lines that are not aiohttp access-log lines, without their time."""
    lines = log.decode(errors="replace").splitlines()
    return [line.split(" ", 2)[-1] for line in lines if "aiohttp.access" not in line]


def ocsp_status(node: Node, req: bytes) -> str:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", node.http, timeout=5)
        conn.request(
            "POST", "/ocsp", body=req, headers={"Content-Type": "application/ocsp-request"}
        )
        resp = ocsp.load_der_ocsp_response(conn.getresponse().read())
        conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return "error"
    if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return str(resp.response_status.name)
    return str(resp.certificate_status.name)


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(serialization.Encoding.DER)


def first_ok_after(load: Load, t0: float, node_filter: str = "est") -> float | None:
    times = [t for t, kind, status in load.events if kind == node_filter and status == 200]
    later = [t - t0 for t in times if t >= t0]
    return min(later) if later else None


def postgres_cases(privca: str, base: str, work: Path) -> None:
    name = f"privca_faults_{uuid.uuid4().hex[:8]}"
    admin = base.replace("postgresql+asyncpg://", "postgresql://")
    dsn = f"{admin.rsplit('/', 1)[0]}/{name}"
    url = f"{base.rsplit('/', 1)[0]}/{name}"
    pg(admin, f'CREATE DATABASE "{name}"')
    a = Node("A", privca, work / "nodeA", url, ("--workers", "2"))
    b = Node("B", privca, work / "nodeB", url)
    try:
        a.start()
        b.start()
        a.cli("est", "user", "add", "dev1", "--password", PASSWORD)
        issuer_pem = work / "issuing.pem"
        a.cli("ca", "export", "issuing", "--out", str(issuer_pem))
        issuer = x509.load_pem_x509_certificate(issuer_pem.read_bytes())
        leaf_pem = work / "leaf.pem"
        a.cli("cert", "issue", "--san", "dns:faults.internal", "--out", str(leaf_pem))
        leaf = x509.load_pem_x509_certificate(leaf_pem.read_bytes())
        tls = ssl.create_default_context(cafile=str(a.data / "ca-bundle.pem"))
        load = Load([a, b], tls, ocsp_request(leaf, issuer))
        rows: Callable[[str], list[tuple[object, ...]]] = lambda sql: pg(dsn, sql)  # noqa: E731

        # 1. kill -9 of node A (main process of --workers 2) mid-load, then a restart.
        with load.running():
            time.sleep(3)
            a.signal(signal.SIGKILL)
            a.wait(5)
            time.sleep(1)
            restart = a.start()
            time.sleep(2)
        load.figures("pg-kill9")
        print(f"  figures pg-kill9: node A serving again {restart:.1f} s after its restart")
        check("pg-kill9-node-serves-again", a.answers())
        check_invariants("pg-kill9", load.received, rows)

        # 2. SIGTERM of node B under load: a clean exit, then a restart.
        with load.running():
            time.sleep(2)
            t0 = time.monotonic()
            b.signal(signal.SIGTERM)
            code = b.wait(30)
            took = time.monotonic() - t0
            b.start()
            time.sleep(1)
        load.figures("pg-sigterm")
        print(f"  figures pg-sigterm: node B exited {code} after {took:.1f} s")
        check("pg-sigterm-clean-exit", code == 0, f"exit {code} after {took:.1f} s")
        check("pg-sigterm-node-serves-again", b.answers())
        check_invariants("pg-sigterm", load.received, rows)

        # 3. A database outage of OUTAGE_S seconds mid-load (this run's database only).
        sizes = {n.name: n.log.stat().st_size for n in (a, b)}
        before = Counter(load.statuses)
        with load.running():
            time.sleep(2)
            pg(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            pg(
                admin,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"  # noqa: S608
                f" WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            )
            time.sleep(OUTAGE_S)
            pg(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            back = time.monotonic()
            time.sleep(3)
        during = load.statuses - before
        load.figures("pg-outage")
        recovery = first_ok_after(load, back)
        # Access-log lines (one per request, outage or not) are not counted.
        logged = {n.name: non_access_lines(n.log.read_bytes()[sizes[n.name] :]) for n in (a, b)}
        lines = {k: len(v) for k, v in logged.items()}
        print(
            f"  figures pg-outage: {OUTAGE_S:.0f} s outage; answers {dict(during)};"
            f" first enrollment {recovery if recovery is None else round(recovery, 2)} s after"
            f" the database was back; log lines {lines}"
        )
        errors = {k: v for k, v in during.items() if k.endswith(" 500") or k == "ocsp 202"}
        check("pg-outage-no-500", not errors, str(errors))
        check("pg-outage-503-has-retry-after", load.missing_retry_after == 0)
        check("pg-outage-saw-503", during.get("est 503", 0) > 0, "the outage was not observed")
        check(
            "pg-outage-recovers",
            recovery is not None and recovery <= RECOVERY_BOUND_S,
            f"first enrollment {recovery} s after",
        )
        # One line per refused request, and beyond those only a few: one per background
        # loop when storage goes and one when it is back, no retry noise.
        refusals = sum(1 for v in logged.values() for line in v if " -> 503 " in line)
        others = {k: [line for line in v if " -> 503 " not in line] for k, v in logged.items()}
        check(
            "pg-outage-one-line-per-refusal",
            refusals <= during.get("est 503", 0) + during.get("ocsp 203", 0),
            f"{refusals} refusal lines for {during.get('est 503', 0)} refusals",
        )
        check(
            "pg-outage-log-bounded",
            all(len(v) < OUTAGE_LOG_LINES for v in others.values()),
            f"{ {k: len(v) for k, v in others.items()} }; most frequent:"
            f" {Counter(others['A']).most_common(3)}",
        )
        check("pg-outage-no-traceback", b"Traceback" not in a.log.read_bytes()[sizes["A"] :])
        check_invariants("pg-outage", load.received, rows)

        # 4. A revocation reaches OCSP on every node.
        victim = x509.load_der_x509_certificate(load.received[-1])
        req = ocsp_request(victim, issuer)
        a.cli("cert", "revoke", f"{victim.serial_number:X}", "--reason", "superseded")
        t0 = time.monotonic()  # the revocation is committed when the CLI returns
        seen: dict[str, float] = {}
        while time.monotonic() - t0 < REVOCATION_BOUND_S * 2 and len(seen) < 2:
            for n in (a, b):
                if n.name not in seen and all(ocsp_status(n, req) == "REVOKED" for _ in range(3)):
                    seen[n.name] = time.monotonic() - t0
            time.sleep(0.05)
        print(f"  figures revocation: OCSP says revoked after {seen} s")
        check(
            "pg-revocation-on-every-node",
            len(seen) == 2 and max(seen.values()) <= REVOCATION_BOUND_S,
            str(seen),
        )
    finally:
        a.stop()
        b.stop()
        with contextlib.suppress(Exception):
            pg(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_case(privca: str, work: Path) -> None:
    c = Node("C", privca, work / "nodeC", None)
    try:
        c.start()
        c.cli("est", "user", "add", "dev1", "--password", PASSWORD)
        leaf_pem = work / "leafC.pem"
        c.cli("cert", "issue", "--san", "dns:faults.internal", "--out", str(leaf_pem))
        issuer_pem = work / "issuingC.pem"
        c.cli("ca", "export", "issuing", "--out", str(issuer_pem))
        leaf = x509.load_pem_x509_certificate(leaf_pem.read_bytes())
        issuer = x509.load_pem_x509_certificate(issuer_pem.read_bytes())
        tls = ssl.create_default_context(cafile=str(c.data / "ca-bundle.pem"))
        load = Load([c], tls, ocsp_request(leaf, issuer))
        with load.running():
            time.sleep(3)
            c.signal(signal.SIGKILL)
            c.wait(5)
        restart = c.start()
        load.figures("sqlite-kill9")
        print(f"  figures sqlite-kill9: serving again {restart:.1f} s after its restart")
        check("sqlite-kill9-node-serves-again", c.answers())

        def rows(sql: str) -> list[tuple[object, ...]]:
            with contextlib.closing(sqlite3.connect(c.data / "privca.db")) as db:
                return db.execute(sql).fetchall()

        check_invariants("sqlite-kill9", load.received, rows)
        check("sqlite-kill9-saw-issuance", len(load.received) > 0)
    finally:
        c.stop()


def main() -> int:
    privca, base, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    os.environ.setdefault("PRIVCA_KEY_PASSPHRASE", f"faults-passphrase-{os.getpid()}-0123456789")
    started = time.monotonic()
    try:
        postgres_cases(privca, base, work)
    except (RuntimeError, OSError, subprocess.CalledProcessError, asyncpg.PostgresError) as exc:
        check("postgres-cases", False, f"{type(exc).__name__}: {exc}")
    try:
        sqlite_case(privca, work)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        check("sqlite-case", False, f"{type(exc).__name__}: {exc}")
    print(f"  figures total: {time.monotonic() - started:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
