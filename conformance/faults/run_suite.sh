#!/usr/bin/env bash
# Faults under load against real `privca serve` nodes (driver.py says what and why):
# kill -9 of one of two nodes on one PostgreSQL database and a restart, SIGTERM under load,
# a database outage mid-load (this run's own database refuses connections for a few
# seconds; the shared server is never stopped), kill -9 on SQLite. Invariants after each;
# figures printed. PostgreSQL from PRIVCA_PG_URL (default 127.0.0.1:5432, trust auth):
# missing locally is a SKIP, in CI a failure. Bounded to about two minutes.
# Prints PASS/FAIL/SKIP lines and ends with "N passed, M failed". Loopback only.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

command -v "$PRIVCA" >/dev/null || { fail "privca" "privca is not installed"; summary; exit 1; }
PY=$(privca_python)
pg_sql >/dev/null 2>&1 || { missing "faults" "no PostgreSQL at $PG_BASE"; summary; exit $?; }

work=$(mktemp -d /tmp/privca-faults.XXXXXX)
trap 'rm -rf "$work"' EXIT
timeout 300 "$PY" "$here/driver.py" "$PRIVCA" "$PG_BASE" "$work"
code=$?
if [ "$code" -ne 0 ] && [ "$code" -ne 1 ]; then
  echo "FAIL faults-driver: exit $code"; echo "0 passed, 1 failed"; exit 1
fi
exit "$code"
