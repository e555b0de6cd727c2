#!/usr/bin/env bash
# `make test` after lint: pytest (every tier but `slow`) and `make e2e`, side by side.
#
# Both mostly wait (API servers, pods, jobs that take their time; the load average stays near 1
# on 2 cores), so running them together costs the longer of the two instead of their sum. The
# e2e's output goes to a file and is printed once pytest is done. E2E_SEQUENTIAL=1 runs them one
# after the other, as before.
#
#   bash hack/test.sh [PYTEST ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -n ${E2E_SEQUENTIAL:-} ]]; then
  .venv/bin/pytest -m "not slow" "$@" || exit
  exec bash hack/e2e.sh
fi
log=$(mktemp /tmp/mediajob-e2e-log.XXXXXX)
bash hack/e2e.sh >"$log" 2>&1 &
e2e=$!
trap 'kill "$e2e" 2>/dev/null; wait "$e2e"' INT TERM
echo "=== make e2e runs beside pytest; its log: $log"
.venv/bin/pytest -m "not slow" "$@"
tests=$?
echo "=== pytest exited $tests; waiting for make e2e"
wait "$e2e"
e2e_rc=$?
cat "$log"
echo "=== pytest: exit $tests; make e2e: exit $e2e_rc"
((tests == 0 && e2e_rc == 0))
