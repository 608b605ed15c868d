"""Data loading: packing, rank shards, exact resume, augmentation."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meloformer_core.encoding import DEFAULT_VOCAB, decode, encode, validate
from meloformer_core.encoding.vocab import TokenType
from meloformer_core.midi_io import read_midi
from meloformer_core.model.masks import build_layout
from meloformer_core.music import Song, TempoChange, Track
from tests.conftest import FIXTURES
from training.data import (
    Augmentation,
    Augmenter,
    DataError,
    LoaderState,
    MixedDataset,
    PackedLoader,
    TokenDataset,
    lead_and_some,
    repeat_phrase,
    split_by_register,
    target_last,
    transpose_key,
)


@pytest.fixture(scope="module")
def dataset_dir(dataset: Path) -> Path:
    return dataset


def test_packed_rows_fit_and_cover_every_window_once_per_epoch(dataset_dir: Path) -> None:
    data = TokenDataset(dataset_dir, "train")
    loader = PackedLoader(data, max_seq_len=512, rows_per_batch=3, seed=1)
    seen = []
    for batch in loader.plan(0):
        for row in batch:
            assert sum(int(data.lengths[i]) for i in row) <= 512
            seen += row
    assert len(seen) == len(set(seen))  # the tail that does not fill a batch per rank may be left out
    assert len(seen) >= len(data) - 3 * 2
    rows = loader.next_batch()
    layout = build_layout(rows, DEFAULT_VOCAB, pad_to=512)
    assert layout.tokens.shape[1] == 512
    assert int(layout.document.max()) == max(len(r) for r in rows) - 1  # each window is its own document


def test_ranks_take_disjoint_batches(dataset_dir: Path) -> None:
    data = TokenDataset(dataset_dir, "train")
    plans = [
        PackedLoader(data, max_seq_len=512, rows_per_batch=1, seed=3, rank=r, world_size=2).plan(0) for r in (0, 1)
    ]
    windows = [{w for batch in plan for row in batch for w in row} for plan in plans]
    assert windows[0] and windows[1] and not windows[0] & windows[1]
    assert len(plans[0]) == len(plans[1])


def test_loader_resumes_at_the_exact_sample(dataset_dir: Path) -> None:
    data = TokenDataset(dataset_dir, "train")

    def loader() -> PackedLoader:
        return PackedLoader(data, max_seq_len=512, rows_per_batch=2, seed=7, augmentation=Augmentation(5, 0.05))

    straight = loader()
    batches = [straight.next_batch() for _ in range(3 * straight.batches_per_epoch() // 2 + 1)]  # crosses an epoch
    resumed = loader()
    for _ in range(4):
        resumed.next_batch()
    state = resumed.state
    again = loader()
    again.state = LoaderState(state.epoch, state.batch)
    for expected in batches[4:]:
        got = again.next_batch()
        assert [[d.tolist() for d in row] for row in got] == [[d.tolist() for d in row] for row in expected]


def test_transposition_moves_melodic_pitches_chords_and_keys_together() -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    tokens = encode(song)
    augmenter = Augmenter(DEFAULT_VOCAB, Augmentation(max_transpose=5))
    for seed in range(10):
        moved = augmenter(tokens, np.random.default_rng(seed))
        validate(moved)
        before, after = decode(tokens), decode(moved)
        drum_before = before.tracks[0].notes
        assert after.tracks[0].notes == drum_before  # drums do not move
        melodic = [(t1.notes.array, t2.notes.array) for t1, t2 in zip(before.tracks[1:], after.tracks[1:], strict=True)]
        deltas = {int(d) for a, b in melodic for d in np.unique(b[:, 1] - a[:, 1])}
        assert len(deltas) == 1 and abs(deltas.pop()) <= 5

        # chord roots move with the pitches: the same chord qualities, other roots
        def qualities(sequence: np.ndarray) -> list[str]:
            names = DEFAULT_VOCAB.names(sequence)
            return [n.split(":")[-1] for n in names if n.startswith("CHORD_")]

        assert qualities(moved) == qualities(tokens)
    assert transpose_key(0, 7) == 1 and transpose_key(0, 5) == -1 and transpose_key(-3, 12) == -3


def test_velocity_relevel_moves_a_windows_dynamics_as_a_whole_to_any_level() -> None:
    song = read_midi(FIXTURES / "bach_chorale.mid")  # every note at one velocity
    tokens = encode(song)
    augmenter = Augmenter(DEFAULT_VOCAB, Augmentation(max_transpose=0, velocity_relevel=0.75, velocity_track_spread=2))
    levels, kept = [], 0
    for seed in range(16):
        moved = augmenter(tokens, np.random.default_rng(seed))
        validate(moved)
        before, after = decode(tokens), decode(moved)
        window = []
        for old, new in zip(before.tracks, after.tracks, strict=True):
            assert np.array_equal(old.notes.array[:, :3], new.notes.array[:, :3])  # the same notes
            assert len(np.unique(new.notes.velocities)) == 1  # one level for the whole track
            window.append(int(new.notes.velocities[0]))
        kept += int(window == [int(t.notes.velocities[0]) for t in before.tracks])
        assert max(window) - min(window) <= 4 * 8  # the tracks stay within 2 bins of the window's level
        levels.append(sorted(window)[len(window) // 2])
    assert min(levels) < 40 and max(levels) > 110  # soft and loud, not only near 90
    assert 0 < kept < 8  # about a quarter of the windows keep their dynamics
    together = Augmenter(DEFAULT_VOCAB, Augmentation(max_transpose=0, velocity_relevel=1.0, velocity_track_spread=0))
    for seed in range(4):
        tracks = decode(together(tokens, np.random.default_rng(seed))).tracks
        assert len(np.unique(np.concatenate([t.notes.velocities for t in tracks]))) == 1
    assert (Augmenter(DEFAULT_VOCAB, Augmentation(max_transpose=0))(tokens, np.random.default_rng(0)) == tokens).all()


def _bars(tokens: np.ndarray) -> tuple[list[bytes], bytes]:
    """Each bar's tokens (as bytes, to compare) and the tokens before the first bar."""
    kinds = DEFAULT_VOCAB.type_of[tokens]
    bounds = np.append(np.flatnonzero(kinds == TokenType.BAR), len(tokens))
    return [tokens[a:b].tobytes() for a, b in itertools.pairwise(bounds)], tokens[: bounds[0]].tobytes()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 10_000))
