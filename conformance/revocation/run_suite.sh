#!/usr/bin/env bash
# Revocation services against a real `privca serve`, checked with the openssl CLI and curl:
# OCSP POST/GET good -> revoked (with reason) after `privca cert revoke`, unknown issuer,
# garbage, nonce echo and a delegated signer; CRL download + `openssl verify -crl_check`,
# a revoked intermediate under -crl_check_all; caIssuers; short-lived mode.
# Prints PASS/FAIL/SKIP lines and ends with "N passed, M failed". Loopback only.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

require_tools revocation openssl curl python3 || { summary; exit $?; }

work=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

start() {  # name [config]  -> sets DATA, HTTP
  local name=$1 cfg=${2:-}
  DATA="$work/$name"; HTTP=$(free_port); local https; https=$(free_port)
  local args=(serve --data-dir "$DATA" --https-port "$https" --http-port "$HTTP")
  [ -n "$cfg" ] && args+=(--config "$cfg")
  "$PRIVCA" "${args[@]}" >"$work/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    grep -q "trust bundle" "$work/$name.log" 2>/dev/null && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.2
  done
  echo "privca did not start:"; cat "$work/$name.log"; return 1
}

pc() { "$PRIVCA" "$@" --data-dir "$DATA"; }
ca_id() { pc ca list --json | python3 -c "import json,sys; print(next(c['id'] for c in json.load(sys.stdin) if c['name']=='$1'))"; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
urlenc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.stdin.read().strip(), safe=""))'; }
ocsp_post() {  # issuer cert [extra openssl args]
  local issuer=$1 cert=$2; shift 2
  openssl ocsp -issuer "$issuer" -cert "$cert" -url "http://127.0.0.1:$HTTP/ocsp" \
    -CAfile "$DATA/root.pem" "$@" 2>&1
}
ocsp_get() {  # issuer cert -> response text (openssl verifies the fetched DER)
  local issuer=$1 cert=$2 req="$work/req.der" resp="$work/resp.der"
  openssl ocsp -issuer "$issuer" -cert "$cert" -no_nonce -reqout "$req" >/dev/null 2>&1
  local b64; b64=$(openssl base64 -A -in "$req" | urlenc)
  curl -sf -o "$resp" "http://127.0.0.1:$HTTP/ocsp/$b64" || { echo "GET failed"; return 1; }
  openssl ocsp -respin "$resp" -issuer "$issuer" -cert "$cert" -CAfile "$DATA/root.pem" 2>&1
}
wait_for() {  # seconds command... : retry until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  while ((SECONDS < deadline)); do "$@" && return 0; sleep 0.5; done
  "$@"
}

# ------------------------------------------------------------------ default server
start main || { fail "start" "privca serve did not start"; summary; exit 1; }
pc ca export root --out "$DATA/root.pem" >/dev/null
pc ca export issuing --out "$DATA/issuing.pem" >/dev/null
ISSUING_ID=$(ca_id issuing); ROOT_ID=$(ca_id root)
pc cert issue --san dns:good.internal --out "$work/good.pem" --key-out "$work/good.key" >/dev/null
pc cert issue --san dns:bad.internal --out "$work/bad.pem" --key-out "$work/bad.key" >/dev/null
openssl x509 -in "$work/good.pem" -out "$work/good.crt"  # leaf only
openssl x509 -in "$work/bad.pem" -out "$work/bad.crt"

out=$(ocsp_post "$DATA/issuing.pem" "$work/good.crt")
if grep -q "Response verify OK" <<<"$out" && grep -q "good.crt: good" <<<"$out"; then
  pass "ocsp-post-good"; else fail "ocsp-post-good" "$out"; fi

out=$(ocsp_get "$DATA/issuing.pem" "$work/good.crt")
if grep -q "Response verify OK" <<<"$out" && grep -q "good.crt: good" <<<"$out"; then
  pass "ocsp-get-good"; else fail "ocsp-get-good" "$out"; fi

hdrs=$(openssl ocsp -issuer "$DATA/issuing.pem" -cert "$work/good.crt" -no_nonce -reqout "$work/h.der" >/dev/null 2>&1;
  curl -s -D - -o /dev/null "http://127.0.0.1:$HTTP/ocsp/$(openssl base64 -A -in "$work/h.der" | urlenc)")
if grep -qi "^cache-control: max-age=[1-9]" <<<"$hdrs" && grep -qi "^etag:" <<<"$hdrs" && grep -qi "^last-modified:" <<<"$hdrs"; then
  pass "ocsp-cache-headers"; else fail "ocsp-cache-headers" "$hdrs"; fi

