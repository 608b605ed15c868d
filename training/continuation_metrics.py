"""Music-level measures of a continuation: new bars set beside the real bars that followed.

`training/evaluate.py` cuts a piece after its prompt and scores three continuations of the
same bars against the real ones: the model's, a ``copy`` baseline's (`copy_continuation`: the
prompt's last bars played again) and the real bars' own. A measure that the copy wins, or
that the copy scores as well as the model, rewards restating the prompt rather than music;
the copy column shows which do.

Every function here is small and pure. Songs are continuations as `from_grid` gives them
(the bars alone, from tick 0, every track of the piece in its slot, empty or not); grids
(`GridSong`) are used where bars must be compared note for note.

- pitch classes: `pitch_class_profile`, `pitch_class_overlap`, `profile_baseline`,
  `best_scale`, `in_scale_rate` (histograms from `meloformer_core.metrics`);
- texture and dynamics: `polyphony`, `mean_velocity`;
- harmony: `chord_change_rate`, how often the bar's chord (the encoder's label) changes;
- form: `bar_contents`, `restated_share`, `copy_continuation`;
- drums: `drum_in_kit_counts`, the notes of drum tracks on General MIDI percussion keys 35–81;
  `drum_new_key_counts`, those on keys the track did not play in the prompt (a kit piece new to the song);
- per track: `track_pairs`, `track_density_ratios`, `register_distances`;
- one file's measures together: `continuation_scores`; over files: `pooled_track_measures`;
- distributions: `bar_features`, `overlapping_area`, `distribution_overlap` (Yang & Lerch 2020).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise

import numpy as np

from meloformer_core.encoding.chords import bar_chords
from meloformer_core.encoding.codec import slice_grid
from meloformer_core.encoding.grid import GridSong, in_force
from meloformer_core.encoding.vocab import NO_CHORD
from meloformer_core.metrics import histogram_overlap, pitch_class_shares
from meloformer_core.music import Song, Track

MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)  # natural minor
HARMONIC_EXTRA = 11  # the raised seventh of harmonic minor also counts as in scale

GM_KIT = (35, 81)  # General MIDI percussion keys, Acoustic Bass Drum to Open Triangle
BASS_PROGRAMS = range(32, 40)  # General MIDI bass family: Acoustic Bass to Synth Bass 2
SILENT_BELOW = 0.25  # a track playing under a quarter of its real notes has fallen silent
EXPLODING_ABOVE = 4.0  # … and over four times as many has exploded
OCTAVE = 12


# --- pitch classes -----------------------------------------------------------------------
def melodic_pitches(song: Song) -> np.ndarray:
    """The pitches of every note of the song's melodic (non-drum) tracks."""
    parts = [track.notes.pitches for track in song.tracks if not track.is_drum]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def pitch_class_profile(song: Song, by_duration: bool = True) -> np.ndarray:
    """Melodic notes per pitch class, weighted by duration (for key finding) or counted."""
    profile = np.zeros(12)
    for track in song.tracks:
        if not track.is_drum and len(track.notes):
            weights = track.notes.durations.astype(float) if by_duration else 1.0
            np.add.at(profile, track.notes.pitches % 12, weights)
    return profile


def pitch_class_overlap(a: Song, b: Song) -> float:
    """Histogram intersection of the two songs' pitch-class histograms (melodic notes, counted):
    1 for the same proportions, 0 when either is silent or they share no pitch class."""
    return histogram_overlap(pitch_class_shares(melodic_pitches(a)), pitch_class_shares(melodic_pitches(b)))


def profile_baseline(profile: np.ndarray, real: Song, seed: int) -> float:
    """Overlap with ``real`` of notes drawn independently from ``profile`` (pitch-class counts),
    as many as ``real`` holds."""
    counts = pitch_class_profile(real, by_duration=False)
    total = int(counts.sum())
    if not total or not profile.sum():
        return 0.0
    drawn = np.random.default_rng(seed).multinomial(total, profile / profile.sum())
    return histogram_overlap(drawn, counts)


