#!/usr/bin/env bash
# Run the ACME conformance suite (run.sh) against Pebble, the reference ACME test server.
#
# Starts pebble-challtestsrv (mock DNS: every A query answers 127.0.0.1, no AAAA; TXT
# records set over its management API for dns-01) and Pebble on 127.0.0.1 with
# PEBBLE_VA_NOSLEEP=1 and `-dnsserver` pointing at challtestsrv, a throwaway TLS CA for
# Pebble's HTTPS listener, and Pebble's issuing root fetched from its management API.
# Both are stopped on exit. Ports (env): PEBBLE_PORT [14000] PEBBLE_MGMT_PORT [15000]
# DNS_PORT [8053] DNS_MGMT_PORT [8055] HTTP01_PORT [5002] TLSALPN01_PORT [5001].
# Other env is passed through to run.sh (ACME_ONLY, CASE_TIMEOUT, CI, ...).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "$HERE")/common.sh"

PEBBLE_PORT=${PEBBLE_PORT:-14000}
PEBBLE_MGMT_PORT=${PEBBLE_MGMT_PORT:-15000}
DNS_PORT=${DNS_PORT:-8053}
DNS_MGMT_PORT=${DNS_MGMT_PORT:-8055}
export HTTP01_PORT=${HTTP01_PORT:-5002}
export TLSALPN01_PORT=${TLSALPN01_PORT:-5001}

for tool in pebble pebble-challtestsrv openssl curl; do
  if ! command -v "$tool" >/dev/null; then
    if is_ci; then
      case_fail "acme/pebble" "$tool not installed (CI=true)"
    else
      case_skip "acme/pebble" "$tool not installed (Debian packages pebble, openssl, curl)"
    fi
    conf_summary
    exit $?
  fi
done
for port in "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" "$DNS_PORT" "$DNS_MGMT_PORT" "$HTTP01_PORT" \
  "$TLSALPN01_PORT"; do
  tcp_listening 127.0.0.1 "$port" && die "port 127.0.0.1:$port is already in use"
done

TMP=$(mktemp -d /tmp/privca-pebble.XXXXXX)
PEBBLE_PID=""
DNS_PID=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
finish() {
  local rc=$?
  stop_pid "$PEBBLE_PID"
  stop_pid "$DNS_PID"
  if ((rc != 0)) || [[ "${KEEP_WORK:-0}" == 1 ]]; then
    log "pebble logs kept in $TMP (pebble.log, challtestsrv.log)"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap finish EXIT

make_loopback_tls "$TMP"
cat >"$TMP/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$TMP/tls-cert.pem",
    "privateKey": "$TMP/tls-key.pem",
    "httpPort": $HTTP01_PORT,
    "tlsPort": $TLSALPN01_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF

# Empty -http01/-https01/-tlsalpn01 keep challtestsrv off the challenge ports the clients
# use; an empty -defaultIPv6 means no AAAA, so Pebble's VA dials 127.0.0.1 only.
pebble-challtestsrv -dns01 "127.0.0.1:$DNS_PORT" -management "127.0.0.1:$DNS_MGMT_PORT" \
  -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
  >"$TMP/challtestsrv.log" 2>&1 </dev/null &
DNS_PID=$!
(cd "$TMP" && exec env PEBBLE_VA_NOSLEEP=1 pebble -config "$TMP/pebble-config.json" \
  -dnsserver "127.0.0.1:$DNS_PORT") >"$TMP/pebble.log" 2>&1 </dev/null &
PEBBLE_PID=$!

wait_tcp 127.0.0.1 "$DNS_MGMT_PORT" 15 || die "pebble-challtestsrv did not start"
wait_tcp 127.0.0.1 "$PEBBLE_MGMT_PORT" 15 || die "pebble did not start (see $TMP/pebble.log)"
DIRECTORY="https://127.0.0.1:$PEBBLE_PORT/dir"
for _ in $(seq 1 50); do
  curl -fsS --max-time 2 --cacert "$TMP/tls-ca.pem" "$DIRECTORY" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS --max-time 5 --cacert "$TMP/tls-ca.pem" \
  "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" >"$TMP/issuer-root.pem" ||
  die "could not fetch Pebble's root from its management API"
log "pebble up: $DIRECTORY (pid $PEBBLE_PID), challtestsrv dns 127.0.0.1:$DNS_PORT"

set +e
ACME_DIRECTORY="$DIRECTORY" \
  ACME_TLS_CA_BUNDLE="$TMP/tls-ca.pem" \
  ACME_ISSUER_ROOT="$TMP/issuer-root.pem" \
  DNS_MGMT_URL="http://127.0.0.1:$DNS_MGMT_PORT" \
  DNS_RESOLVER="127.0.0.1:$DNS_PORT" \
  PEBBLE_MGMT_URL="https://127.0.0.1:$PEBBLE_MGMT_PORT" \
  bash "$HERE/run.sh"
rc=$?
set -e
exit "$rc"