pc cert revoke "$(serial_of "$work/bad.crt")" --reason keyCompromise >/dev/null
revoked_post() { out=$(ocsp_post "$DATA/issuing.pem" "$work/bad.crt" -no_nonce); grep -q "bad.crt: revoked" <<<"$out"; }
if wait_for 10 revoked_post && grep -q "Reason: keyCompromise" <<<"$out" && grep -q "Response verify OK" <<<"$out"; then
  pass "ocsp-post-revoked-with-reason"; else fail "ocsp-post-revoked-with-reason" "$out"; fi
out=$(ocsp_get "$DATA/issuing.pem" "$work/bad.crt")
if grep -q "bad.crt: revoked" <<<"$out" && grep -q "Reason: keyCompromise" <<<"$out"; then
  pass "ocsp-get-revoked"; else fail "ocsp-get-revoked" "$out"; fi

# unknown issuer: a CA privca does not hold
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=foreign" \
  -keyout "$work/foreign.key" -out "$work/foreign.pem" 2>/dev/null
out=$(openssl ocsp -issuer "$work/foreign.pem" -serial 0x1234 -url "http://127.0.0.1:$HTTP/ocsp" -no_nonce 2>&1)
if grep -qi "unauthorized" <<<"$out"; then pass "ocsp-unknown-issuer-unauthorized"; else fail "ocsp-unknown-issuer-unauthorized" "$out"; fi

out=$(openssl ocsp -issuer "$DATA/issuing.pem" -serial 0x123456789 -url "http://127.0.0.1:$HTTP/ocsp" -CAfile "$DATA/root.pem" -no_nonce 2>&1)
if grep -q ": unknown" <<<"$out"; then pass "ocsp-unknown-serial"; else fail "ocsp-unknown-serial" "$out"; fi

code=$(curl -s -o "$work/garbage.der" -w '%{http_code}' -H 'Content-Type: application/ocsp-request' \
  --data-binary 'this is not DER' "http://127.0.0.1:$HTTP/ocsp")
hex=$(od -An -tx1 "$work/garbage.der" | tr -d ' \n')
if [ "$code" = 200 ] && [ "$hex" = "30030a0101" ]; then pass "ocsp-garbage-malformed"; else fail "ocsp-garbage-malformed" "HTTP $code body $hex"; fi
code=$(curl -s -o "$work/badb64.der" -w '%{http_code}' "http://127.0.0.1:$HTTP/ocsp/%%%not-base64")
hex=$(od -An -tx1 "$work/badb64.der" | tr -d ' \n')
if [ "$hex" = "30030a0101" ] && [ "$code" != 500 ]; then pass "ocsp-get-bad-base64-malformed"; else fail "ocsp-get-bad-base64-malformed" "HTTP $code body $hex"; fi

# caIssuers
curl -sf -o "$work/issuing.cer" "http://127.0.0.1:$HTTP/ca/$ISSUING_ID.cer"
if cmp -s "$work/issuing.cer" <(openssl x509 -in "$DATA/issuing.pem" -outform DER); then
  pass "ca-issuers-der"; else fail "ca-issuers-der" "/ca/$ISSUING_ID.cer differs from the issuing CA"; fi

# CRLs: openssl downloads them from the CDP in the certificates
cat "$DATA/issuing.pem" >"$work/untrusted.pem"
out=$(openssl verify -crl_check -crl_download -CAfile "$DATA/root.pem" -untrusted "$work/untrusted.pem" "$work/good.crt" 2>&1)
if grep -q "good.crt: OK" <<<"$out"; then pass "crl-download-accepts-good"; else fail "crl-download-accepts-good" "$out"; fi
crl_rejects_bad() {
  out=$(openssl verify -crl_check -crl_download -CAfile "$DATA/root.pem" -untrusted "$work/untrusted.pem" "$work/bad.crt" 2>&1)
  grep -q "certificate revoked" <<<"$out"
}
if wait_for 15 crl_rejects_bad; then pass "crl-download-rejects-revoked"; else fail "crl-download-rejects-revoked" "$out"; fi

curl -sf -o "$work/issuing.crl" "http://127.0.0.1:$HTTP/crl/$ISSUING_ID.crl"
text=$(openssl crl -inform DER -in "$work/issuing.crl" -noout -text 2>&1)
if grep -q "CRL Number" <<<"$text" && grep -q "Authority Key Identifier" <<<"$text" \
  && grep -q "Issuing Distribution Point: critical" <<<"$text" && grep -q "Key Compromise" <<<"$text" \
  && grep -q "Next Update" <<<"$text"; then
  pass "crl-fields"; else fail "crl-fields" "$text"; fi

