#!/usr/bin/env bash
# Set up everything MeloFormer needs in ./.venv (idempotent; re-runs only when the
# requirements change). torch==2.13.0 is installed first, on purpose: anything that
# depends on torch would otherwise pull the newest torch with gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${MELOFORMER_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.meloformer-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
    "$venv/bin/python" -m pip install --quiet -e ".[app,training,dev]"
    echo "$want" > "$stamp"
fi
