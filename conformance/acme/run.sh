#!/usr/bin/env bash
# ACME conformance: drive real clients (certbot, lego, uacme) against one ACME server on
# loopback. Each client obtains, renews and revokes a certificate; every issued chain is
# checked with `openssl verify` against the issuing root; negative controls must fail.
#
# Environment (defaults in brackets):
#   ACME_DIRECTORY      directory URL (required; loopback only)
#   ACME_CA_BUNDLE      default for the two below
#   ACME_TLS_CA_BUNDLE  PEM trusted for the ACME HTTPS endpoint [ACME_CA_BUNDLE]
#   ACME_ISSUER_ROOT    root that issued chains must verify to [ACME_CA_BUNDLE]
#   HTTP01_PORT [5002]  TLSALPN01_PORT [5001]  ACME_LISTEN_ADDR [127.0.0.1]
#                       where the clients answer challenges (the server must validate there)
#   DNS_MGMT_URL        pebble-challtestsrv management API for dns-01 TXT records
#                       [unset: dns-01 cases skip]; the server must resolve through it
#   DNS_RESOLVER        host:port lego checks TXT propagation with [127.0.0.1:8053]
#   ACME_DOMAIN         identifiers are <case>-<run id>.<ACME_DOMAIN> [acme.test];
#                       ACME_NAME_<CASE> overrides one (CERTBOT_HTTP, LEGO_HTTP, LEGO_TLSALPN,
#                       LEGO_DNS, UACME_HTTP, UACME_BAD)
#   ACME_EMAIL          account contact [conformance@privca.test]
#   ACME_DNS_WILDCARD   1: the lego dns-01 order also asks for *.<name> [1]
#   PEBBLE_MGMT_URL     Pebble management API: also check revocation status there [unset]
#   CASE_TIMEOUT        seconds per client invocation [120]
#   ACME_RUN_BUDGET     seconds for the whole run; later cases fail once it is spent [900]
#   ACME_ONLY           regex: run only matching cases [all]
#   ACME_SKIP           "case=reason;case=reason" extra skips, appended to SKIPS below
#   CERTBOT LEGO UACME  client binaries [conformance/.venv-certbot/bin/certbot, lego, uacme]
#   CERTBOT_INSTALL     1: pip-install certbot into conformance/.venv-certbot if missing [1]
#   UACME_KEY_TYPE [RSA] UACME_KEY_BITS [2048]  LEGO_KEY_TYPE [ec256]
#   CERTBOT_KEY_TYPE [ecdsa]
#   KEEP_WORK           1: keep the work directory even when everything passed
#   CI                  true: a missing client is a failure, not a skip
#
# Output: one PASS/FAIL/SKIP line per case, then exactly "N passed, M failed".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONF_DIR=$(dirname "$HERE")
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$CONF_DIR/common.sh"

# Known skips: case -> reason (STYLE.md section 7). Add a line when a server lacks a feature.
declare -A SKIPS=()
if [[ -n "${ACME_SKIP:-}" ]]; then
  IFS=';' read -r -a _extra <<<"$ACME_SKIP"
  for _kv in "${_extra[@]}"; do
    [[ -n "$_kv" ]] && SKIPS["${_kv%%=*}"]="${_kv#*=}"
  done
fi