def best_scale(profile: np.ndarray) -> np.ndarray:
    """The major or (harmonic-aware) minor scale, in any key, that holds most of ``profile``."""
    best, best_share = MAJOR, -1.0
    for tonic in range(12):
        for scale, extra in ((MAJOR, None), (MINOR, HARMONIC_EXTRA)):
            mask = np.roll(scale, tonic).copy()
            if extra is not None:
                mask[(tonic + extra) % 12] = True
            share = profile[mask].sum()
            if share > best_share:
                best, best_share = mask, share
    return best


def in_scale_rate(song: Song, scale: np.ndarray) -> float:
    """Share of the melodic notes whose pitch class is in ``scale`` (a 12-element mask); 0 if none."""
    pitches = melodic_pitches(song)
    return float(scale[pitches % 12].mean()) if len(pitches) else 0.0


# --- texture and dynamics --------------------------------------------------------------
def mean_velocity(song: Song) -> float:
    velocities = [track.notes.velocities for track in song.tracks if len(track.notes)]
    return float(np.concatenate(velocities).mean()) if velocities else 0.0


def mean_sounding(starts: np.ndarray, ends: np.ndarray) -> float:
    """Mean number of the notes ``[start, end)`` sounding at each distinct onset (0 if none)."""
    if not len(starts):
        return 0.0
    onsets = np.unique(starts)
    sounding = (starts[None, :] <= onsets[:, None]) & (ends[None, :] > onsets[:, None])
    return float(sounding.sum(axis=1).mean())


def polyphony(song: Song) -> float:
    """Mean number of melodic notes sounding at each onset."""
    melodic = [track.notes for track in song.tracks if not track.is_drum and len(track.notes)]
    if not melodic:
        return 0.0
    starts = np.concatenate([notes.starts for notes in melodic])
    return mean_sounding(starts, starts + np.concatenate([notes.durations for notes in melodic]))


# --- harmony ---------------------------------------------------------------------------
def chord_change_rate(song: Song, bars: int) -> float | None:
    """The share of the bar lines between two of the first ``bars`` bars where the harmony
    moves: the chord the encoder's labeller (`bar_chords`) gives one bar differs from the
    next one's. Bars without melodic notes are left out; None when fewer than two are left.
    A continuation that holds one chord for eight bars scores 0 where the real bars change
    chord at most bar lines."""
    melodic = [track.notes.array for track in song.tracks if not track.is_drum and len(track.notes)]
    if not melodic:
        return None
    notes = np.concatenate(melodic)
    bounds = np.asarray(bar_bounds(song, bars))
    notes = notes[(notes[:, 0] >= bounds[0]) & (notes[:, 0] < bounds[-1])]
    bar = np.searchsorted(bounds, notes[:, 0], side="right") - 1
    labels = bar_chords(bar, notes[:, 0], notes[:, 1], notes[:, 2], bounds[1:], len(bounds) - 1)
    labelled = [label for label in labels if label != NO_CHORD]
    if len(labelled) < 2:
        return None
    return float(np.mean([a != b for a, b in pairwise(labelled)]))


# --- form ------------------------------------------------------------------------------
def bar_contents(grid: GridSong, first: int, stop: int) -> list[bytes]:
    """What each bar of ``[first, stop)`` plays (slot, onset within the bar, pitch, duration),
    comparable between bars; empty for a silent bar or one past the end."""
    notes, starts = grid.notes, grid.bar_starts
    result = []
    for bar in range(first, stop):
        if bar >= grid.bar_count:
            result.append(b"")
            continue
        inside = notes[(notes[:, 1] >= starts[bar]) & (notes[:, 1] < starts[bar + 1])][:, :4].copy()
        inside[:, 1] -= starts[bar]
        result.append(inside.tobytes())
    return result


def restated_share(grid: GridSong, prompt_bars: set[bytes], first: int, stop: int) -> float:
    """Share of the bars ``[first, stop)`` of ``grid`` that play exactly a bar of the prompt."""
    bars = bar_contents(grid, first, stop)
    return sum(1 for bar in bars if bar and bar in prompt_bars) / max(len(bars), 1)


