#!/usr/bin/env bash
# make test's pytest run: tests/e2e in a process of its own beside everything else.
#
# The e2e modules spend most of their time waiting on an offline host under systemd-nspawn
# (package installs, unit starts, a bundle build), and the rest of the suite waits on PostgreSQL,
# servers and browsers; run one after the other they leave one of CI's two cores idle for long
# stretches (docs/adr/0040-e2e-beside-the-suite.md). The e2e output is kept apart and printed
# after the rest, so neither interleaves with the other.
#
# Usage: dev/run-tests.sh [pytest args for the rest...]; E2E names what runs beside (default tests/e2e).
set -uo pipefail
cd "$(dirname "$0")/.."
E2E=${E2E:-tests/e2e}
log=$(mktemp -t appliance-e2e.XXXXXX.log)
.venv/bin/pytest --durations=10 $E2E >"$log" 2>&1 &
e2e=$!
trap 'kill "$e2e" 2>/dev/null' INT TERM
.venv/bin/pytest --durations=15 --ignore=tests/e2e "$@"
rest=$?
wait "$e2e"
e2e_status=$?
echo
echo "================ $E2E (ran beside the rest; exit $e2e_status) ================"
cat "$log"
rm -f "$log"
# pytest exits 5 when it collected nothing: a failure like any other non-zero code.
if [ "$rest" -ne 0 ] || [ "$e2e_status" -ne 0 ]; then
    echo "FAILED: rest of the suite exit $rest, $E2E exit $e2e_status" >&2
    exit 1
fi
