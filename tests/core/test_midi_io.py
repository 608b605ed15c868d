"""MIDI in and out: what the readers understand, what the writer produces, bad input."""

from __future__ import annotations

import io
import struct
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meloformer_core.encoding import quantize
from meloformer_core.errors import MidiReadError
from meloformer_core.midi_io import assign_channels, read_midi, write_midi
from meloformer_core.music import Note, NoteArray, Song, TempoChange, TimeSignature, Track
from tests.conftest import fixture_files


def _file(tracks: list[list[mido.Message]], ticks_per_beat: int = 96, file_type: int = 1) -> bytes:
    midi = mido.MidiFile(type=file_type, ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        midi.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def on(note: int, time: int, channel: int = 0, velocity: int = 80) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=velocity, channel=channel, time=time)


def off(note: int, time: int, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, velocity=0, channel=channel, time=time)


def test_the_midi_cases_the_reader_must_understand() -> None:
    data = _file([
        [mido.MetaMessage("set_tempo", tempo=500_000, time=0),
         mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
         mido.MetaMessage("set_tempo", tempo=400_000, time=288),
         mido.MetaMessage("time_signature", numerator=6, denominator=8, time=100)],
        [mido.Message("program_change", program=5, channel=0, time=0),
         on(60, 0), on(60, 10), on(60, 10, velocity=0), off(60, 50),  # overlap of one pitch; vel-0 off
         mido.Message("program_change", program=7, channel=0, time=0),
         on(62, 0), off(62, 20),
         on(67, 0)],  # never ends
        [mido.Message("program_change", program=5, channel=2, time=0), on(48, 0, 2), off(48, 96, 2),
         on(36, 0, 9), off(36, 96, 9)],
    ])  # fmt: skip
    song = read_midi(data)
    assert song.resolution == 96
    assert [(t.tick, t.us_per_quarter) for t in song.tempos] == [(0, 500_000), (288, 400_000)]
    assert [tuple(ts) for ts in song.time_signatures] == [(0, 3, 4), (388, 6, 8)]
    summary = [(t.program, t.is_drum, [tuple(n) for n in t.notes]) for t in song.tracks]
    assert summary == [
        (5, False, [(0, 60, 20, 80), (10, 60, 60, 80)]),  # paired first in, first out
        (7, False, [(70, 62, 20, 80)]),  # a program change starts a new track
        (5, False, [(0, 48, 96, 80)]),  # same program, other track: a track of its own
        (0, True, [(96, 36, 96, 80)]),  # channel 10 is drums
    ]


def test_running_status_files_read_like_plain_ones() -> None:
    plain = _file([[on(60, 0), off(60, 96), on(64, 0), off(64, 96)]])
    header, chunk = plain[:14], plain[14:]
    # Hand-written track with running status: one status byte for four note events.
    events = bytes([0x00, 0x90, 60, 80, 0x60, 60, 0, 0x00, 64, 80, 0x60, 64, 0, 0x00, 0xFF, 0x2F, 0x00])
    running = header + b"MTrk" + struct.pack(">I", len(events)) + events
    assert chunk[:4] == b"MTrk"
    assert read_midi(running).tracks[0].notes == read_midi(plain).tracks[0].notes


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_symusic_and_mido_readers_agree_on_the_fixtures(path: Path) -> None:
    fast = read_midi(path)
    reference = read_midi(path, backend="mido")
    assert fast.tempos == reference.tempos and fast.time_signatures == reference.time_signatures
    key = lambda t: (t.program, t.is_drum, t.notes.array.tobytes())  # noqa: E731
    assert sorted(map(key, fast.tracks)) == sorted(map(key, reference.tracks))


def test_export_gives_each_melodic_track_its_own_channel_and_drums_channel_10(tmp_path: Path) -> None:
    notes = [Note(0, 60, 480, 90)]
    song = Song(tracks=(*(Track(f"piano {i}", 0, False, notes) for i in range(3)), Track("kit", 0, True, notes)))
    assert assign_channels(song) == [0, 1, 2, 9]
    path = tmp_path / "out.mid"
    write_midi(song, path)
    midi = mido.MidiFile(path)
    names = [next(m.name for m in track if m.type == "track_name") for track in midi.tracks]
    assert names == ["Conductor", "piano 0", "piano 1", "piano 2", "kit"]
    channels = [{m.channel for m in track if m.type == "note_on"} for track in midi.tracks[1:]]
    assert channels == [{0}, {1}, {2}, {9}]


