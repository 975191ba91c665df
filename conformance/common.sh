# shellcheck shell=bash
# Helpers shared by conformance suites: case bookkeeping (PASS/FAIL/SKIP and the closing
# "N passed, M failed" line), bounded waits, throwaway TLS material and chain checks.
# Source it from a script that already runs with `set -euo pipefail`.

CONF_PASSED=0
CONF_FAILED=0
CONF_SKIPPED=0
CONF_FAILED_CASES=()
CONF_SKIPPED_CASES=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

is_ci() { [[ "${CI:-}" == "true" ]]; }

case_pass() {  # case seconds
  CONF_PASSED=$((CONF_PASSED + 1))
  printf 'PASS %s (%ss)\n' "$1" "${2:-?}"
}

case_fail() {  # case reason
  CONF_FAILED=$((CONF_FAILED + 1))
  CONF_FAILED_CASES+=("$1")
  printf 'FAIL %s: %s\n' "$1" "$2"
}

case_skip() {  # case reason
  CONF_SKIPPED=$((CONF_SKIPPED + 1))
  CONF_SKIPPED_CASES+=("$1")
  printf 'SKIP %s: %s\n' "$1" "$2"
}

# A client that is not installed: a skip locally, a failure in CI (STYLE.md section 7).
case_missing() {  # case reason
  if is_ci; then
    case_fail "$1" "$2 (CI=true: every client must be installed)"
  else
    case_skip "$1" "$2"
  fi
}

# Print the summary; the last line is exactly "N passed, M failed". Returns 1 if M > 0.
conf_summary() {
  echo
  if ((CONF_SKIPPED > 0)); then
    echo "skipped: ${CONF_SKIPPED_CASES[*]}"
  fi
  if ((CONF_FAILED > 0)); then
    echo "failed: ${CONF_FAILED_CASES[*]}"
  fi
  echo "${CONF_PASSED} passed, ${CONF_FAILED} failed"
  ((CONF_FAILED == 0))
}

now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# True when something listens on TCP host:port.
tcp_listening() {  # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Wait (bounded) until host:port accepts TCP connections.
wait_tcp() {  # host port timeout_seconds
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    tcp_listening "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}

# Wait (bounded) until nothing listens on host:port any more.
wait_tcp_free() {  # host port timeout_seconds
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    tcp_listening "$1" "$2" || return 0
    sleep 0.1
  done
  return 1
}

# Stop a process we started, by pid: TERM, bounded wait, then KILL.
stop_pid() {  # pid
  local pid=$1
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Make a throwaway CA plus a server certificate for loopback names into DIR:
# DIR/tls-ca.pem, DIR/tls-cert.pem, DIR/tls-key.pem.
make_loopback_tls() {  # dir
  local d=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=privca conformance TLS CA" -keyout "$d/tls-ca-key.pem" -out "$d/tls-ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/tls-key.pem" -out "$d/tls.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" >"$d/tls-ext.cnf"
  openssl x509 -req -in "$d/tls.csr" -CA "$d/tls-ca.pem" -CAkey "$d/tls-ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$d/tls-ext.cnf" -out "$d/tls-cert.pem" 2>/dev/null
  rm -f "$d/tls.csr" "$d/tls-ext.cnf" "$d/tls-ca.srl"
}

# Split a PEM chain into OUT/leaf.pem (first cert) and OUT/intermediates.pem (the rest).
split_chain() {  # chain.pem outdir
  awk -v out="$2" '
    /-----BEGIN CERTIFICATE-----/ { n++ }
    n == 1 { print > (out "/leaf.pem") }
    n > 1 { print > (out "/intermediates.pem") }
  ' "$1"
  [[ -s "$2/leaf.pem" ]] || return 1
  [[ -e "$2/intermediates.pem" ]] || : >"$2/intermediates.pem"
}

# Verify LEAF chains to ROOT through INTERMEDIATES (openssl verify, default purpose checks).
verify_chain() {  # root intermediates leaf
  if [[ -s "$2" ]]; then
    openssl verify -CAfile "$1" -untrusted "$2" "$3"
  else
    openssl verify -CAfile "$1" "$3"
  fi
}

cert_serial() { openssl x509 -noout -serial -in "$1" | cut -d= -f2; }
cert_sans() { openssl x509 -noout -ext subjectAltName -in "$1" 2>/dev/null | tail -n +2 | tr -d ' '; }