def copy_continuation(grid: GridSong, bars_prompt: int, bars_generate: int) -> GridSong:
    """The prompt (bars ``[0, bars_prompt)`` of ``grid``) followed by the ``copy`` baseline:
    its last ``bars_generate`` bars played again, or, when the prompt is shorter, the whole
    prompt repeated until ``bars_generate`` bars are filled.

    Copied bars keep their length and metre and every note that starts in them (notes
    sounding into them from earlier bars are not copied); tempo and key stay as they are at
    the end of the prompt. The copy's bars are ``[bars_prompt, bars_prompt + bars_generate)``.
    """
    if bars_prompt < 1 or bars_generate < 1:
        raise ValueError(f"a copy needs a prompt and bars to fill, got {bars_prompt} and {bars_generate}")
    prompt = slice_grid(grid, 0, bars_prompt)
    bars_prompt = prompt.bar_count  # a grid shorter than the prompt asked for
    copied = min(bars_generate, bars_prompt)
    sources = [bars_prompt - copied + k % copied for k in range(bars_generate)]
    lengths = np.diff(prompt.bar_starts)
    starts = np.concatenate([prompt.bar_starts, prompt.bar_starts[-1] + np.cumsum(lengths[sources])])
    onset = prompt.notes[:, 1]
    notes = [prompt.notes]
    metres = list(prompt.time_signatures)
    for k, source in enumerate(sources):
        inside = prompt.notes[(onset >= prompt.bar_starts[source]) & (onset < prompt.bar_starts[source + 1])].copy()
        inside[:, 1] += starts[bars_prompt + k] - prompt.bar_starts[source]
        notes.append(inside)
        metre = in_force(prompt.time_signatures, source)[1:]
        if metres[-1][1:] != metre:
            metres.append((bars_prompt + k, *metre))
    merged = np.concatenate(notes)
    merged = merged[np.lexsort((merged[:, 2], merged[:, 1], merged[:, 0]))]
    return replace(prompt, bar_starts=starts, time_signatures=metres, notes=merged)


# --- drums and tracks ------------------------------------------------------------------
def drum_in_kit_counts(song: Song) -> tuple[int, int]:
    """(notes of drum tracks on a General MIDI percussion key 35–81, notes of drum tracks)."""
    pitches = [track.notes.pitches for track in song.tracks if track.is_drum]
    keys = np.concatenate(pitches) if pitches else np.zeros(0, dtype=np.int64)
    return int(((keys >= GM_KIT[0]) & (keys <= GM_KIT[1])).sum()), len(keys)


def drum_new_key_counts(song: Song, prompt: Song) -> tuple[int, int]:
    """(notes of drum tracks on keys their track did not play in ``prompt``, notes of drum
    tracks): a drummer keeps to the kit pieces of the song's groove, and adds one (a crash,
    a tom fill) now and then."""
    new = total = 0
    for before, track in track_pairs(prompt, song):
        if track.is_drum:
            heard = before.notes.pitches if before is not None else np.zeros(0, dtype=np.int64)
            new += int((~np.isin(track.notes.pitches, heard)).sum())
            total += len(track.notes)
    return new, total


def track_pairs(candidate: Song, real: Song) -> list[tuple[Track | None, Track]]:
    """Each track of ``real`` with its counterpart in ``candidate``: the track of the same
    instrument (program and drum flag) in the same order among that instrument's tracks, or
    None. Continuations keep the prompt's tracks in their slots, so this pairs slot with slot."""
    by_instrument: dict[tuple[int, bool], list[Track]] = {}
    for track in candidate.tracks:
        by_instrument.setdefault((track.program, track.is_drum), []).append(track)
    pairs: list[tuple[Track | None, Track]] = []
    taken: dict[tuple[int, bool], int] = {}
    for track in real.tracks:
        key = (track.program, track.is_drum)
        index = taken.get(key, 0)
        taken[key] = index + 1
        options = by_instrument.get(key, [])
        pairs.append((options[index] if index < len(options) else None, track))
    return pairs


def track_density_ratios(candidate: Song, real: Song) -> list[float]:
    """Notes of each track in ``candidate`` / its notes in ``real``, for every track that plays
    in the real bars (a track the real bars leave silent has no ratio)."""
    return [
        (len(mine.notes) if mine is not None else 0) / len(theirs.notes)
        for mine, theirs in track_pairs(candidate, real)
        if len(theirs.notes)
    ]


