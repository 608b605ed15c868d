#!/usr/bin/env bash
# Debian packages the tests drive for real: JACK (dummy driver) and FluidSynth with a GM
# soundfont for playback, Xvfb for screenshots, MMA and Planet Blupi's music for the band
# corpus (meloformer-corpus --band). Installed when missing and we are root;
# otherwise the tests that need them skip with a reason.
set -uo pipefail
packages=(jackd2 jack-tools fluidsynth fluid-soundfont-gm xvfb libxcb-icccm4 libxcb-keysyms1 mma planetblupi-music-midi)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system packages missing (${missing[*]}); the tests that need them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; } \
    || echo "could not install ${missing[*]}; the tests that need them will skip" >&2
exit 0