: "${ACME_DIRECTORY:?set ACME_DIRECTORY to the ACME directory URL}"
ACME_TLS_CA_BUNDLE=${ACME_TLS_CA_BUNDLE:-${ACME_CA_BUNDLE:-}}
ACME_ISSUER_ROOT=${ACME_ISSUER_ROOT:-${ACME_CA_BUNDLE:-}}
[[ -s "$ACME_TLS_CA_BUNDLE" ]] || die "ACME_TLS_CA_BUNDLE (or ACME_CA_BUNDLE) must name a PEM file"
[[ -s "$ACME_ISSUER_ROOT" ]] || die "ACME_ISSUER_ROOT (or ACME_CA_BUNDLE) must name a PEM file"
ACME_TLS_CA_BUNDLE=$(realpath "$ACME_TLS_CA_BUNDLE")
ACME_ISSUER_ROOT=$(realpath "$ACME_ISSUER_ROOT")
HTTP01_PORT=${HTTP01_PORT:-5002}
TLSALPN01_PORT=${TLSALPN01_PORT:-5001}
ACME_LISTEN_ADDR=${ACME_LISTEN_ADDR:-127.0.0.1}
DNS_MGMT_URL=${DNS_MGMT_URL:-}
DNS_RESOLVER=${DNS_RESOLVER:-127.0.0.1:8053}
ACME_DOMAIN=${ACME_DOMAIN:-acme.test}
ACME_EMAIL=${ACME_EMAIL:-conformance@privca.test}
ACME_DNS_WILDCARD=${ACME_DNS_WILDCARD:-1}
PEBBLE_MGMT_URL=${PEBBLE_MGMT_URL:-}
CASE_TIMEOUT=${CASE_TIMEOUT:-120}
ACME_RUN_BUDGET=${ACME_RUN_BUDGET:-900}
ACME_ONLY=${ACME_ONLY:-}
CERTBOT=${CERTBOT:-$CONF_DIR/.venv-certbot/bin/certbot}
LEGO=${LEGO:-lego}
UACME=${UACME:-uacme}
CERTBOT_INSTALL=${CERTBOT_INSTALL:-1}
UACME_KEY_TYPE=${UACME_KEY_TYPE:-RSA}
UACME_KEY_BITS=${UACME_KEY_BITS:-2048}
LEGO_KEY_TYPE=${LEGO_KEY_TYPE:-ec256}
CERTBOT_KEY_TYPE=${CERTBOT_KEY_TYPE:-ecdsa}

# Never talk to anything but this machine: every client gets --server/-a explicitly, and
# the directory itself must be on loopback.
_host=$(sed -E 's#^https?://(\[[^]]*\]|[^:/]*).*#\1#' <<<"$ACME_DIRECTORY")
case "$_host" in
  127.*|localhost|"[::1]") ;;
  *) die "ACME_DIRECTORY host $_host is not loopback" ;;
esac
case "$ACME_LISTEN_ADDR" in
  127.*) LISTEN_HOSTPORT_PREFIX=$ACME_LISTEN_ADDR ;;
  ::1) LISTEN_HOSTPORT_PREFIX="[::1]" ;;
  *) die "ACME_LISTEN_ADDR must be loopback" ;;
esac
hostport() { printf '%s:%s' "$LISTEN_HOSTPORT_PREFIX" "$1"; }

RUN_ID=${ACME_RUN_ID:-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
name_for() {  # VAR default-label
  local var="ACME_NAME_$1"
  printf '%s' "${!var:-$2-$RUN_ID.$ACME_DOMAIN}"
}
N_CERTBOT_HTTP=$(name_for CERTBOT_HTTP certbot-http)
N_LEGO_HTTP=$(name_for LEGO_HTTP lego-http)
N_LEGO_TLSALPN=$(name_for LEGO_TLSALPN lego-alpn)
N_LEGO_DNS=$(name_for LEGO_DNS lego-dns)
N_UACME_HTTP=$(name_for UACME_HTTP uacme-http)
N_UACME_BAD=$(name_for UACME_BAD uacme-bad)

WORK=$(mktemp -d /tmp/privca-acme-conformance.XXXXXX)
BG_PIDS=()
cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
  if ((CONF_FAILED == 0)) && [[ "${KEEP_WORK:-0}" != 1 ]]; then
    rm -rf "$WORK"
  else
    log "work directory kept: $WORK"
  fi
}
trap cleanup EXIT
log "directory $ACME_DIRECTORY, run id $RUN_ID, work $WORK"

# --- case plumbing --------------------------------------------------------------------

CASE=""
CASE_LOG=""
CASE_T0=""
declare -A CASE_STATE=()  # case -> ok|fail|skip, for dependent cases

