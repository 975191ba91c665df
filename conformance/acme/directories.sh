#!/usr/bin/env bash
# ACME directories conformance (privca only): with `privca serve` running, create a second
# issuing CA and a stored directory bound to it with a DNS-suffix policy
# (`privca acme directory add`), then drive lego against /acme/<dir>/directory: a name
# under the suffix is issued by that CA (openssl verify through that CA alone, issuer
# checked), a name outside it is refused with rejectedIdentifier naming grant.dns-suffix.
# The running server picks the stored directory up without a restart.
#
# Env (set by run_suite.sh): PRIVCA, DATA, HTTPS_PORT, HTTP01_PORT, ACME_CA_BUNDLE;
# LEGO [lego], ACME_DOMAIN [acme.internal], CASE_TIMEOUT [120], CI.
# Output: PASS/FAIL/SKIP lines, last line exactly "N passed, M failed".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$(dirname "$HERE")/common.sh"

: "${PRIVCA:?}" "${DATA:?}" "${HTTPS_PORT:?}" "${HTTP01_PORT:?}" "${ACME_CA_BUNDLE:?}"
LEGO=${LEGO:-lego}
ACME_DOMAIN=${ACME_DOMAIN:-acme.internal}
CASE_TIMEOUT=${CASE_TIMEOUT:-120}
DIR_NAME=team
CA_NAME=team-issuing
SUFFIX="team.$ACME_DOMAIN"
RUN_ID=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ALLOWED="dir-$RUN_ID.$SUFFIX"
REFUSED="dir-$RUN_ID.$ACME_DOMAIN"
DIRECTORY="https://localhost:$HTTPS_PORT/acme/$DIR_NAME/directory"
WORK=$(mktemp -d /tmp/privca-acme-dirs.XXXXXX)
LOG="$WORK/case.log"
: >"$LOG"

# shellcheck disable=SC2317  # invoked by the EXIT trap
finish() {
  if ((CONF_FAILED == 0)) && [[ "${KEEP_WORK:-0}" != 1 ]]; then rm -rf "$WORK"; else
    log "directories work kept in $WORK"
  fi
}
trap finish EXIT

cases=(acme-dirs/setup acme-dirs/lego/allowed-issued-by-dir-ca acme-dirs/lego/other-refused)
if ! command -v "$LEGO" >/dev/null; then
  for c in "${cases[@]}"; do case_missing "$c" "lego not installed (Debian package lego)"; done
  conf_summary
  exit $?
fi

run_logged() {
  echo "+ $*" >>"$LOG"
  timeout --kill-after=5 "$CASE_TIMEOUT" "$@" >>"$LOG" 2>&1
}
# Its own account dir: lego keys accounts by host only, and an account key belongs to one
# directory (a key of the default directory gets "unauthorized" here).
lego_dir() {
  LEGO_CA_CERTIFICATES="$ACME_CA_BUNDLE" run_logged "$LEGO" --server "$DIRECTORY" \
    --accept-tos --email dirs@privca.test --path "$WORK/lego" --key-type ec256 \
    --http --http.port "127.0.0.1:$HTTP01_PORT" "$@"
}
show_log() { sed 's/^/    | /' "$LOG" | tail -n 25; }

t0=$(now_s)
setup_ok=0
if run_logged "$PRIVCA" ca create-sub --data-dir "$DATA" --parent root --path-len 0 "$CA_NAME" &&
  run_logged "$PRIVCA" acme directory add --data-dir "$DATA" "$DIR_NAME" --ca "$CA_NAME" \
    --allow-dns "$SUFFIX" --no-wildcard &&
  run_logged "$PRIVCA" ca export --data-dir "$DATA" --out "$WORK/dir-ca.pem" "$CA_NAME" &&
  curl -fsS --max-time 10 --cacert "$ACME_CA_BUNDLE" "$DIRECTORY" >"$WORK/directory.json" &&
  grep -q "/acme/$DIR_NAME/new-order" "$WORK/directory.json"; then
  case_pass acme-dirs/setup "$(elapsed "$t0")"
  setup_ok=1
else
  case_fail acme-dirs/setup "CA, stored directory or $DIRECTORY not available (log $LOG)"
  show_log
fi

t0=$(now_s)
if ((setup_ok == 0)); then
  case_fail acme-dirs/lego/allowed-issued-by-dir-ca "needs acme-dirs/setup"
elif lego_dir -d "$ALLOWED" run && mkdir -p "$WORK/chain" &&
  split_chain "$WORK/lego/certificates/$ALLOWED.crt" "$WORK/chain" &&
  # Through the directory's CA alone: the leaf cannot verify through the default one.
  verify_chain "$ACME_CA_BUNDLE" "$WORK/dir-ca.pem" "$WORK/chain/leaf.pem" >>"$LOG" 2>&1 &&
  [[ "$(openssl x509 -noout -issuer -nameopt RFC2253 -in "$WORK/chain/leaf.pem" | cut -d= -f2-)" == \
    "$(openssl x509 -noout -subject -nameopt RFC2253 -in "$WORK/dir-ca.pem" | cut -d= -f2-)" ]] &&
  [[ ",$(cert_sans "$WORK/chain/leaf.pem")," == *",DNS:$ALLOWED,"* ]]; then
  case_pass acme-dirs/lego/allowed-issued-by-dir-ca "$(elapsed "$t0")"
else
  case_fail acme-dirs/lego/allowed-issued-by-dir-ca \
    "$ALLOWED was not issued by $CA_NAME through /acme/$DIR_NAME (log $LOG)"
  show_log
fi

t0=$(now_s)
if ((setup_ok == 0)); then
  case_fail acme-dirs/lego/other-refused "needs acme-dirs/setup"
elif lego_dir -d "$REFUSED" run; then
  case_fail acme-dirs/lego/other-refused "$REFUSED was issued outside $SUFFIX (log $LOG)"
  show_log
elif grep -q "rejectedIdentifier" "$LOG" && grep -q "grant.dns-suffix" "$LOG" &&
  [[ ! -e "$WORK/lego/certificates/$REFUSED.crt" ]]; then
  case_pass acme-dirs/lego/other-refused "$(elapsed "$t0")"
else
  case_fail acme-dirs/lego/other-refused "refused, but not with rejectedIdentifier and the rule"
  show_log
fi

conf_summary
