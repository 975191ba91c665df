#!/usr/bin/env bash
# Foundation acceptance: first start, HTTPS with the trust bundle, CLI issuance
# verified by openssl, revocation + CRL checked by openssl, restart reuse.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
work=$(mktemp -d)
trap 'stop_privca; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
data="$work/data"
https=$(free_port); http=$(free_port)

start_privca "$data" "$https" "$http" || { fail "first-start"; summary; exit 1; }
pass "first-start"
[ -s "$data/ca-bundle.pem" ] && pass "ca-bundle-written" || fail "ca-bundle-written"

if curl -sS --fail --cacert "$data/ca-bundle.pem" "https://localhost:$https/" | grep -q privca; then
  pass "https-with-bundle"; else fail "https-with-bundle"; fi
# Negative control: without the bundle the TLS handshake must not be trusted.
if curl -sS --fail "https://localhost:$https/" >/dev/null 2>&1; then
  fail "https-untrusted-refused"; else pass "https-untrusted-refused"; fi

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/k.pem" \
  -subj /CN=wiki.internal -addext "subjectAltName=DNS:wiki.internal,IP:10.0.0.7" \
  -out "$work/req.pem" 2>/dev/null
if "$PRIVCA" cert issue --data-dir "$data" --csr "$work/req.pem" --profile tls-server \
    --out "$work/leaf.pem" >/dev/null 2>"$work/err"; then pass "cert-issue"; else fail "cert-issue: $(cat "$work/err")"; fi
"$PRIVCA" ca export --data-dir "$data" issuing >"$work/issuing.pem" 2>/dev/null
if openssl verify -CAfile "$data/ca-bundle.pem" -untrusted "$work/issuing.pem" "$work/leaf.pem" >/dev/null 2>&1; then
  pass "openssl-verify-leaf"; else fail "openssl-verify-leaf"; fi
# Negative control: a leaf checked against the wrong root fails.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ok.pem" \
  -subj /CN=other -out "$work/other-root.pem" -days 1 2>/dev/null
if openssl verify -CAfile "$work/other-root.pem" -untrusted "$work/issuing.pem" "$work/leaf.pem" >/dev/null 2>&1; then
  fail "openssl-verify-wrong-root-refused"; else pass "openssl-verify-wrong-root-refused"; fi

serial=$(openssl x509 -in "$work/leaf.pem" -noout -serial | cut -d= -f2)
if "$PRIVCA" cert revoke --data-dir "$data" "$serial" --reason keyCompromise >/dev/null 2>&1; then
  pass "cert-revoke"; else fail "cert-revoke"; fi
"$PRIVCA" crl generate --data-dir "$data" --ca issuing --out "$work/issuing.crl" >/dev/null 2>&1
openssl crl -inform DER -in "$work/issuing.crl" -out "$work/issuing.crl.pem" 2>/dev/null
verify_out=$(openssl verify -crl_check -CRLfile "$work/issuing.crl.pem" -CAfile "$data/ca-bundle.pem" \
  -untrusted "$work/issuing.pem" "$work/leaf.pem" 2>&1)
if echo "$verify_out" | grep -q "certificate revoked"; then
  pass "crl-check-revoked"; else fail "crl-check-revoked: $verify_out"; fi

root_before=$(sha256sum "$data/ca-bundle.pem")
stop_privca
start_privca "$data" "$https" "$http" || fail "restart"
if [ "$(sha256sum "$data/ca-bundle.pem")" = "$root_before" ]; then pass "restart-reuses-ca"; else fail "restart-reuses-ca"; fi
summary