# Start CASE; return 1 (caller skips the body) if it is filtered or in SKIPS.
begin_case() {  # case [dependency ...]
  CASE=$1
  shift
  if [[ -n "$ACME_ONLY" && ! "$CASE" =~ $ACME_ONLY ]]; then
    CASE_STATE[$CASE]=skip
    return 1
  fi
  if [[ -n "${SKIPS[$CASE]+x}" ]]; then
    case_skip "$CASE" "${SKIPS[$CASE]}"
    CASE_STATE[$CASE]=skip
    return 1
  fi
  if ((SECONDS > ACME_RUN_BUDGET)); then
    case_fail "$CASE" "run budget of ${ACME_RUN_BUDGET}s (ACME_RUN_BUDGET) spent"
    CASE_STATE[$CASE]=fail
    return 1
  fi
  local dep
  for dep in "$@"; do
    if [[ "${CASE_STATE[$dep]:-}" != ok ]]; then
      if [[ "${CASE_STATE[$dep]:-}" == skip ]]; then
        case_skip "$CASE" "needs $dep, which did not run"
        CASE_STATE[$CASE]=skip
      else
        case_fail "$CASE" "needs $dep, which failed"
        CASE_STATE[$CASE]=fail
      fi
      return 1
    fi
  done
  CASE_LOG="$WORK/logs/${CASE//\//_}.log"
  mkdir -p "$WORK/logs"
  : >"$CASE_LOG"
  CASE_T0=$(now_s)
  log "case $CASE"
}

ok() {
  case_pass "$CASE" "$(elapsed "$CASE_T0")"
  CASE_STATE[$CASE]=ok
}

fail() {  # reason
  case_fail "$CASE" "$1 (after $(elapsed "$CASE_T0")s, log $CASE_LOG)"
  sed 's/^/    | /' "$CASE_LOG" | tail -n 25
  CASE_STATE[$CASE]=fail
}

missing() {  # case reason
  if [[ -n "$ACME_ONLY" && ! "$1" =~ $ACME_ONLY ]]; then
    CASE_STATE[$1]=skip
    return 0
  fi
  case_missing "$1" "$2"
  CASE_STATE[$1]=$(is_ci && echo fail || echo skip)
}

# Run a command bounded by CASE_TIMEOUT, output appended to the case log.
run_logged() {
  echo "+ $*" >>"$CASE_LOG"
  timeout --kill-after=5 "$CASE_TIMEOUT" "$@" >>"$CASE_LOG" 2>&1
}

# Check an issued chain: leaf names NAME (each extra arg too), verifies to ACME_ISSUER_ROOT.
# Echo the leaf's serial on success; append the reason to the log on failure.
check_chain() {  # fullchain.pem name...
  local chain=$1 d n sans
  shift
  d=$(mktemp -d "$WORK/chain.XXXX")
  if ! split_chain "$chain" "$d"; then
    echo "no certificate in $chain" >>"$CASE_LOG"
    return 1
  fi
  if ! verify_chain "$ACME_ISSUER_ROOT" "$d/intermediates.pem" "$d/leaf.pem" >>"$CASE_LOG" 2>&1; then
    echo "openssl verify failed for $chain" >>"$CASE_LOG"
    return 1
  fi
  sans=$(cert_sans "$d/leaf.pem")
  for n in "$@"; do
    if [[ ",$sans," != *",DNS:$n,"* ]]; then
      echo "leaf SANs '$sans' lack DNS:$n" >>"$CASE_LOG"
      return 1
    fi
  done
  cert_serial "$d/leaf.pem"
}

# With PEBBLE_MGMT_URL, confirm the server reports SERIAL (hex) as revoked.
check_revoked() {  # serial
  [[ -n "$PEBBLE_MGMT_URL" ]] || return 0
  local status
  status=$(curl -fsS --max-time 5 --cacert "$ACME_TLS_CA_BUNDLE" \
    "$PEBBLE_MGMT_URL/cert-status-by-serial/$1" 2>>"$CASE_LOG" || true)
  echo "cert-status-by-serial/$1: $status" >>"$CASE_LOG"
  grep -q '"Status": *"Revoked"' <<<"$status"
}

# Bounded wait for a challenge port to be free again (the previous client let go of it).
port_free_or_fail() {  # port
  if ! wait_tcp_free "$ACME_LISTEN_ADDR" "$1" 10; then
    echo "port $ACME_LISTEN_ADDR:$1 still busy" >>"$CASE_LOG"
    return 1
  fi
}

# Print one field of the ACME directory (empty if absent or unreachable).
directory_field() {  # name
  curl -fsS --max-time 10 --cacert "$ACME_TLS_CA_BUNDLE" "$ACME_DIRECTORY" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1" \
      2>/dev/null || true
}

