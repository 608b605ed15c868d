"""The documented quantisation ``q`` that the encoding is lossless on.

``decode(encode(song)) == quantize(song)`` for every song, and ``quantize`` is idempotent.
What ``q`` does, in order:

1. **Grid.** Times become grid steps of 1/12 quarter (sixteenths are 3 steps, eighth
   triplets 4, sixteenth triplets 2); onsets round to the nearest step, halves up.
   The decoded song has 480 ticks per quarter, so a step is 40 ticks.
2. **Metre.** Time signatures outside the vocabulary are reduced (6/32 → 3/16) or fall
   back to 4/4. A change that falls inside a bar moves to the next bar line; changes to
   the metre already in force are dropped; 4/4 holds from bar 1 when the file sets none.
3. **Tempo.** Rounded to whole quarter notes per minute in [20, 300], snapped to the
   grid; the last change at one step wins; repeats are dropped; 120 holds from the start
   when the file sets no tempo there.
4. **Key.** Snapped back to the start of its bar; the last change in a bar wins;
   repeats are dropped.
5. **Notes.** Durations to the nearest duration bin (at least one step, at most 32
   quarters); velocities to 32 bins of 4 (4, 8, …, 124, 127); two notes of one pitch
   starting on the same step in one track become one (longest duration, loudest
   velocity); a note that still sounds when the next note of its pitch in its track
   starts is shortened to the longest bin that ends in time.
6. **Tracks.** Kept in order, silent ones too, each named after its instrument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meloformer_core.encoding.vocab import (
    CANONICAL_RESOLUTION,
    DEFAULT_VOCAB,
    TICKS_PER_STEP,
    EncodingConfig,
    Vocabulary,
)
from meloformer_core.errors import EncodingError
from meloformer_core.gm import instrument_name
from meloformer_core.music import KeySignature, NoteArray, Song, TempoChange, TimeSignature, Track

DEFAULT_BPM = 120


@dataclass(frozen=True)
class GridTrack:
    program: int
    is_drum: bool
    notes: np.ndarray  # (n, 4) int64: onset step, pitch, duration steps, velocity bin; sorted


@dataclass(frozen=True)
class GridSong:
    """A song on the grid: what the tokens say, before ticks are put back."""

    bar_starts: np.ndarray  # (bars + 1,) int64 steps; the last entry is the end of the last bar
    time_signatures: list[tuple[int, int, int]]  # (bar, numerator, denominator)
    tempos: list[tuple[int, int]]  # (step, bpm)
    keys: list[tuple[int, int, bool]]  # (bar, sharps, minor)
    tracks: list[GridTrack]

    @property
    def bar_count(self) -> int:
        return len(self.bar_starts) - 1


def velocity_bin(velocity: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(velocity) - 1) // 4, 0, DEFAULT_VOCAB.config.velocity_bins - 1)


def velocity_value(bin_index: np.ndarray | int) -> np.ndarray:
    return np.minimum((np.asarray(bin_index) + 1) * 4, 127)


def us_per_quarter(bpm: int) -> int:
    return round(60_000_000 / bpm)


def supported_time_signature(numerator: int, denominator: int, config: EncodingConfig) -> tuple[int, int]:
    while denominator > max(config.denominators) and numerator % 2 == 0:
        numerator, denominator = numerator // 2, denominator // 2
    if (numerator, denominator) in set(config.time_signatures):
        return numerator, denominator
    return 4, 4


def to_grid(song: Song, vocab: Vocabulary = DEFAULT_VOCAB) -> GridSong:
    """Quantise a song onto the grid (steps 1-5 above). Raises `EncodingError` if too long."""
    config = vocab.config
    resolution = song.resolution
    spq = config.steps_per_quarter

    def step_of(ticks: np.ndarray | int) -> np.ndarray:
        # round(ticks * spq / resolution), halves up, in exact integer arithmetic
        return (np.asarray(ticks, dtype=np.int64) * 2 * spq + resolution) // (2 * resolution)

    tracks: list[GridTrack] = []
    last_step = 0
    for track in song.tracks:
        notes = _grid_notes(track.notes.array, resolution, step_of, config)
        if len(notes):
            last_step = max(last_step, int(notes[:, 0].max()))
        tracks.append(GridTrack(track.program, track.is_drum, notes))

    tempo_by_step: dict[int, int] = {}
    for tempo in song.tempos:
        bpm = int(np.clip(round(tempo.qpm), config.tempo_bpm_min, config.tempo_bpm_max))
        tempo_by_step[int(step_of(tempo.tick))] = bpm
    if 0 not in tempo_by_step:
        tempo_by_step[0] = DEFAULT_BPM
    tempos: list[tuple[int, int]] = []
    for step in sorted(tempo_by_step):
        if not tempos or tempos[-1][1] != tempo_by_step[step]:
            tempos.append((step, tempo_by_step[step]))
    last_step = max(last_step, tempos[-1][0])
    content_last = last_step  # notes and kept tempo changes

    signature_events = [(int(step_of(ts.tick)), ts.numerator, ts.denominator) for ts in song.time_signatures]
    keys_in = [(int(step_of(key.tick)), key.sharps, key.minor) for key in song.key_signatures]
    for step, *_ in signature_events + keys_in:
        last_step = max(last_step, step)

    # Metre: walk the bars, applying each change at the first bar line at or after it.
    max_bars = config.max_bars
    min_bar = min(config.bar_steps(n, d) for n, d in config.time_signatures)
    if last_step // min_bar > 4 * max_bars:  # cheap guard before walking absurd lengths
        raise EncodingError(f"song is too long to encode (more than {max_bars} bars)")
    current = (4, 4)
    signatures: list[tuple[int, int, int]] = [(0, 4, 4)]
    bar_starts = [0]
    pending = sorted(signature_events, key=lambda event: event[0])
    index = 0
    while True:
        bar = len(bar_starts) - 1
        while index < len(pending) and pending[index][0] <= bar_starts[bar]:
            metre = supported_time_signature(pending[index][1], pending[index][2], config)
            index += 1
            if metre != current:
                current = metre
                if signatures[-1][0] == bar:
                    signatures[-1] = (bar, *metre)
                else:
                    signatures.append((bar, *metre))
        bar_starts.append(bar_starts[bar] + config.bar_steps(*current))
        if bar_starts[-1] > last_step and index >= len(pending):
            break
        if len(bar_starts) > max_bars + 1:
            raise EncodingError(f"song is too long to encode ({max_bars} bars at most)")
    # A change back to the metre before it (after being moved) may leave duplicates.
    cleaned: list[tuple[int, int, int]] = []
    for bar, numerator, denominator in signatures:
        if not cleaned or cleaned[-1][1:] != (numerator, denominator):
            cleaned.append((bar, numerator, denominator))
    starts = np.array(bar_starts, dtype=np.int64)

    keys: list[tuple[int, int, bool]] = []
    key_by_bar: dict[int, tuple[int, bool]] = {}
    for step, sharps, minor in sorted(keys_in, key=lambda event: event[0]):
        key_by_bar[int(np.searchsorted(starts, step, side="right") - 1)] = (sharps, minor)
    for bar in sorted(key_by_bar):
        if not keys or keys[-1][1:] != key_by_bar[bar]:
            keys.append((bar, *key_by_bar[bar]))
    # The song ends with the last bar that holds something q keeps: an event dropped as
    # a repeat must not leave empty bars behind (q would not be idempotent).
    last_bar = max(
        int(np.searchsorted(starts, content_last, side="right") - 1),
        cleaned[-1][0],
        keys[-1][0] if keys else 0,
    )
    return GridSong(starts[: last_bar + 2], cleaned, tempos, keys, tracks)


def _grid_notes(data: np.ndarray, resolution: int, step_of, config: EncodingConfig) -> np.ndarray:
    if not len(data):
        return np.zeros((0, 4), dtype=np.int64)
    bins = np.array(config.duration_bins, dtype=np.int64)
    onset = step_of(data[:, 0])
    raw_duration = data[:, 2].astype(np.float64) * config.steps_per_quarter / resolution
    midpoints = (bins[:-1] + bins[1:]) / 2
    duration = bins[np.searchsorted(midpoints, raw_duration, side="left")]
    velocity = velocity_bin(data[:, 3])
    pitch = data[:, 1]
    # One note per (onset, pitch): the longest and the loudest.
    order = np.lexsort((velocity, duration, pitch, onset))
    onset, pitch, duration, velocity = onset[order], pitch[order], duration[order], velocity[order]
    same = np.empty(len(onset), dtype=bool)
    same[0] = False
    same[1:] = (onset[1:] == onset[:-1]) & (pitch[1:] == pitch[:-1])
    if same.any():
        group = np.cumsum(~same) - 1
        keep_last = np.append(group[1:] != group[:-1], True)
        loudest = np.zeros(group[-1] + 1, dtype=np.int64)
        np.maximum.at(loudest, group, velocity)
        onset, pitch, duration = onset[keep_last], pitch[keep_last], duration[keep_last]
        velocity = loudest
    # Shorten a note that still sounds when the next note of its pitch starts.
    by_pitch = np.lexsort((onset, pitch))
    next_same = np.append(pitch[by_pitch][1:] == pitch[by_pitch][:-1], False)
    gap = np.append(onset[by_pitch][1:] - onset[by_pitch][:-1], 0)
    overlapping = next_same & (duration[by_pitch] > gap)
    if overlapping.any():
        rows = by_pitch[overlapping]
        duration = duration.copy()
        duration[rows] = bins[np.searchsorted(bins, gap[overlapping], side="right") - 1]
    notes = np.stack([onset, pitch, duration, velocity], axis=1)
    return notes[np.lexsort((notes[:, 3], notes[:, 2], notes[:, 1], notes[:, 0]))]


def from_grid(grid: GridSong) -> Song:
    """Put ticks back (480 per quarter) and name tracks after their instruments."""
    starts = grid.bar_starts
    tracks = []
    for track in grid.tracks:
        notes = track.notes
        tracks.append(
            Track(
                name=instrument_name(track.program, track.is_drum),
                program=track.program,
                is_drum=track.is_drum,
                notes=NoteArray.from_columns(
                    notes[:, 0] * TICKS_PER_STEP,
                    notes[:, 1],
                    notes[:, 2] * TICKS_PER_STEP,
                    velocity_value(notes[:, 3]),
                ),
            )
        )
    return Song(
        resolution=CANONICAL_RESOLUTION,
        tempos=tuple(TempoChange(step * TICKS_PER_STEP, us_per_quarter(bpm)) for step, bpm in grid.tempos),
        time_signatures=tuple(
            TimeSignature(int(starts[bar]) * TICKS_PER_STEP, n, d) for bar, n, d in grid.time_signatures
        ),
        key_signatures=tuple(KeySignature(int(starts[bar]) * TICKS_PER_STEP, s, m) for bar, s, m in grid.keys),
        tracks=tuple(tracks),
    )


def quantize(song: Song, vocab: Vocabulary = DEFAULT_VOCAB) -> Song:
    """``q(song)``: the song exactly as the encoding represents it."""
    return from_grid(to_grid(song, vocab))
