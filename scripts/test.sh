#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
bash scripts/system-packages.sh
.venv/bin/python -m pytest "$@"
status=$?
# pytest exits 5 when it collected nothing (e.g. a -k filter); that is not a failure.
[ "$status" -eq 5 ] && status=0
exit "$status"
