#!/usr/bin/env bash
# The app's screenshots under Xvfb (a real X server, not the offscreen plugin), with the
# default model: the main window at 1600x1000 and 1280x720, the band example with its drums
# selected, the Quantize dialog and the Generate panel (scripts/screenshot.py says which).
#   bash scripts/screenshot.sh [FOLDER]      (default docs/screenshots)
# Needs the Debian packages xvfb libxcb-icccm4 libxcb-keysyms1 (installed here when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/screenshots}"
bash scripts/system-packages.sh
if ! command -v xvfb-run >/dev/null; then
    echo "screenshot: install xvfb libxcb-icccm4 libxcb-keysyms1 first (apt-get install …)" >&2
    exit 1
fi
bash scripts/setup.sh
mkdir -p "$out"
MELOFORMER_CONFIG_DIR="$(mktemp -d)" MELOFORMER_DATA_DIR="$(mktemp -d)" QT_QPA_PLATFORM=xcb \
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py "$out"
