"""Worker processes of ``serve --workers N``: start, stop, die with the parent, the pid file.

A worker must never outlive the main process: it would keep the ports (SO_REUSEPORT)
and keep issuing with old code or configuration beside a restarted server. Each
worker asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``) and
runs a watchdog thread that notices a changed parent pid, since the kernel signal
follows the parent *thread* that started the worker, not the process.

The pid file (``privca.pid`` in the data dir, mode 0600) lists the main process and
its workers, each with its kernel start time so a reused pid is never mistaken for
privca. A starting server refuses to run while the recorded main process is alive
(a second server on one data dir), and terminates recorded workers whose main
process is gone (orphans of a crash) before it binds its ports.

Imports no aiohttp and no storage: ``server.app`` runs the workers' servers.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from server.config import ConfigError

__all__ = ["PID_FILE", "PidFile", "die_with_parent", "start", "stop"]

log = logging.getLogger(__name__)

PID_FILE: Final = "privca.pid"
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
_WATCH_INTERVAL: Final = 0.2
# An orphaned worker first stops gracefully (SIGTERM to itself); whatever is still
# running after this many seconds is cut short, so no orphan lives 2 s.
_ORPHAN_GRACE: Final = 1.0
_STALE_TERM_WAIT: Final = 3.0


def start(target: Callable[..., None], args: tuple[Any, ...], count: int) -> list[BaseProcess]:
    """Start ``count`` spawned worker processes running ``target(*args, parent_pid)``."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    for n in range(count):
        proc = ctx.Process(
            target=target, args=(*args, os.getpid()), name=f"privca-worker-{n + 1}", daemon=True
        )
        proc.start()
        procs.append(proc)
    return procs


def stop(procs: Sequence[BaseProcess]) -> None:
    """Stop workers: SIGTERM, up to 10 s to finish, then SIGKILL."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def die_with_parent(parent_pid: int) -> None:
    """Make this process stop when ``parent_pid`` (its parent) is gone.

    Call first thing in a worker. Exits at once if the parent is already gone.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died before the kernel watched it
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="privca-parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_WATCH_INTERVAL)
    log.warning("main process %d is gone: worker %d stops", parent_pid, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_ORPHAN_GRACE)
    os._exit(1)


# ---------------------------------------------------------------------- pid file


@dataclass(frozen=True, slots=True)
class _Entry:
    role: str  # "main" or "worker"
    pid: int
    started: int  # clock ticks since boot (/proc/<pid>/stat field 22)

    def line(self) -> str:
        return f"{self.role} {self.pid} {self.started}\n"

    def is_alive(self) -> bool:
        """Return True if this very process (same pid and start time) still runs."""
        return _start_time(self.pid) == self.started


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie holds no ports and runs no code
        return None
    return int(fields[19])


def _entry(role: str, pid: int) -> _Entry:
    return _Entry(role, pid, _start_time(pid) or 0)


class PidFile:
    """The data dir's record of the running privca processes."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / PID_FILE
        self._entries: list[_Entry] = []

    def _read(self) -> list[_Entry]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                entries.append(_Entry(parts[0], int(parts[1]), int(parts[2])))
        return entries

    def claim(self) -> None:
        """Record this process as the main process, first clearing stale workers.

        Raises:
            ConfigError: another privca main process runs on this data dir.
        """
        recorded = [e for e in self._read() if e.pid != os.getpid() and e.is_alive()]
        running = [e for e in recorded if e.role == "main"]
        if running:
            raise ConfigError(
                f"privca is already running on {self.path.parent} (pid {running[0].pid});"
                f" stop it first"
            )
        orphans = [e for e in recorded if e.role == "worker"]
        if orphans:
            log.warning(
                "stopping %d worker(s) left by a crashed privca: pids %s",
                len(orphans),
                " ".join(str(e.pid) for e in orphans),
            )
            _terminate(orphans)
        self._entries = [_entry("main", os.getpid())]
        self._write()

    def add_workers(self, pids: Sequence[int | None]) -> None:
        """Record the worker processes of this server."""
        self._entries += [_entry("worker", pid) for pid in pids if pid is not None]
        self._write()

    def release(self) -> None:
        """Remove the pid file if it is still ours."""
        if self._entries and self._read() == self._entries:
            self.path.unlink(missing_ok=True)
        self._entries = []

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(e.line() for e in self._entries)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def held(self) -> Iterator[PidFile]:
        """Claim the pid file for the block, then release it."""
        self.claim()
        try:
            yield self
        finally:
            self.release()


def _terminate(entries: Sequence[_Entry]) -> None:
    for entry in entries:
        with contextlib.suppress(ProcessLookupError):
            os.kill(entry.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STALE_TERM_WAIT
    while time.monotonic() < deadline and any(e.is_alive() for e in entries):
        time.sleep(0.05)
    for entry in entries:
        if entry.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry.pid, signal.SIGKILL)
