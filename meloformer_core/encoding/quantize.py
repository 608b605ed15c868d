"""The documented quantisation ``q`` that the encoding is lossless on.

``decode(encode(song)) == quantize(song)`` for every song, and ``quantize`` is idempotent.
What ``q`` does, in order:

1. **Grid.** Times become grid steps of 1/12 quarter (sixteenths are 3 steps, eighth
   triplets 4, sixteenth triplets 2); onsets round to the nearest step, halves up.
   The decoded song has 480 ticks per quarter, so a step is 40 ticks.
2. **Metre.** Time signatures outside the vocabulary are reduced (6/32 → 3/16) or fall
   back to 4/4. A change that falls inside a bar moves to the next bar line; changes to
   the metre already in force are dropped; 4/4 holds from bar 1 when the file sets none.
3. **Tempo.** Rounded to tenths of a quarter note per minute in [20, 300.9], snapped
   to the grid; the last change at one step wins; repeats are dropped; 120 holds from
   the start when the file sets no tempo there.
4. **Key.** Snapped back to the start of its bar; the last change in a bar wins;
   repeats are dropped.
5. **Notes.** Durations to the nearest duration bin (at least one step, at most 32
   quarters); velocities to 32 bins of 4 (4, 8, …, 124, 127); two notes of one pitch
   starting on the same step in one track become one (longest duration, loudest
   velocity); a note that still sounds when the next note of its pitch in its track
   starts is shortened to the longest bin that ends in time.
6. **Tracks.** Kept in order, silent ones too, each named after its instrument.
7. **Texts.** Markers, lyrics and other texts (`Song.texts`) are dropped: the tokens
   carry music only. (The service puts generated bars into the prompt's own song, so a
   continuation keeps the prompt's texts.)
"""

from __future__ import annotations

import numpy as np

from meloformer_core.encoding.grid import GridSong
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

DEFAULT_TENTHS_BPM = 1200


def velocity_bin(velocity: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(velocity - 1, 0) >> 2, DEFAULT_VOCAB.config.velocity_bins - 1)


def velocity_value(bin_index: np.ndarray | int) -> np.ndarray:
    return np.minimum((np.asarray(bin_index) + 1) * 4, 127)


def us_per_quarter(tenths_bpm: int) -> int:
    return round(600_000_000 / tenths_bpm)


def supported_time_signature(numerator: int, denominator: int, config: EncodingConfig) -> tuple[int, int]:
    while denominator > max(config.denominators) and numerator % 2 == 0:
        numerator, denominator = numerator // 2, denominator // 2
    if (numerator, denominator) in config.time_signature_set:
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

    total = sum(len(track.notes) for track in song.tracks)
    raw = np.empty((total, 5), dtype=np.int64)  # slot, start, pitch, duration, velocity in ticks
    filled = 0
    for slot, track in enumerate(song.tracks):
        count = len(track.notes)
        raw[filled : filled + count, 0] = slot
        raw[filled : filled + count, 1:] = track.notes.array
        filled += count
    notes = _grid_notes(raw, resolution, step_of, config)
    tempos = _grid_tempos(song, step_of, config)
    content_last = max(int(notes[:, 1].max()) if len(notes) else 0, tempos[-1][0])  # notes and kept tempo changes

    signature_events = [(int(step_of(ts.tick)), ts.numerator, ts.denominator) for ts in song.time_signatures]
    keys_in = [(int(step_of(key.tick)), key.sharps, key.minor) for key in song.key_signatures]
    last_step = max([content_last] + [step for step, *_ in signature_events + keys_in])
    starts, signatures = _grid_bars(signature_events, last_step, config)

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
        signatures[-1][0],
        keys[-1][0] if keys else 0,
    )
    instruments = [(track.program, track.is_drum) for track in song.tracks]
    return GridSong(starts[: last_bar + 2], signatures, tempos, keys, instruments, notes)


def _grid_tempos(song: Song, step_of, config: EncodingConfig) -> list[tuple[int, int]]:
    """The tempo map on the grid: (step, tenths of a BPM within the encoding's range), one at
    step 0 (the default tempo when the song has none there), repeats dropped."""
    tempo_by_step: dict[int, int] = {}
    for tempo in song.tempos:
        tenths = int(np.clip(round(tempo.qpm * 10), config.tempo_bpm_min * 10, config.tempo_bpm_max * 10 + 9))
        tempo_by_step[int(step_of(tempo.tick))] = tenths
    if 0 not in tempo_by_step:
        tempo_by_step[0] = DEFAULT_TENTHS_BPM
    tempos: list[tuple[int, int]] = []
    for step in sorted(tempo_by_step):
        if not tempos or tempos[-1][1] != tempo_by_step[step]:
            tempos.append((step, tempo_by_step[step]))
    return tempos


