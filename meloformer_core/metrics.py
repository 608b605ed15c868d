"""Measurements over songs: how much of a MIDI file survives encode → decode, and the
pitch-class histograms that compare passages of music.

``note_recall`` (as the issue defines it): the share of input notes for which the output
has a note of the same pitch in the same track with the same program, its onset within
half a grid step (1/24 quarter) in musical time. ``note_recall_one_to_one`` is stricter:
each output note may account for one input note only, so notes that ``q`` merges (a
repeated pitch struck twice within one grid step in one track) count as lost.

``pitch_class_shares`` and ``histogram_overlap`` are the one definition of a pitch-class
histogram and of its intersection (Yang & Lerch 2020) that evaluation builds on; they live
in the core so that generation (the choice of the most typical take) can share them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from meloformer_core.encoding.vocab import STEPS_PER_QUARTER
from meloformer_core.music import Song, TempoChange

HALF_STEP_QUARTERS = 0.5 / STEPS_PER_QUARTER


@dataclass(frozen=True)
class RoundTripReport:
    notes_in: int
    notes_out: int
    note_recall: float
    note_recall_one_to_one: float
    onset_error_ms_mean: float  # grid error: onset shift in beats, at the input's tempo
    onset_drift_ms_mean: float  # absolute time shift, tempo rounding included
    tracks_in: int
    tracks_out: int
    programs_preserved: bool
    drums_preserved: bool
    tempo_changes_in: int
    tempo_changes_out: int
    time_signatures_in: int
    time_signatures_out: int
    tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def effective_tempo_changes(song: Song) -> int:
    """Tempo events that change the tempo: the last event at a tick counts, and the
    default of 120 quarters per minute is the value before the first."""
    last_at_tick = {tempo.tick: tempo.us_per_quarter for tempo in song.tempos}  # later events win
    count, current = 0, 500_000
    for tick in sorted(last_at_tick):
        if last_at_tick[tick] != current:
            count += 1
            current = last_at_tick[tick]
    return count


def effective_time_signatures(song: Song) -> int:
    """Metre changes that change the metre (the last event at a tick counts), at least 1."""
    last_at_tick = {ts.tick: (ts.numerator, ts.denominator) for ts in song.time_signatures}
    count, current = 0, None
    for tick in sorted(last_at_tick):
        if last_at_tick[tick] != current:
            count += 1
            current = last_at_tick[tick]
    return max(count, 1)


def compare(original: Song, decoded: Song, tokens: int) -> RoundTripReport:
    found = matched = 0
    grid_errors_ms: list[np.ndarray] = []
    drift_ms: list[np.ndarray] = []
    for track_in, track_out in zip(original.tracks, decoded.tracks, strict=False):
        if track_in.program != track_out.program or track_in.is_drum != track_out.is_drum:
            continue
        a, b = track_in.notes.array, track_out.notes.array
        found += _found(a, original.resolution, b, decoded.resolution)
        pairs_in, pairs_out = _match(a, original.resolution, b, decoded.resolution)
        matched += len(pairs_in)
        if len(pairs_in):
            in_ticks, out_ticks = a[pairs_in, 0], b[pairs_out, 0]
            beats_shift = np.abs(out_ticks / decoded.resolution - in_ticks / original.resolution)
            us_per_quarter = _tempo_at(original, in_ticks)
            grid_errors_ms.append(beats_shift * us_per_quarter / 1000)
            drift_ms.append(np.abs(decoded.seconds_at(out_ticks) - original.seconds_at(in_ticks)) * 1000)
    notes_in = original.note_count

    def mean(parts: list[np.ndarray]) -> float:
        return round(float(np.concatenate(parts).mean()), 3) if parts else 0.0

    return RoundTripReport(
        notes_in=notes_in,
        notes_out=decoded.note_count,
        note_recall=round(found / notes_in, 6) if notes_in else 1.0,
        note_recall_one_to_one=round(matched / notes_in, 6) if notes_in else 1.0,
        onset_error_ms_mean=mean(grid_errors_ms),
        onset_drift_ms_mean=mean(drift_ms),
        tracks_in=len(original.tracks),
        tracks_out=len(decoded.tracks),
        programs_preserved=[t.program for t in original.tracks] == [t.program for t in decoded.tracks],
        drums_preserved=[t.is_drum for t in original.tracks] == [t.is_drum for t in decoded.tracks],
        tempo_changes_in=effective_tempo_changes(original),
        tempo_changes_out=effective_tempo_changes(decoded),
        time_signatures_in=effective_time_signatures(original),
        time_signatures_out=effective_time_signatures(decoded),
        tokens=tokens,
    )


def _tempo_at(song: Song, ticks: np.ndarray) -> np.ndarray:
    tempos = list(song.tempos) or [TempoChange(0, 500_000)]
    change_ticks = np.array([t.tick for t in tempos])
    values = np.array([t.us_per_quarter for t in tempos], dtype=np.float64)
    index = np.clip(np.searchsorted(change_ticks, ticks, side="right") - 1, 0, len(tempos) - 1)
    return np.where(ticks < change_ticks[0], 500_000.0, values[index])


def _found(a: np.ndarray, res_a: int, b: np.ndarray, res_b: int) -> int:
    """Input notes with an output note of their pitch within half a grid step (exact integers)."""
    if not len(a) or not len(b):
        return 0
    # onsets in units of 1 / (2 · steps · res_a · res_b) quarter: half a grid step is res_a · res_b
    units = 2 * STEPS_PER_QUARTER
    tolerance = res_a * res_b
    pitch_stride = np.int64(1) << 50
    key_a = a[:, 1] * pitch_stride + a[:, 0] * units * res_b
    key_b = np.sort(b[:, 1] * pitch_stride + b[:, 0] * units * res_a)
    nearest = np.clip(np.searchsorted(key_b, key_a - tolerance), 0, len(key_b) - 1)
    return int((np.abs(key_b[nearest] - key_a) <= tolerance).sum())


def _match(a: np.ndarray, res_a: int, b: np.ndarray, res_b: int) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches of notes of equal pitch with onsets within half a grid step."""
    matches_a: list[int] = []
    matches_b: list[int] = []
    tolerance = HALF_STEP_QUARTERS + 1e-9
    for pitch in np.intersect1d(a[:, 1], b[:, 1]).tolist():
        index_a = np.flatnonzero(a[:, 1] == pitch)
        index_b = np.flatnonzero(b[:, 1] == pitch)
        beats_a = a[index_a, 0] / res_a
        beats_b = b[index_b, 0] / res_b
        j = 0
        for i, beat in enumerate(beats_a.tolist()):
            while j < len(beats_b) and beats_b[j] < beat - tolerance:
                j += 1
            if j < len(beats_b) and abs(beats_b[j] - beat) <= tolerance:
                matches_a.append(int(index_a[i]))
                matches_b.append(int(index_b[j]))
                j += 1
    return np.array(matches_a, dtype=np.int64), np.array(matches_b, dtype=np.int64)


def pitch_class_shares(pitches: np.ndarray) -> np.ndarray:
    """The share of each of the 12 pitch classes among ``pitches`` (MIDI keys; zeros if none)."""
    counts = np.bincount(np.asarray(pitches, dtype=np.int64) % 12, minlength=12).astype(float)
    total = counts.sum()
    return counts / total if total else counts


def histogram_overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection of two histograms, each normalised to sum 1: Σ min(p, q), 1 for the same
    shape, 0 for disjoint support; 0 when either is empty."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if not first.sum() or not second.sum():
        return 0.0
    return float(np.minimum(first / first.sum(), second / second.sum()).sum())
