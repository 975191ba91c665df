#!/bin/sh
# uacme challenge hook (`uacme -h`), called as `hook METHOD TYPE IDENT TOKEN KEYAUTH`.
# Accepts only http-01: writes KEYAUTH to $UACME_WEBROOT/.well-known/acme-challenge/TOKEN,
# which the conformance suite serves on HTTP01_PORT. UACME_HOOK_MODE=wrong writes a wrong
# key authorization (negative control: the server must refuse the challenge).
set -eu
method=$1 type=$2 ident=$3 token=$4 keyauth=$5
: "${UACME_WEBROOT:?UACME_WEBROOT must be set}"
dir=$UACME_WEBROOT/.well-known/acme-challenge
[ "$type" = http-01 ] || exit 1  # decline dns-01 and tls-alpn-01
case "$method" in
  begin)
    mkdir -p "$dir"
    if [ "${UACME_HOOK_MODE:-}" = wrong ]; then keyauth="$token.not-the-account-thumbprint"; fi
    printf '%s' "$keyauth" >"$dir/$token"
    echo "uacme hook: serving http-01 for $ident token $token" >&2 ;;
  done|failed)
    rm -f "$dir/$token"
    echo "uacme hook: $method for $ident" >&2 ;;
  *) exit 1 ;;
esac
