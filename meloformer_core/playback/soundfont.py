"""Reading SoundFont 2 files (``.sf2``) into what the built-in synth plays: per preset, a
list of `Region`s (a sample, the keys and velocities it answers, its tuning, loop, pan,
level and volume envelope).

A SoundFont's presets (bank, program) are made of zones that point at instruments, whose
zones point at samples; generators at each level set or shift parameters. `SoundFont`
flattens that once at load time, as TinySoundFont does: each (preset zone, instrument
zone) pair whose key and velocity ranges meet becomes one `Region` with the instrument's
values (its global zone as defaults) plus the preset's offsets. Playing a note is then a
look-up of the regions whose ranges hold its key and velocity.

What is read: sample offsets, loops and loop modes, root key, coarse/fine/scale tuning and
the sample's pitch correction, initial attenuation, pan, the volume envelope (delay,
attack, hold, decay, sustain, release, key-scaled hold and decay), exclusive classes (an
open hi-hat cut by a closed one), fixed key and velocity. What is not (the synth plays
without it): filters, modulation envelope and LFOs, modulators other than the SoundFont
defaults for velocity, volume and expression, reverb and chorus, 24-bit sample extensions,
compressed (``.sf3``) samples. The 16-bit samples become one float32 array.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meloformer_core.errors import MeloformerError


class SoundFontError(MeloformerError):
    """A SoundFont cannot be found or read."""


# generator numbers (SoundFont 2.04, section 8.1.2)
START, END, LOOP_START, LOOP_END, START_COARSE = 0, 1, 2, 3, 4
END_COARSE, PAN = 12, 17
DELAY, ATTACK, HOLD, DECAY, SUSTAIN, RELEASE, KEY_TO_HOLD, KEY_TO_DECAY = 33, 34, 35, 36, 37, 38, 39, 40
INSTRUMENT, KEY_RANGE, VEL_RANGE, LOOP_START_COARSE, KEYNUM, VELOCITY, ATTENUATION = 41, 43, 44, 45, 46, 47, 48
LOOP_END_COARSE, COARSE_TUNE, FINE_TUNE, SAMPLE_ID, SAMPLE_MODES, SCALE_TUNING = 50, 51, 52, 53, 54, 56
EXCLUSIVE_CLASS, ROOT_KEY = 57, 58
N_GENERATORS = 61

DEFAULTS = np.zeros(N_GENERATORS, np.int32)
DEFAULTS[[DELAY, ATTACK, HOLD, DECAY, RELEASE]] = -12000  # timecents: "instant"
DEFAULTS[[KEY_RANGE, VEL_RANGE]] = 127 << 8  # 0-127
DEFAULTS[[KEYNUM, VELOCITY, ROOT_KEY]] = -1
DEFAULTS[SCALE_TUNING] = 100
# set by the instrument only; a preset's value for them is ignored (8.5)
INSTRUMENT_ONLY = [START, END, LOOP_START, LOOP_END, START_COARSE, END_COARSE, LOOP_START_COARSE, LOOP_END_COARSE,
                   KEYNUM, VELOCITY, SAMPLE_MODES, EXCLUSIVE_CLASS, ROOT_KEY, SAMPLE_ID, INSTRUMENT]  # fmt: skip
RANGES = [KEY_RANGE, VEL_RANGE]

LOOP_NONE, LOOP_CONTINUOUS, LOOP_UNTIL_RELEASE = 0, 1, 3
DRUM_BANK = 128

_PHDR = np.dtype([("name", "S20"), ("preset", "<u2"), ("bank", "<u2"), ("bag", "<u2"),
                  ("library", "<u4"), ("genre", "<u4"), ("morphology", "<u4")])  # fmt: skip
_BAG = np.dtype([("gen", "<u2"), ("mod", "<u2")])
_GEN = np.dtype([("oper", "<u2"), ("amount", "<i2")])
_INST = np.dtype([("name", "S20"), ("bag", "<u2")])
_SHDR = np.dtype([("name", "S20"), ("start", "<u4"), ("end", "<u4"), ("loop_start", "<u4"), ("loop_end", "<u4"),
                  ("rate", "<u4"), ("pitch", "u1"), ("correction", "i1"), ("link", "<u2"),
                  ("type", "<u2")])  # fmt: skip


def seconds(timecents: int) -> float:
    """A SoundFont time (timecents) in seconds; the default -12000 (1 ms) counts as 0."""
    return 0.0 if timecents <= -12000 else float(2.0 ** (timecents / 1200.0))


@dataclass(frozen=True, slots=True)
class Region:
    """One sample as a preset plays it, for keys ``key_lo..key_hi`` and velocities ``vel_lo..vel_hi``."""

    key_lo: int
    key_hi: int
    vel_lo: int
    vel_hi: int
    start: int  # sample frames, in the SoundFont's sample array
    end: int  # one past the last frame
    loop_start: int
    loop_end: int
    loop_mode: int  # LOOP_NONE, LOOP_CONTINUOUS or LOOP_UNTIL_RELEASE
    sample_rate: int
    root_key: int
    tune_cents: float  # coarse and fine tune plus the sample's pitch correction
    scale_tuning: float  # cents per key (100: equal temperament)
    attenuation_cb: float  # centibels
    pan: float  # -0.5 (left) .. 0.5 (right)
    delay: float  # volume envelope, seconds
    attack: float
    hold: float
    decay: float
    sustain_cb: float  # attenuation while held, centibels
    release: float
    key_to_hold: float  # timecents per key (hold and decay shorten for higher keys)
    key_to_decay: float
    exclusive_class: int
    fixed_key: int  # -1: the played key
    fixed_velocity: int  # -1: the played velocity

    def hold_seconds(self, key: int) -> float:
        return self.hold * 2.0 ** (self.key_to_hold * (60 - key) / 1200.0)

    def decay_seconds(self, key: int) -> float:
        return self.decay * 2.0 ** (self.key_to_decay * (60 - key) / 1200.0)


class SoundFont:
    """A loaded SoundFont: ``samples`` (float32, -1..1) and the regions of every preset."""

    def __init__(self, path: Path, samples: np.ndarray, presets: dict[tuple[int, int], list[Region]], name: str):
        self.path, self.samples, self.presets, self.name = path, samples, presets, name
        self._tables = {key: _RegionTable(regions) for key, regions in presets.items()}

    def preset(self, bank: int, program: int) -> tuple[int, int] | None:
        """The preset a channel with ``bank`` and ``program`` plays: that one, else the same
        program in bank 0 (melodic) or program 0 of the drum bank, else the first there is."""
        for key in ((bank, program), (DRUM_BANK, 0) if bank == DRUM_BANK else (0, program), (bank, 0)):
            if key in self.presets:
                return key
        melodic = sorted(k for k in self.presets if (k[0] == DRUM_BANK) == (bank == DRUM_BANK))
        return melodic[0] if melodic else (min(self.presets) if self.presets else None)

    def regions(self, preset: tuple[int, int], key: int, velocity: int) -> list[Region]:
        table = self._tables.get(preset)
        return [] if table is None else table.find(key, velocity)


class _RegionTable:
    """A preset's regions with their ranges as arrays, for a quick look-up per note."""

    def __init__(self, regions: list[Region]) -> None:
        self.regions = regions
        self.ranges = np.array([(r.key_lo, r.key_hi, r.vel_lo, r.vel_hi) for r in regions], np.int32).reshape(-1, 4)

    def find(self, key: int, velocity: int) -> list[Region]:
        r = self.ranges
        hits = np.flatnonzero((r[:, 0] <= key) & (key <= r[:, 1]) & (r[:, 2] <= velocity) & (velocity <= r[:, 3]))
        return [self.regions[i] for i in hits]