def test_written_files_read_back_identically_in_mido_pretty_midi_and_music21(tmp_path: Path) -> None:
    import pretty_midi
    from music21 import converter

    song = quantize(read_midi(fixture_files()[[p.name for p in fixture_files()].index("drum_groove.mid")]))
    path = tmp_path / "groove.mid"
    write_midi(song, path)
    seconds = [song.seconds_at(t.notes.starts) for t in song.tracks]
    expected = [sorted(zip(np.round(s, 6).tolist(), t.notes.pitches.tolist(), strict=True))
                for s, t in zip(seconds, song.tracks, strict=True)]  # fmt: skip

    assert read_midi(path, backend="mido") == read_midi(path) == song

    pm = pretty_midi.PrettyMIDI(str(path))
    got = [sorted((round(n.start, 6), n.pitch) for n in inst.notes) for inst in pm.instruments]
    assert sorted(got) == sorted(expected)
    assert sorted((i.program, i.is_drum) for i in pm.instruments) == sorted((t.program, t.is_drum) for t in song.tracks)

    score = converter.parse(str(path), quantizePost=False)
    pitched, drums = [], []
    for element in score.recurse().notes:
        offset = round(float(element.getOffsetInHierarchy(score)), 6)
        for sub in element.notes if "ChordBase" in element.classes else [element]:
            # music21 reads channel 10 as unpitched percussion
            if sub.classes[0] == "Unpitched":
                drums.append(offset)
            else:
                pitched.append((offset, sub.pitch.midi))
    melodic = [t for t in song.tracks if not t.is_drum]
    in_song = sorted((round(start / song.resolution, 6), pitch) for t in melodic for start, pitch, _, _ in t.notes)
    assert sorted(pitched) == in_song
    drum_track = next(t for t in song.tracks if t.is_drum)
    assert sorted(drums) == sorted(round(start / song.resolution, 6) for start in drum_track.notes.starts.tolist())


def test_write_is_atomic_and_reports_unwritable_paths(tmp_path: Path) -> None:
    from meloformer_core.errors import MidiWriteError

    with pytest.raises(MidiWriteError, match="no-such-dir"):
        write_midi(Song(), tmp_path / "no-such-dir" / "x.mid")
    assert not list(tmp_path.rglob("*.part"))


GOOD = _file([[on(60, 0), off(60, 96)]])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)), "not a MIDI file"),
        (GOOD[:20], "truncated"),
        (GOOD[:-6], "corrupt MIDI data"),
        (GOOD[:8] + struct.pack(">HHH", 2, 1, 96) + GOOD[14:], "type 2"),
        (GOOD[:8] + struct.pack(">HHH", 1, 0, 96) + GOOD[14:], "no tracks"),
        (GOOD[:8] + struct.pack(">HHH", 1, 1, 0xE728) + GOOD[14:], "SMPTE"),
        (b"RIFF\x00\x00\x00\x00RMIDdata", "RIFF"),
    ],
    ids=["empty", "random bytes", "truncated header", "truncated track", "type 2", "zero tracks", "smpte", "rmi"],
)
def test_bad_input_gives_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(MidiReadError, match=message) as caught:
        read_midi(data, name="song.mid")
    text = str(caught.value)
    assert text.startswith("song.mid: ") and "\n" not in text


def test_a_note_that_never_ends_is_dropped_and_a_huge_delta_is_refused_clearly(tmp_path: Path) -> None:
    never_ends = _file([[on(60, 0), off(60, 96), on(62, 0)]])
    assert [n.pitch for n in read_midi(never_ends).tracks[0].notes] == [60]
    huge = _file([[on(60, 0x0FFFFFFF), off(60, 0x0FFFFFFF)] * 9])
    with pytest.raises(MidiReadError, match="too large"):
        read_midi(huge, name="huge.mid")
    path = tmp_path / "missing.mid"
    with pytest.raises(MidiReadError, match=r"missing\.mid: no such file"):
        read_midi(path)
    with pytest.raises(MidiReadError, match="is a directory"):
        read_midi(tmp_path)


def test_a_long_file_reads(tmp_path: Path) -> None:
    messages = []
    for i in range(20_000):
        messages += [on(36 + i % 60, 12, channel=i % 16), off(36 + i % 60, 24, channel=i % 16)]
    song = read_midi(_file([messages]))
    assert song.note_count == 20_000 and len(song.tracks) == 2  # one program on 15 channels, and the drums


@pytest.mark.parametrize(("backend", "end_delta"), [("symusic", 0), ("symusic", 50), ("mido", 0)])
def test_a_file_track_playing_one_program_on_two_channels_is_one_track(backend: str, end_delta: int) -> None:
    """A piano whose hands are on channels 1 and 2 of one file track is one part; another
    program on a third channel is a part of its own; another file track stays apart."""
    program = [mido.Message("program_change", program=p, channel=c, time=0) for c, p in ((0, 0), (1, 0), (2, 40))]
    hands = [on(60, 0), on(48, 0, 1), off(60, 96), off(48, 0, 1), on(72, 0, 2), off(72, 96, 2), on(62, 0), off(62, 96)]
    other = [mido.Message("program_change", program=0, channel=3, time=0), on(55, 0, 3), off(55, 96, 3)]
    name = [mido.MetaMessage("track_name", name="Piano", time=0)]
    end = [mido.MetaMessage("end_of_track", time=end_delta)]  # a late end of track is found by walking the chunk
    song = read_midi(_file([name + program + hands + end, other]), backend=backend)
    assert [(t.name, t.program, [tuple(n)[:2] for n in t.notes]) for t in song.tracks] == [
        ("Piano", 0, [(0, 48), (0, 60), (192, 62)]),  # both hands, in time order
        ("Piano", 40, [(96, 72)]),
        ("Acoustic Grand Piano", 0, [(0, 55)]),  # the other file track: unnamed, its instrument's name
    ]


