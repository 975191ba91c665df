"""`privca serve` as a real child process for tests: free ports, start, wait for output, stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["free_port", "serve", "stop", "wait_for", "wait_for_log"]


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data: Path, https: int, http: int, *extra: str) -> subprocess.Popen[str]:
    """Start ``privca serve`` on ``data`` with its output (text) on a pipe."""
    ports = ["--https-port", str(https), "--http-port", str(http)]
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(data), *ports, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> str:
    """Read ``proc``'s output until a line holds ``marker``; return what was read."""
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


def wait_for_log(
    log: Path, proc: subprocess.Popen[bytes], marker: str, timeout: float = 90
) -> None:
    """Poll the log file ``proc`` writes to until it holds ``marker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and marker in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"server did not print {marker!r}:\n{log.read_text()}")


def stop(proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Stop with SIGINT (as Ctrl-C would) and check the exit status is 0."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
