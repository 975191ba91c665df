#!/usr/bin/env bash
# Matter PKI, CLI-driven against a running `privca serve` on a fresh data dir:
# VID-scoped and non-VID-scoped PAAs, PAIs, bulk DACs (--count) each verified with
# `openssl verify -x509_strict`, RCAC/ICAC and a NOC from an openssl-made P-256 CSR,
# plus negative probes (wrong root, wrong curve, VID mismatch, chain too deep).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
work=$(mktemp -d)
trap 'stop_privca; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
data="$work/data"
https=$(free_port); http=$(free_port)
count=${MATTER_DAC_COUNT:-25}

m() { "$PRIVCA" matter "$@" --data-dir "$data"; }

if ! command -v openssl >/dev/null 2>&1; then missing "matter" "openssl is not installed"; summary; exit $?; fi
start_privca "$data" "$https" "$http" || { fail "serve-start"; summary; exit 1; }
pass "serve-start"

# ---------------------------------------------------------------- attestation PKI
if m paa create --name paa-fff1 --vid FFF1 >"$work/out" 2>&1 && grep -q "VID FFF1" "$work/out"; then
  pass "paa-vid-scoped"; else fail "paa-vid-scoped: $(cat "$work/out")"; fi
if m paa create --name paa-any >"$work/out" 2>&1 && grep -q "non-VID-scoped" "$work/out"; then
  pass "paa-non-vid-scoped"; else fail "paa-non-vid-scoped: $(cat "$work/out")"; fi
if m pai create --name pai-fff1 --paa paa-fff1 --vid FFF1 --pid 8000 >"$work/out" 2>&1; then
  pass "pai-under-vid-paa"; else fail "pai-under-vid-paa: $(cat "$work/out")"; fi
if m pai create --name pai-fff2 --paa paa-any --vid FFF2 >"$work/out" 2>&1; then
  pass "pai-under-non-vid-paa"; else fail "pai-under-non-vid-paa: $(cat "$work/out")"; fi
"$PRIVCA" ca export --data-dir "$data" paa-fff1 --out "$work/paa-fff1.pem" >/dev/null 2>&1
"$PRIVCA" ca export --data-dir "$data" paa-any --out "$work/paa-any.pem" >/dev/null 2>&1

verify_bundles() {  # OUTDIR ROOT_PEM -> number of devices failing openssl verify / key match
  local out=$1 root=$2 bad=0 dev
  for dev in "$out"/device-*; do
    if ! openssl verify -x509_strict -CAfile "$root" -untrusted "$dev/pai.pem" "$dev/dac.pem" >/dev/null 2>&1; then
      bad=$((bad + 1)); continue
    fi
    if [ -f "$dev/key.pem" ] && [ "$(openssl pkey -in "$dev/key.pem" -pubout 2>/dev/null)" != \
        "$(openssl x509 -in "$dev/dac.pem" -noout -pubkey 2>/dev/null)" ]; then bad=$((bad + 1)); fi
  done
  echo "$bad"
}

for pair in "pai-fff1:FFF1:8000:paa-fff1" "pai-fff2:FFF2:8001:paa-any"; do
  IFS=: read -r pai vid pid root <<<"$pair"
  out="$work/dacs-$pai"
  if m dac issue --pai "$pai" --vid "$vid" --pid "$pid" --count "$count" --out "$out" \
      >"$work/out" 2>"$work/err"; then pass "dac-issue-$pai"; else fail "dac-issue-$pai: $(tail -2 "$work/err")"; continue; fi
  n=$(ls -d "$out"/device-* | wc -l)
  entries=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(len(m["devices"]), m["vid"], m["pid"])' "$out/manifest.json")
  if [ "$n" -eq "$count" ] && [ "$entries" = "$count $vid $pid" ] && [ -s "$out/manifest.csv" ]; then
    pass "dac-bundles-manifest-$pai"; else fail "dac-bundles-manifest-$pai: $n folders, manifest '$entries'"; fi
  if grep -q "DAC" "$work/err"; then pass "dac-progress-bar-$pai"; else fail "dac-progress-bar-$pai"; fi
  bad=$(verify_bundles "$out" "$work/$root.pem")
  if [ "$bad" -eq 0 ]; then pass "openssl-verify-every-dac-$pai ($count)"; else fail "openssl-verify-every-dac-$pai: $bad bad"; fi
done
dac="$work/dacs-pai-fff1/device-00001/dac.pem"
if [ "$(openssl x509 -in "$dac" -noout -text | grep -c -e 'CRL Distribution' -e 'Authority Information Access' -e 'Alternative Name')" -eq 0 ] \
  && openssl x509 -in "$dac" -noout -text | grep -q "1.3.6.1.4.1.37244.2.1 = FFF1"; then
  pass "dac-profile-vid-no-cdp-aia"; else fail "dac-profile-vid-no-cdp-aia"; fi

