"""The prometheus-client multiprocess directory of one ``privca serve``.

# Choice: prometheus-client's multiprocess mode rather than the parent collecting
# from workers over a pipe. Every process (the parent and each ``--workers``
# process) writes its counters and histograms into memory-mapped files in one
# directory; the parent's metrics listener sums them on scrape. The library picks
# its value store when it is first imported, so ``prepare`` must run before
# anything imports prometheus_client (``serve`` calls it before importing the
# server); workers inherit the environment variable when they are spawned.

Imports nothing of prometheus_client itself except ``mark_dead``'s lazy import.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Final

__all__ = ["ENV", "is_active", "mark_dead", "prepare"]

ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def prepare(data_dir: Path) -> Path:
    """Create an empty private (0700) metrics directory under ``data_dir`` and select it.

    Files left by an earlier run would add its counts to this one: the directory
    is emptied at every start.

    Raises:
        RuntimeError: prometheus_client was imported already (it would ignore the directory).
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the metrics directory was set")
    path = data_dir / "metrics"
    if path.is_symlink():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    os.environ[ENV] = str(path)
    return path


def is_active() -> bool:
    """Return True when this process records into a multiprocess directory."""
    return bool(os.environ.get(ENV))


def mark_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (its counters stay in the sums)."""
    if is_active():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped library
