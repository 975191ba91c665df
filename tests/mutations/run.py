"""Remove each issuance check in turn, run the tests, and list which fail first.

Usage (from the repository root):

    python tests/mutations/run.py [--only ID[,ID...]] [--out FILE] \
        WORKTREE tests/mutations/pipeline.json [pytest args...]

Each mutation is ``{"id", "file", "old", "new"}`` plus an optional ``"tests"``
list (pytest arguments for that mutation; default: the command line's, else
``tests/server tests/protocols``). ``old`` must occur exactly once in ``file``.
The mutation is applied alone, pytest runs with ``-x``, the file is restored
(also on Ctrl-C), and the mutation is recorded as ``caught`` with the first
failing test, or ``MISSED``. Run it on a copy of the tree if you keep editing
the checkout meanwhile. Standalone: not a pytest module (pytest collects
``test_*.py`` only).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

_DEFAULT = ["tests/server", "tests/protocols"]


def _run(wt: pathlib.Path, mutation: dict[str, object], args: list[str]) -> dict[str, object]:
    path = wt / str(mutation["file"])
    orig = path.read_text()
    old, new = str(mutation["old"]), str(mutation["new"])
    if orig.count(old) != 1:
        return {"id": mutation["id"], "result": f"SNIPPET-COUNT-{orig.count(old)}", "failed": []}
    tests = [str(t) for t in mutation.get("tests") or args]  # type: ignore[attr-defined]
    env = dict(os.environ, PYTHONPATH=str(wt))
    path.write_text(orig.replace(old, new))
    start = time.monotonic()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                "-x",
                *tests,
            ],
            cwd=wt,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        path.write_text(orig)
    failed = [
        ln.split(" ")[1] for ln in done.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))
    ]
    # A module that no longer imports (an ERROR line without "::") is no test catching it.
    caught = done.returncode not in (0, 5) and any("::" in f for f in failed)
    result = (
        "caught" if caught else ("MISSED" if done.returncode in (0, 5) else f"rc={done.returncode}")
    )
    return {
        "id": mutation["id"],
        "result": result,
        "seconds": round(time.monotonic() - start),
        "failed": failed[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worktree", type=pathlib.Path)
    parser.add_argument("mutations", type=pathlib.Path)
    parser.add_argument("--only", help="comma-separated mutation ids")
    parser.add_argument("--out", type=pathlib.Path, help="write the results here as JSON")
    known, pytest_args = parser.parse_known_args()
    muts = json.loads(known.mutations.read_text())
    if known.only:
        wanted = set(known.only.split(","))
        muts = [m for m in muts if m["id"] in wanted]
    results = []
    for m in muts:
        results.append(_run(known.worktree, m, pytest_args or _DEFAULT))
        sys.stdout.write(json.dumps(results[-1]) + "\n")
        sys.stdout.flush()
    if known.out:
        known.out.write_text(json.dumps(results, indent=1) + "\n")
    missed = [r["id"] for r in results if r["result"] != "caught"]
    sys.stdout.write(f"{len(results) - len(missed)}/{len(results)} caught; not caught: {missed}\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
