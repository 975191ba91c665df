#!/usr/bin/env bash
# Metrics conformance: a real Prometheus (Debian package `prometheus`) scrapes
# `privca serve --metrics-port`; EST enrollments (curl) and an ACME issuance and
# revocation (lego) move the counters, which are read back through Prometheus's
# HTTP API (/api/v1/query). Prints PASS/FAIL/SKIP lines and "N passed, M failed".
# Everything listens on 127.0.0.1 on free ports; about 20 s.
set -uo pipefail

. "$(cd "$(dirname "$0")" && pwd)/../lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)

PROMETHEUS=${PROMETHEUS:-prometheus}
LEGO=${LEGO:-lego}
for tool in "$PROMETHEUS" "${PROMTOOL:-promtool}" "$LEGO" curl openssl python3; do
  if ! command -v "$tool" >/dev/null; then
    missing "metrics" "$tool is not installed (Debian packages prometheus, lego, curl, openssl)"
    summary; exit $?
  fi
done

WORK=$(mktemp -d /tmp/privca-metrics-conf.XXXXXX)
PROM_PID=""
cleanup() {
  stop_privca
  if [[ -n "$PROM_PID" ]]; then
    kill "$PROM_PID" 2>/dev/null
    wait "$PROM_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK" || exit 1

HTTPS_PORT=$(free_port); HTTP_PORT=$(free_port); METRICS_PORT=$(free_port)
PROM_PORT=$(free_port); HTTP01_PORT=$(free_port)
DATA="$WORK/data"
# Per-process figures (pool, OCSP counts) and database gauges are re-read every second.
printf '[metrics]\nrefresh_seconds = 1\n' >privca.toml

if ! start_privca "$DATA" "$HTTPS_PORT" "$HTTP_PORT" --config "$WORK/privca.toml" \
  --metrics-port "$METRICS_PORT" \
  --acme-resolve-all-to 127.0.0.1 --acme-http01-port "$HTTP01_PORT"; then
  fail "server-start" "privca serve --metrics-port did not start"
  summary; exit 1
fi
pass "server-start"

# The listener is loopback-only by default and speaks the Prometheus text format.
if curl -sS --max-time 5 -D metrics.hdr -o metrics.txt "http://127.0.0.1:$METRICS_PORT/metrics" \
  && grep -qi '^content-type: text/plain; version=0.0.4' metrics.hdr \
  && grep -q '^privca_ca_certificate_expiry_days{ca="issuing"} ' metrics.txt \
  && ss -ltn "sport = :$METRICS_PORT" | grep -q "127.0.0.1:$METRICS_PORT"; then
  pass "metrics-listener"
else
  fail "metrics-listener" "no Prometheus text on 127.0.0.1:$METRICS_PORT/metrics"
fi

# The shipped example alert rules (config/prometheus-alerts.yml), as an operator loads them.
RULES="$REPO/config/prometheus-alerts.yml"
PROMTOOL=${PROMTOOL:-promtool}
if "$PROMTOOL" check rules "$RULES" >promtool.log 2>&1; then pass "alert-rules-check"
else fail "alert-rules-check" "promtool check rules: $(tail -2 promtool.log)"; fi
cat >prometheus.yml <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$RULES"]
scrape_configs:
  - job_name: privca
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
EOF
"$PROMETHEUS" --config.file=prometheus.yml --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >prometheus.log 2>&1 &
PROM_PID=$!

# prom QUERY: print the first sample's value of an instant query ("" when none).
prom() {
  curl -sS --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" \
    2>/dev/null | python3 -c '
import json, sys
try:
    result = json.load(sys.stdin)["data"]["result"]
except (ValueError, KeyError):
    result = []
print(result[0]["value"][1] if result else "")'
}
# wait_for NAME QUERY EXPECTED: poll Prometheus (up to 20 s) until QUERY's value is EXPECTED.
wait_for() {
  local name=$1 query=$2 want=$3 got=""
  for _ in $(seq 1 40); do
    got=$(prom "$query")
    if [[ "$got" == "$want" ]]; then pass "$name"; return 0; fi
    sleep 0.5
  done
  fail "$name" "$query is '${got}', expected '$want'"
}

wait_for "prometheus-scrapes-privca" 'up{job="privca"}' 1

# ---- two EST enrollments (HTTP Basic)
ROOT="$DATA/ca-bundle.pem"
PW="metrics-pw-$RANDOM$RANDOM"
"$PRIVCA" est user add --data-dir "$DATA" dev1 --password "$PW" >/dev/null 2>&1 \
  || fail "est-user" "privca est user add failed"
enrolled=0
for n in 1 2; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "dev$n.key" \
    -subj "/CN=sensor-$n/serialNumber=S$n" -outform DER -out "dev$n.der" 2>/dev/null
  openssl base64 -in "dev$n.der" -out "dev$n.b64"
  code=$(curl -sS --max-time 20 --cacert "$ROOT" -u "dev1:$PW" -o "dev$n.p7" -w '%{http_code}' \
    -H 'Content-Type: application/pkcs10' --data-binary "@dev$n.b64" \
    "https://localhost:$HTTPS_PORT/.well-known/est/simpleenroll" 2>/dev/null)
  [[ "$code" == 200 ]] && enrolled=$((enrolled + 1))
done
# A wrong password: an EST error counted by route and status class.
curl -sS --max-time 20 --cacert "$ROOT" -u "dev1:wrong-$PW" -o /dev/null \
  -H 'Content-Type: application/pkcs10' --data-binary "@dev1.b64" \
  "https://localhost:$HTTPS_PORT/.well-known/est/simpleenroll" 2>/dev/null
if [[ "$enrolled" == 2 ]]; then pass "est-enroll"; else fail "est-enroll" "$enrolled of 2 enrolled"; fi

# ---- one ACME issuance (http-01) and its revocation with lego
LG="$WORK/lego"
lego_cmd() {
  LEGO_CA_CERTIFICATES="$ROOT" "$LEGO" --server "https://localhost:$HTTPS_PORT/acme/directory" \
    --accept-tos --email metrics@privca.test --path "$LG" --key-type ec256 -d metrics.acme.test "$@" \
    >>lego.log 2>&1
}
if lego_cmd --http --http.port "127.0.0.1:$HTTP01_PORT" run; then pass "acme-issue"
else fail "acme-issue" "lego run failed: $(tail -3 lego.log)"; fi
if lego_cmd revoke --keep --reason 4; then pass "acme-revoke"
else fail "acme-revoke" "lego revoke failed: $(tail -3 lego.log)"; fi

# ---- OCSP on the HTTP port (the lean protocol): the revoked ACME certificate
CERTS="$LG/certificates"
if openssl ocsp -issuer "$CERTS/metrics.acme.test.issuer.crt" -cert "$CERTS/metrics.acme.test.crt" \
  -url "http://127.0.0.1:$HTTP_PORT/ocsp" -CAfile "$ROOT" >ocsp.txt 2>&1 \
  && grep -q ': revoked' ocsp.txt; then
  pass "ocsp-revoked"
else
  fail "ocsp-revoked" "$(head -3 ocsp.txt)"
fi

# ---- the counters, read back through Prometheus
wait_for "issued-est" \
  'sum(privca_certificates_issued_total{ca="issuing",profile="device",protocol="est"})' 2
wait_for "issued-acme" 'sum(privca_certificates_issued_total{protocol="acme"})' 1
wait_for "revoked-acme" 'sum(privca_certificates_revoked_total{ca="issuing",protocol="acme"})' 1
wait_for "revoked-est-none" 'sum(privca_certificates_revoked_total{protocol="est"}) or vector(0)' 0
wait_for "est-errors-by-route" \
  'sum(privca_http_request_errors_total{endpoint="/.well-known/est/simpleenroll",problem="4xx"})' 1
wait_for "latency-by-route" \
  'sum(privca_http_request_duration_seconds_count{endpoint="/.well-known/est/simpleenroll",method="POST"})' 3
wait_for "ocsp-lean-answers" 'sum(privca_ocsp_lean_answers_total{status="successful"}) >= bool 1' 1
# Gauges: the issuing CA's certificate is good for years; no approvals are waiting.
wait_for "ca-expiry-days" 'privca_ca_certificate_expiry_days{ca="issuing"} > bool 1000' 1
wait_for "pending-approvals" 'sum(privca_est_pending_approvals) or vector(0)' 0

# ---- the example alert rules: both evaluate; a CA certificate with 10 days left raises one
if "$PRIVCA" ca create-sub --data-dir "$DATA" short-lived-team --parent root --days 10 \
  >short-ca.log 2>&1; then pass "short-ca"
else fail "short-ca" "privca ca create-sub --days 10: $(tail -2 short-ca.log)"; fi
# alerts_state PATH PY: run PY over Prometheus's /api/v1/PATH answer (alerts or rules).
alerts_state() {
  curl -sS --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/$1" 2>/dev/null | python3 -c "$2"
}
state=""
for _ in $(seq 1 40); do
  state=$(alerts_state alerts '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
print(" ".join(sorted("%s:%s:%s" % (a["labels"]["alertname"], a["labels"].get("ca"), a["state"]) for a in alerts)))')
  [[ "$state" == *"PrivcaCACertificateExpiringSoon:short-lived-team:pending"* ]] && break
  sleep 0.5
done
# Only the short CA: the others have years, and every CRL is far from its nextUpdate.
if [[ "$state" == "PrivcaCACertificateExpiringSoon:short-lived-team:pending" ]]; then
  pass "alert-ca-expiring"
else
  fail "alert-ca-expiring" "alerts: '${state}'"
fi
health=$(alerts_state rules '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
print(" ".join(sorted("%s:%s" % (r["name"], r["health"]) for g in groups for r in g["rules"])))')
if [[ "$health" == "PrivcaCACertificateExpiringSoon:ok PrivcaCRLNotRefreshed:ok" ]]; then
  pass "alert-rules-evaluate"
else
  fail "alert-rules-evaluate" "rules: '${health}'"
fi

summary
