#!/usr/bin/env bash
# The main job: set up, then MeloFormer on the bundled Bach chorale with the default model.
# With a display: the app opens with the chorale (click Continue). Without one: a headless
# continuation by 8 bars, written to output/bach_chorale.continued.mid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
example=resources/examples/bach_chorale.mid
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    exec .venv/bin/meloformer "$example"
fi
echo "no display: continuing $example headless with the default model" >&2
mkdir -p output
exec .venv/bin/meloformer continue "$example" --bars 8 -o output/bach_chorale.continued.mid "$@"
