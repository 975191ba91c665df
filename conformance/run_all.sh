#!/usr/bin/env bash
# Run every conformance suite against real servers and clients; each suite
# prints PASS/FAIL/SKIP lines and "N passed, M failed"; this sums them.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
total_pass=0; total_fail=0; total_skip=0
for suite in "$here"/*/run_suite.sh; do
  [ -e "$suite" ] || continue
  name=$(basename "$(dirname "$suite")")
  echo "=== conformance: $name"
  out=$(mktemp)
  bash "$suite" 2>&1 | tee "$out"
  p=$(grep -Eo '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1 | awk '{print $1}')
  f=$(grep -Eo '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1 | awk '{print $3}')
  s=$(grep -c '^SKIP ' "$out" || true)
  if [ -z "$p" ]; then echo "FAIL $name: suite printed no summary"; f=1; p=0; fi
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
  rm -f "$out"
done
echo "conformance: ${total_pass} passed, ${total_fail} failed, ${total_skip} skipped"
[ "$total_fail" -eq 0 ]
