#!/usr/bin/env python3
"""ACME load generator: run N complete RFC 8555 flows at concurrency C against one directory.

Each flow: newNonce, newAccount (or one shared account), newOrder for one dns identifier,
fetch the authorization, answer http-01 from this process's own listener, POST the
challenge, poll the authorization, finalize with a P-256 CSR, poll the order, download
the certificate. badNonce answers are retried with the nonce they carry (Pebble rejects
5% of good nonces by default). The run stops by itself after --timeout seconds and then
reports which step the unfinished flows were stuck in (Pebble 2.4 can deadlock with many
flows on one account).

JWS signing is ES256 with `cryptography` directly: one account key per flow (or one for
all with --shared-account) keeps client CPU per request to one ECDSA signature.

Only loopback targets are allowed: the directory host must be 127.0.0.0/8, ::1 or localhost.

Examples:
    .venv/bin/python bench/acme.py --start-pebble --flows 200 --concurrency 32
    .venv/bin/python bench/acme.py --directory https://127.0.0.1:8443/acme/directory \
        --ca-bundle data/tls-ca.pem --http01-port 5002 --flows 500 --concurrency 16 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import ssl
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

STEPS: Final = (
    "newNonce",
    "newAccount",
    "newOrder",
    "authz",
    "challenge",
    "poll-authz",
    "finalize",
    "poll-order",
    "certificate",
)
JOSE: Final = "application/jose+json"
BAD_NONCE: Final = "urn:ietf:params:acme:error:badNonce"
MAX_NONCE_RETRIES: Final = 10
EXIT_FAILED: Final = 1
EXIT_TIMEOUT: Final = 3
OUT_DIR: Final = Path(__file__).resolve().parent / "out"


def b64u(data: bytes) -> str:
    """Encode base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def dumps(obj: Any) -> bytes:
    """Serialise compact JSON."""
    return json.dumps(obj, separators=(",", ":")).encode()


class AccountKey:
    """A P-256 account key that signs flattened JWS (RFC 8555 §6.2) with ES256."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        nums = self._key.public_key().public_numbers()
        self.jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64u(nums.x.to_bytes(32, "big")),
            "y": b64u(nums.y.to_bytes(32, "big")),
        }
        # RFC 7638: required members only, lexicographic order, no whitespace.
        thumb = hashlib.sha256(dumps(dict(sorted(self.jwk.items())))).digest()
        self.thumbprint = b64u(thumb)
        self.kid: str | None = None

    def sign(self, url: str, nonce: str, payload: Any | None) -> bytes:
        """Return a flattened JWS body; payload None means POST-as-GET (RFC 8555 §6.3)."""
        protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
        if self.kid is None:
            protected["jwk"] = self.jwk
        else:
            protected["kid"] = self.kid
        p64 = b64u(dumps(protected))
        body64 = "" if payload is None else b64u(dumps(payload))
        der = self._key.sign(f"{p64}.{body64}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return dumps({"protected": p64, "payload": body64, "signature": sig})


class FlowError(Exception):
    """A flow failed at one step; the message is short and groupable."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclasses.dataclass(slots=True)
class Stats:
    """Durations per step, counters, and where each in-flight flow is."""

    durations: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {s: [] for s in (*STEPS, "flow")}
    )
    ok: int = 0
    failed: int = 0
    bad_nonce_retries: int = 0
    authz_polls: int = 0
    order_polls: int = 0
    http01_hits: int = 0
    challenges: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    in_flight: dict[int, str] = dataclasses.field(default_factory=dict)
    last_progress: float = dataclasses.field(default_factory=time.monotonic)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """The parts of an ACME response a flow needs."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One aiohttp session, the directory, and JWS POSTs with badNonce retry."""

    def __init__(self, session: aiohttp.ClientSession, args: argparse.Namespace, stats: Stats):
        self.session = session
        self.args = args
        self.stats = stats
        self.directory: dict[str, Any] = {}

    async def load_directory(self) -> None:
        async with self.session.get(self.args.directory) as resp:
            if resp.status != 200:
                raise FlowError("directory", f"HTTP {resp.status}")
            self.directory = await resp.json(content_type=None)

    async def new_nonce(self) -> str:
        async with self.session.head(self.directory["newNonce"]) as resp:
            nonce = resp.headers.get("Replay-Nonce")
            if resp.status not in (200, 204) or not nonce:
                raise FlowError("newNonce", f"HTTP {resp.status} nonce={nonce!r}")
            return nonce

    async def post(
        self,
        step: str,
        url: str,
        key: AccountKey,
        nonce: list[str],
        payload: Any | None,
        *,
        accept: str | None = None,
    ) -> Response:
        """POST a JWS; nonce is a one-slot box updated from every Replay-Nonce."""
        headers = {"Content-Type": JOSE}
        if accept:
            headers["Accept"] = accept
        for _ in range(MAX_NONCE_RETRIES + 1):
            body = key.sign(url, nonce[0], payload)
            async with self.session.post(url, data=body, headers=headers) as resp:
                data = await resp.read()
                self.stats.last_progress = time.monotonic()
                if fresh := resp.headers.get("Replay-Nonce"):
                    nonce[0] = fresh
                result = Response(resp.status, dict(resp.headers), data)
            if result.status < 400:
                return result
            problem = _problem(result)
            if problem.get("type") == BAD_NONCE and fresh:
                self.stats.bad_nonce_retries += 1
                continue
            raise FlowError(
                step, f"HTTP {result.status} {problem.get('type', '')} {problem.get('detail', '')}"
            )
        raise FlowError(step, f"badNonce {MAX_NONCE_RETRIES} times in a row")