# --- certbot ----------------------------------------------------------------------------

ensure_certbot() {
  [[ -x "$CERTBOT" ]] && return 0
  [[ "$CERTBOT" == "$CONF_DIR/.venv-certbot/bin/certbot" && "$CERTBOT_INSTALL" == 1 ]] || return 1
  log "installing certbot into $CONF_DIR/.venv-certbot"
  {
    python3 -m venv "$CONF_DIR/.venv-certbot" &&
      echo '*' >"$CONF_DIR/.venv-certbot/.gitignore" &&
      timeout 600 "$CONF_DIR/.venv-certbot/bin/pip" install -q certbot
  } >"$WORK/certbot-install.log" 2>&1 || {
    log "certbot install failed: $(tail -n 3 "$WORK/certbot-install.log")"
    return 1
  }
  [[ -x "$CERTBOT" ]]
}

CB="$WORK/certbot"
certbot_cmd() {
  REQUESTS_CA_BUNDLE="$ACME_TLS_CA_BUNDLE" run_logged "$CERTBOT" \
    --config-dir "$CB/config" --work-dir "$CB/work" --logs-dir "$CB/logs" \
    --non-interactive --server "$ACME_DIRECTORY" "$@"
}

suite_certbot() {
  local cases=(certbot/http-01/issue certbot/http-01/renew certbot/ari/renewal-info
    certbot/revoke/account-key certbot/revoke/cert-key certbot/revoke/again-fails)
  if ! ensure_certbot; then
    local c
    for c in "${cases[@]}"; do missing "$c" "certbot not installed ($CERTBOT)"; done
    return 0
  fi
  local name=$N_CERTBOT_HTTP live="$CB/config/live/$N_CERTBOT_HTTP" s1="" s2=""
  local archive="$CB/config/archive/$N_CERTBOT_HTTP"
  mkdir -p "$CB"

  if begin_case certbot/http-01/issue; then
    if port_free_or_fail "$HTTP01_PORT" &&
      certbot_cmd certonly --standalone --preferred-challenges http-01 \
        --http-01-port "$HTTP01_PORT" --http-01-address "$ACME_LISTEN_ADDR" \
        --agree-tos -m "$ACME_EMAIL" --no-eff-email --key-type "$CERTBOT_KEY_TYPE" \
        -d "$name" --cert-name "$name" &&
      s1=$(check_chain "$live/fullchain.pem" "$name"); then
      ok
    else
      fail "certonly --standalone did not yield a verifiable chain"
    fi
  fi

  if begin_case certbot/http-01/renew certbot/http-01/issue; then
    if port_free_or_fail "$HTTP01_PORT" &&
      certbot_cmd renew --cert-name "$name" --force-renewal --no-random-sleep-on-renew &&
      s2=$(check_chain "$live/fullchain.pem" "$name") && [[ "$s2" != "$s1" ]]; then
      ok
    else
      fail "renew --force-renewal did not yield a new verifiable chain (serials '$s1' '$s2')"
    fi
  fi

  # ARI (RFC 9773): without --force-renewal, `certbot renew` GETs renewalInfo/<AKI>.<serial>
  # when the directory advertises renewalInfo, and decides from the suggested window.
  local ari_base
  ari_base=$(directory_field renewalInfo)
  if [[ -z "$ari_base" && -z "${SKIPS[certbot/ari/renewal-info]+x}" ]]; then
    SKIPS[certbot/ari/renewal-info]="directory has no renewalInfo (ARI)"
  fi
  if begin_case certbot/ari/renewal-info certbot/http-01/renew; then
    if port_free_or_fail "$HTTP01_PORT" &&
      certbot_cmd renew --cert-name "$name" --no-random-sleep-on-renew &&
      cat "$CB/logs/letsencrypt.log" >>"$CASE_LOG" &&
      grep -q "Sending GET request to $ari_base/" "$CB/logs/letsencrypt.log" &&
      ! grep -q "error occurred requesting ACME Renewal Information" \
        "$CB/logs/letsencrypt.log"; then
      s2=$(check_chain "$live/fullchain.pem" "$name")  # ARI may have renewed it
      ok
    else
      fail "certbot renew did not fetch renewalInfo cleanly"
    fi
  fi

  # Revoke the renewed certificate with the account key (kid-signed JWS).
  if begin_case certbot/revoke/account-key certbot/http-01/renew; then
    if certbot_cmd revoke --cert-name "$name" --reason superseded --no-delete-after-revoke &&
      check_revoked "$s2"; then
      ok
    else
      fail "revoke --cert-name failed"
    fi
  fi

  # Revoke the first certificate with its own private key (jwk-signed JWS, RFC 8555 §7.6).
  if begin_case certbot/revoke/cert-key certbot/http-01/issue; then
    if certbot_cmd revoke --cert-path "$archive/cert1.pem" --key-path "$archive/privkey1.pem" \
      --reason keycompromise --no-delete-after-revoke && check_revoked "$s1"; then
      ok
    else
      fail "revoke --cert-path --key-path failed"
    fi
  fi

  # Negative control: revoking an already revoked certificate must fail (alreadyRevoked).
  if begin_case certbot/revoke/again-fails certbot/revoke/cert-key; then
    if certbot_cmd revoke --cert-path "$archive/cert1.pem" --reason unspecified \
      --no-delete-after-revoke; then
      fail "second revocation of the same certificate succeeded"
    elif grep -q alreadyRevoked "$CASE_LOG" "$CB/logs/letsencrypt.log"; then
      # certbot prints only the detail; the problem type is in this run's debug log
      # (certbot rotates letsencrypt.log on every run).
      ok
    else
      fail "second revocation failed, but not with urn:ietf:params:acme:error:alreadyRevoked"
    fi
  fi
}