def test_a_repeated_phrase_is_played_again_right_after_itself(dataset: Path, seed: int, index: int) -> None:
    data = TokenDataset(dataset, "train")
    tokens = data.tokens(index % len(data))
    moved = repeat_phrase(tokens, DEFAULT_VOCAB, np.random.default_rng(seed))
    validate(moved)
    decode(moved)
    assert len(moved) <= len(tokens)
    before, head = _bars(tokens)
    after, moved_head = _bars(moved)
    assert moved_head == head
    if moved is tokens:
        return

    # bars[:first + size] kept, then bars[first:first + size] again, then the rest from first + size
    def repeated(first: int, size: int) -> list[bytes]:
        return before[: first + size] + before[first : first + size] + before[first + size :]

    found = [(first, size) for size in (2, 4, 8) for first in range(len(before) - size + 1)
             if after == repeated(first, size)[: len(after)]]  # fmt: skip
    assert found, "the window is not the original with one phrase repeated"
    first, size = found[0]
    assert len(after) >= first + 2 * size  # the whole copy is there


def test_only_phrases_without_tempo_or_metre_changes_are_repeated() -> None:
    song = read_midi(FIXTURES / "bach_chorale.mid")
    tokens = encode(song)
    augmenter = Augmenter(DEFAULT_VOCAB, Augmentation(max_transpose=0, repeat_rate=1.0))
    lengths = set()
    for seed in range(12):
        moved = augmenter(tokens, np.random.default_rng(seed))
        assert not np.array_equal(moved, tokens) and len(moved) <= len(tokens)
        assert decode(moved).tempos == song.tempos  # the copies restate no tempo
        lengths.add(len(moved))
    assert len(lengths) > 1  # different phrases
    bar = 4 * song.resolution  # 4/4
    changing = song.replace(
        tempos=tuple(TempoChange(b * bar, 500_000 + 10_000 * b) for b in range(song.end_tick // bar))
    )
    tokens = encode(changing)
    assert (augmenter(tokens, np.random.default_rng(0)) == tokens).all()  # a tempo change in every bar: no repeat


def test_tempo_jitter_stays_grammatical() -> None:
    tokens = encode(read_midi(FIXTURES / "bach_chorale_tempo.mid"))
    moved = Augmenter(DEFAULT_VOCAB, Augmentation(max_transpose=0, tempo_jitter=0.1))(tokens, np.random.default_rng(0))
    validate(moved)
    before = [t.qpm for t in decode(tokens).tempos]
    after = [t.qpm for t in decode(moved).tempos]
    ratios = {round(a / b, 2) for a, b in zip(after, before, strict=True)}
    assert len(ratios) == 1 and ratios != {1.0}


def test_dataset_errors_are_clear(dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such dataset directory"):
        TokenDataset(tmp_path / "missing")
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(DataError, match=r"no manifest\.json"):
        TokenDataset(tmp_path / "unfinished")
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "vocab_hash": "0000000000000000"}))
    with pytest.raises(DataError, match="preprocess the corpus again"):
        TokenDataset(other)
    data = TokenDataset(dataset_dir, "train")
    with pytest.raises(DataError, match="longer than the model's context"):
        PackedLoader(data, max_seq_len=64, rows_per_batch=1, seed=0)