def _problem(resp: Response) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        return {"detail": resp.body[:200].decode("utf-8", "replace")}
    return doc if isinstance(doc, dict) else {}


def _retry_after(resp: Response, args: argparse.Namespace) -> float:
    raw = resp.headers.get("Retry-After", "")
    try:
        wanted = float(raw)
    except ValueError:
        wanted = args.poll_interval
    return float(min(max(wanted, args.poll_interval), args.max_poll_interval))


def _csr(name: str) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return b64u(csr.public_bytes(serialization.Encoding.DER)), key


class Flow:
    """One complete ACME issuance, timed per step."""

    def __init__(
        self, index: int, client: Client, shared: AccountKey | None, tokens: dict[str, str]
    ):
        self.index = index
        self.client = client
        self.stats = client.stats
        self.args = client.args
        self.shared = shared
        self.tokens = tokens
        self.name = f"flow{index}-{self.args.run_id}{self.args.domain_suffix}"

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.stats.in_flight[self.index] = name
        start = time.perf_counter()
        yield
        self.stats.durations[name].append(time.perf_counter() - start)

    async def run(self) -> None:
        c = self.client
        started = time.perf_counter()
        with self.step("newNonce"):
            nonce = [await c.new_nonce()]
        if self.shared is not None:
            key = self.shared
        else:
            key = AccountKey()
            with self.step("newAccount"):
                resp = await c.post(
                    "newAccount",
                    c.directory["newAccount"],
                    key,
                    nonce,
                    {"termsOfServiceAgreed": True},
                )
                key.kid = resp.headers["Location"]
        with self.step("newOrder"):
            resp = await c.post(
                "newOrder",
                c.directory["newOrder"],
                key,
                nonce,
                {"identifiers": [{"type": "dns", "value": self.name}]},
            )
            order_url = resp.headers["Location"]
            order = resp.json()
        for authz_url in order["authorizations"]:
            await self.authorize(key, nonce, authz_url)
        csr, _ = _csr(self.name)
        with self.step("finalize"):
            resp = await c.post("finalize", order["finalize"], key, nonce, {"csr": csr})
            order = resp.json()
        with self.step("poll-order"):
            deadline = time.monotonic() + self.args.poll_timeout
            while order.get("status") != "valid":
                if order.get("status") == "invalid":
                    raise FlowError("poll-order", f"order invalid: {order.get('error')}")
                if time.monotonic() > deadline:
                    raise FlowError("poll-order", f"still {order.get('status')}")
                await asyncio.sleep(_retry_after(resp, self.args))
                resp = await c.post("poll-order", order_url, key, nonce, None)
                self.stats.order_polls += 1
                order = resp.json()
        with self.step("certificate"):
            resp = await c.post(
                "certificate",
                order["certificate"],
                key,
                nonce,
                None,
                accept="application/pem-certificate-chain",
            )
            chain = x509.load_pem_x509_certificates(resp.body)
            san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
            if self.name not in san.value.get_values_for_type(x509.DNSName):
                raise FlowError("certificate", "leaf does not name the ordered identifier")
        self.stats.durations["flow"].append(time.perf_counter() - started)

    async def authorize(self, key: AccountKey, nonce: list[str], authz_url: str) -> None:
        c = self.client
        with self.step("authz"):
            authz = (await c.post("authz", authz_url, key, nonce, None)).json()
        if authz.get("status") == "valid":
            return  # Reused authorization (Pebble's PEBBLE_AUTHZREUSE): nothing to prove.
        chall = next((ch for ch in authz.get("challenges", []) if ch["type"] == "http-01"), None)
        if chall is None:
            raise FlowError("authz", "no http-01 challenge offered")
        token = chall["token"]
        self.tokens[token] = f"{token}.{key.thumbprint}"
        self.stats.challenges += 1
        try:
            with self.step("challenge"):
                await c.post("challenge", chall["url"], key, nonce, {})
            with self.step("poll-authz"):
                deadline = time.monotonic() + self.args.poll_timeout
                while True:
                    resp = await c.post("poll-authz", authz_url, key, nonce, None)
                    self.stats.authz_polls += 1
                    status = resp.json().get("status")
                    if status == "valid":
                        break
                    if status != "pending":
                        raise FlowError("poll-authz", f"authz {status}: {resp.body[:300]!r}")
                    if time.monotonic() > deadline:
                        raise FlowError("poll-authz", "still pending")
                    await asyncio.sleep(_retry_after(resp, self.args))
        finally:
            self.tokens.pop(token, None)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 if empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def summarise(stats: Stats) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for step, values in stats.durations.items():
        if not values:
            continue
        v = sorted(values)
        out[step] = {
            "n": len(v),
            "p50_ms": round(percentile(v, 50) * 1000, 2),
            "p99_ms": round(percentile(v, 99) * 1000, 2),
            "max_ms": round(v[-1] * 1000, 2),
        }
    return out