# a revoked intermediate invalidates its leaves under -crl_check_all
pc ca create-sub mid --parent root --path-len 0 >/dev/null
pc ca export mid --out "$work/mid.pem" >/dev/null
MID_ID=$(ca_id mid)
pc cert issue --ca mid --san dns:under-mid.internal --out "$work/undermid.pem" --key-out "$work/undermid.key" >/dev/null
openssl x509 -in "$work/undermid.pem" -out "$work/undermid.crt"
fetch_crls() {
  curl -sf "http://127.0.0.1:$HTTP/crl/$ROOT_ID.crl" | openssl crl -inform DER -out "$work/root.crl.pem" &&
    curl -sf "http://127.0.0.1:$HTTP/crl/$MID_ID.crl" | openssl crl -inform DER -out "$work/mid.crl.pem"
}
verify_all() {
  openssl verify -crl_check_all -CAfile "$DATA/root.pem" -untrusted "$work/mid.pem" \
    -CRLfile "$work/root.crl.pem" -CRLfile "$work/mid.crl.pem" "$work/undermid.crt" 2>&1
}
fetch_crls; out=$(verify_all)
if grep -q "undermid.crt: OK" <<<"$out"; then pass "crl-check-all-intermediate-good"; else fail "crl-check-all-intermediate-good" "$out"; fi
pc cert revoke "$(serial_of "$work/mid.pem")" --ca root --reason cACompromise >/dev/null
mid_rejected() { fetch_crls && out=$(verify_all); grep -q "certificate revoked" <<<"$out"; }
if wait_for 15 mid_rejected; then pass "crl-check-all-revoked-intermediate"; else fail "crl-check-all-revoked-intermediate" "$out"; fi
out=$(ocsp_post "$DATA/root.pem" "$work/mid.pem" -no_nonce)
if grep -q "mid.pem: revoked" <<<"$out" && grep -q "cACompromise" <<<"$out"; then
  pass "ocsp-revoked-intermediate-on-parent"; else fail "ocsp-revoked-intermediate-on-parent" "$out"; fi

# short-lived mode: no CDP/OCSP in leaves by default, published on request; revocation reflected
pc ca create-sub short --parent root --path-len 0 --mode short-lived >/dev/null
pc ca create-sub shortpub --parent root --path-len 0 --mode short-lived --publish-revocation >/dev/null
pc ca export short --out "$work/short.pem" >/dev/null
pc cert issue --ca short --profile short-lived --san dns:s.internal --out "$work/s.pem" --key-out "$work/s.key" >/dev/null
pc cert issue --ca shortpub --profile short-lived --san dns:p.internal --out "$work/p.pem" --key-out "$work/p.key" >/dev/null
openssl x509 -in "$work/s.pem" -out "$work/s.crt"
stext=$(openssl x509 -in "$work/s.crt" -noout -text); ptext=$(openssl x509 -in "$work/p.pem" -noout -text)
if ! grep -q "CRL Distribution" <<<"$stext" && ! grep -q "OCSP - URI" <<<"$stext" \
  && grep -q "CRL Distribution" <<<"$ptext" && grep -q "OCSP - URI" <<<"$ptext"; then
  pass "short-lived-urls"; else fail "short-lived-urls" "CDP/OCSP presence wrong"; fi
too_long=$(pc cert issue --ca short --profile short-lived --san dns:x.internal --days 8 2>&1 >/dev/null)
if [ -n "$too_long" ]; then pass "short-lived-refuses-8-days"; else fail "short-lived-refuses-8-days" "8-day leaf issued"; fi
pc cert revoke "$(serial_of "$work/s.crt")" --ca short >/dev/null
short_revoked() { out=$(openssl ocsp -issuer "$work/short.pem" -cert "$work/s.crt" -url "http://127.0.0.1:$HTTP/ocsp" -CAfile "$DATA/root.pem" -verify_other "$work/short.pem" -no_nonce 2>&1); grep -q "s.crt: revoked" <<<"$out"; }
if wait_for 10 short_revoked; then pass "short-lived-revocation-reflected"; else fail "short-lived-revocation-reflected" "$out"; fi

# ------------------------------------------------------------------ delegated signer + nonce echo
cat >"$work/delegated.toml" <<'TOML'
[revocation]
ocsp_delegated_signer = true
ocsp_nonce_echo = true
TOML
start delegated "$work/delegated.toml" || { fail "start-delegated" "privca serve did not start"; summary; exit 1; }
pc ca export root --out "$DATA/root.pem" >/dev/null
pc ca export issuing --out "$DATA/issuing.pem" >/dev/null
pc cert issue --san dns:d.internal --out "$work/d.pem" --key-out "$work/d.key" >/dev/null
openssl x509 -in "$work/d.pem" -out "$work/d.crt"
out=$(ocsp_post "$DATA/issuing.pem" "$work/d.crt" -verify_other "$DATA/issuing.pem" -resp_text)
if grep -q "Response verify OK" <<<"$out" && grep -q "d.crt: good" <<<"$out" \
  && ! grep -q "no nonce" <<<"$out" && ! grep -q "nonce verify error" <<<"$out"; then
  pass "ocsp-nonce-echo"; else fail "ocsp-nonce-echo" "$out"; fi
