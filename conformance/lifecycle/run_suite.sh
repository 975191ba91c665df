#!/usr/bin/env bash
# CA lifecycle against a real `privca serve`, checked with the openssl CLI and curl:
# `privca ca revoke` of a sub-CA, then the parent's OCSP (openssl ocsp) says revoked with the
# reason and the parent's CRL lists it; EST refuses the revoked CA's client certificate on
# simplereenroll (curl) and refuses Basic enrollment from it within 5 s; `ca list` says revoked.
# Before that: `ca disable` stops EST enrollment and the disabled CA still answers OCSP.
# Prints PASS/FAIL/SKIP lines and ends with "N passed, M failed". Loopback only.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

require_tools lifecycle openssl curl python3 || { summary; exit $?; }

work=$(mktemp -d)
cleanup() { stop_privca; rm -rf "$work"; }
trap cleanup EXIT

DATA="$work/data"; HTTPS=$(free_port); HTTP=$(free_port)
start_privca "$DATA" "$HTTPS" "$HTTP" --host 127.0.0.1 --est-trusted-proxy 127.0.0.1/32 \
  || { fail "start" "privca serve did not start"; summary; exit 1; }
cd "$work" || exit 1

pc() { "$PRIVCA" "$@" --data-dir "$DATA"; }
state_of() { pc ca list --json | python3 -c "import json,sys; print(next(c['state'] for c in json.load(sys.stdin) if c['name']=='$1'))"; }
wait_for() {  # seconds command... : retry until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  while ((SECONDS < deadline)); do "$@" && return 0; sleep 0.2; done
  "$@"
}
pc ca export root --out root.pem >/dev/null
pc ca export issuing --out issuing.pem >/dev/null

BASE="https://localhost:$HTTPS/.well-known/est"
CURL=(curl -sS --max-time 20 --resolve "localhost:$HTTPS:127.0.0.1" --cacert "$DATA/ca-bundle.pem")
PW="lifecycle-pw-$RANDOM$RANDOM"
pc est user add dev1 --password "$PW" >/dev/null 2>&1 || fail "est-user-add" "privca est user add failed"
post() {  # name url bodyfile [curl args...] -> HTTP status; body in name.body
  local name=$1 url=$2 body=$3; shift 3
  "${CURL[@]}" -o "$name.body" -w '%{http_code}' -H 'Content-Type: application/pkcs10' \
    --data-binary "@$body" "$@" "$url" 2>"$name.err"
}
newcsr() {  # name CN -> name.key, name.b64
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -subj "/CN=$2" -outform DER -out "$1.der" 2>/dev/null && openssl base64 -in "$1.der" -out "$1.b64"
}
ocsp_issuing() {  # cert -> openssl ocsp output against the root (the parent of issuing)
  openssl ocsp -issuer root.pem -cert "$1" -url "http://127.0.0.1:$HTTP/ocsp" -CAfile root.pem \
    -no_nonce 2>&1
}

# A device certificate from the issuing CA: the client certificate used after the revocation.
newcsr dev fire-sensor-1
code=$(post enroll "$BASE/simpleenroll" dev.b64 -u "dev1:$PW")
if [ "$code" = 200 ] && openssl base64 -d -in enroll.body | openssl pkcs7 -inform DER -print_certs -out dev.pem 2>/dev/null; then
  pass "est-enroll-before"; else fail "est-enroll-before" "status $code: $(head -c 200 enroll.body)"; fi
newcsr dev2 fire-sensor-1
code=$(post reenroll-ok "$BASE/simplereenroll" dev2.b64 --cert dev.pem --key dev.key)
if [ "$code" = 200 ]; then pass "est-reenroll-before"; else fail "est-reenroll-before" "status $code: $(head -c 200 reenroll-ok.body)"; fi

