"""Faults under load against real `privca serve` nodes: kill -9, SIGTERM, PostgreSQL restarts.

Usage: driver.py PRIVCA PG_BIN_DIR WORK_DIR

The run starts its own PostgreSQL cluster (initdb into a private directory, a free port,
trust auth on loopback; as root the cluster runs as the `postgres` OS user) so that it
can stop and restart the server mid-load without touching the shared one. Three nodes
(A with --workers 2, B, C) share its database. Threads enroll over EST, order over ACME
(certbot's `acme` library, http-01 answered by this driver) and ask OCSP, spread over
every node. Cases: kill -9 of node A mid-load and a restart; SIGTERM of node B under
load; `pg_ctl stop -m fast` and `-m immediate` for OUTAGE_S[mode] seconds mid-load, then
start; a nonce sent to two nodes at once, NONCE_RACES times; a revocation on each node
in turn (one new CRL each, served by every node, OCSP on every node); kill -9 of a node
on SQLite. After each: the invariants in invariants.py (every certificate a client
received is stored byte for byte with exactly one audit record, no serial twice), no
500, and every node serves again (after an outage without a restart). Prints figures
and PASS/FAIL lines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import acme.client
import acme.errors
import acme.jws
import acme.messages
import asyncpg  # the project's own driver, for the invariant queries
import josepy
import requests
from acme import challenges
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conformance.faults import invariants as inv

PASSWORD: Final = "faults-correct-horse"  # noqa: S105 - a throwaway test account
# The acceptance case: PostgreSQL stopped 8 s under load (fast stop); the
# immediate stop (crash recovery on start) is shorter to bound the run.
OUTAGE_S: Final = {"fast": 8.0, "immediate": 4.0}
REVOCATION_BOUND_S: Final = 5.0
RECOVERY_BOUND_S: Final = 5.0
# A revocation marks the CRL dirty; a node regenerates after the debounce (2 s) on its
# next tick (1 s poll); a node serving CRLs re-reads the newest after 1 s.
CRL_BOUND_S: Final = 6.0
CRL_SETTLE_S: Final = 3.0  # ticks of every node after the new CRL: a second one would show
OUTAGE_LOG_LINES: Final = 20  # lines other than one per refused request
EST_THREADS: Final = 4
ACME_THREADS: Final = 3
NONCE_RACES: Final = 50
DOMAIN: Final = "faults.internal"

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(cmd: list[str]) -> list[str]:
    """Run PostgreSQL's tools as the postgres OS user when root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PgCluster:
    """A private PostgreSQL cluster this run may stop and start at will."""

    bin: Path
    root: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = as_postgres([str(self.bin / tool), *args])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args[:3])}: {done.stdout}{done.stderr}")

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        data = str(self.root / "data")
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> float:
        """Start; return the seconds it took (crash recovery after an immediate stop)."""
        started = time.monotonic()
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c max_connections=300 -c fsync=on"
        )
        data, log = str(self.root / "data"), str(self.root / "pg.log")
        self._run("pg_ctl", "-D", data, "-l", log, "-o", opts, "-w", "-t", "60", "start")
        return time.monotonic() - started

    def stop(self, mode: str) -> float:
        started = time.monotonic()
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "-t", "60", "stop")
        return time.monotonic() - started


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

    @property
    def directory(self) -> str:
        return f"https://localhost:{self.https}/acme/directory"

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

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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


def make_csr(cn: str, *, dns: str | None = None) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if dns is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