def _chunks(data: bytes, start: int, stop: int, path: Path) -> dict[bytes, tuple[int, int]]:
    """The (offset, size) of each RIFF chunk in data[start:stop]; a LIST is named by its type."""
    found: dict[bytes, tuple[int, int]] = {}
    pos = start
    while pos + 8 <= stop:
        ident, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if body + size > stop:
            raise SoundFontError(f"{path}: not a valid SoundFont (chunk {ident!r} runs past the end of the file)")
        if ident == b"LIST":
            found[data[body : body + 4]] = (body + 4, size - 4)
        else:
            found[ident] = (body, size)
        pos = body + size + (size & 1)
    return found


def _table(data: bytes, chunks: dict, name: bytes, dtype: np.dtype, path: Path) -> np.ndarray:
    if name not in chunks:
        raise SoundFontError(f"{path}: not a valid SoundFont (no {name.decode()} chunk)")
    offset, size = chunks[name]
    count = size // dtype.itemsize
    if count < 1:
        raise SoundFontError(f"{path}: not a valid SoundFont (empty {name.decode()} chunk)")
    return np.frombuffer(data, dtype, count, offset)


def _zones(bags: np.ndarray, gens: np.ndarray, first_bag: int, last_bag: int) -> list[np.ndarray]:
    """The generators of each zone in bags [first_bag, last_bag), 61 values per zone; those the
    zone does not set hold `_UNSET`. A first zone without an instrument (preset level) or a sample
    (instrument level) is the global zone: its values are the others' defaults (the callers take it out)."""
    zones = []
    for bag in range(first_bag, min(last_bag, len(bags) - 1)):
        values = np.full(N_GENERATORS, _UNSET, np.int32)
        for oper, amount in gens[bags[bag]["gen"] : bags[bag + 1]["gen"]].tolist():
            if oper < N_GENERATORS:
                values[oper] = amount & 0xFFFF if oper in RANGES else amount
        zones.append(values)
    return zones