def register_distances(candidate: Song, real: Song) -> tuple[list[float], list[float]]:
    """|median pitch in ``candidate`` − median pitch in ``real``| (semitones) of each melodic
    track that plays in both, and the same for the bass tracks (GM programs 32–39) alone."""
    melodic, bass = [], []
    for mine, theirs in track_pairs(candidate, real):
        if mine is None or theirs.is_drum or not len(mine.notes) or not len(theirs.notes):
            continue
        distance = abs(float(np.median(mine.notes.pitches)) - float(np.median(theirs.notes.pitches)))
        melodic.append(distance)
        if theirs.program in BASS_PROGRAMS:
            bass.append(distance)
    return melodic, bass


def density_shares(ratios: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(median ratio, share of tracks silent (< 0.25×), share exploding (> 4×)); None if no tracks."""
    if not len(ratios):
        return None, None, None
    values = np.asarray(ratios, dtype=float)
    return float(np.median(values)), float((values < SILENT_BELOW).mean()), float((values > EXPLODING_ABOVE).mean())


def within_octave_share(distances: Sequence[float]) -> float | None:
    """Share of ``distances`` (semitones) of at most an octave; None if there are none."""
    return float((np.asarray(distances, dtype=float) <= OCTAVE).mean()) if len(distances) else None


def continuation_scores(candidate: Song, real: Song, prompt: Song) -> dict:
    """Every per-file measure of the continuation ``candidate`` against the ``real`` bars after
    ``prompt`` (all three songs of bars from tick 0). Lists keep the per-track values that
    `pooled_track_measures` pools over files."""
    in_kit, drum_notes = drum_in_kit_counts(candidate)
    new_keys = drum_new_key_counts(candidate, prompt)
    densities = track_density_ratios(candidate, real)
    median_density, silent, exploding = density_shares(densities)
    melodic, bass = register_distances(candidate, real)
    return {
        "pitch_class_overlap": pitch_class_overlap(candidate, real),
        "note_density_ratio": candidate.note_count / max(real.note_count, 1),
        "polyphony_ratio": polyphony(candidate) / max(polyphony(real), 1e-9),
        "in_scale_rate": in_scale_rate(candidate, best_scale(pitch_class_profile(prompt))),
        "velocity_difference": abs(mean_velocity(candidate) - mean_velocity(real)),
        "empty": candidate.note_count == 0,
        "drum_in_kit_rate": in_kit / drum_notes if drum_notes else None,
        "drum_notes": [in_kit, drum_notes],
        "drum_new_key_rate": new_keys[0] / new_keys[1] if new_keys[1] else None,
        "drum_new_keys": list(new_keys),
        "track_density_ratio": median_density,
        "silent_track_rate": silent,
        "exploding_track_rate": exploding,
        "track_density_ratios": densities,
        "register_distance": float(np.median(melodic)) if melodic else None,
        "bass_within_octave_rate": within_octave_share(bass),
        "register_distances": melodic,
        "bass_register_distances": bass,
    }


def pooled_track_measures(scores: Sequence[dict]) -> dict:
    """The drum, density and register measures over many files (`continuation_scores`), pooled:
    the shares of all drum notes in the kit and on keys new to their track, the median and
    the silent and exploding shares of all tracks' density ratios, the median register
    distance of all melodic tracks and the share of all bass tracks within an octave. None
    where no file has such notes or tracks."""
    in_kit = sum(score["drum_notes"][0] for score in scores)
    drum_notes = sum(score["drum_notes"][1] for score in scores)
    new_keys = sum(score["drum_new_keys"][0] for score in scores)
    densities = [ratio for score in scores for ratio in score["track_density_ratios"]]
    median_density, silent, exploding = density_shares(densities)
    melodic = [distance for score in scores for distance in score["register_distances"]]
    bass = [distance for score in scores for distance in score["bass_register_distances"]]
    return {
        "drum_in_kit_rate": in_kit / drum_notes if drum_notes else None,
        "drum_new_key_rate": new_keys / drum_notes if drum_notes else None,
        "track_density_ratio": median_density,
        "silent_track_rate": silent,
        "exploding_track_rate": exploding,
        "register_distance": float(np.median(melodic)) if melodic else None,
        "bass_within_octave_rate": within_octave_share(bass),
    }


# --- distributions (Yang & Lerch 2020) --------------------------------------------------
FEATURES = ("pitch_range", "pitch_class_histogram", "inter_onset_interval", "note_length", "polyphony")
BINS_PER_BANDWIDTH = 8  # the densities' grid: a value's weight is shared by its two nearest grid points
DISTANCE_CHUNK = 1 << 20  # distances computed at a time (differences held: this many × the feature's size)


def bar_bounds(song: Song, bars: int) -> list[int]:
    """The ticks where each of the first ``bars`` bars begins, and where the last one ends."""
    metres = (song.time_signature_at(0), *song.time_signatures)
    longest = max(int(signature.bar_ticks(song.resolution)) for signature in metres)
    return song.bar_starts(longest * bars)[: bars + 1]


def bar_features(song: Song, bars: int) -> dict[str, list[np.ndarray]]:
    """The Yang & Lerch features of each of the first ``bars`` bars, over the notes that start
    in the bar (drums count only for onsets; a bar lacks a feature it cannot have):

    - ``pitch_range``: highest − lowest melodic pitch (semitones);
    - ``pitch_class_histogram``: the 12 shares of the melodic notes' pitch classes;
    - ``inter_onset_interval``: mean time between successive distinct onsets of any track
      (quarter notes; needs two onsets);
    - ``note_length``: mean duration of the melodic notes (quarter notes);
    - ``polyphony``: mean number of the bar's melodic notes sounding at each of their onsets.
    """
    rows = [(track.is_drum, track.notes.array) for track in song.tracks if len(track.notes)]
    melodic = np.concatenate([a for drum, a in rows if not drum] or [np.zeros((0, 4), np.int64)])
    onsets_all = np.concatenate([a[:, 0] for _, a in rows] or [np.zeros(0, np.int64)])
    features: dict[str, list[np.ndarray]] = {name: [] for name in FEATURES}
    bounds = bar_bounds(song, bars)
    for start, stop in pairwise(bounds):
        notes = melodic[(melodic[:, 0] >= start) & (melodic[:, 0] < stop)]
        onsets = np.unique(onsets_all[(onsets_all >= start) & (onsets_all < stop)])
        if len(onsets) > 1:
            features["inter_onset_interval"].append(np.array([np.diff(onsets).mean() / song.resolution]))
        if not len(notes):
            continue
        pitches = notes[:, 1]
        features["pitch_range"].append(np.array([float(pitches.max() - pitches.min())]))
        features["pitch_class_histogram"].append(pitch_class_shares(pitches))
        features["note_length"].append(np.array([notes[:, 2].mean() / song.resolution]))
        features["polyphony"].append(np.array([mean_sounding(notes[:, 0], notes[:, 0] + notes[:, 2])]))
    return features


def silverman_bandwidth(values: np.ndarray) -> float:
    """Silverman's rule of thumb, 0.9 · min(σ, IQR / 1.34) · n^(−1/5) (σ alone when the IQR is 0)."""
    if len(values) < 2:
        return 0.0
    sigma = float(values.std(ddof=1))
    iqr = float(np.subtract(*np.percentile(values, [75, 25])))
    spread = min(sigma, iqr / 1.34) if iqr > 0 else sigma
    return 0.9 * spread * len(values) ** -0.2


def binned_density(values: np.ndarray, bandwidth: float, start: float, step: float, points: int) -> np.ndarray:
    """The Gaussian kernel density estimate of ``values`` (bandwidth ``bandwidth``) at the ``points``
    grid points ``start + k · step``, with each value's weight shared linearly between its two
    nearest grid points (linear binning): millions of values cost one histogram and one short
    convolution, and the estimate differs from the exact one by about (step / bandwidth)² / 24
    of a kernel, a thousandth at 8 points per bandwidth."""
    position = (values - start) / step
    lower = np.clip(np.floor(position).astype(np.int64), 0, points - 2)
    upper_weight = np.clip(position - lower, 0.0, 1.0)
    weights = np.bincount(lower, 1.0 - upper_weight, points) + np.bincount(lower + 1, upper_weight, points)
    reach = int(np.ceil(4 * bandwidth / step))
    offsets = np.arange(-reach, reach + 1) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    return np.convolve(weights, kernel, mode="same") / (len(values) * bandwidth * np.sqrt(2 * np.pi))


def density_overlap(first: np.ndarray, second: np.ndarray) -> float:
    """∫ min(f, g) of the Gaussian kernel density estimates f, g of two samples of numbers:
    1 for the same distribution, 0 for distributions apart. Both use one bandwidth, the wider
    of the two samples' Silverman bandwidths, at least two thousandths of the values' span (so a
    sample of equal values is a narrow peak, not a spike between grid points); the densities
    are `binned_density` on one grid reaching 4 bandwidths past the values, and the integral
    is their sum times the grid step.

    One bandwidth, because two would compare the kernels, not the samples: the distances of a
    feature with few values (polyphony: four bars in five play one note at a time) are mostly
    exact zeros, and each sample's own rule switches from its IQR to its σ as the share of
    zeros crosses 3/4, so two draws of one distribution scored anywhere from 0.24 to 0.97
    (the same continuations, chosen among takes or not, scored 0.55 and 0.81)."""
    low = min(float(first.min()), float(second.min()))
    high = max(float(first.max()), float(second.max()))
    if high == low:
        return 1.0  # both all the same value
    bandwidth = max(silverman_bandwidth(first), silverman_bandwidth(second), 2 * (high - low) / 1000)
    step = bandwidth / BINS_PER_BANDWIDTH
    start = low - 4 * bandwidth
    points = int(np.ceil((high - low + 8 * bandwidth) / step)) + 1
    f, g = (binned_density(values, bandwidth, start, step, points) for values in (first, second))
    return min(float(np.minimum(f, g).sum() * step), 1.0)


def overlapping_area(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float | None:
    """Yang & Lerch's overlapping area (OA) of one feature: how well ``candidate`` samples (feature
    vectors) are spread like the ``reference`` (real) ones.

    The *intra-set* distances are the Euclidean distances between every two reference samples,
    the *inter-set* distances those between every reference and every candidate sample. Each
    set of distances is smoothed into a density by a Gaussian kernel (`density_overlap`), and OA
    is the area under both densities, ∫ min(intra, inter): near 1 when a candidate sample lies
    among the real ones as a real one does, near 0 when the candidates are all far from the real
    samples. It is not a distance to any one sample: a copy of some reference samples scores
    high only if the copied samples are typical of all of them.

    Every sample counts (1,500 bars make 1.1 million intra-set distances; no draw, so the same
    sets give the same figure). None when there are fewer than two reference samples or no
    candidate.
    """
    if len(reference) < 2 or not len(candidate):
        return None
    real, other = (np.asarray(samples, dtype=float).reshape(len(samples), -1) for samples in (reference, candidate))
    intra = _distances(real, real, *np.triu_indices(len(real), 1))
    every = np.indices((len(real), len(other))).reshape(2, -1)
    inter = _distances(real, other, every[0], every[1])
    return density_overlap(intra, inter)


def _distances(first: np.ndarray, second: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """‖first[left[i]] − second[right[i]]‖ for every i, a chunk at a time."""
    step = max(1, DISTANCE_CHUNK // first.shape[1])
    return np.concatenate([np.linalg.norm(first[left[at : at + step]] - second[right[at : at + step]], axis=1)
                           for at in range(0, len(left), step)])  # fmt: skip


def distribution_overlap(reference: dict[str, list[np.ndarray]],
                         candidate: dict[str, list[np.ndarray]]) -> dict[str, float | None]:  # fmt: skip
    """`overlapping_area` of every feature of `bar_features` (pooled over files), and their mean
    (``mean``: over the features that have an OA; None when none has)."""
    result = {name: overlapping_area(reference[name], candidate[name]) for name in FEATURES}
    known = [value for value in result.values() if value is not None]
    return {**result, "mean": float(np.mean(known)) if known else None}
