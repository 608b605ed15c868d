"""HID v2: exact round trip on the quantised song, grammar, metadata, real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meloformer_core.encoding import (
    DEFAULT_VOCAB,
    GrammarState,
    MetadataTracker,
    TokenType,
    Vocabulary,
    decode,
    encode,
    quantize,
    token_metadata,
    validate,
)
from meloformer_core.encoding.chords import bar_chords
from meloformer_core.errors import EncodingError
from meloformer_core.metrics import compare
from meloformer_core.midi_io import read_midi, write_midi
from meloformer_core.music import Note, Song, TempoChange, TimeSignature, Track
from tests.conftest import FAILURES, fixture_files
from tests.core.strategies import songs

MUSIC21_MIDI = Path(__import__("music21").__file__).parent


def assert_round_trip(song: Song, name: str) -> np.ndarray:
    """decode(encode(song)) == q(song); on failure, write both as .mid for inspection."""
    tokens = encode(song)
    decoded = decode(tokens)
    expected = quantize(song)
    if decoded != expected:
        FAILURES.mkdir(parents=True, exist_ok=True)
        write_midi(expected, FAILURES / f"{name}.expected.mid")
        write_midi(decoded, FAILURES / f"{name}.decoded.mid")
        pytest.fail(f"round trip differs for {name}; see {FAILURES}/{name}.*.mid")
    return tokens


@given(songs())
def test_decode_encode_is_exact_on_the_quantised_song(song: Song) -> None:
    tokens = assert_round_trip(song, "hypothesis")
    validate(tokens)  # every encoded sequence is grammatical


@given(songs())
def test_quantize_is_idempotent_and_encoding_depends_only_on_it(song: Song) -> None:
    once = quantize(song)
    assert quantize(once) == once
    assert np.array_equal(encode(once), encode(song))


@given(songs(max_tracks=3))
def test_quantised_song_survives_a_midi_file(song: Song) -> None:
    from meloformer_core.midi_io import midi_bytes

    expected = quantize(song)
    assert read_midi(midi_bytes(expected)).replace(tracks=()) == expected.replace(tracks=())
    back = read_midi(midi_bytes(expected))
    sounding = [t for t in expected.tracks if len(t.notes)]  # MIDI cannot hold a silent track's channel
    assert [(t.program, t.is_drum, t.notes) for t in back.tracks] == [(t.program, t.is_drum, t.notes) for t in sounding]


@given(songs())
def test_incremental_metadata_equals_batch_metadata_on_every_token(song: Song) -> None:
    tokens = encode(song)
    padded = np.concatenate([tokens, [DEFAULT_VOCAB.pad_id] * 3])
    batch = token_metadata(padded)
    tracker = MetadataTracker()
    for index, token in enumerate(padded.tolist()):
        meta = tracker.feed(token)
        got = (meta.token_type, meta.bar, meta.slot, meta.segment, meta.position)
        want = tuple(int(batch[key][index]) for key in ("token_type", "bar", "slot", "segment", "position"))
        assert got == want, f"token {index} ({DEFAULT_VOCAB.name(token)})"


@given(st.lists(st.integers(0, len(DEFAULT_VOCAB) - 1), max_size=200))
def test_metadata_agrees_on_arbitrary_token_sequences(tokens: list[int]) -> None:
    batch = token_metadata(np.array(tokens, dtype=np.int64))
    tracker = MetadataTracker()
    for index, token in enumerate(tokens):
        meta = tracker.feed(token)
        assert (meta.bar, meta.slot, meta.segment, meta.position) == (
            batch["bar"][index],
            batch["slot"][index],
            batch["segment"][index],
            batch["position"][index],
        )


def test_metadata_marks_segments_bar_major() -> None:
    song = Song(
        tracks=(
            Track("a", 0, False, [Note(0, 60, 480, 80), Note(1920, 62, 480, 80)]),
            Track("b", 33, False, [Note(0, 40, 480, 80)]),
        )
    )
    tokens = encode(song)
    meta = token_metadata(tokens)
    names = DEFAULT_VOCAB.names(tokens)
    # Bar 0 holds both tracks before bar 1 starts: bar-major order.
    bars_of_tracks = [(int(meta["bar"][i]), names[i]) for i in range(len(tokens)) if names[i].startswith("TRACK")]
    assert bars_of_tracks == [(0, "TRACK_0"), (0, "TRACK_1"), (1, "TRACK_0")]
    assert list(meta["bar"]) == sorted(meta["bar"])  # bars never go back
    header = meta["segment"] == -1
    assert names[: header.sum()] == ["BOS", "INSTRUMENT_program_0", "INSTRUMENT_program_33"]
    # Segment ids count (bar, slot) runs; each appears once.
    runs = {(int(b), int(s)) for b, s in zip(meta["bar"][~header], meta["slot"][~header], strict=True)}
    assert len(runs) == int(meta["segment"].max()) + 1


def test_every_fixture_round_trips_exactly_and_keeps_every_note() -> None:
    files = fixture_files()
    assert len(files) >= 6
    for path in files:
        song = read_midi(path)
        tokens = assert_round_trip(song, path.stem)
        report = compare(song, decode(tokens), len(tokens))
        assert report.note_recall == 1.0, path.name
        assert (report.tracks_out, report.programs_preserved, report.drums_preserved) == (len(song.tracks), True, True)
        assert report.tempo_changes_out == report.tempo_changes_in, path.name
        assert report.time_signatures_out == report.time_signatures_in, path.name


@pytest.mark.parametrize("name", ["omr/k525MIDIMvt1.mid", "omr/k525short.mid"])
def test_real_multitrack_midi_written_by_others(name: str) -> None:
    path = MUSIC21_MIDI / name
    song = read_midi(path)
    tokens = encode(song)
    report = compare(song, decode(tokens), len(tokens))
    assert report.note_recall >= 0.995
    assert report.tracks_out == report.tracks_in >= 2
    assert report.programs_preserved and report.drums_preserved
    assert report.tempo_changes_out == report.tempo_changes_in
    assert report.time_signatures_out == report.time_signatures_in


def test_empty_bars_and_silent_tracks_survive() -> None:
    song = Song(
        tracks=(
            Track("lead", 73, False, [Note(0, 72, 480, 90), Note(5 * 1920, 74, 480, 90)]),
            Track("silent strings", 48, False, []),
        )
    )
    decoded = decode(encode(song))
    assert len(decoded.tracks) == 2 and len(decoded.tracks[1].notes) == 0
    assert [n.start for n in decoded.tracks[0].notes] == [0, 5 * 1920]
    assert DEFAULT_VOCAB.names(encode(song)).count("BAR") == 6


def test_metre_aware_grid_and_changes_where_they_happen() -> None:
    song = Song(
        resolution=480,
        tempos=(TempoChange(0, 600_000), TempoChange(1440 + 480, 400_000)),  # 100 bpm, then 150 mid-bar
        time_signatures=(TimeSignature(0, 3, 4), TimeSignature(1440 * 2, 6, 8)),
        tracks=(Track("t", 0, False, [Note(160, 60, 160, 80), Note(1440 * 2 + 720, 64, 120, 80)]),),
    )
    names = DEFAULT_VOCAB.names(encode(song))
    assert names[names.index("TIME_SIG_3/4") :][:4] == ["TIME_SIG_3/4", "POSITION_0", "TEMPO_100", "TEMPO_FINE_0"]
    assert "POSITION_4" in names  # an eighth triplet (160 ticks) is 4 steps
    bar1 = [i for i, n in enumerate(names) if n == "BAR"][1]
    assert names[bar1 + 2 : bar1 + 5] == ["POSITION_12", "TEMPO_150", "TEMPO_FINE_0"]  # mid-bar tempo change kept
    assert quantize(song).time_signatures == song.time_signatures


def test_two_tracks_with_the_same_program_stay_two_tracks() -> None:
    notes = [Note(0, 60, 480, 80)]
    song = Song(tracks=(Track("a", 0, False, notes), Track("b", 0, False, notes), Track("d", 0, True, notes)))
    decoded = decode(encode(song))
    assert [(t.program, t.is_drum, len(t.notes)) for t in decoded.tracks] == [
        (0, False, 1),
        (0, False, 1),
        (0, True, 1),
    ]


def test_chord_labels() -> None:
    def label(pitches: list[int]) -> str:
        n = len(pitches)
        return bar_chords(
            np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.array(pitches), np.full(n, 48),
            np.array([48]), 1,
        )[0]  # fmt: skip

    assert label([60, 64, 67]) == "C:maj"
    assert label([57, 60, 64]) == "A:min"
    assert label([55, 59, 62, 65]) == "G:7"
    assert label([]) == "N"
    d_minor = Song(tracks=(Track("p", 0, False, [Note(0, p, 1920, 80) for p in (62, 65, 69)]),))
    assert DEFAULT_VOCAB.names(encode(d_minor))[:4] == ["BOS", "INSTRUMENT_program_0", "BAR", "CHORD_D:min"]


def test_too_many_tracks_and_too_long_songs_are_refused_clearly() -> None:
    many = Song(tracks=tuple(Track(str(i), 0, False, [Note(0, 60, 10, 80)]) for i in range(40)))
    with pytest.raises(EncodingError, match="40 tracks"):
        encode(many)
    long = Song(tracks=(Track("t", 0, False, [Note(0, 60, 10, 80), Note(10**9, 60, 10, 80)]),))
    with pytest.raises(EncodingError, match="too long"):
        encode(long)


def test_decode_rejects_ungrammatical_sequences_with_the_token_index() -> None:
    vocab = DEFAULT_VOCAB
    with pytest.raises(EncodingError, match="token 0"):
        decode([vocab.bar_id])
    tokens = encode(Song(tracks=(Track("t", 0, False, [Note(0, 60, 480, 80)]),))).tolist()
    broken = [*tokens[:-2], vocab.id("PITCH_10")]  # a pitch where a velocity must come
    with pytest.raises(EncodingError, match=f"token {len(tokens) - 2}"):
        decode(broken)


def test_a_sequence_cut_short_decodes_to_its_finished_notes() -> None:
    song = Song(tracks=(Track("t", 0, False, [Note(0, 60, 480, 80), Note(480, 62, 480, 80)]),))
    tokens = encode(song)
    cut = decode(tokens[:-3])  # drop EOS and the second note's velocity and duration
    assert [n.pitch for n in cut.tracks[0].notes] == [60]


def test_vocabulary_json_round_trip_and_hash() -> None:
    text = DEFAULT_VOCAB.to_json()
    again = Vocabulary.from_json(text)
    assert again.hash == DEFAULT_VOCAB.hash and len(again) == len(DEFAULT_VOCAB)
    tampered = text.replace("TEMPO_120", "TEMPO_121", 1)
    with pytest.raises(EncodingError, match="hash mismatch"):
        Vocabulary.from_json(tampered)
    with pytest.raises(EncodingError, match="not a valid vocabulary"):
        Vocabulary.from_json("{}")


def test_token_types_cover_the_vocabulary_in_blocks() -> None:
    vocab = DEFAULT_VOCAB
    for token_type in TokenType:
        block = vocab.type_of[vocab.offset[token_type] : vocab.offset[token_type] + vocab.count[token_type]]
        assert (block == token_type).all()
    assert sum(vocab.count.values()) == len(vocab)


@given(st.integers(0, 2**32 - 1))
def test_random_grammatical_walks_always_decode(seed: int) -> None:
    """Sampling uniformly among allowed tokens yields sequences that decode to valid songs."""
    rng = np.random.default_rng(seed)
    state = GrammarState()
    tokens = []
    for _ in range(400):
        allowed = np.flatnonzero(state.allowed())
        token = int(rng.choice(allowed))
        # keep walks short but not trivial: prefer continuing over ending
        if DEFAULT_VOCAB.type_of[token] == TokenType.EOS and len(allowed) > 1 and rng.random() < 0.9:
            token = int(rng.choice(allowed[allowed != token]))
        state.feed(token)
        tokens.append(token)
        if state.finished:
            break
    song = decode(tokens)
    song.validate()
    assert np.array_equal(encode(song), encode(decode(encode(song))))
