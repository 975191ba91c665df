# Shared helpers for conformance suites (sourced, not run).
# Provides: free_port, start_privca DATA_DIR HTTPS_PORT HTTP_PORT [extra serve args],
# stop_privca, pass/fail/skip and summary (prints "N passed, M failed").
PRIVCA=${PRIVCA:-privca}
PASSED=0
FAILED=0
PRIVCA_PID=""

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1"; FAILED=$((FAILED + 1)); }
skip() {
  # A missing client is a failure in CI, a skip elsewhere.
  if [ "${CI:-}" = "true" ] && [ "${2:-}" = "client" ]; then fail "$1 (client missing in CI)"; else echo "SKIP $1"; fi
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
