#!/usr/bin/env bash
# The main job: set up, then run MeloFormer on a bundled example.
# Until the model and the app exist this is the encoding round trip of a Bach chorale.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p output
exec .venv/bin/meloformer roundtrip resources/examples/bach_chorale.mid -o output/bach_chorale.roundtrip.mid "$@"
