"""The music-level measures of `meloformer-eval`, on hand-built songs and the fixtures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meloformer_core.encoding import DEFAULT_VOCAB, encode, validate
from meloformer_core.encoding.codec import slice_grid
from meloformer_core.encoding.quantize import from_grid, to_grid
from meloformer_core.metrics import histogram_overlap, pitch_class_shares
from meloformer_core.midi_io import read_midi
from meloformer_core.music import Song, TimeSignature, Track
from tests.conftest import FIXTURES
from tests.core.strategies import songs
from training.continuation_metrics import (
    FEATURES,
    bar_contents,
    bar_features,
    best_scale,
    binned_density,
    chord_change_rate,
    continuation_scores,
    copy_continuation,
    density_overlap,
    distribution_overlap,
    drum_in_kit_counts,
    drum_new_key_counts,
    mean_velocity,
    overlapping_area,
    pitch_class_overlap,
    pitch_class_profile,
    pooled_track_measures,
    profile_baseline,
    register_distances,
    restated_share,
    track_density_ratios,
    track_pairs,
)
from training.evaluate import phrase_thrice

Q = 480  # ticks per quarter of the hand-built songs (4/4: a bar is 4 · Q)
BAR = 4 * Q


def track(program: int, notes: list[tuple[int, int, int, int]], drum: bool = False) -> Track:
    return Track("t", program, drum, notes)


def transposed(song: Song, interval: int, drums_too: bool = False) -> Song:
    shift = np.array([0, interval, 0, 0])
    return song.replace(tracks=[t if t.is_drum and not drums_too else t.with_notes(t.notes.array + shift)
                                for t in song.tracks])  # fmt: skip


# --- pitch classes (moved from evaluate.py) ---------------------------------------------
def test_scale_and_profile_helpers() -> None:
    song = read_midi(FIXTURES / "bach_chorale.mid")  # A major / F-sharp minor
    scale = best_scale(pitch_class_profile(song))
    assert scale.sum() in (7, 8) and all(scale[[9, 11, 1, 2, 4, 6]])
    soft = song.replace(tracks=[t.with_notes(t.notes.array * [1, 1, 1, 0] + [0, 0, 0, 40]) for t in song.tracks])
    assert mean_velocity(song) == 90 and mean_velocity(soft) == 40 and mean_velocity(soft.replace(tracks=())) == 0


def test_the_profile_baseline_draws_from_the_prompts_pitch_classes() -> None:
    song = read_midi(FIXTURES / "bach_chorale.mid")
    profile = pitch_class_profile(song, by_duration=False)
    assert profile_baseline(profile, song, 0) == profile_baseline(profile, song, 0) > 0.8  # its own histogram
    only_c = np.zeros(12)
    only_c[0] = 1
    assert profile_baseline(only_c, song, 0) == pitch_class_profile(song, by_duration=False)[0] / song.note_count
    assert profile_baseline(profile, song.replace(tracks=()), 0) == 0.0


@given(songs(max_tracks=3), songs(max_tracks=3), st.integers(-24, 24))
def test_pitch_class_overlap_is_a_symmetric_share_that_transposition_keeps(a: Song, b: Song, interval: int) -> None:
    overlap = pitch_class_overlap(a, b)
    assert 0.0 <= overlap <= 1.0 + 1e-9 and overlap == pytest.approx(pitch_class_overlap(b, a))
    # moving both by one interval (within the keyboard) keeps their histograms' relation
    low = min([t.notes.pitches.min() for s in (a, b) for t in s.tracks if len(t.notes) and not t.is_drum] or [0])
    high = max([t.notes.pitches.max() for s in (a, b) for t in s.tracks if len(t.notes) and not t.is_drum] or [0])
    interval = int(np.clip(interval, -low, 127 - high))
    assert pitch_class_overlap(transposed(a, interval), transposed(b, interval)) == pytest.approx(overlap)
    melodic = any(len(t.notes) for t in a.tracks if not t.is_drum)
    assert pitch_class_overlap(a, a) == pytest.approx(1.0 if melodic else 0.0)


def test_pitch_class_shares_and_histogram_overlap() -> None:
    shares = pitch_class_shares(np.array([60, 72, 64, 67]))  # C, C, E, G
    assert shares[0] == 0.5 and shares[4] == shares[7] == 0.25 and shares.sum() == 1.0
    assert not pitch_class_shares(np.zeros(0, dtype=np.int64)).any()
    assert histogram_overlap(shares, 4 * shares) == 1.0  # normalised before the intersection
    assert histogram_overlap(shares, pitch_class_shares(np.array([61, 63]))) == 0.0
    assert histogram_overlap(shares, np.zeros(12)) == 0.0


# --- form -------------------------------------------------------------------------------
def test_restated_bars_are_the_same_notes_at_the_same_places_in_the_bar() -> None:
    grid = to_grid(read_midi(FIXTURES / "bach_chorale.mid"), DEFAULT_VOCAB)
    starts, notes = grid.bar_starts, grid.notes
    assert starts[8] - starts[4] == starts[4] - starts[0]  # 4/4 throughout
    said = set(bar_contents(grid, 0, 4))
    assert restated_share(grid, said, 0, 4) == 1.0 and restated_share(grid, said, 4, 8) == 0.0
    first = notes[notes[:, 1] < starts[4]]
    copy = first.copy()
    copy[:, 1] += starts[4] - starts[0]
    copy[:, 4] = 3  # another velocity: still the same notes
    rest = notes[notes[:, 1] >= starts[8]]
    again = dataclasses.replace(grid, notes=np.concatenate([first, copy, rest]))
    assert restated_share(again, said, 4, 8) == 1.0
    assert restated_share(again, said, 4, grid.bar_count + 2) < 1.0  # bars past the end restate nothing

    thrice = phrase_thrice(grid)  # the recall probe: the first 4 bars three times
    assert thrice.bar_count == 12 and len(thrice.notes) == 3 * len(first)
    assert restated_share(thrice, said, 4, 12) == 1.0
    validate(encode(from_grid(thrice)))  # a grammatical sequence (raises otherwise)
    assert phrase_thrice(grid, grid.bar_count + 1) is None


def test_the_copy_plays_the_prompts_last_bars_again() -> None:
    grid = to_grid(read_midi(FIXTURES / "bach_chorale.mid"), DEFAULT_VOCAB)
    copied = copy_continuation(grid, 4, 2)
    assert copied.bar_count == 6 and bar_contents(copied, 4, 6) == bar_contents(grid, 2, 4)
    said = set(bar_contents(grid, 0, 4)) - {b""}
    assert restated_share(copied, said, 4, 6) == 1.0  # the copy restates every bar …
    assert restated_share(grid, said, 4, 6) == 0.0  # … the real continuation none
    validate(encode(from_grid(copied)))
    # a prompt shorter than the continuation is repeated whole
    longer = copy_continuation(grid, 2, 5)
    assert bar_contents(longer, 2, 7) == [*bar_contents(grid, 0, 2)] * 2 + bar_contents(grid, 0, 1)
    with pytest.raises(ValueError):
        copy_continuation(grid, 0, 2)


def test_copied_bars_keep_their_metre() -> None:
    waltz_then_common = Song(
        time_signatures=(TimeSignature(0, 3, 4), TimeSignature(3 * Q, 4, 4)),
        tracks=(track(0, [(0, 60, Q, 80), (3 * Q, 62, Q, 80), (7 * Q, 64, Q, 80)]),),
    )
    grid = to_grid(waltz_then_common, DEFAULT_VOCAB)
    copied = copy_continuation(grid, 3, 3)  # bars of 3, 4 and 4 quarters played again
    assert np.diff(copied.bar_starts).tolist() == np.diff(grid.bar_starts[:4]).tolist() * 2
    assert [sig[1:] for sig in copied.time_signatures] == [(3, 4), (4, 4), (3, 4), (4, 4)]
    song = from_grid(slice_grid(copied, 3, 6))
    assert [n.pitch for n in song.tracks[0].notes] == [60, 62, 64]


@settings(max_examples=40)
@given(songs(max_tracks=3, max_quarters=48), st.integers(1, 4), st.integers(1, 6))
def test_a_copy_restates_every_bar_that_plays(song: Song, bars_prompt: int, bars_generate: int) -> None:
    grid = to_grid(song, DEFAULT_VOCAB)
    if grid.bar_count < bars_prompt:
        return
    copied = copy_continuation(grid, bars_prompt, bars_generate)
    said = set(bar_contents(grid, 0, bars_prompt)) - {b""}
    copies = bar_contents(copied, bars_prompt, bars_prompt + bars_generate)
    assert restated_share(copied, said, bars_prompt, bars_prompt + bars_generate) == pytest.approx(
        sum(map(bool, copies)) / bars_generate
    )
    if b"" not in bar_contents(grid, 0, bars_prompt):  # no silent bar to copy
        assert restated_share(copied, said, bars_prompt, bars_prompt + bars_generate) == 1.0


# --- harmony ---------------------------------------------------------------------------
def chords_in_bars(*roots: int | None) -> Song:
    """A bass note and a major triad for each bar (None: a silent bar), over a drum track."""
    triad = tuple(enumerate((0, 4, 7, 12)))  # (beat, interval)
    notes = [(bar * BAR + beat * Q, root + interval, Q, 80)
             for bar, root in enumerate(roots) if root is not None for beat, interval in triad]  # fmt: skip
    bass = [(bar * BAR, root - 12, BAR, 80) for bar, root in enumerate(roots) if root is not None]
    drums = [(k * Q, 36 + k % 3, Q, 90) for k in range(4 * len(roots))]
    return Song(tracks=(track(0, notes), track(33, bass), track(0, drums, drum=True)))


def test_the_chord_change_rate_counts_the_bar_lines_where_the_harmony_moves() -> None:
    assert chord_change_rate(chords_in_bars(60, 60, 60, 60), 4) == 0.0  # one chord held for every bar: stuck
    assert chord_change_rate(chords_in_bars(60, 65, 67, 60), 4) == 1.0  # I IV V I
    assert chord_change_rate(chords_in_bars(60, 60, 67, 67), 4) == pytest.approx(1 / 3)
    assert chord_change_rate(chords_in_bars(60, None, 60, 67), 4) == 0.5  # a silent bar is left out
    assert chord_change_rate(chords_in_bars(60, 65, 67, 60), 2) == 1.0  # only the first bars count
    assert chord_change_rate(chords_in_bars(60, None, None), 3) is None  # one chord: nothing to change
    assert chord_change_rate(chords_in_bars(60, 65).replace(tracks=()), 2) is None


# --- drums and tracks -------------------------------------------------------------------
def test_drum_notes_outside_the_general_midi_kit_lower_the_rate() -> None:
    song = Song(tracks=(
        track(0, [(0, 36, Q, 90), (Q, 38, Q, 90), (2 * Q, 30, Q, 90), (3 * Q, 90, Q, 90), (0, 81, Q, 9)], drum=True),
        track(0, [(0, 20, Q, 90)]),  # a melodic note below the kit counts for nothing
    ))  # fmt: skip
    assert drum_in_kit_counts(song) == (3, 5)
    scores = continuation_scores(song, song, song)
    assert scores["drum_in_kit_rate"] == 0.6 < 1
    assert continuation_scores(song.replace(tracks=song.tracks[1:]), song, song)["drum_in_kit_rate"] is None
    assert drum_in_kit_counts(read_midi(FIXTURES / "drum_groove.mid"))[0] == 51  # a real groove: all in the kit


def test_drum_notes_on_kit_pieces_new_to_the_track_are_counted() -> None:
    groove = track(0, [(0, 36, Q, 90), (Q, 38, Q, 90), (2 * Q, 42, Q, 90)], drum=True)
    prompt = Song(tracks=(groove, track(0, [(0, 49, Q, 90)])))  # the piano's 49 is no kit piece
    fill = Song(tracks=(track(0, [(0, 36, Q, 90), (Q, 45, Q, 90), (2 * Q, 49, Q, 90), (3 * Q, 42, Q, 9)], True),
                        track(0, [(0, 60, Q, 90)])))  # fmt: skip
    assert drum_new_key_counts(fill, prompt) == (2, 4)  # a tom and a crash the groove never played
    assert drum_new_key_counts(prompt, prompt) == (0, 3)
    entering = Song(tracks=(track(0, [(0, 60, Q, 90)]), track(0, [(0, 36, Q, 90)], drum=True)))
    assert drum_new_key_counts(entering, entering.replace(tracks=entering.tracks[:1])) == (1, 1)  # drums come in
    scores = [continuation_scores(fill, prompt, prompt), continuation_scores(prompt, prompt, prompt)]
    assert scores[0]["drum_new_key_rate"] == 0.5 and pooled_track_measures(scores)["drum_new_key_rate"] == 2 / 7


def test_per_track_density_counts_silent_and_exploding_tracks() -> None:
    notes = [(k * Q // 2, 60, Q // 2, 80) for k in range(40)]
    real = Song(tracks=(track(0, notes[:4]), track(33, notes[:8]), track(40, []), track(0, notes[:10], drum=True)))
    candidate = Song(tracks=(track(0, []), track(33, notes[:40]), track(40, notes[:5]), track(0, notes[:10], True)))
    assert track_density_ratios(candidate, real) == [0.0, 5.0, 1.0]  # the track silent in the real bars has none
    scores = continuation_scores(candidate, real, real)
    assert (scores["track_density_ratio"], scores["silent_track_rate"], scores["exploding_track_rate"]) == (
        1.0, 1 / 3, 1 / 3)  # fmt: skip
    ideal = continuation_scores(real, real, real)
    assert (ideal["track_density_ratio"], ideal["silent_track_rate"], ideal["exploding_track_rate"]) == (1, 0, 0)
    assert continuation_scores(real, real.replace(tracks=()), real)["track_density_ratio"] is None


def test_tracks_pair_by_instrument_in_order() -> None:
    real = Song(tracks=(track(0, [(0, 60, Q, 80)]), track(0, [(0, 48, Q, 80)]), track(33, [(0, 36, Q, 80)])))
    candidate = Song(tracks=(track(24, []), track(0, [(0, 61, Q, 80)]), track(0, [(0, 49, Q, 80)])))
    pairs = track_pairs(candidate, real)
    assert [mine.notes.pitches[0] if mine else None for mine, _ in pairs] == [61, 49, None]
    assert track_density_ratios(candidate, real) == [1.0, 1.0, 0.0]  # the missing bass counts as silent


def test_register_distance_per_track_and_bass_within_an_octave() -> None:
    melody = track(0, [(0, 60, Q, 80), (Q, 64, Q, 80), (2 * Q, 67, Q, 80)])
    real = Song(tracks=(melody, track(33, [(0, 36, Q, 80), (Q, 43, Q, 80)]), track(0, [(0, 20, Q, 80)], drum=True)))
    up_a_fifth = transposed(real, 7, drums_too=True)
    assert register_distances(up_a_fifth, real) == ([7.0, 7.0], [7.0])  # drums have no register
    bass_down = real.replace(tracks=(real.tracks[0], transposed(real, -14).tracks[1], real.tracks[2]))
    scores = continuation_scores(bass_down, real, real)
    assert scores["register_distances"] == [0.0, 14.0] and scores["bass_within_octave_rate"] == 0.0
    assert scores["register_distance"] == 7.0
    pooled = pooled_track_measures([scores, continuation_scores(up_a_fifth, real, real)])
    assert pooled["register_distance"] == 7.0 and pooled["bass_within_octave_rate"] == 0.5
    assert continuation_scores(real.replace(tracks=real.tracks[:1]), real, real)["bass_within_octave_rate"] is None


@settings(max_examples=60)
@given(songs(max_tracks=4), st.integers(-12, 12))
def test_transposing_every_melodic_track_moves_each_register_by_the_interval(song: Song, interval: int) -> None:
    melodic = [t for t in song.tracks if not t.is_drum and len(t.notes)]
    if not melodic:
        return
    low, high = min(t.notes.pitches.min() for t in melodic), max(t.notes.pitches.max() for t in melodic)
    interval = int(np.clip(interval, -low, 127 - high))
    distances, _ = register_distances(transposed(song, interval), song)
    assert distances == [abs(interval)] * len(melodic)
    assert track_density_ratios(transposed(song, interval), song) == [1.0] * sum(len(t.notes) > 0 for t in song.tracks)


def test_pooled_drum_rate_weighs_every_drum_note() -> None:
    kit = Song(tracks=(track(0, [(k * Q, 36, Q, 80) for k in range(9)], drum=True),))
    odd = Song(tracks=(track(0, [(0, 20, Q, 80)], drum=True),))
    pooled = pooled_track_measures([continuation_scores(song, song, song) for song in (kit, odd)])
    assert pooled["drum_in_kit_rate"] == 0.9  # 9 of 10 notes, not the mean of 1 and 0


# --- distributions ----------------------------------------------------------------------
def test_bar_features_of_a_hand_built_bar() -> None:
    song = Song(tracks=(
        track(0, [(0, 60, Q, 80), (0, 67, Q, 80), (Q, 64, 2 * Q, 80)]),
        track(0, [(Q // 2, 42, Q // 4, 80)], drum=True),
    ))  # fmt: skip
    features = bar_features(song, 2)  # the second bar is silent: it has no features
    assert {name: len(values) for name, values in features.items()} == dict.fromkeys(FEATURES, 1)
    assert features["pitch_range"][0].tolist() == [7.0]
    assert features["pitch_class_histogram"][0][[0, 4, 7]].tolist() == pytest.approx([1 / 3] * 3)
    assert features["inter_onset_interval"][0].tolist() == [0.5]  # onsets at 0, ½ (the hi-hat), 1
    assert features["note_length"][0].tolist() == pytest.approx([4 / 3])
    assert features["polyphony"][0].tolist() == [1.5]  # two notes at 0, one at 1 (the others have ended)


def test_overlapping_area_against_itself_is_near_one_and_against_a_disjoint_set_near_zero() -> None:
    rng = np.random.default_rng(0)
    real = list(rng.normal(0, 1, (60, 2)))
    assert overlapping_area(real, real) > 0.9
    assert overlapping_area(real, list(rng.normal(0, 1, (60, 2)))) > 0.85  # another draw of the same kind
    assert overlapping_area(real, list(rng.normal(100, 1, (60, 2)))) < 0.01
    assert overlapping_area(real[:1], real) is None and overlapping_area(real, []) is None
    assert density_overlap(np.zeros(5), np.zeros(7)) == 1.0 and density_overlap(np.zeros(5), np.ones(7)) < 0.01


@pytest.mark.parametrize("spread", [0.05, 1.0, 30.0])
def test_the_binned_density_is_the_gaussian_kernel_estimate(spread: float) -> None:
    """Linear binning at 8 grid points per bandwidth gives the exact kernel estimate to a thousandth
    of its peak, also for samples that are mostly exact zeros (the distances of a feature with
    few values)."""
    rng = np.random.default_rng(1)
    values = np.where(rng.random(5000) < 0.7, 0.0, np.abs(rng.normal(0, spread, 5000)))
    bandwidth = spread / 10
    step = bandwidth / 8
    start = -4 * bandwidth
    points = int(np.ceil((values.max() + 8 * bandwidth) / step)) + 1
    grid = start + step * np.arange(points)
    exact = np.exp(-0.5 * ((grid[:, None] - values[None, :]) / bandwidth) ** 2).sum(axis=1)
    exact /= len(values) * bandwidth * np.sqrt(2 * np.pi)
    binned = binned_density(values, bandwidth, start, step, points)
    assert np.abs(binned - exact).max() < 1e-3 * exact.max()
    assert binned.sum() * step == pytest.approx(1.0, abs=1e-3)


def test_overlapping_area_counts_every_sample_whatever_their_order() -> None:
    """Sets of 600 bars: every bar counts (no draw of some of them), so reordering a set leaves
    the area as it is, and a third of the candidates moved away lowers it."""
    rng = np.random.default_rng(2)
    real = list(rng.normal(0, 1, (600, 3)))
    candidate = list(rng.normal(0, 1, (600, 3)))
    area = overlapping_area(real, candidate)
    shuffled = [candidate[i] for i in rng.permutation(600)]
    assert overlapping_area(real[::-1], shuffled) == pytest.approx(area, abs=1e-9)
    moved = candidate[:400] + [v + 4.0 for v in candidate[400:]]
    assert area > 0.95 and overlapping_area(real, moved) < area - 0.1


@pytest.mark.parametrize("seed", range(3))
def test_overlapping_area_of_a_feature_with_few_values_scores_every_draw_of_the_real_spread_high(seed: int) -> None:
    """Polyphony-like bars (about four in five play one note at a time, the rest four or
    something between): draws of about the real spread all score high, and a set that plays
    one note at a time in every bar scores below each of them. (With a bandwidth per sample,
    such draws scored 0.24-0.97: the kernels were compared, not the bars.)"""
    rng = np.random.default_rng(seed)

    def bars(count: int, one_note_share: float) -> list[np.ndarray]:
        chords = np.where(rng.random(count) < 0.6, 4.0, rng.uniform(1, 4, count).round(2))
        return [np.array([value]) for value in np.where(rng.random(count) < one_note_share, 1.0, chords)]

    real = bars(200, 0.82)
    draws = [overlapping_area(real, bars(200, share)) for share in (0.8, 0.82, 0.84)]
    assert min(draws) > 0.9
    assert overlapping_area(real, [np.array([1.0])] * 200) < min(draws)


HUNDREDTHS = st.integers(-5000, 5000).map(lambda n: n / 100)  # feature values, not float edge cases


@settings(max_examples=40)
@given(st.lists(HUNDREDTHS, min_size=2, max_size=25), st.lists(HUNDREDTHS, min_size=1, max_size=25),
       st.floats(0.01, 100), st.floats(-1000, 1000))  # fmt: skip
def test_overlapping_area_is_a_share_that_ignores_units_and_origin(reference: list[float], candidate: list[float],
                                                                   scale: float, shift: float) -> None:  # fmt: skip
    first, second = ([np.array([value]) for value in values] for values in (reference, candidate))
    area = overlapping_area(first, second)
    assert 0.0 <= area <= 1.0
    moved = overlapping_area([scale * v + shift for v in first], [scale * v + shift for v in second])
    assert moved == pytest.approx(area, abs=1e-6)


def test_the_copy_of_real_bars_is_spread_like_real_bars() -> None:
    """On the fixtures, a copy of each prompt's last bars lies among the real bars (a copy is
    not told apart by distributions: `restated_bar_rate` does that); the real bars moved up
    an octave and a tritone and played half as fast keep their ranges and polyphony only."""
    real, copy, far = ({name: [] for name in FEATURES} for _ in range(3))
    for path in sorted(FIXTURES.glob("*.mid")):
        grid = to_grid(read_midi(path), DEFAULT_VOCAB)
        if grid.bar_count < 6:
            continue
        continuation = from_grid(slice_grid(grid, 4, 6))
        stretched = continuation.replace(tracks=[t.with_notes(t.notes.array * [2, 1, 2, 1] + [0, 18, 0, 0])
                                                 for t in continuation.tracks])  # fmt: skip
        copied = from_grid(slice_grid(copy_continuation(grid, 4, 2), 4, 6))
        for features, song in ((real, continuation), (copy, copied), (far, stretched)):
            for name, values in bar_features(song, 2).items():
                features[name] += values
    near, away = distribution_overlap(real, copy), distribution_overlap(real, far)
    assert near["mean"] > 0.8 and near["mean"] > away["mean"] + 0.2
    assert min(away["pitch_range"], away["polyphony"]) > 0.8
    assert max(away["inter_onset_interval"], away["note_length"]) < 0.5 and away["pitch_class_histogram"] < 0.7
    assert distribution_overlap(real, copy) == near  # deterministic