def _file_with_empty_tracks() -> bytes:
    """A conductor, a piano that plays, and four tracks with no notes: strings set up with a
    program change and a controller, a placeholder with a name only, a drum track that only
    sets its volume on channel 10, and a lyric track."""
    named = lambda name: mido.MetaMessage("track_name", name=name, time=0)  # noqa: E731
    return _file([
        [named("My Song"), mido.MetaMessage("set_tempo", tempo=500_000, time=0)],
        [named("Piano"), on(60, 0), off(60, 96)],
        [named("Strings"), mido.Message("program_change", program=48, channel=1, time=0),
         mido.Message("control_change", control=7, value=100, channel=1, time=0)],
        [named("Guitar 2")],
        [mido.Message("control_change", control=7, value=90, channel=9, time=0)],
        [named("Words"), mido.MetaMessage("lyrics", text="la", time=0)],
    ])  # fmt: skip


@pytest.mark.parametrize("backend", ["symusic", "mido"])
def test_the_empty_tracks_of_a_file_are_read_when_asked_and_written_back(backend: str, tmp_path: Path) -> None:
    data = _file_with_empty_tracks()
    assert [t.name for t in read_midi(data, backend=backend).tracks] == ["Piano"]  # the model's and the corpora's
    song = read_midi(data, backend=backend, empty_tracks=True)  # the app's
    assert [(t.name, t.program, t.is_drum, len(t.notes)) for t in song.tracks] == [
        ("Piano", 0, False, 1),
        ("Strings", 48, False, 0),
        ("Guitar 2", 0, False, 0),
        ("Drums", 0, True, 0),  # unnamed: named after its instrument
    ]  # not the conductor ("My Song") nor the lyrics
    write_midi(song, tmp_path / "out.mid")
    assert read_midi(tmp_path / "out.mid", empty_tracks=True).tracks == song.tracks


def test_song_is_immutable_and_compares_by_value() -> None:
    song = Song(tempos=(TempoChange(0, 500_000),), time_signatures=(TimeSignature(0, 4, 4),),
                tracks=(Track("a", 1, False, [Note(480, 64, 10, 80), Note(0, 60, 10, 80)]),))  # fmt: skip
    same = Song(tempos=[TempoChange(0, 500_000)], time_signatures=[TimeSignature(0, 4, 4)],
                tracks=[Track("a", 1, False, [Note(0, 60, 10, 80), Note(480, 64, 10, 80)])])  # fmt: skip
    assert song == same and hash(song.tracks[0].notes) == hash(same.tracks[0].notes)
    with pytest.raises(AttributeError):
        song.resolution = 96  # type: ignore[misc]
    with pytest.raises(ValueError):
        song.tracks[0].notes.array[0, 0] = 5
    edited = song.replace(
        tracks=(song.tracks[0].with_notes(song.tracks[0].notes.with_notes(removed=[Note(0, 60, 10, 80)])),)
    )
    assert edited != song and edited.note_count == 1 and song.note_count == 2
    assert song.bar_starts(until_tick=4000) == [0, 1920, 3840]
    assert song.bar_lines() == [0, 1920]  # the bar, and where a continuation starts
    long_bars = song.replace(time_signatures=(TimeSignature(0, 18, 4),))  # longer than 16 quarters
    assert long_bars.bar_lines() == [0, 18 * 480]
    assert song.seconds_at([0, 480, 960]).tolist() == [0.0, 0.5, 1.0]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(60, 62), st.integers(1, 3), st.integers(1, 2)), max_size=30),
       st.data())  # fmt: skip
def test_with_notes_removes_one_copy_of_each_and_names_a_missing_note(rows, data) -> None:
    notes = NoteArray(rows)
    removed = data.draw(st.lists(st.sampled_from(list(notes)), max_size=len(notes) + 2)) if rows else []
    expected = Counter(map(tuple, rows))
    expected.subtract(map(tuple, removed))
    if any(count < 0 for count in expected.values()):
        with pytest.raises(ValueError, match="is not in the array"):
            notes.with_notes(removed=removed)
        return
    result = notes.with_notes(added=[Note(99, 70, 1, 1)], removed=removed)
    assert Counter(map(tuple, result)) == +expected + Counter([(99, 70, 1, 1)])
    assert list(result) == sorted(result)
    with pytest.raises(ValueError, match=r"Note\(start=1000"):
        notes.with_notes(removed=[Note(1000, 60, 1, 1)])
