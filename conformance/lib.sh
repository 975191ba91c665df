# Shared helpers for conformance suites (sourced, not run).
# pass NAME, fail NAME [WHY], skip NAME WHY (never a failure),
# missing NAME WHY (a missing client or tool: FAIL when CI=true, SKIP elsewhere),
# summary (prints "N passed, M failed"), free_port, and
# start_privca DATA_DIR HTTPS_PORT HTTP_PORT [serve args] / stop_privca, require_tools,
# privca_python, and PG_BASE with pg_sql for suites on PostgreSQL.
_lib_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PRIVCA:-}" ]; then
  if [ -x "$_lib_root/.venv/bin/privca" ]; then PRIVCA="$_lib_root/.venv/bin/privca"; else PRIVCA=privca; fi
fi
PASSED=0
FAILED=0
PRIVCA_PID=""

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $1: $2"; }
missing() {
  if [ "${CI:-}" = "true" ]; then fail "$1" "$2 (CI=true: clients must be installed)"; else skip "$1" "$2"; fi
}
summary() { echo "${PASSED} passed, ${FAILED} failed"; [ "$FAILED" -eq 0 ]; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_privca() {
  local data=$1 https=$2 http=$3; shift 3
  "$PRIVCA" serve --data-dir "$data" --https-port "$https" --http-port "$http" "$@" \
    >"$data.log" 2>&1 &
  PRIVCA_PID=$!
  for _ in $(seq 1 100); do
    if grep -q "trust bundle" "$data.log" 2>/dev/null; then return 0; fi
    if ! kill -0 "$PRIVCA_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "privca did not start:"; cat "$data.log"; return 1
}

stop_privca() {
  if [ -n "$PRIVCA_PID" ] && kill -0 "$PRIVCA_PID" 2>/dev/null; then
    kill -INT "$PRIVCA_PID"; wait "$PRIVCA_PID" 2>/dev/null || true
  fi
  PRIVCA_PID=""
}

# Check that every tool is on PATH, reporting the first missing one with `missing SUITE`
# (SKIP locally, FAIL in CI). Use: require_tools SUITE tool... || { summary; exit $?; }
require_tools() {
  local suite=$1 tool; shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { missing "$suite" "$tool is not installed"; return 1; }
  done
}

# The Python that runs privca (it has cryptography and asyncpg), else python3.
privca_python() {
  local py; py="$(dirname "$(command -v "$PRIVCA")")/python"
  if [ -x "$py" ]; then echo "$py"; else echo python3; fi
}

# PostgreSQL for suites that need one: PRIVCA_PG_URL, by default the local server (trust auth).
PG_BASE=${PRIVCA_PG_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/postgres}

# pg_sql [SQL]: connect to PG_BASE and run SQL (none: only connect); non-zero when that fails.
pg_sql() {
  "$(privca_python)" - "$PG_BASE" "${1:-}" <<'PYEOF'
import asyncio, sys, asyncpg
async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1].replace("+asyncpg", ""), timeout=5)
    try:
        if sys.argv[2]:
            await conn.execute(sys.argv[2])
    finally:
        await conn.close()
asyncio.run(main())
PYEOF
}