class Http01:
    """Answers http-01 validations for every node (they all resolve names to 127.0.0.1)."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.path.rsplit("/", 1)[-1]
                body = answers.get(token, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def deadline(seconds: float) -> datetime:
    # acme.client compares deadlines with a naive local datetime.now().
    return datetime.now() + timedelta(seconds=seconds)  # noqa: DTZ005


@dataclass
class Acme:
    """An ACME account on one node, driven by certbot's `acme` library."""

    node: Node
    cafile: str
    http01: Http01
    on_response: Callable[[requests.Response], None] | None = None
    client: acme.client.ClientV2 | None = None

    def connect(self) -> acme.client.ClientV2:
        if self.client is None:
            key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
            net = acme.client.ClientNetwork(
                key, alg=josepy.ES256, verify_ssl=self.cafile, user_agent="privca-faults"
            )
            if self.on_response is not None:
                hook = self.on_response
                net.session.hooks["response"].append(lambda r, *_a, **_k: hook(r))
            directory = acme.client.ClientV2.get_directory(self.node.directory, net)
            client = acme.client.ClientV2(directory, net)
            client.new_account(
                acme.messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
            self.client = client
        return self.client

    def order(self, name: str) -> list[x509.Certificate]:
        """Order a certificate for one name over http-01; return the chain, leaf first."""
        client = self.connect()
        csr = make_csr(name, dns=name).public_bytes(serialization.Encoding.PEM)
        order = client.new_order(csr)
        for authz in order.authorizations:
            challb = next(
                c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)
            )
            response, validation = challb.chall.response_and_validation(client.net.key)
            self.http01.answers[challb.chall.encode("token")] = validation
            client.answer_challenge(challb, response)
        done = client.poll_and_finalize(order, deadline(30))
        return x509.load_pem_x509_certificates(done.fullchain_pem.encode())


ACME_FAILURES: Final = (acme.errors.Error, acme.messages.Error, requests.RequestException)


@dataclass
class Load:
    """EST enrollments, ACME orders and OCSP queries spread over nodes from threads."""

    nodes: list[Node]
    tls: ssl.SSLContext
    cafile: str
    http01: Http01
    ocsp_der: bytes
    received: list[bytes] = field(default_factory=list)
    issued: Counter[str] = field(default_factory=Counter)  # certificates by protocol
    statuses: Counter[str] = field(default_factory=Counter)
    events: list[tuple[float, str, int]] = field(default_factory=list)  # (t, kind, status)
    missing_retry_after: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _orders: int = 0

    def _record(
        self, kind: str, status: int, headers: Any = None, *, label: str | None = None
    ) -> None:
        with self._lock:
            self.statuses[f"{kind} {label or status or 'conn'}"] += 1
            self.events.append((time.monotonic(), kind, status))
            if status == 503 and (headers is None or not headers.get("Retry-After")):
                self.missing_retry_after += 1

    def _keep(self, kind: str, der: bytes) -> None:
        with self._lock:
            self.received.append(der)
            self.issued[kind] += 1

    def _est_worker(self, n: int) -> None:
        auth = base64.b64encode(f"dev1:{PASSWORD}".encode()).decode()
        i = 0
        while not self._stop.is_set():
            node = self.nodes[(n + i) % len(self.nodes)]
            i += 1
            if i % 3 == 0:
                self._ocsp(node)
                continue
            csr = make_csr(f"fault-{n}-{i}").public_bytes(serialization.Encoding.DER)
            try:
                conn = http.client.HTTPSConnection(
                    "localhost", node.https, context=self.tls, timeout=10
                )
                conn.request(
                    "POST",
                    "/.well-known/est/simpleenroll",
                    body=base64.b64encode(csr),
                    headers={
                        "Authorization": f"Basic {auth}",
                        "Content-Type": "application/pkcs10",
                    },
                )
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
            except (OSError, http.client.HTTPException):
                self._record("est", 0)
                time.sleep(0.05)
                continue
            self._record("est", resp.status, resp.headers)
            if resp.status == 200:
                leaf = pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]
                self._keep("est", leaf.public_bytes(serialization.Encoding.DER))
            elif resp.status == 503:
                time.sleep(0.1)

    def _acme_worker(self, n: int) -> None:
        def seen(resp: requests.Response) -> None:
            self._record("acme", resp.status_code, resp.headers)

        agent = Acme(self.nodes[n % len(self.nodes)], self.cafile, self.http01, seen)
        while not self._stop.is_set():
            with self._lock:
                self._orders += 1
                name = f"o{self._orders}-t{n}.{DOMAIN}"
            try:
                cert = agent.order(name)[0]
            except requests.ConnectionError:
                self._record("acme", 0)
                time.sleep(0.2)
                continue
            except ACME_FAILURES:
                time.sleep(0.2)  # the status was recorded by the hook
                continue
            self._keep("acme", cert.public_bytes(serialization.Encoding.DER))

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
            self._record("ocsp", 0)
            return
        if resp.status != 200:
            self._record("ocsp", resp.status, resp.headers)
            return
        answer = ocsp.load_der_ocsp_response(body).response_status.name
        self._record("ocsp", 200, resp.headers, label=answer)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._stop.clear()
        threads = [
            threading.Thread(target=self._est_worker, args=(n,)) for n in range(EST_THREADS)
        ] + [threading.Thread(target=self._acme_worker, args=(n,)) for n in range(ACME_THREADS)]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            self._stop.set()
            for t in threads:
                t.join()

    def figures(self, label: str, since: Counter[str] | None = None) -> Counter[str]:
        """Print requests and answers by status (this phase's, when `since` is given)."""
        phase = self.statuses - since if since is not None else self.statuses
        total = sum(phase.values())
        by = ", ".join(f"{k}: {v}" for k, v in sorted(phase.items()))
        certs = ", ".join(f"{k} {v}" for k, v in sorted(self.issued.items()))
        print(f"  figures {label}: {total} requests; {by}; certificates so far: {certs}")
        return phase

    def first_ok_after(self, t0: float, kind: str, status: int) -> float | None:
        later = [t - t0 for t, k, s in self.events if k == kind and s == status and t >= t0]
        return min(later) if later else None