# ---- disable: no issuance, OCSP still answered by the disabled CA
pc ca disable issuing >/dev/null || fail "ca-disable" "privca ca disable failed"
newcsr dis fire-sensor-2
refused_disabled() { code=$(post dis "$BASE/simpleenroll" dis.b64 -u "dev1:$PW"); [ "$code" = 403 ]; }
if wait_for 5 refused_disabled && grep -q "disabled" dis.body; then
  pass "est-refuses-disabled-ca"; else fail "est-refuses-disabled-ca" "status $code: $(head -c 200 dis.body)"; fi
openssl x509 -in dev.pem -out dev.crt
out=$(openssl ocsp -issuer issuing.pem -cert dev.crt -url "http://127.0.0.1:$HTTP/ocsp" -CAfile root.pem \
  -verify_other issuing.pem -no_nonce 2>&1)
if grep -q "dev.crt: good" <<<"$out" && grep -q "Response verify OK" <<<"$out"; then
  pass "disabled-ca-still-answers-ocsp"; else fail "disabled-ca-still-answers-ocsp" "$out"; fi
pc ca enable issuing >/dev/null || fail "ca-enable" "privca ca enable failed"

# ---- revoke the sub-CA: the parent's OCSP and CRL, then EST
out=$(ocsp_issuing issuing.pem)
if grep -q "issuing.pem: good" <<<"$out"; then pass "parent-ocsp-good-before"; else fail "parent-ocsp-good-before" "$out"; fi
pc ca revoke issuing --reason keyCompromise >/dev/null || fail "ca-revoke" "privca ca revoke failed"
t0=$(date +%s.%N)  # the revocation is committed: the server must refuse within 5 s of now
newcsr after fire-sensor-3
refused_basic() { code=$(post after "$BASE/simpleenroll" after.b64 -u "dev1:$PW"); [ "$code" = 403 ]; }
if wait_for 5 refused_basic; then
  pass "est-enroll-refused-within-5s ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s)"
else fail "est-enroll-refused-within-5s" "status $code: $(head -c 200 after.body)"; fi
# The EST client-certificate check re-reads privca's CAs every 30 s (client_certs._CA_TTL).
refused_cert() {
  code=$(post reenroll "$BASE/simplereenroll" dev2.b64 --cert dev.pem --key dev.key)
  [ "$code" = 401 ] || [ "$code" = 403 ]
}
if wait_for 40 refused_cert; then
  pass "est-reenroll-revoked-ca-cert-refused ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s, HTTP $code)"
else fail "est-reenroll-revoked-ca-cert-refused" "status $code: $(head -c 200 reenroll.body)"; fi

revoked_at_parent() { out=$(ocsp_issuing issuing.pem); grep -q "issuing.pem: revoked" <<<"$out"; }
if wait_for 10 revoked_at_parent && grep -q "Reason: keyCompromise" <<<"$out" && grep -q "Response verify OK" <<<"$out"; then
  pass "parent-ocsp-says-revoked"; else fail "parent-ocsp-says-revoked" "$out"; fi
ROOT_ID=$(pc ca list --json | python3 -c "import json,sys; print(next(c['id'] for c in json.load(sys.stdin) if c['name']=='root'))")
serial=$(openssl x509 -in issuing.pem -noout -serial | cut -d= -f2)
in_root_crl() {
  curl -sf "http://127.0.0.1:$HTTP/crl/$ROOT_ID.crl" | openssl crl -inform DER -noout -text 2>/dev/null \
    | tr -d ':' | grep -qi "$serial"
}
if wait_for 15 in_root_crl; then pass "parent-crl-lists-it"; else fail "parent-crl-lists-it" "serial $serial not on the root's CRL"; fi
if [ "$(state_of issuing)" = revoked ]; then pass "ca-list-says-revoked"; else fail "ca-list-says-revoked" "$(state_of issuing)"; fi
if ! pc cert issue --ca issuing --san dns:x.internal >/dev/null 2>&1; then
  pass "cli-issue-refused"; else fail "cli-issue-refused" "issued from a revoked CA"; fi

summary