# --- lego -------------------------------------------------------------------------------

LG="$WORK/lego"
lego_cmd() {
  LEGO_CA_CERTIFICATES="$ACME_TLS_CA_BUNDLE" run_logged "$LEGO" --server "$ACME_DIRECTORY" \
    --accept-tos --email "$ACME_EMAIL" --path "$LG" --key-type "$LEGO_KEY_TYPE" "$@"
}

suite_lego() {
  local cases=(lego/http-01/issue lego/http-01/renew lego/revoke/account-key
    lego/revoke/again-fails lego/tls-alpn-01/issue lego/dns-01/issue)
  if ! command -v "$LEGO" >/dev/null; then
    local c
    for c in "${cases[@]}"; do missing "$c" "lego not installed (Debian package lego)"; done
    return 0
  fi
  local name=$N_LEGO_HTTP certs="$LG/certificates" s1="" s2=""
  mkdir -p "$LG"

  if begin_case lego/http-01/issue; then
    if port_free_or_fail "$HTTP01_PORT" &&
      lego_cmd -d "$name" --http --http.port "$(hostport "$HTTP01_PORT")" run &&
      s1=$(check_chain "$certs/$name.crt" "$name"); then
      ok
    else
      fail "lego run --http did not yield a verifiable chain"
    fi
  fi

  # --days larger than any validity forces renewal; --no-random-sleep skips lego's
  # up-to-8-minute jitter when stdout is not a terminal.
  if begin_case lego/http-01/renew lego/http-01/issue; then
    if port_free_or_fail "$HTTP01_PORT" &&
      lego_cmd -d "$name" --http --http.port "$(hostport "$HTTP01_PORT")" \
        renew --days 100000 --no-random-sleep &&
      s2=$(check_chain "$certs/$name.crt" "$name") && [[ "$s2" != "$s1" ]]; then
      ok
    else
      fail "lego renew did not yield a new verifiable chain (serials '$s1' '$s2')"
    fi
  fi

  if begin_case lego/revoke/account-key lego/http-01/renew; then
    if lego_cmd -d "$name" revoke --keep --reason 4 && check_revoked "$s2"; then
      ok
    else
      fail "lego revoke failed"
    fi
  fi

  if begin_case lego/revoke/again-fails lego/revoke/account-key; then
    if lego_cmd -d "$name" revoke --keep --reason 0; then
      fail "second revocation of the same certificate succeeded"
    elif grep -q alreadyRevoked "$CASE_LOG"; then
      ok
    else
      fail "second revocation failed, but not with urn:ietf:params:acme:error:alreadyRevoked"
    fi
  fi

  if begin_case lego/tls-alpn-01/issue; then
    local alpn=$N_LEGO_TLSALPN
    if port_free_or_fail "$TLSALPN01_PORT" &&
      lego_cmd -d "$alpn" --tls --tls.port "$(hostport "$TLSALPN01_PORT")" run &&
      check_chain "$certs/$alpn.crt" "$alpn" >/dev/null; then
      ok
    else
      fail "lego run --tls did not yield a verifiable chain"
    fi
  fi

  if [[ -z "$DNS_MGMT_URL" && -z "${SKIPS[lego/dns-01/issue]+x}" ]]; then
    SKIPS[lego/dns-01/issue]="DNS_MGMT_URL unset (no pebble-challtestsrv to publish TXT records)"
  fi
  if begin_case lego/dns-01/issue; then
    local dns=$N_LEGO_DNS
    local names=(-d "$dns") want=("$dns")
    if [[ "$ACME_DNS_WILDCARD" == 1 ]]; then
      names+=(-d "*.$dns")
      want+=("*.$dns")
    fi
    # --dns.resolvers keeps lego's propagation query on loopback; --dns.disable-cp stops it
    # from then asking the zone's authoritative servers (there are none). The exec
    # provider solves authorizations one at a time with EXEC_SEQUENCE_INTERVAL (60 s by
    # default) between them: the name and its wildcard share one TXT owner name.
    if DNS_MGMT_URL=$DNS_MGMT_URL EXEC_PATH="$HERE/hooks/lego_dns_exec.sh" \
      EXEC_PROPAGATION_TIMEOUT=30 EXEC_POLLING_INTERVAL=1 EXEC_SEQUENCE_INTERVAL=1 \
      lego_cmd "${names[@]}" --dns exec --dns.resolvers "$DNS_RESOLVER" --dns.disable-cp run &&
      check_chain "$certs/$dns.crt" "${want[@]}" >/dev/null; then
      ok
    else
      fail "lego run --dns exec did not yield a verifiable chain"
    fi
  fi
}