async def _pg_rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def pg(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    return asyncio.run(_pg_rows(dsn, sql))


Rows = Callable[[str], list[tuple[Any, ...]]]


def check_invariants(label: str, received: list[bytes], rows: Rows) -> None:
    stored = [bytes(r[0]) for r in rows("SELECT der FROM certificates")]
    lost = inv.lost_certificates(received, stored)
    check(f"{label}-every-received-cert-stored", not lost, f"{len(lost)} missing")
    serials = [(str(r[0]), str(r[1])) for r in rows("SELECT ca_id, serial FROM certificates")]
    dupes = inv.duplicate_serials(received, serials)
    check(f"{label}-no-duplicate-serials", not dupes, f"{dupes[:5]}")
    audit = [
        (str(r[0]), str(r[1]))
        for r in rows(f"SELECT action, target FROM audit_log WHERE action = '{inv.ISSUE_ACTION}'")  # noqa: S608
    ]
    bad = inv.without_one_audit_record(received, audit)
    check(f"{label}-one-audit-record-each", not bad, f"{len(bad)} without exactly one: {bad[:5]}")


def check_no_500(label: str, phase: Counter[str]) -> None:
    errors = {k: v for k, v in phase.items() if k.endswith((" 500", "INTERNAL_ERROR"))}
    check(f"{label}-no-500", not errors, str(errors))


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


def crl_rows(rows: Rows) -> list[inv.CrlRow]:
    return [
        inv.CrlRow(
            str(ca_id),
            int(number),
            frozenset(e.serial_number for e in x509.load_der_x509_crl(bytes(der))),
        )
        for ca_id, number, der in rows("SELECT ca_id, number, der FROM crls")
    ]


def crl_path(cert: x509.Certificate) -> str:
    """Return the path of the certificate's CRL distribution point (served on every node)."""
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = str(points[0].full_name[0].value) if points[0].full_name else ""
    return urllib.parse.urlsplit(url).path


def served_crl(node: Node, path: str) -> x509.CertificateRevocationList | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", node.http, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return x509.load_der_x509_crl(body) if resp.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None


def crl_number(crl: x509.CertificateRevocationList | None) -> int | None:
    if crl is None:
        return None
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def kill9_case(a: Node, nodes: list[Node], load: Load, rows: Rows) -> None:
    """Kill -9 node A (main process of --workers 2) mid-load, then restart it."""
    before = Counter(load.statuses)
    with load.running():
        time.sleep(3)
        a.signal(signal.SIGKILL)
        a.wait(5)
        time.sleep(1)
        restart = a.start()
        time.sleep(2)
    phase = load.figures("pg-kill9", before)
    print(f"  figures pg-kill9: node A serving again {restart:.1f} s after its restart")
    check("pg-kill9-node-serves-again", a.answers())
    check_no_500("pg-kill9", phase)
    check_invariants("pg-kill9", load.received, rows)


def sigterm_case(b: Node, load: Load, rows: Rows) -> None:
    """SIGTERM node B under load: a clean exit, then a restart."""
    before = Counter(load.statuses)
    with load.running():
        time.sleep(2)
        t0 = time.monotonic()
        b.signal(signal.SIGTERM)
        code = b.wait(30)
        took = time.monotonic() - t0
        b.start()
        time.sleep(1)
    phase = load.figures("pg-sigterm", before)
    print(f"  figures pg-sigterm: node B exited {code} after {took:.1f} s")
    check("pg-sigterm-clean-exit", code == 0, f"exit {code} after {took:.1f} s")
    check("pg-sigterm-node-serves-again", b.answers())
    check_no_500("pg-sigterm", phase)
    check_invariants("pg-sigterm", load.received, rows)


def outage_case(
    label: str, mode: str, cluster: PgCluster, nodes: list[Node], load: Load, rows: Rows
) -> None:
    """Stop PostgreSQL (`pg_ctl stop -m MODE`) mid-load for OUTAGE_S[MODE] seconds, then start."""
    assert all(n.proc is not None for n in nodes)
    pids = {n.name: n.proc.pid for n in nodes if n.proc is not None}
    sizes = {n.name: n.log.stat().st_size for n in nodes}
    before = Counter(load.statuses)
    missing_before = load.missing_retry_after
    with load.running():
        time.sleep(2)
        down = time.monotonic()
        stopping = cluster.stop(mode)
        time.sleep(OUTAGE_S[mode])
        starting = cluster.start()
        back = time.monotonic()
        time.sleep(4)
    phase = load.figures(label, before)
    est = load.first_ok_after(back, "est", 200)
    order = load.first_ok_after(back, "acme", 201)
    # Access-log lines (one per request, outage or not) are not counted.
    logged = {n.name: non_access_lines(n.log.read_bytes()[sizes[n.name] :]) for n in nodes}
    print(
        f"  figures {label}: PostgreSQL down {back - down:.1f} s (stop {stopping:.1f} s,"
        f" start {starting:.1f} s); recovery: first EST enrollment {_secs(est)} s and first"
        f" ACME 201 {_secs(order)} s after it was back; log lines"
        f" { {k: len(v) for k, v in logged.items()} }"
    )
    check_no_500(label, phase)
    check(
        f"{label}-503-has-retry-after",
        load.missing_retry_after == missing_before,
        f"{load.missing_retry_after - missing_before} without",
    )
    check(f"{label}-saw-503", phase.get("est 503", 0) > 0, "the outage was not observed")
    check(
        f"{label}-recovers",
        est is not None and est <= RECOVERY_BOUND_S and order is not None,
        f"first enrollment {est} s, first ACME 201 {order} s after",
    )
    check(
        f"{label}-serves-without-restart",
        all(n.running() and n.proc is not None and n.proc.pid == pids[n.name] for n in nodes)
        and all(n.answers() for n in nodes),
    )
    # One line per refused request, and beyond those only a few: one per background
    # loop when storage goes and one when it is back, no retry noise.
    refused = phase.get("est 503", 0) + phase.get("acme 503", 0) + phase.get("ocsp TRY_LATER", 0)
    refusals = sum(1 for v in logged.values() for line in v if " -> 503 " in line)
    others = {k: [line for line in v if " -> 503 " not in line] for k, v in logged.items()}
    check(
        f"{label}-one-line-per-refusal",
        refusals <= refused,
        f"{refusals} refusal lines for {refused} refusals",
    )
    check(
        f"{label}-log-bounded",
        all(len(v) < OUTAGE_LOG_LINES for v in others.values()),
        f"{ {k: len(v) for k, v in others.items()} }; most frequent:"
        f" {[Counter(v).most_common(3) for v in others.values()]}",
    )
    tracebacks = [n.name for n in nodes if b"Traceback" in n.log.read_bytes()[sizes[n.name] :]]
    check(f"{label}-no-traceback", not tracebacks, f"in the log of {tracebacks}")
    check_invariants(label, load.received, rows)


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def race_one_nonce(
    pair: tuple[Node, Node],
    dirs: dict[str, dict[str, str]],
    key: josepy.JWK,
    tls: ssl.SSLContext,
    cafile: str,
) -> inv.NonceRace:
    """Take a nonce from the first node; send it at once to both (newAccount, existing)."""
    new_nonce = dirs[pair[0].name]["newNonce"]
    nonce = requests.head(new_nonce, verify=cafile, timeout=10).headers["Replay-Nonce"]
    payload = json.dumps({"onlyReturnExisting": True}).encode()
    conns: list[http.client.HTTPSConnection] = []
    bodies: list[bytes] = []
    for n in pair:
        url = dirs[n.name]["newAccount"]
        jws = acme.jws.JWS.sign(
            payload, key=key, alg=josepy.ES256, nonce=josepy.b64decode(nonce), url=url
        )
        bodies.append(jws.json_dumps().encode())
        conn = http.client.HTTPSConnection("localhost", n.https, context=tls, timeout=10)
        conn.connect()  # both connections open before the barrier: the POSTs leave together
        conns.append(conn)
    answers: list[tuple[str, int, str]] = [("", 0, "")] * 2
    barrier = threading.Barrier(2)

    def send(k: int) -> None:
        node = pair[k]
        path = urllib.parse.urlsplit(dirs[node.name]["newAccount"]).path
        barrier.wait()
        try:
            conns[k].request(
                "POST", path, body=bodies[k], headers={"Content-Type": "application/jose+json"}
            )
            resp = conns[k].getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            answers[k] = (node.name, 0, "")
            return
        problem = ""
        if resp.headers.get("Content-Type", "").startswith("application/problem+json"):
            problem = str(json.loads(body).get("type", ""))
        answers[k] = (node.name, resp.status, problem)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conn in conns:
        conn.close()
    return inv.NonceRace(nonce, tuple(answers))


def nonce_race_case(nodes: list[Node], cafile: str, tls: ssl.SSLContext, http01: Http01) -> None:
    """A nonce from one node sent at once to it and the next node, NONCE_RACES times."""
    key = Acme(nodes[0], cafile, http01).connect().net.key
    dirs = {n.name: requests.get(n.directory, verify=cafile, timeout=10).json() for n in nodes}
    races = [
        race_one_nonce((nodes[i % len(nodes)], nodes[(i + 1) % len(nodes)]), dirs, key, tls, cafile)
        for i in range(NONCE_RACES)
    ]
    outcomes = Counter(
        ", ".join(
            f"{node} {status} {problem.rsplit(':', 1)[-1]}" for node, status, problem in r.answers
        )
        for r in races
    )
    print(f"  figures nonce-race: {len(races)} races; {dict(outcomes)}")
    uses = [use for r in races for use in r.uses()]
    twice = inv.nonces_accepted_twice(uses)
    check("nonce-race-never-accepted-twice", not twice, f"{len(twice)} nonces accepted twice")
    bad = inv.nonce_races_not_exactly_once(races)
    check("nonce-race-exactly-one-accepted", not bad, f"{len(bad)} races: {bad[:3]}")


def revocation_case(nodes: list[Node], load: Load, rows: Rows, cafile: str, http01: Http01) -> None:
    """Revoke on each node in turn: one new CRL each, on every node; OCSP on every node."""
    all_crls: list[inv.CrlRow] = []
    with load.running():
        for revoker in nodes:
            label = f"revocation-on-{revoker.name}"
            agent = Acme(revoker, cafile, http01)
            chain = agent.order(f"revoked-{revoker.name.lower()}.{DOMAIN}")
            leaf, issuer = chain[0], chain[1]
            path = crl_path(leaf)
            ca_id = Path(path).stem
            req = ocsp_request(leaf, issuer)
            before = crl_rows(rows)
            assert agent.client is not None
            agent.client.revoke(leaf, 1)
            t0 = time.monotonic()  # the revocation is committed when the answer came
            ocsp_seen: dict[str, float] = {}
            crl_seen: dict[str, float] = {}
            while time.monotonic() - t0 < CRL_BOUND_S * 2 and len(crl_seen) < len(nodes):
                for n in nodes:
                    if n.name not in ocsp_seen and ocsp_status(n, req) == "REVOKED":
                        ocsp_seen[n.name] = time.monotonic() - t0
                    crl = served_crl(n, path) if n.name not in crl_seen else None
                    if crl is not None and crl.get_revoked_certificate_by_serial_number(
                        leaf.serial_number
                    ):
                        crl_seen[n.name] = time.monotonic() - t0
                time.sleep(0.05)
            time.sleep(CRL_SETTLE_S)
            after = crl_rows(rows)
            all_crls = after
            newest = max((r.number for r in after if r.ca_id == ca_id), default=-1)
            served = {n.name: crl_number(served_crl(n, path)) for n in nodes}
            print(
                f"  figures {label}: OCSP revoked after"
                f" { {k: round(v, 2) for k, v in ocsp_seen.items()} } s, CRL listing it"
                f" after { {k: round(v, 2) for k, v in crl_seen.items()} } s; CRL {newest}"
            )
            check(
                f"{label}-ocsp-on-every-node",
                len(ocsp_seen) == len(nodes) and max(ocsp_seen.values()) <= REVOCATION_BOUND_S,
                str(ocsp_seen),
            )
            check(
                f"{label}-crl-on-every-node",
                len(crl_seen) == len(nodes) and max(crl_seen.values()) <= CRL_BOUND_S,
                str(crl_seen),
            )
            problems = inv.crls_per_revocation(before, after, ca_id, leaf.serial_number)
            check(f"{label}-exactly-one-new-crl", not problems, "; ".join(problems))
            stale = inv.stale_crl_nodes(served, newest)
            check(f"{label}-every-node-serves-newest-crl", not stale, f"{served}, newest {newest}")
    dupes = inv.duplicate_crl_numbers(all_crls)
    check("crl-numbers-unique", not dupes, str(dupes))


def postgres_cases(privca: str, pg_bin: Path, work: Path, http01: Http01) -> None:
    cluster = PgCluster(pg_bin, Path(tempfile.mkdtemp(prefix="privca-faults-pg.")))
    acme_args = ("--acme-resolve-all-to", "127.0.0.1", "--acme-http01-port", str(http01.port))
    nodes: list[Node] = []
    try:
        cluster.init()
        took = cluster.start()
        print(f"  figures setup: private PostgreSQL on port {cluster.port} up in {took:.1f} s")
        a = Node("A", privca, work / "nodeA", cluster.url, ("--workers", "2", *acme_args))
        b = Node("B", privca, work / "nodeB", cluster.url, acme_args)
        c = Node("C", privca, work / "nodeC", cluster.url, acme_args)
        nodes = [a, b, c]
        for n in nodes:
            n.start()
        a.cli("est", "user", "add", "dev1", "--password", PASSWORD)
        issuer_pem = work / "issuing.pem"
        a.cli("ca", "export", "issuing", "--out", str(issuer_pem))
        issuer = x509.load_pem_x509_certificate(issuer_pem.read_bytes())
        leaf_pem = work / "leaf.pem"
        a.cli("cert", "issue", "--san", f"dns:{DOMAIN}", "--out", str(leaf_pem))
        leaf = x509.load_pem_x509_certificate(leaf_pem.read_bytes())
        cafile = str(a.data / "ca-bundle.pem")
        tls = ssl.create_default_context(cafile=cafile)
        load = Load(nodes, tls, cafile, http01, ocsp_request(leaf, issuer))
        rows: Rows = lambda sql: pg(cluster.dsn, sql)  # noqa: E731

        kill9_case(a, nodes, load, rows)
        sigterm_case(b, load, rows)
        outage_case("pg-stop-fast", "fast", cluster, nodes, load, rows)
        outage_case("pg-stop-immediate", "immediate", cluster, nodes, load, rows)
        nonce_race_case(nodes, cafile, tls, http01)
        revocation_case(nodes, load, rows, cafile, http01)
        load.figures("pg-total")
    finally:
        for n in nodes:
            n.stop()
        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
            cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


def sqlite_case(privca: str, work: Path, http01: Http01) -> None:
    acme_args = ("--acme-resolve-all-to", "127.0.0.1", "--acme-http01-port", str(http01.port))
    s = Node("S", privca, work / "nodeS", None, acme_args)
    try:
        s.start()
        s.cli("est", "user", "add", "dev1", "--password", PASSWORD)
        leaf_pem = work / "leafS.pem"
        s.cli("cert", "issue", "--san", f"dns:{DOMAIN}", "--out", str(leaf_pem))
        issuer_pem = work / "issuingS.pem"
        s.cli("ca", "export", "issuing", "--out", str(issuer_pem))
        leaf = x509.load_pem_x509_certificate(leaf_pem.read_bytes())
        issuer = x509.load_pem_x509_certificate(issuer_pem.read_bytes())
        cafile = str(s.data / "ca-bundle.pem")
        tls = ssl.create_default_context(cafile=cafile)
        load = Load([s], tls, cafile, http01, ocsp_request(leaf, issuer))
        with load.running():
            time.sleep(4)
            s.signal(signal.SIGKILL)
            s.wait(5)
        restart = s.start()
        load.figures("sqlite-kill9")
        print(f"  figures sqlite-kill9: serving again {restart:.1f} s after its restart")
        check("sqlite-kill9-node-serves-again", s.answers())

        def rows(sql: str) -> list[tuple[Any, ...]]:
            with contextlib.closing(sqlite3.connect(s.data / "privca.db")) as db:
                return db.execute(sql).fetchall()

        check_invariants("sqlite-kill9", load.received, rows)
        check("sqlite-kill9-saw-issuance", load.statuses["est 200"] > 0)
        check("sqlite-kill9-saw-acme-issuance", load.statuses["acme 201"] > 0)
    finally:
        s.stop()


def main() -> int:
    privca, pg_bin, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    os.environ.setdefault("PRIVCA_KEY_PASSPHRASE", f"faults-passphrase-{os.getpid()}-0123456789")
    started = time.monotonic()
    http01 = Http01()
    try:
        postgres_cases(privca, pg_bin, work, http01)
    except (
        RuntimeError,
        OSError,
        subprocess.SubprocessError,
        asyncpg.PostgresError,
        *ACME_FAILURES,
    ) as exc:
        check("postgres-cases", False, f"{type(exc).__name__}: {exc}")
    try:
        sqlite_case(privca, work, http01)
    except (RuntimeError, OSError, subprocess.SubprocessError, *ACME_FAILURES) as exc:
        check("sqlite-case", False, f"{type(exc).__name__}: {exc}")
    http01.close()
    print(f"  figures total: {time.monotonic() - started:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
