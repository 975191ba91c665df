"""The metrics listener: loopback by default, Prometheus text, counts across workers."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from server.cli import build_parser, serve
from server.config import ConfigError, MetricsSettings, load_settings
from server.metrics import process
from server.metrics.runtime import ProcessMetrics
from server.wiring import Services
from tests import serve_process


def test_metrics_are_off_without_a_port_and_loopback_by_default() -> None:
    settings = load_settings(None)
    assert settings.metrics.port is None
    assert MetricsSettings(port=9100).host == "127.0.0.1"
    with pytest.raises(ConfigError):
        load_settings(None, metrics={"port": 9100, "host": "not-an-address"})


def test_metrics_port_flag_overrides_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "privca.toml"
    cfg.write_text('[metrics]\nport = 9100\nhost = "10.1.2.3"\n')
    args = build_parser().parse_args(["serve", "--config", str(cfg), "--metrics-port", "9200"])
    settings = serve._apply_metrics(load_settings(cfg), args)
    assert settings.metrics.port == 9200
    assert settings.metrics.host == "10.1.2.3"


async def test_listener_binds_loopback_and_serves_text_format(
    services: Services, metrics: ProcessMetrics
) -> None:
    async with metrics.running(listener=True):
        assert metrics.address is not None
        host, port = metrics.address
        assert host == "127.0.0.1"
        assert metrics.url == f"http://127.0.0.1:{port}/metrics"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            body = await resp.text()
    assert 'privca_ca_certificate_expiry_days{ca="issuing"}' in body
    assert "# TYPE privca_certificates_issued_total counter" in body
    # Stopped with the block.
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=2),
    ):
        pass


def test_prepare_refuses_once_prometheus_client_is_imported(tmp_path: Path) -> None:
    import prometheus_client  # noqa: F401 - the condition under test

    with pytest.raises(RuntimeError):
        process.prepare(tmp_path)


def _sample(body: str, prefix: str) -> float:
    for line in body.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_workers_count_into_one_set_of_counters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stale = data / "metrics"
    stale.mkdir(parents=True)
    (stale / "counter_999999.db").write_bytes(b"left by an earlier run")
    https, http, metrics_port = (serve_process.free_port() for _ in range(3))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    env.pop(process.ENV, None)
    log = tmp_path / "serve.log"
    # A file, not a pipe: nobody reads the access log while requests run.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "server.cli", "serve", "--data-dir", str(data),
                "--https-port", str(https), "--http-port", str(http),
                "--metrics-port", str(metrics_port), "--workers", "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    try:
        serve_process.wait_for_log(log, proc, "trust bundle")
        ctx = ssl.create_default_context(cafile=str(data / "ca-bundle.pem"))
        total = 0
        served_by: set[str] = set()
        deadline = time.monotonic() + 60
        # One connection per request: the kernel spreads them over every process
        # listening (SO_REUSEPORT); go on until the worker has answered some too.
        while time.monotonic() < deadline and (total < 24 or len(served_by) < 2):
            with urllib.request.urlopen(
                f"https://localhost:{https}/acme/directory", context=ctx, timeout=10
            ) as resp:
                assert resp.status == 200
            total += 1
            served_by = {p.name.rsplit("_", 1)[1] for p in stale.glob("histogram_*.db")}
        assert len(served_by) >= 2, "only one process served requests"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            body = resp.read().decode()
        count = _sample(
            body,
            'privca_http_request_duration_seconds_count{endpoint="/acme/directory",method="GET"}',
        )
        assert count == total
        assert not (stale / "counter_999999.db").exists()
        assert stat.S_IMODE(stale.stat().st_mode) == 0o700
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