async def start_http01(
    args: argparse.Namespace, tokens: dict[str, str], stats: Stats
) -> web.AppRunner:
    """Serve /.well-known/acme-challenge/{token} (RFC 8555 §8.3) from this process."""

    async def challenge(request: web.Request) -> web.Response:
        stats.http01_hits += 1
        keyauth = tokens.get(request.match_info["token"])
        if keyauth is None:
            return web.Response(status=404, text="unknown token")
        return web.Response(text=keyauth, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/.well-known/acme-challenge/{token}", challenge)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, args.http01_host, args.http01_port).start()
    return runner


async def bench(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    stats = Stats()
    tokens: dict[str, str] = {}
    if args.insecure:
        ssl_ctx: ssl.SSLContext | bool = False
    else:
        ssl_ctx = ssl.create_default_context(cafile=args.ca_bundle)
    runner = await start_http01(args, tokens, stats)
    timed_out = False
    stalled = False
    wall = cpu = 0.0
    next_index = iter(range(args.flows))
    connector = aiohttp.TCPConnector(limit=args.concurrency + 4, ssl=ssl_ctx)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            client = Client(session, args, stats)
            await client.load_directory()
            shared: AccountKey | None = None
            if args.shared_account:
                shared = AccountKey()
                start = time.perf_counter()
                nonce = [await client.new_nonce()]
                resp = await client.post(
                    "newAccount",
                    client.directory["newAccount"],
                    shared,
                    nonce,
                    {"termsOfServiceAgreed": True},
                )
                shared.kid = resp.headers["Location"]
                stats.durations["newAccount"].append(time.perf_counter() - start)

            async def worker() -> None:
                for index in next_index:
                    flow = Flow(index, client, shared, tokens)
                    try:
                        await flow.run()
                        stats.ok += 1
                    except FlowError as exc:
                        stats.failed += 1
                        stats.errors[str(exc)[:160]] += 1
                    except TimeoutError:
                        stats.failed += 1
                        where = stats.in_flight.get(index, "?")
                        stats.errors[f"{where}: no answer within {args.request_timeout:g} s"] += 1
                    except (aiohttp.ClientError, KeyError, ValueError) as exc:
                        stats.failed += 1
                        where = stats.in_flight.get(index, "?")
                        stats.errors[f"{where}: {type(exc).__name__} {exc}"[:160]] += 1
                    # Not in a finally: a flow cancelled by the hard stop stays in in_flight
                    # so the report can say which step it was stuck in.
                    stats.in_flight.pop(index, None)

            async def watchdog(workers: list[asyncio.Task[None]]) -> None:
                # A server that answers no JWS POST for --stall-timeout seconds is reported as
                # stalled; stop instead of waiting it out. HEAD newNonce does not count:
                # deadlocked Pebble 2.4 still hands out nonces while every POST hangs.
                nonlocal stalled
                while not all(w.done() for w in workers):
                    await asyncio.sleep(0.5)
                    if time.monotonic() - stats.last_progress > args.stall_timeout:
                        stalled = True
                        for w in workers:
                            w.cancel()
                        return

            begin = time.perf_counter()
            cpu0 = time.process_time()
            stats.last_progress = time.monotonic()
            try:
                async with asyncio.timeout(args.timeout), asyncio.TaskGroup() as tg:
                    workers = [tg.create_task(worker()) for _ in range(args.concurrency)]
                    # A worker cancelled by the watchdog ends quietly: TaskGroup ignores it.
                    tg.create_task(watchdog(workers))
            except TimeoutError:
                timed_out = True
            wall = time.perf_counter() - begin
            cpu = time.process_time() - cpu0
    finally:
        await runner.cleanup()
    stuck = Counter(stats.in_flight.values())
    not_started = args.flows - stats.ok - stats.failed - len(stats.in_flight)
    result: dict[str, Any] = {
        "bench": "acme",
        "directory": args.directory,
        "flows": args.flows,
        "concurrency": args.concurrency,
        "shared_account": args.shared_account,
        "ok": stats.ok,
        "failed": stats.failed,
        "unfinished": len(stats.in_flight),
        "not_started": not_started,
        "timed_out": timed_out,
        "stalled": stalled,
        "stall_timeout_s": args.stall_timeout,
        "wall_s": round(wall, 3),
        "flows_per_s": round(stats.ok / wall, 2) if wall else 0.0,
        "client_cpu_ms_per_flow": round(cpu * 1000 / max(stats.ok, 1), 2),
        "bad_nonce_retries": stats.bad_nonce_retries,
        "authz_polls": stats.authz_polls,
        "order_polls": stats.order_polls,
        "http01_fetches": stats.http01_hits,
        "challenges": stats.challenges,
        "steps": summarise(stats),
        "stuck_in": dict(stuck),
        "errors": dict(stats.errors.most_common(10)),
    }
    code = EXIT_TIMEOUT if timed_out or stalled else (EXIT_FAILED if stats.failed else 0)
    return result, code


def render_table(r: dict[str, Any]) -> str:
    lines = [
        f"ACME bench against {r['directory']}",
        f"  flows ok {r['ok']}/{r['flows']}, failed {r['failed']}, concurrency {r['concurrency']}, "
        f"shared account {r['shared_account']}",
        f"  wall {r['wall_s']:.2f} s, {r['flows_per_s']:.2f} flows/s, "
        f"badNonce retries {r['bad_nonce_retries']}, authz polls {r['authz_polls']}, "
        f"order polls {r['order_polls']}",
        f"  http-01 fetches served {r['http01_fetches']} for {r['challenges']} challenges; "
        f"client CPU {r['client_cpu_ms_per_flow']:.1f} ms per flow (this process, incl. listener)",
        "",
        f"  {'step':<12}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for step in (*STEPS, "flow"):
        s = r["steps"].get(step)
        if s:
            p50, p99, top = s["p50_ms"], s["p99_ms"], s["max_ms"]
            lines.append(f"  {step:<12}{s['n']:>7}{p50:>10.1f}{p99:>10.1f}{top:>10.1f}")
    if r["errors"]:
        lines += ["", "  errors (most common):"]
        lines += [f"    {n:>5} x {msg}" for msg, n in r["errors"].items()]
    if r["stalled"]:
        lines += [
            "",
            f"  STALLED: no ACME POST answered for {r['stall_timeout_s']:g} s, stopped after "
            f"{r['wall_s']:.1f} s; {r['unfinished']} flows unfinished (stuck in {r['stuck_in']}), "
            f"{r['not_started']} never started. The server looks deadlocked.",
        ]
    elif r["timed_out"]:
        lines += [
            "",
            f"  TIMEOUT: hard stop (--timeout) after {r['wall_s']:.1f} s; {r['unfinished']} flows "
            f"unfinished (stuck in {r['stuck_in']}), {r['not_started']} never started.",
        ]
    return "\n".join(lines)


def check_loopback(url: str) -> None:
    """Exit unless URL's host is loopback (this bench never targets another machine)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing non-loopback target {host!r}: benches only hit 127.0.0.1/::1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--directory", help="ACME directory URL (loopback only)")
    p.add_argument("--ca-bundle", help="PEM bundle trusted for the ACME HTTPS endpoint")
    p.add_argument("--insecure", action="store_true", help="do not verify the server's TLS cert")
    p.add_argument("--flows", type=int, default=100, help="complete flows to run (default 100)")
    p.add_argument("--concurrency", type=int, default=8, help="flows in flight (default 8)")
    p.add_argument("--http01-port", type=int, default=5002, help="http-01 listener port")
    p.add_argument("--http01-host", default="127.0.0.1", help="http-01 listener address")
    p.add_argument("--shared-account", action="store_true", help="one account for all flows")
    p.add_argument(
        "--domain-suffix", default=".bench.internal", help="identifier suffix (with leading dot)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="hard stop for the run, seconds")
    p.add_argument("--request-timeout", type=float, default=30.0, help="per HTTP request, seconds")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=20.0,
        help="stop when no POST is answered for this long, seconds (default 20)",
    )
    p.add_argument("--poll-timeout", type=float, default=60.0, help="per polling step, seconds")
    p.add_argument(
        "--poll-interval", type=float, default=0.02, help="min poll wait, seconds (default 0.02)"
    )
    p.add_argument(
        "--max-poll-interval", type=float, default=1.0, help="cap on a Retry-After, seconds"
    )
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")
    p.add_argument(
        "--start-pebble", action="store_true", help="start a loopback Pebble for this run"
    )
    p.add_argument(
        "--start-privca", action="store_true", help="start a loopback privca for this run"
    )
    p.add_argument(
        "--pg-url",
        help="with --start-privca: PostgreSQL server URL (a fresh database is made and dropped)",
    )
    p.add_argument(
        "--privca-workers",
        type=int,
        default=1,
        help="with --start-privca: `privca serve --workers N` (processes on both ports)",
    )
    p.add_argument(
        "--pebble-env",
        action="append",
        default=[],
        metavar="KEY=VAL",
        help="extra PEBBLE_* env for --start-pebble (repeatable)",
    )
    args = p.parse_args(argv)
    if not (1 <= args.flows <= 100_000 and 1 <= args.concurrency <= 1024):
        p.error("--flows must be 1..100000 and --concurrency 1..1024")
    if not 0 < args.timeout <= 3600:
        p.error("--timeout must be in (0, 3600] seconds")
    started = args.start_pebble or args.start_privca
    if not started and not args.directory:
        p.error("--directory is required (or --start-pebble / --start-privca)")
    if not started and not (args.ca_bundle or args.insecure):
        p.error("--ca-bundle or --insecure is required")
    bracketed = f"[{args.http01_host}]" if ":" in args.http01_host else args.http01_host
    check_loopback(f"http://{bracketed}/")
    args.concurrency = min(args.concurrency, args.flows)
    args.run_id = uuid.uuid4().hex[:8]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.start_pebble:
        import acme_pebble  # only needed with --start-pebble

        extra = dict(kv.split("=", 1) for kv in args.pebble_env)
        if missing := acme_pebble.missing_tools():
            print(f"--start-pebble needs {', '.join(missing)} (Debian package pebble)")
            return 2
        with acme_pebble.run_pebble(
            http01_port=args.http01_port, log_dir=OUT_DIR, extra_env=extra
        ) as pebble:
            args.directory, args.ca_bundle = pebble.directory, str(pebble.tls_ca_bundle)
            print(f"started Pebble at {pebble.directory} (log {pebble.log_path})", file=sys.stderr)
            result, code = asyncio.run(bench(args))
            result["server"] = "pebble"
    elif args.start_privca:
        import acme_privca  # only needed with --start-privca

        with acme_privca.run_privca(
            http01_port=args.http01_port,
            log_dir=OUT_DIR,
            pg_url=args.pg_url,
            workers=args.privca_workers,
        ) as privca:
            args.directory, args.ca_bundle = privca.directory, str(privca.tls_ca_bundle)
            print(f"started privca at {privca.directory} (log {privca.log_path})", file=sys.stderr)
            result, code = asyncio.run(bench(args))
            result["server"] = "privca-postgres" if args.pg_url else "privca-sqlite"
    else:
        check_loopback(args.directory)
        result, code = asyncio.run(bench(args))
    print(render_table(result))
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    return code


if __name__ == "__main__":
    sys.exit(main())