# --- uacme ------------------------------------------------------------------------------

UC="$WORK/uacme"
UACME_WEBROOT="$WORK/uacme-webroot"
COMBINED_BUNDLE="$WORK/uacme-ca-bundle.pem"
WEBROOT_PID=""

# uacme (libcurl-gnutls) has no CA option: run it in a private mount namespace with a
# bundle bind-mounted over the system one, so the host's trust store is never touched.
uacme_cmd() {  # confdir args...
  local confdir=$1
  shift
  # shellcheck disable=SC2016  # $1 and $@ belong to the inner sh
  UACME_WEBROOT="$UACME_WEBROOT" run_logged unshare -m --propagation private sh -c \
    'mount --bind "$1" /etc/ssl/certs/ca-certificates.crt && shift && exec "$@"' sh \
    "$COMBINED_BUNDLE" "$UACME" -v -y -a "$ACME_DIRECTORY" -c "$confdir" \
    -t "$UACME_KEY_TYPE" -b "$UACME_KEY_BITS" -h "$HERE/hooks/uacme_http01.sh" "$@"
}

start_webroot() {
  mkdir -p "$UACME_WEBROOT/.well-known/acme-challenge"
  wait_tcp_free "$ACME_LISTEN_ADDR" "$HTTP01_PORT" 10 || return 1
  python3 -m http.server --bind "$ACME_LISTEN_ADDR" --directory "$UACME_WEBROOT" \
    "$HTTP01_PORT" >"$WORK/webroot.log" 2>&1 &
  WEBROOT_PID=$!
  BG_PIDS+=("$WEBROOT_PID")
  wait_tcp "$ACME_LISTEN_ADDR" "$HTTP01_PORT" 10
}

