"""Worker processes die with their parent; the pid file keeps a stale privca off the ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server import workers
from server.config import ConfigError
from tests import serve_process


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found |= {int(p) for p in task.read_text().split()}
        except OSError:
            continue
    return found


def _tree(pid: int) -> set[int]:
    """Return pid and all of its descendants."""
    tree, todo = {pid}, [pid]
    while todo:
        kids = _children(todo.pop()) - tree
        tree |= kids
        todo.extend(kids)
    return tree


def _running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _listener_pids(port: int) -> set[int]:
    """Return the pids owning a listening socket on ``port`` (``ss -ltnp``)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    pids: set[int] = set()
    for field in out.split("pid=")[1:]:
        pids.add(int(field.split(",", 1)[0]))
    return pids


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal and /proc are Linux")
@pytest.mark.timeout(240)
def test_kill_9_of_the_main_process_leaves_no_worker_and_a_restart_binds_alone(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    https, http = serve_process.free_port(), serve_process.free_port()
    proc = serve_process.serve(data, https, http, "--workers", "3")
    try:
        serve_process.wait_for(proc, "trust bundle")
        deadline = time.monotonic() + 60
        while len(_listener_pids(https)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        tree = _tree(proc.pid)
        # main, two workers and multiprocessing's resource tracker
        assert len(tree) >= 4, tree
        assert _listener_pids(https) <= tree
        proc.kill()
        proc.wait(timeout=5)
        killed = time.monotonic()
        while _running(tree) and time.monotonic() - killed < 2.0:
            time.sleep(0.05)
        assert not _running(tree), f"left behind: {_running(tree)}"
        assert not _listener_pids(https)
        assert not _listener_pids(http)
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stdout is not None
        proc.stdout.close()
    again = serve_process.serve(data, https, http, "--workers", "2")
    try:
        serve_process.wait_for(again, "trust bundle")
        time.sleep(1)
        own = _tree(again.pid)
        assert _listener_pids(https) <= own
        assert _listener_pids(http) <= own
        assert again.pid in _listener_pids(https)
    finally:
        serve_process.stop(again, timeout=30)
    assert not (data / workers.PID_FILE).exists()


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.mark.skipif(sys.platform != "linux", reason="/proc start times are Linux")
def test_pid_file_refuses_a_live_main_process(tmp_path: Path) -> None:
    other = _sleeper()
    try:
        (tmp_path / workers.PID_FILE).write_text(
            f"main {other.pid} {workers._start_time(other.pid)}\n"
        )
        with pytest.raises(ConfigError, match=f"already running .*pid {other.pid}"):
            workers.PidFile(tmp_path).claim()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="/proc start times are Linux")
def test_pid_file_stops_orphaned_workers_and_ignores_reused_pids(tmp_path: Path) -> None:
    orphan, stranger = _sleeper(), _sleeper()
    try:
        dead_main = subprocess.Popen([sys.executable, "-c", "pass"])
        dead_main.wait()
        # A live pid with another start time is some other process that reused the pid.
        (tmp_path / workers.PID_FILE).write_text(
            f"main {dead_main.pid} 1\n"
            f"worker {orphan.pid} {workers._start_time(orphan.pid)}\n"
            f"worker {stranger.pid} {(workers._start_time(stranger.pid) or 0) + 7}\n"
        )
        pid_file = workers.PidFile(tmp_path)
        pid_file.claim()
        assert orphan.wait(timeout=5) == -signal.SIGTERM
        assert stranger.poll() is None
        path = tmp_path / workers.PID_FILE
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_text().split()[:2] == ["main", str(os.getpid())]
        pid_file.add_workers([orphan.pid])
        assert len(path.read_text().splitlines()) == 2
        pid_file.release()
        assert not path.exists()
    finally:
        for p in (orphan, stranger):
            p.kill()
            p.wait()
