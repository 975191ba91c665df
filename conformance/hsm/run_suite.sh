#!/usr/bin/env bash
# CA keys in a PKCS#11 token (SoftHSM2), end to end with real clients against `privca serve`:
# a root and an issuing CA made in a fresh token (--key-backend pkcs11), then
#  - lego obtains a certificate through an ACME directory bound to the token CA,
#  - curl + openssl enroll over EST (HTTP Basic) under a label bound to it,
# each checked with `openssl verify` (issuer: the token CA) and an OCSP query answered
# good and verified by openssl; the lego certificate is revoked and OCSP says so.
# Negative controls: the certificates do not verify under another root, a wrong EST
# password gets 401. Every step runs under `timeout`; everything listens on 127.0.0.1.
# Locally a missing tool (softhsm2, lego, curl, openssl) is a SKIP; with CI=true a FAIL.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
work=$(mktemp -d /tmp/privca-hsm-conf.XXXXXX)
trap 'stop_privca; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
data="$work/data"
STEP=${STEP_TIMEOUT:-90}
t() { timeout --kill-after=5 "$STEP" "$@"; }

module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
  /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -e "$m" ] && module=$m && break
done
for tool in softhsm2-util lego curl openssl; do
  command -v "$tool" >/dev/null 2>&1 || { missing "hsm" "$tool is not installed"; summary; exit $?; }
done
[ -n "$module" ] || { missing "hsm" "libsofthsm2.so not found (apt-get install softhsm2)"; summary; exit $?; }

# A private token: its own SOFTHSM2_CONF and token directory, never the system's.
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$work/tokens" >"$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf"
pin="conf-$RANDOM$RANDOM"
if t softhsm2-util --init-token --free --label privca-conf --pin "$pin" --so-pin "so-$pin" \
    >"$work/token.log" 2>&1; then pass "token-init"; else fail "token-init" "$(cat "$work/token.log")"; summary; exit 1; fi
(umask 077; echo "$pin" >"$work/token.pin")
http01=$(free_port)
cat >"$work/privca.toml" <<EOF
[pkcs11]
module = "$module"
token_label = "privca-conf"
pin_file = "$work/token.pin"

[est.labels.hsm]
ca = "hsm-issuing"
profile = "tls-server"
auth = ["basic"]
allow_dns = ["hsm.internal"]
EOF
pc() { t "$PRIVCA" "$@" --data-dir "$data" --config "$work/privca.toml"; }

if pc ca create-root hsm-root --key-backend pkcs11 >"$work/out" 2>&1 \
  && pc ca create-sub hsm-issuing --parent hsm-root --key-backend pkcs11 >>"$work/out" 2>&1; then
  pass "token-ca-create"; else fail "token-ca-create" "$(cat "$work/out")"; summary; exit 1; fi
backends=$(python3 -c 'import sqlite3,sys; print(dict(sqlite3.connect(sys.argv[1]).execute(
  "SELECT name, key_backend FROM cas WHERE name LIKE '"'"'hsm-%'"'"'").fetchall()))' "$data/privca.db")
if [ "$backends" = "{'hsm-root': 'pkcs11', 'hsm-issuing': 'pkcs11'}" ] \
  && ! grep -q "ENCRYPTED PRIVATE KEY" <(python3 -c 'import sqlite3,sys; [print(r[0]) for r in
  sqlite3.connect(sys.argv[1]).execute("SELECT key_blob FROM cas WHERE name LIKE '"'"'hsm-%'"'"'")]' "$data/privca.db"); then
  pass "token-keys-not-in-db"; else fail "token-keys-not-in-db" "$backends"; fi

https=$(free_port); http=$(free_port)
start_privca "$data" "$https" "$http" --config "$work/privca.toml" \
  --acme-resolve-all-to 127.0.0.1 --acme-http01-port "$http01" || { fail "serve-start"; summary; exit 1; }
pass "serve-start"
pc ca export hsm-root --out "$work/root.pem" >/dev/null 2>&1
pc ca export hsm-issuing --out "$work/issuing.pem" >/dev/null 2>&1
pc ca export root --out "$work/other-root.pem" >/dev/null 2>&1  # serve's own software root

ocsp_status() {  # cert -> openssl's verdict line for it ("...: good"), response verified
  t openssl ocsp -issuer "$work/issuing.pem" -cert "$1" -url "http://127.0.0.1:$http/ocsp" \
    -CAfile "$work/root.pem" 2>&1
}
issued_by_token() {  # cert: verifies to the token root, issuer is hsm-issuing, not to another root
  t openssl verify -CAfile "$work/root.pem" -untrusted "$work/issuing.pem" "$1" >/dev/null 2>&1 \
    && [ "$(openssl x509 -in "$1" -noout -issuer -nameopt RFC2253)" = \
         "issuer=$(openssl x509 -in "$work/issuing.pem" -noout -subject -nameopt RFC2253 | cut -d= -f2-)" ] \
    && ! openssl verify -CAfile "$work/other-root.pem" -untrusted "$work/issuing.pem" "$1" >/dev/null 2>&1
}

