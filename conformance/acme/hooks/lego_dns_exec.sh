#!/bin/sh
# lego `--dns exec` provider (EXEC_PATH): publish/remove dns-01 TXT records in
# pebble-challtestsrv through its management API (DNS_MGMT_URL, e.g. http://127.0.0.1:8055).
# lego calls it as `script present|cleanup FQDN VALUE` (FQDN ends with a dot).
set -eu
action=$1 fqdn=$2 value=${3:-}
: "${DNS_MGMT_URL:?DNS_MGMT_URL must point at the pebble-challtestsrv management API}"
case "$action" in
  present)
    curl -fsS --max-time 5 -X POST -d "{\"host\":\"$fqdn\",\"value\":\"$value\"}" \
      "$DNS_MGMT_URL/set-txt" ;;
  cleanup)
    curl -fsS --max-time 5 -X POST -d "{\"host\":\"$fqdn\"}" "$DNS_MGMT_URL/clear-txt" ;;
  *) ;;  # lego may add actions (e.g. timeout); nothing to do for them
esac