# Negative probes.
if openssl verify -x509_strict -CAfile "$work/paa-any.pem" -untrusted "$work/dacs-pai-fff1/device-00001/pai.pem" \
    "$dac" >/dev/null 2>&1; then fail "dac-wrong-paa-refused"; else pass "dac-wrong-paa-refused"; fi
if m pai create --name pai-bad --paa paa-fff1 --vid FFF2 >/dev/null 2>"$work/err"; then
  fail "pai-vid-mismatch-refused"; else grep -q "chain-vid-mismatch" "$work/err" && pass "pai-vid-mismatch-refused" || fail "pai-vid-mismatch-refused: $(cat "$work/err")"; fi
if m pai create --name pai-deep --paa pai-fff1 --vid FFF1 >/dev/null 2>"$work/err"; then
  fail "pai-under-pai-refused"; else grep -q "chain-depth" "$work/err" && pass "pai-under-pai-refused" || fail "pai-under-pai-refused: $(cat "$work/err")"; fi
if m dac issue --pai pai-fff1 --vid FFF1 --pid 8001 --count 2 --out "$work/dacs-bad" >/dev/null 2>"$work/err"; then
  fail "dac-pid-mismatch-refused"; else grep -q "chain-pid-mismatch" "$work/err" && [ ! -e "$work/dacs-bad/manifest.json" ] \
    && pass "dac-pid-mismatch-refused" || fail "dac-pid-mismatch-refused: $(cat "$work/err")"; fi

# ---------------------------------------------------------------- operational PKI
fabric=FAB000000000001D
if m rcac create --name rcac --fabric-id "$fabric" >"$work/out" 2>&1 && m icac create --name icac --rcac rcac >>"$work/out" 2>&1; then
  pass "rcac-icac-create"; else fail "rcac-icac-create: $(cat "$work/out")"; fi
"$PRIVCA" ca export --data-dir "$data" rcac --out "$work/rcac.pem" >/dev/null 2>&1
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/node.key" \
  -subj "/CN=node" -out "$work/nocsr.pem" 2>/dev/null
if m noc issue --ca icac --csr "$work/nocsr.pem" --fabric-id "$fabric" --node-id 0000000000001234 \
    --cat FFFF0001 --out "$work/noc.pem" --tlv-out "$work/noc.tlv" >"$work/out" 2>&1; then
  pass "noc-issue-from-openssl-csr"; else fail "noc-issue-from-openssl-csr: $(cat "$work/out")"; fi
# noc.pem holds the NOC then the ICAC.
if openssl verify -x509_strict -CAfile "$work/rcac.pem" -untrusted "$work/noc.pem" "$work/noc.pem" >/dev/null 2>&1; then
  pass "openssl-verify-noc"; else fail "openssl-verify-noc"; fi
noc_text=$(openssl x509 -in "$work/noc.pem" -noout -text)
if echo "$noc_text" | grep -q "1.3.6.1.4.1.37244.1.1 = 0000000000001234" \
  && echo "$noc_text" | grep -q "1.3.6.1.4.1.37244.1.5 = $fabric" \
  && [ "$(openssl x509 -in "$work/noc.pem" -outform DER | wc -c)" -le 600 ] \
  && [ -s "$work/noc.tlv" ] && [ "$(wc -c <"$work/noc.tlv")" -le 400 ]; then
  pass "noc-ids-and-sizes"; else fail "noc-ids-and-sizes"; fi
if [ "$(openssl x509 -in "$work/noc.pem" -noout -pubkey)" = "$(openssl pkey -in "$work/node.key" -pubout)" ]; then
  pass "noc-key-is-csr-key"; else fail "noc-key-is-csr-key"; fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout "$work/p384.key" \
  -subj "/CN=node" -out "$work/p384.pem" 2>/dev/null
if m noc issue --ca icac --csr "$work/p384.pem" --node-id 1 --out "$work/bad.pem" >/dev/null 2>"$work/err"; then
  fail "noc-p384-refused"; else grep -q "matter-curve" "$work/err" && [ ! -e "$work/bad.pem" ] \
    && pass "noc-p384-refused" || fail "noc-p384-refused: $(cat "$work/err")"; fi
if m icac create --name icac2 --rcac icac >/dev/null 2>"$work/err"; then
  fail "icac-under-icac-refused"; else grep -q "chain-depth" "$work/err" && pass "icac-under-icac-refused" || fail "icac-under-icac-refused: $(cat "$work/err")"; fi

# The server still answers after the CLI wrote through the same database.
if curl -sS --fail --cacert "$data/ca-bundle.pem" "https://localhost:$https/" >/dev/null 2>&1; then
  pass "server-still-serving"; else fail "server-still-serving"; fi
summary
