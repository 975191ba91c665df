#!/usr/bin/env bash
# Hostile clients against a real `privca serve`: thousands of seeded malformed requests over
# ACME and EST (TLS) and OCSP (the lean HTTP port), raw sockets included, then one good
# request per protocol. 0 answers >= 500 (501 for fullcmc), 0 hangs, the server alive after.
# HOSTILE_CASES (default 3000) and HOSTILE_SEED (default 13) pick the run.
# Prints PASS/FAIL/SKIP lines and ends with "N passed, M failed". Loopback only.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

command -v "$PRIVCA" >/dev/null || { fail "privca" "privca is not installed"; summary; exit 1; }
PY=$(privca_python)
"$PY" -c "import cryptography" 2>/dev/null || { missing "hostile" "python with cryptography not found"; summary; exit $?; }

work=$(mktemp -d)
cleanup() { stop_privca; rm -rf "$work"; }
trap cleanup EXIT

HTTPS=$(free_port); HTTP=$(free_port)
DATA="$work/data"
start_privca "$DATA" "$HTTPS" "$HTTP" --host 127.0.0.1 || { fail "start" "privca serve did not start"; summary; exit 1; }
"$PRIVCA" cert issue --data-dir "$DATA" --san dns:hostile.internal --out "$work/leaf.pem" \
  --key-out "$work/leaf.key" >/dev/null || { fail "issue" "privca cert issue failed"; summary; exit 1; }
"$PRIVCA" ca export issuing --data-dir "$DATA" --out "$work/issuing.pem" >/dev/null
openssl x509 -in "$work/leaf.pem" -out "$work/leaf.crt" 2>/dev/null || cp "$work/leaf.pem" "$work/leaf.crt"

# An EST account, so the Content-Encoding cases get past authentication to the body.
EST_PW="hostile-est-password-13"
"$PRIVCA" est user add --data-dir "$DATA" dev1 --password "$EST_PW" >/dev/null 2>&1 \
  || { fail "est-user" "privca est user add failed"; summary; exit 1; }

out=$(HOSTILE_EST_BASIC="dev1:$EST_PW" "$PY" "$here/driver.py" 127.0.0.1 "$HTTPS" "$HTTP" "$DATA/ca-bundle.pem" "$work/leaf.crt" \
  "$work/issuing.pem" "${HOSTILE_CASES:-3000}" "${HOSTILE_SEED:-13}")
echo "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
PASSED=$((PASSED + $(grep -c '^PASS ' <<<"$out")))
FAILED=$((FAILED + $(grep -c '^FAIL ' <<<"$out")))
if kill -0 "$PRIVCA_PID" 2>/dev/null; then pass "server-alive"; else fail "server-alive" "privca exited"; tail -20 "$DATA.log"; fi
if grep -q "Traceback" "$DATA.log"; then
  echo "server log tracebacks (first lines):"; grep -A2 -m5 "Traceback\|Error handling request" "$DATA.log" | head -30
fi
summary