def _grid_bars(signature_events: list[tuple[int, int, int]], last_step: int,
               config: EncodingConfig) -> tuple[np.ndarray, list[tuple[int, int, int]]]:  # fmt: skip
    """(the steps where bars begin, through the bar after ``last_step``; the metre map by bar).

    The bars are walked, each change of metre (step, numerator, denominator) applying at
    the first bar line at or after it, a metre the encoding lacks read as 4/4
    (`supported_time_signature`). Raises `EncodingError` past ``config.max_bars``."""
    max_bars = config.max_bars
    if last_step // config.min_bar_steps > 4 * max_bars:  # cheap guard before walking absurd lengths
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
    return np.array(bar_starts, dtype=np.int64), cleaned


def _grid_notes(data: np.ndarray, resolution: int, step_of, config: EncodingConfig) -> np.ndarray:
    """Quantise notes of all tracks at once: rows of (slot, start, pitch, duration, velocity)."""
    if not len(data):
        return np.zeros((0, 5), dtype=np.int64)
    bins = config.duration_bin_array
    slot = data[:, 0]
    onset = step_of(data[:, 1])
    raw_duration = data[:, 3] * (config.steps_per_quarter / resolution)
    duration = bins[np.searchsorted(config.duration_bin_midpoints, raw_duration, side="left")]
    velocity = velocity_bin(data[:, 4])
    pitch = data[:, 2]
    # Sort by (slot, onset, pitch) with one int64 key: slot < 2**6, onset < 2**40.
    key = ((slot << 40) + onset) * 128 + pitch
    order = np.argsort(key, kind="stable")
    key, slot, onset, pitch = key[order], slot[order], onset[order], pitch[order]
    duration, velocity = duration[order], velocity[order]
    # One note per (slot, onset, pitch): the longest and the loudest.
    first_of_group = np.empty(len(key), dtype=bool)
    first_of_group[0] = True
    np.not_equal(key[1:], key[:-1], out=first_of_group[1:])
    if not first_of_group.all():
        starts = np.flatnonzero(first_of_group)
        duration = np.maximum.reduceat(duration, starts)
        velocity = np.maximum.reduceat(velocity, starts)
        slot, onset, pitch = slot[starts], onset[starts], pitch[starts]
    # Shorten a note that still sounds when the next note of its pitch in its track starts.
    by_pitch = np.argsort(((slot << 7) + pitch) * (1 << 40) + onset)
    voice = ((slot << 7) + pitch)[by_pitch]
    onset_by_pitch = onset[by_pitch]
    gap = onset_by_pitch[1:] - onset_by_pitch[:-1]
    overlapping = (voice[1:] == voice[:-1]) & (duration[by_pitch[:-1]] > gap)
    if overlapping.any():
        rows = by_pitch[:-1][overlapping]
        duration = duration.copy()
        duration[rows] = bins[np.searchsorted(bins, gap[overlapping], side="right") - 1]
    return np.stack([slot, onset, pitch, duration, velocity], axis=1)


def from_grid(grid: GridSong) -> Song:
    """Put ticks back (480 per quarter) and name tracks after their instruments."""
    starts = grid.bar_starts
    notes = grid.notes
    bounds = np.searchsorted(notes[:, 0], np.arange(len(grid.instruments) + 1))
    tracks = []
    for slot, (program, is_drum) in enumerate(grid.instruments):
        rows = notes[bounds[slot] : bounds[slot + 1]]
        track_notes = NoteArray.from_columns(
            rows[:, 1] * TICKS_PER_STEP, rows[:, 2], rows[:, 3] * TICKS_PER_STEP, velocity_value(rows[:, 4])
        )
        tracks.append(Track(instrument_name(program, is_drum), program, is_drum, track_notes))
    return Song(
        resolution=CANONICAL_RESOLUTION,
        tempos=tuple(TempoChange(step * TICKS_PER_STEP, us_per_quarter(bpm)) for step, bpm in grid.tempos),
        time_signatures=tuple(
            TimeSignature(int(starts[bar]) * TICKS_PER_STEP, n, d) for bar, n, d in grid.time_signatures
        ),
        key_signatures=tuple(KeySignature(int(starts[bar]) * TICKS_PER_STEP, s, m) for bar, s, m in grid.keys),
        tracks=tuple(tracks),
    )


def tick_of_step(step: int, resolution: int, config: EncodingConfig = DEFAULT_VOCAB.config) -> int:
    """The tick of a grid step in a song of ``resolution`` ticks per quarter (the nearest)."""
    return round(step * resolution / config.steps_per_quarter)


def bar_ticks(song: Song, vocab: Vocabulary = DEFAULT_VOCAB) -> list[int]:
    """Where each bar of ``song`` begins as generation counts its bars, and where the bar
    after the last one would begin (ticks): the bars of the grid, so bar numbers mean the
    same to the app and to the service. They differ from `Song.bar_starts` where the grid
    reads the metre map differently: a change inside a bar applies from the next bar line,
    a metre the encoding lacks is read as 4/4."""
    grid = to_grid(song, vocab)
    return [tick_of_step(int(step), song.resolution, vocab.config) for step in grid.bar_starts]


def quantize(song: Song, vocab: Vocabulary = DEFAULT_VOCAB) -> Song:
    """``q(song)``: the song exactly as the encoding represents it."""
    return from_grid(to_grid(song, vocab))