if grep -q "OCSP Signing" <<<"$out" && grep -q "OCSP No Check" <<<"$out"; then
  pass "ocsp-delegated-signer"; else fail "ocsp-delegated-signer" "$out"; fi

# ------------------------------------------------------------------ two nodes on one PostgreSQL
PG_DB="privca_conf_rev_$$"
PG_URL="${PG_BASE%/*}/$PG_DB"
if pg_sql "CREATE DATABASE \"$PG_DB\"" 2>/dev/null; then
  drop_pg() { pg_sql "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1; }
  export PRIVCA_KEY_PASSPHRASE="conformance-passphrase-$$-0123456789"
  start_node() {  # name extra-args...  -> sets NODE_HTTP (no subshell: PIDS must reach cleanup)
    local name=$1; shift
    local d="$work/$name" h; h=$(free_port); local s; s=$(free_port)
    "$PRIVCA" serve --data-dir "$d" --database-url "$PG_URL" --https-port "$s" --http-port "$h" "$@" \
      >"$work/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
      grep -q "trust bundle" "$work/$name.log" 2>/dev/null && break
      sleep 0.2
    done
    NODE_HTTP=$h
  }
  start_node nodeA --workers 2; HTTP_A=$NODE_HTTP
  start_node nodeB; HTTP_B=$NODE_HTTP
  DATA="$work/nodeA"
  pg() { "$PRIVCA" "$@" --data-dir "$DATA" --database-url "$PG_URL"; }
  pg ca export root --out "$work/pg-root.pem" >/dev/null
  pg ca export issuing --out "$work/pg-issuing.pem" >/dev/null
  PG_ISSUING_ID=$(pg ca list --json | python3 -c "import json,sys; print(next(c['id'] for c in json.load(sys.stdin) if c['name']=='issuing'))")
  pg cert issue --san dns:multi.internal --out "$work/multi.pem" --key-out "$work/multi.key" >/dev/null
  openssl x509 -in "$work/multi.pem" -out "$work/multi.crt"
  node_status() {  # port -> good/revoked/... as openssl prints it (several tries hit several workers)
    openssl ocsp -issuer "$work/pg-issuing.pem" -cert "$work/multi.crt" -url "http://127.0.0.1:$1/ocsp" \
      -CAfile "$work/pg-root.pem" -no_nonce 2>&1 | sed -n 's/.*multi.crt: //p'
  }
  all_say() {  # status
    local i; for i in 1 2 3 4 5 6; do
      [ "$(node_status "$HTTP_A")" = "$1" ] && [ "$(node_status "$HTTP_B")" = "$1" ] || return 1
    done
  }
  if all_say good; then pass "multi-node-ocsp-good"; else fail "multi-node-ocsp-good" "A=$(node_status "$HTTP_A") B=$(node_status "$HTTP_B")"; fi
  pg cert revoke "$(serial_of "$work/multi.crt")" --reason superseded >/dev/null
  if wait_for 10 all_say revoked; then pass "multi-node-ocsp-revoked-everywhere"; else fail "multi-node-ocsp-revoked-everywhere" "A=$(node_status "$HTTP_A") B=$(node_status "$HTTP_B")"; fi
  same_crl() {
    curl -sf -o "$work/a.crl" "http://127.0.0.1:$HTTP_A/crl/$PG_ISSUING_ID.crl" &&
      curl -sf -o "$work/b.crl" "http://127.0.0.1:$HTTP_B/crl/$PG_ISSUING_ID.crl" &&
      cmp -s "$work/a.crl" "$work/b.crl" &&
      openssl crl -inform DER -in "$work/a.crl" -noout -text | grep -qi "$(serial_of "$work/multi.crt")"
  }
  if wait_for 15 same_crl; then pass "multi-node-same-crl"; else fail "multi-node-same-crl" "nodes serve different CRLs"; fi
  numbers=$(pg audit export --format jsonl | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r["action"] == "crl.generate" and r["target"] == "issuing":
        print(r["detail"]["number"])')
  dupes=$(sort <<<"$numbers" | uniq -d)
  if [ -n "$numbers" ] && [ -z "$dupes" ]; then pass "multi-node-one-generator-per-crl-number"
  else fail "multi-node-one-generator-per-crl-number" "CRL numbers generated: ${numbers:-none}; duplicates: ${dupes:-none}"; fi
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  PIDS=()
  drop_pg
else
  missing "multi-node" "PostgreSQL at $PG_BASE is unreachable"
fi

summary