suite_uacme() {
  local cases=(uacme/http-01/issue uacme/http-01/renew uacme/revoke/foreign-account-fails
    uacme/revoke/account-key uacme/revoke/cert-key uacme/http-01/wrong-keyauth-fails)
  local c reason=""
  if ! command -v "$UACME" >/dev/null; then
    reason="uacme not installed (Debian package uacme)"
  elif ! unshare -m --propagation private true 2>/dev/null; then
    reason="unshare -m not permitted here (uacme needs a private mount namespace for its CA)"
  fi
  if [[ -n "$reason" ]]; then
    for c in "${cases[@]}"; do missing "$c" "$reason"; done
    return 0
  fi
  cat /etc/ssl/certs/ca-certificates.crt "$ACME_TLS_CA_BUNDLE" >"$COMBINED_BUNDLE" 2>/dev/null ||
    cp "$ACME_TLS_CA_BUNDLE" "$COMBINED_BUNDLE"
  if ! start_webroot; then
    for c in "${cases[@]}"; do
      case_fail "$c" "could not serve the http-01 webroot on $ACME_LISTEN_ADDR:$HTTP01_PORT"
      CASE_STATE[$c]=fail
    done
    return 0
  fi
  local name=$N_UACME_HTTP s1="" s2=""
  local cert="$UC/$name/cert.pem" key="$UC/private/$name/key.pem"

  if begin_case uacme/http-01/issue; then
    if uacme_cmd "$UC" new "$ACME_EMAIL" && uacme_cmd "$UC" issue "$name" &&
      s1=$(check_chain "$cert" "$name"); then
      cp "$cert" "$WORK/uacme-cert1.pem"
      ok
    else
      fail "uacme new + issue did not yield a verifiable chain"
    fi
  fi

  # uacme exits 1 ("still current") without -f; -f forces a new order with the same key.
  if begin_case uacme/http-01/renew uacme/http-01/issue; then
    if uacme_cmd "$UC" -f issue "$name" && s2=$(check_chain "$cert" "$name") &&
      [[ "$s2" != "$s1" ]]; then
      cp "$cert" "$WORK/uacme-cert2.pem"
      ok
    else
      fail "uacme -f issue did not yield a new verifiable chain (serials '$s1' '$s2')"
    fi
  fi

  # Negative control: an account that does not own the certificate must not revoke it.
  if begin_case uacme/revoke/foreign-account-fails uacme/http-01/renew; then
    cp "$WORK/uacme-cert2.pem" "$WORK/uacme-foreign.pem"
    if ! uacme_cmd "$WORK/uacme-other" new "other-$ACME_EMAIL"; then
      fail "could not register the second account"
    elif uacme_cmd "$WORK/uacme-other" revoke "$WORK/uacme-foreign.pem"; then
      fail "a foreign account revoked the certificate"
    elif grep -qE 'unauthorized|forbidden|403' "$CASE_LOG"; then
      ok
    else
      fail "foreign revocation failed, but not as unauthorized"
    fi
  fi

  # uacme renames CERTFILE to revoked-TIMESTAMP.pem on success: give it copies.
  if begin_case uacme/revoke/account-key uacme/http-01/renew; then
    cp "$WORK/uacme-cert2.pem" "$WORK/uacme-revoke2.pem"
    if uacme_cmd "$UC" -r 4 revoke "$WORK/uacme-revoke2.pem" && check_revoked "$s2"; then
      ok
    else
      fail "uacme revoke (account key) failed"
    fi
  fi

  if begin_case uacme/revoke/cert-key uacme/http-01/issue; then
    cp "$WORK/uacme-cert1.pem" "$WORK/uacme-revoke1.pem"
    if uacme_cmd "$UC" -r 1 revoke "$WORK/uacme-revoke1.pem" "$key" && check_revoked "$s1"; then
      ok
    else
      fail "uacme revoke CERT KEY (certificate key) failed"
    fi
  fi

  # Negative control: a wrong key authorization must not be accepted.
  if begin_case uacme/http-01/wrong-keyauth-fails uacme/http-01/issue; then
    if UACME_HOOK_MODE=wrong uacme_cmd "$UC" issue "$N_UACME_BAD"; then
      fail "issued despite a wrong http-01 key authorization"
    elif [[ -e "$UC/$N_UACME_BAD/cert.pem" ]]; then
      fail "uacme failed but a certificate was written"
    else
      ok
    fi
  fi

  stop_pid "$WEBROOT_PID"
}

T0=$(now_s)
suite_certbot
suite_lego
suite_uacme
log "all cases done in $(elapsed "$T0")s"
conf_summary
