#!/usr/bin/env bash
# Faults under load against real `privca serve` nodes (driver.py says what and why):
# three nodes on one PostgreSQL database with EST + ACME + OCSP load across them; kill -9
# of a node mid-load and a restart, SIGTERM under load, PostgreSQL stopped (fast, then
# immediate) for a few seconds mid-load and started again, a nonce raced on two nodes,
# one revocation per node (one new CRL each), kill -9 on SQLite. Invariants after each;
# figures printed. PostgreSQL is a private cluster this run creates (initdb, as the
# postgres OS user when root) on a free port, never the shared server: its binaries from
# PRIVCA_PG_BIN or the newest /usr/lib/postgresql/*/bin; missing locally is a SKIP, in CI
# a failure. Bounded to about three minutes.
# Prints PASS/FAIL/SKIP lines and ends with "N passed, M failed". Loopback only.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

command -v "$PRIVCA" >/dev/null || { fail "privca" "privca is not installed"; summary; exit 1; }
PY=$(privca_python)
PG_BIN=${PRIVCA_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
  missing "faults" "no PostgreSQL server binaries (initdb, pg_ctl; package postgresql)"; summary; exit $?
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  missing "faults" "running as root without a postgres OS user for initdb"; summary; exit $?
fi

work=$(mktemp -d /tmp/privca-faults.XXXXXX)
timeout 420 "$PY" "$here/driver.py" "$PRIVCA" "$PG_BIN" "$work"
code=$?
if [ "$code" -eq 0 ] && [ "${KEEP_WORK:-0}" != 1 ]; then
  rm -rf "$work"
else
  echo "  node logs kept in $work"
fi
if [ "$code" -ne 0 ] && [ "$code" -ne 1 ]; then
  echo "FAIL faults-driver: exit $code"; echo "0 passed, 1 failed"; exit 1
fi
exit "$code"
