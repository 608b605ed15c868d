#!/usr/bin/env bash
# Screenshot of the main window under Xvfb (a real X server, not the offscreen plugin):
# the bundled Bach chorale continued by 8 bars with the default model.
#   bash scripts/screenshot.sh [OUT.png]      (default docs/screenshot.png)
# Needs the Debian packages xvfb libxcb-icccm4 libxcb-keysyms1 (installed here when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/screenshot.png}"
bash scripts/system-packages.sh
if ! command -v xvfb-run >/dev/null; then
    echo "screenshot: install xvfb libxcb-icccm4 libxcb-keysyms1 first (apt-get install …)" >&2
    exit 1
fi
bash scripts/setup.sh
mkdir -p "$(dirname "$out")"
MELOFORMER_CONFIG_DIR="$(mktemp -d)" MELOFORMER_DATA_DIR="$(mktemp -d)" QT_QPA_PLATFORM=xcb \
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py "$out"