# ---------------------------------------------------------------- ACME (lego)
if pc acme directory add hsm --ca hsm-issuing --allow-dns hsm.internal >"$work/out" 2>&1; then
  pass "acme-directory-on-token-ca"; else fail "acme-directory-on-token-ca" "$(cat "$work/out")"; fi
name="lego-$RANDOM.hsm.internal"
lego_hsm() {
  LEGO_CA_CERTIFICATES="$data/ca-bundle.pem" t lego --server "https://localhost:$https/acme/hsm/directory" \
    --accept-tos --email hsm@privca.test --path "$work/lego" --key-type ec256 \
    --http --http.port "127.0.0.1:$http01" -d "$name" "$@" >>"$work/lego.log" 2>&1
}
leaf="$work/lego-leaf.pem"  # a copy: `lego revoke` archives its own
if lego_hsm run && cp "$work/lego/certificates/$name.crt" "$leaf" 2>/dev/null; then
  pass "lego-obtain"; else fail "lego-obtain" "$(tail -5 "$work/lego.log")"; fi
if [ -s "$leaf" ] && issued_by_token "$leaf"; then
  pass "lego-openssl-verify-token-chain"; else fail "lego-openssl-verify-token-chain"; fi
out=$(ocsp_status "$leaf")
if echo "$out" | grep -q "Response verify OK" && echo "$out" | grep -q ": good"; then
  pass "lego-ocsp-good"; else fail "lego-ocsp-good" "$out"; fi
if lego_hsm revoke; then pass "lego-revoke"; else fail "lego-revoke" "$(tail -5 "$work/lego.log")"; fi
revoked=""
for _ in $(seq 1 20); do
  out=$(ocsp_status "$leaf")
  echo "$out" | grep -q ": revoked" && echo "$out" | grep -q "Response verify OK" && revoked=1 && break
  sleep 0.5
done
if [ -n "$revoked" ]; then pass "lego-ocsp-revoked"; else fail "lego-ocsp-revoked" "$out"; fi

# ---------------------------------------------------------------- EST (curl + openssl)
pw="est-$RANDOM$RANDOM"
pc est user add dev1 --password "$pw" --label hsm >/dev/null 2>&1
curl_est() {  # path body-file [curl args]: prints the HTTP status, body in $work/est.body
  local path=$1 body=$2; shift 2
  t curl -sS --resolve "localhost:$https:127.0.0.1" --cacert "$data/ca-bundle.pem" \
    -o "$work/est.body" -w '%{http_code}' -H 'Content-Type: application/pkcs10' \
    --data-binary "@$body" "$@" "https://localhost:$https/.well-known/est/hsm/$path"
}
t openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/est.key" \
  -subj "/CN=est.hsm.internal" -addext "subjectAltName=DNS:est.hsm.internal" \
  -outform DER -out "$work/est.der" 2>/dev/null
openssl base64 -in "$work/est.der" -out "$work/est.b64"
code=$(curl_est simpleenroll "$work/est.b64" -u "dev1:$pw")
est_leaf="$work/est.pem"
if [ "$code" = 200 ] && openssl base64 -d -in "$work/est.body" \
    | openssl pkcs7 -inform DER -print_certs -out "$est_leaf" 2>/dev/null && [ -s "$est_leaf" ]; then
  pass "est-simpleenroll"; else fail "est-simpleenroll" "status $code: $(head -c 200 "$work/est.body")"; fi
if [ -s "$est_leaf" ] && issued_by_token "$est_leaf"; then
  pass "est-openssl-verify-token-chain"; else fail "est-openssl-verify-token-chain"; fi
out=$(ocsp_status "$est_leaf")
if echo "$out" | grep -q "Response verify OK" && echo "$out" | grep -q ": good"; then
  pass "est-ocsp-good"; else fail "est-ocsp-good" "$out"; fi
code=$(curl_est simpleenroll "$work/est.b64" -u "dev1:wrong-$pw")
if [ "$code" = 401 ]; then pass "est-wrong-password-401"; else fail "est-wrong-password-401" "status $code"; fi

# The CRL of the token CA, signed by the token, lists the revoked lego certificate.
id=$(pc ca list --json | python3 -c "import json,sys; print(next(c['id'] for c in json.load(sys.stdin) if c['name']=='hsm-issuing'))")
serial=$(openssl x509 -in "$leaf" -noout -serial 2>/dev/null | cut -d= -f2)
if [ -n "$serial" ] && t curl -sf -o "$work/crl.der" "http://127.0.0.1:$http/crl/$id.crl" \
  && openssl crl -inform DER -in "$work/crl.der" -CAfile "$work/issuing.pem" -noout 2>&1 | grep -q "verify OK" \
  && openssl crl -inform DER -in "$work/crl.der" -noout -text | grep -qi "Serial Number: $serial"; then
  pass "crl-signed-by-token-lists-revoked"; else fail "crl-signed-by-token-lists-revoked"; fi
summary