_UNSET = np.iinfo(np.int32).min


def _ranges_meet(a: int, b: int) -> tuple[int, int] | None:
    lo, hi = max(a & 0xFF, b & 0xFF), min(a >> 8, b >> 8)
    return (lo, hi) if lo <= hi else None


def read_soundfont(path: Path | str) -> SoundFont:
    """Read a ``.sf2`` file; `SoundFontError` naming it when it cannot be read."""
    # Long on purpose (68 lines): one pass over the file's chunks, checking each as it is read.
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SoundFontError(f"{path}: cannot read the SoundFont ({error.strerror or error})") from None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise SoundFontError(f"{path}: not a SoundFont (.sf2) file")
    top = _chunks(data, 12, len(data), path)
    if b"sdta" not in top or b"pdta" not in top:
        raise SoundFontError(f"{path}: not a valid SoundFont (sample or preset data missing)")
    sdta = _chunks(data, top[b"sdta"][0], sum(top[b"sdta"]), path)
    pdta = _chunks(data, top[b"pdta"][0], sum(top[b"pdta"]), path)
    info = _chunks(data, top[b"INFO"][0], sum(top[b"INFO"]), path) if b"INFO" in top else {}
    if b"ifil" in info and data[info[b"ifil"][0]] >= 3:
        raise SoundFontError(f"{path}: compressed SoundFonts (.sf3) are not supported; use an .sf2 file")
    if b"smpl" not in sdta:
        raise SoundFontError(f"{path}: not a valid SoundFont (no samples)")
    offset, size = sdta[b"smpl"]
    samples = np.frombuffer(data, "<i2", size // 2, offset).astype(np.float32) / 32768.0
    name = path.stem
    if b"INAM" in info:
        at, length = info[b"INAM"]
        name = data[at : at + length].split(b"\0")[0].decode("latin-1").strip() or name
    phdr, pbag, pgen = (_table(data, pdta, n, t, path) for n, t in ((b"phdr", _PHDR), (b"pbag", _BAG), (b"pgen", _GEN)))
    inst, ibag, igen = (_table(data, pdta, n, t, path) for n, t in ((b"inst", _INST), (b"ibag", _BAG), (b"igen", _GEN)))
    shdr = _table(data, pdta, b"shdr", _SHDR, path)

    instruments: list[list[tuple[np.ndarray, int]]] = []  # per instrument: (zone values, sample id)
    for index in range(len(inst) - 1):
        zones = _zones(ibag, igen, int(inst[index]["bag"]), int(inst[index + 1]["bag"]))
        base = DEFAULTS.copy()
        if zones and zones[0][SAMPLE_ID] == _UNSET:  # a global zone: defaults for the others
            glob = zones.pop(0)
            base = np.where(glob != _UNSET, glob, base)
        instruments.append([(np.where(z != _UNSET, z, base), int(z[SAMPLE_ID])) for z in zones
                            if z[SAMPLE_ID] != _UNSET and 0 <= z[SAMPLE_ID] < len(shdr) - 1])  # fmt: skip

    presets: dict[tuple[int, int], list[Region]] = {}
    for index in range(len(phdr) - 1):
        header = phdr[index]
        zones = _zones(pbag, pgen, int(header["bag"]), int(phdr[index + 1]["bag"]))
        base = np.where(np.isin(np.arange(N_GENERATORS), RANGES), DEFAULTS, 0).astype(np.int32)
        if zones and zones[0][INSTRUMENT] == _UNSET:
            glob = zones.pop(0)
            base = np.where(glob != _UNSET, glob, base)
        regions: list[Region] = []
        for zone in zones:
            number = int(zone[INSTRUMENT])
            if not 0 <= number < len(instruments):
                continue
            offsets = np.where(zone != _UNSET, zone, base)
            offsets[INSTRUMENT_ONLY] = 0
            for values, sample in instruments[number]:
                keys = _ranges_meet(int(values[KEY_RANGE]), int(offsets[KEY_RANGE]))
                velocities = _ranges_meet(int(values[VEL_RANGE]), int(offsets[VEL_RANGE]))
                if keys is None or velocities is None:
                    continue
                merged = values.astype(np.int64) + np.where(np.isin(np.arange(N_GENERATORS), RANGES), 0, offsets)
                region = _region(merged, shdr[sample], keys, velocities, len(samples))
                if region is not None:
                    regions.append(region)
        if regions:
            presets.setdefault((int(header["bank"]), int(header["preset"])), regions)
    if not presets:
        raise SoundFontError(f"{path}: the SoundFont has no playable presets")
    return SoundFont(path, samples, presets, name)


def _region(g: np.ndarray, sample, keys: tuple[int, int], velocities: tuple[int, int], n_samples: int) -> Region | None:
    start = int(sample["start"]) + int(g[START]) + 32768 * int(g[START_COARSE])
    end = int(sample["end"]) + int(g[END]) + 32768 * int(g[END_COARSE])
    loop_start = int(sample["loop_start"]) + int(g[LOOP_START]) + 32768 * int(g[LOOP_START_COARSE])
    loop_end = int(sample["loop_end"]) + int(g[LOOP_END]) + 32768 * int(g[LOOP_END_COARSE])
    start, end = max(0, start), min(end, n_samples - 1)
    if end - start < 2 or int(sample["type"]) & 0x8000:  # empty, or a ROM sample we do not have
        return None
    mode = int(g[SAMPLE_MODES]) & 3
    if mode == 2 or not start <= loop_start < loop_end <= end or loop_end - loop_start < 2:
        mode = LOOP_NONE
    pitch = int(sample["pitch"])
    root = int(g[ROOT_KEY]) if g[ROOT_KEY] >= 0 else (pitch if pitch <= 127 else 60)
    return Region(
        key_lo=keys[0], key_hi=keys[1], vel_lo=velocities[0], vel_hi=velocities[1],
        start=start, end=end, loop_start=loop_start, loop_end=loop_end, loop_mode=mode,
        sample_rate=max(1, int(sample["rate"])), root_key=root,
        tune_cents=float(g[COARSE_TUNE] * 100 + g[FINE_TUNE] + int(sample["correction"])),
        scale_tuning=float(g[SCALE_TUNING]),
        attenuation_cb=float(np.clip(g[ATTENUATION], 0, 1440)),
        pan=float(np.clip(g[PAN], -500, 500)) / 1000.0,
        delay=seconds(int(g[DELAY])), attack=seconds(int(g[ATTACK])), hold=seconds(int(g[HOLD])),
        decay=seconds(int(g[DECAY])), sustain_cb=float(np.clip(g[SUSTAIN], 0, 1440)),
        release=seconds(int(g[RELEASE])), key_to_hold=float(g[KEY_TO_HOLD]), key_to_decay=float(g[KEY_TO_DECAY]),
        exclusive_class=int(g[EXCLUSIVE_CLASS]), fixed_key=int(g[KEYNUM]), fixed_velocity=int(g[VELOCITY]),
    )  # fmt: skip


def default_soundfont_path() -> Path | None:
    """The General MIDI SoundFont that installs with the app: TimGM6mb (6 MB, GPL-2, by Tim
    Brechbill), which the ``pretty_midi`` package carries. Found without importing pretty_midi.
    ``MELOFORMER_SOUNDFONT`` names another. None when neither is there."""
    chosen = os.environ.get("MELOFORMER_SOUNDFONT")
    if chosen:
        return Path(chosen)
    spec = importlib.util.find_spec("pretty_midi")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "TimGM6mb.sf2"
        if candidate.is_file():
            return candidate
    return None


def load_soundfont(path: Path | str | None = None) -> SoundFont:
    """The SoundFont at ``path`` (the default one when None or ""), read once per file and
    modification time (the app, the export and the tests share one copy)."""
    if not path:
        path = default_soundfont_path()
        if path is None:
            raise SoundFontError("no SoundFont: install the app's extra (pip install 'meloformer[app]', which brings "
                                 "TimGM6mb) or choose an .sf2 file (--soundfont)")  # fmt: skip
    path = Path(path).expanduser()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as error:
        raise SoundFontError(f"{path}: cannot read the SoundFont ({error.strerror or error})") from None
    return _load_cached(path.resolve(), stamp)


@functools.lru_cache(maxsize=2)
def _load_cached(path: Path, _stamp: int) -> SoundFont:
    return read_soundfont(path)