def _band(bars: int = 4) -> np.ndarray:
    """Tokens of a 4/4 band: piano, drums, bass and a lead, every track in every bar."""
    from meloformer_core.music import Song, Track

    beat = 480
    piano = [(bar * 4 * beat + b * beat, 60 + b, beat, 70) for bar in range(bars) for b in range(4)]
    drums = [(bar * 4 * beat + b * beat, (36, 42, 38, 42)[b], beat // 2, 90) for bar in range(bars) for b in range(4)]
    bass = [(bar * 4 * beat, 36 + bar, 4 * beat, 80) for bar in range(bars)]
    lead = [(bar * 4 * beat + 2 * beat, 72 + bar, 2 * beat, 100) for bar in range(bars)]
    tracks = (Track("piano", 0, False, piano), Track("drums", 0, True, drums), Track("bass", 33, False, bass),
              Track("lead", 73, False, lead))  # fmt: skip
    return encode(Song(tracks=tracks))


def _bar_segments(tokens: np.ndarray) -> list[list[tuple[int, ...]]]:
    """Each bar's segments (the conductor's, then each track's) as token tuples."""
    kinds = DEFAULT_VOCAB.type_of[tokens]
    cuts = np.flatnonzero((kinds == TokenType.BAR) | (kinds == TokenType.TRACK) | (kinds == TokenType.EOS))
    bars: list[list[tuple[int, ...]]] = []
    for start, stop in itertools.pairwise([*cuts.tolist(), len(tokens)]):
        if kinds[start] == TokenType.BAR:
            bars.append([])
        if kinds[start] != TokenType.EOS:
            bars[-1].append(tuple(tokens[start:stop].tolist()))
    return bars


def test_arranging_layout_puts_one_track_last_in_every_bar_and_targets_drums_and_bass_as_often() -> None:
    tokens = _band()
    track0 = DEFAULT_VOCAB.offset[TokenType.TRACK]
    before = _bar_segments(tokens)
    targets = []
    for seed in range(300):
        laid = target_last(tokens, DEFAULT_VOCAB, np.random.default_rng(seed))
        validate(laid)
        assert decode(laid).tracks == decode(tokens).tracks  # the same music
        after = _bar_segments(laid)
        last = {bar[-1][0] for bar in after}
        assert len(last) == 1  # one target, last in every bar
        for old, new in zip(before, after, strict=True):
            assert new[0] == old[0] and sorted(new) == sorted(old)  # conductor first, same segments
            assert [s for s in new[1:-1]] == [s for s in old[1:] if s[0] != new[-1][0]]  # the others keep their order
        targets.append(last.pop() - track0)
    counts = np.bincount(targets, minlength=4)  # slots: piano, drums, bass, lead
    assert 70 <= counts[1] <= 130 and 70 <= counts[2] <= 130  # drums and bass: a third each
    assert 70 <= counts[0] + counts[3] <= 130  # the other family: a third between them


def test_thinning_keeps_the_lead_first_and_some_tracks_with_their_own_notes_and_chords() -> None:
    from meloformer_core.music import Song

    band = decode(_band())  # piano, drums, bass and a lead: the highest of the busy melodic tracks
    kept_counts = {"piano": 0, "drums": 0, "bass": 0, "lead": 0}
    for seed in range(200):
        thinned = lead_and_some(_band(), DEFAULT_VOCAB, np.random.default_rng(seed))
        validate(thinned)
        song = decode(thinned)
        assert 2 <= len(song.tracks) <= 4
        by_sound = {(t.program, t.is_drum): t.notes for t in song.tracks}
        assert (song.tracks[0].program, song.tracks[0].is_drum) == (73, False)  # the lead, first
        for track in band.tracks:  # each kept track plays exactly what it played
            if (track.program, track.is_drum) in by_sound:
                assert by_sound[(track.program, track.is_drum)] == track.notes
                kept_counts[("piano", "drums", "bass", "lead")[band.tracks.index(track)]] += 1
        kinds = DEFAULT_VOCAB.type_of[thinned]
        assert (kinds == TokenType.INSTRUMENT).sum() == len(song.tracks)  # the header lists the kept tracks only
        assert thinned[-1] == DEFAULT_VOCAB.eos_id
        assert (thinned == encode(song)).all()  # chord labels of the kept music, as encoding it says
    assert 120 <= kept_counts["drums"] <= 180 and 120 <= kept_counts["bass"] <= 180  # three in four
    assert 10 <= kept_counts["piano"] <= 90  # a chance up to one half, a quarter on average
    assert kept_counts["lead"] == 200
    alone = Song(tracks=(band.tracks[1],))
    assert (lead_and_some(encode(alone), DEFAULT_VOCAB, np.random.default_rng(0)) == encode(alone)).all()


def _chordal_band(bars: int = 4) -> Song:
    """`_band` with the piano playing triads and a strummed guitar (both chordal)."""
    band = decode(_band(bars))
    beat = 480
    triads = [(bar * 4 * beat + b * beat, 48 + b + step, beat, 70) for bar in range(bars) for b in range(4)
              for step in (0, 4, 7, 12)]  # fmt: skip
    strums = [(bar * 4 * beat, 52 + step, 4 * beat, 60) for bar in range(bars) for step in (0, 3, 7, 10)]
    piano, drums, bass, lead = band.tracks
    guitar = Track("guitar", 25, False, strums)
    return decode(encode(band.replace(tracks=(piano.with_notes(triads), drums, bass, guitar, lead))))


def test_splitting_by_register_plays_the_same_notes_on_more_tracks_of_the_same_instruments() -> None:
    band = _chordal_band(bars=8)
    tokens = encode(band)
    splits = Counter()
    for seed in range(60):
        result = split_by_register(tokens, DEFAULT_VOCAB, np.random.default_rng(seed))
        validate(result)
        assert len(result) <= len(tokens) and result[-1] != DEFAULT_VOCAB.eos_id  # cut by whole bars to fit
        song = decode(result)
        assert (result == encode(song)[:-1]).all()
        assert 6 <= len(song.tracks) <= 7
        bars = int((DEFAULT_VOCAB.type_of[result] == TokenType.BAR).sum())
        assert bars >= 6
        for original in band.tracks:
            parts = [t for t in song.tracks if (t.program, t.is_drum) == (original.program, original.is_drum)]
            together = sorted(note for part in parts for note in part.notes)
            kept = [note for note in original.notes if note.start < bars * 4 * 480]  # in the bars that fit
            assert together == sorted(kept)  # every note, once
            if len(parts) == 2:  # the upper part stays, the lower comes right after it
                assert original.program in (0, 25) and song.tracks.index(parts[1]) == song.tracks.index(parts[0]) + 1
                assert parts[0].notes.pitches.min() > parts[1].notes.pitches.max()
                splits[original.program] += 1
    assert splits[0] >= 15 and splits[25] >= 15  # one or both chordal tracks; never the bass, drums or lead
    lone_melody = encode(Song(tracks=(band.tracks[-1],)))
    assert (split_by_register(lone_melody, DEFAULT_VOCAB, np.random.default_rng(0)) == lone_melody).all()


def test_a_mix_draws_each_dataset_at_its_rate_every_epoch(dataset_dir: Path) -> None:
    data = TokenDataset(dataset_dir, "train")
    mixed = MixedDataset([data, data], [2.0, 0.5], ["twice", "half"])
    assert mixed.token_shares() == pytest.approx({"twice": 0.8, "half": 0.2})
    loader = PackedLoader(mixed, max_seq_len=512, rows_per_batch=1, seed=5, augmentation=Augmentation(5))
    size = len(mixed)
    halves = []
    for epoch in range(2):
        drawn = [w for batch in loader.plan(epoch) for row in batch for w in row]
        windows = np.array(drawn) % size
        counts = np.bincount(windows, minlength=size)
        assert (counts[: len(data)] == 2).all()  # every window of the first twice
        assert set(counts[len(data) :].tolist()) <= {0, 1}
        assert 0.2 * len(data) <= counts[len(data) :].sum() <= 0.8 * len(data)  # about half of the second
        halves.append(set(np.flatnonzero(counts[len(data) :]).tolist()))
    assert halves[0] != halves[1]  # a new half every epoch
    loader.state = LoaderState(0, 0)
    takes: dict[int, list[bytes]] = {}
    for batch in loader.plan(0):
        (row,) = loader.next_batch()
        for drawn, tokens in zip(batch[0], row, strict=True):
            takes.setdefault(drawn % size, []).append(tokens.tobytes())
    twice = [versions for window, versions in takes.items() if window < len(data)]
    assert sum(len(set(versions)) == 2 for versions in twice) > len(twice) / 2  # each draw augmented anew
    with pytest.raises(DataError, match="rates"):
        MixedDataset([data, data], [0.0, 0.0], ["a", "b"])
