"""Texts in MIDI files (track names, markers, lyrics, …) in any encoding: read, written, read again.

The files are built byte by byte, so the text bytes are exactly what real files hold:
Latin-1 / Windows-1252 from old sequencers, UTF-8 from new ones, and bytes valid in
neither.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meloformer_core.encoding import decode, encode, quantize
from meloformer_core.errors import MidiReadError, SongError
from meloformer_core.midi_io import _scan_texts, decode_text, encode_text, midi_bytes, read_midi, write_midi
from meloformer_core.music import TEXT_KINDS, Note, Song, TempoChange, TextEvent, TimeSignature, Track
from tests.conftest import fixture_files

META = {"text": 0x01, "copyright": 0x02, "name": 0x03, "instrument": 0x04, "lyric": 0x05, "marker": 0x06, "cue": 0x07}


def variable_int(value: int) -> bytes:
    groups = [value & 0x7F]
    while value := value >> 7:
        groups.append(0x80 | (value & 0x7F))
    return bytes(reversed(groups))


def meta(delta: int, kind: str, raw: bytes) -> bytes:
    return variable_int(delta) + bytes([0xFF, META[kind]]) + variable_int(len(raw)) + raw


def note(delta: int, channel: int, pitch: int, length: int, program: int | None = None) -> bytes:
    change = bytes([0x00, 0xC0 | channel, program]) if program is not None else b""
    return (
        change
        + variable_int(delta)
        + bytes([0x90 | channel, pitch, 90])
        + variable_int(length)
        + bytes([0x80 | channel, pitch, 0])
    )


def midi_file(*chunks: bytes, division: int = 96) -> bytes:
    data = b"MThd" + struct.pack(">IHHH", 6, 1, len(chunks), division)
    for events in chunks:
        events += b"\x00\xff\x2f\x00"
        data += b"MTrk" + struct.pack(">I", len(events)) + events
    return data


ENCODINGS = {
    # name → (the bytes of two track names, a marker and a lyric; what they read as)
    "latin-1": (
        [b"Sp\xe5r", b"\xdcberleitung", b"Gr\xf6\xdfe", b"\xe0 la \x93fin\x94"],
        ["Spår", "Überleitung", "Größe", "à la “fin”"],  # 0x93/0x94: Windows-1252 quotes
    ),
    "utf-8": (
        [s.encode() for s in ("Spår", "日本", "Größe 🎸", "à la “fin”")],
        ["Spår", "日本", "Größe 🎸", "à la “fin”"],
    ),
    "invalid": (
        [b"\xff\xfe\x80abc", b"\xc3(", b"\xed\xa0\x80", b"\xf0\x9f\x8e"],  # none of them UTF-8
        ["ÿþ€abc", "Ã(", "í\xa0€", "ðŸŽ"],
    ),
}


def band_song(raw: list[bytes]) -> bytes:
    """A conductor with texts of every kind, a track with two channels (two `Track`s from
    one file track), an ASCII-named track and a drum track, named with ``raw``."""
    first, second, marker, lyric = raw
    conductor = (
        meta(0, "name", b"Conductor \xa9")
        + meta(0, "copyright", b"(c) " + first)
        + meta(0, "marker", marker)
        + meta(0, "text", b"plain ASCII")
        + meta(96, "lyric", lyric)
        + meta(0, "cue", first)
        + meta(0, "instrument", second)
    )
    two_channels = meta(0, "name", first) + note(0, 0, 60, 96, program=0) + note(0, 1, 64, 96, program=33)
    ascii_named = meta(0, "name", b"Bass") + note(0, 2, 40, 192, program=33)
    drums = meta(0, "name", b"old name") + meta(0, "lyric", lyric) + note(0, 9, 36, 48) + meta(0, "name", second)
    return midi_file(conductor, two_channels, ascii_named, drums)


def expected_song_texts(text: list[str]) -> tuple[list[str], list[tuple[int, str, str]]]:
    first, second, marker, lyric = text
    names = [first, first, "Bass", second]  # a file track's last name names its tracks
    texts = [(0, "copyright", "(c) " + first), (0, "marker", marker), (0, "text", "plain ASCII"),
             (0, "lyric", lyric), (96, "lyric", lyric), (96, "cue", first), (96, "instrument", second)]  # fmt: skip
    return names, texts


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_names_and_texts_in_any_encoding_read_write_and_read_back(encoding: str, tmp_path: Path) -> None:
    raw, text = ENCODINGS[encoding]
    names, texts = expected_song_texts(text)
    data = band_song(raw)
    song = read_midi(data)
    assert [t.name for t in song.tracks] == names
    assert [(t.program, t.is_drum) for t in song.tracks] == [(0, False), (33, False), (33, False), (0, True)]
    assert [tuple(t) for t in song.texts] == texts
    assert read_midi(data, backend="mido") == song

    path = tmp_path / "written.mid"
    write_midi(song, path)
    again = read_midi(path)
    assert again == read_midi(path, backend="mido") == song
    assert all(t.encode("utf-8") in path.read_bytes() for t in text)  # written as UTF-8


def test_text_bytes_are_utf8_when_valid_else_windows_1252() -> None:
    assert decode_text("Spår 日本 🎸".encode()) == "Spår 日本 🎸"
    assert decode_text(b"Sp\xe5r") == "Spår"
    assert decode_text(b"\x80 \x92\x81") == "€ ’\x81"  # 0x81 is unassigned in Windows-1252: kept as Latin-1
    assert decode_text(bytes(range(256))) == bytes(range(256)).decode("latin-1").translate(
        {b: bytes([b]).decode("cp1252", "ignore") or chr(b) for b in range(0x80, 0xA0)}
    )
    assert encode_text("a\ud800b") == "a\ufffdb".encode()  # a lone surrogate cannot be written
    assert encode_text("\ud83c\udfb8") == "🎸".encode()  # a surrogate pair is its character


@given(
    names=st.lists(st.text(max_size=20), min_size=1, max_size=3),
    texts=st.lists(st.tuples(st.integers(0, 2000), st.sampled_from(TEXT_KINDS), st.text(max_size=30)), max_size=6),
)
def test_any_string_is_written_and_reads_back_as_written(names: list[str], texts: list) -> None:
    tracks = tuple(Track(name, 0, False, [Note(0, 60, 10, 80)]) for name in names)
    song = Song(tracks=tracks, texts=tuple(TextEvent(*t) for t in texts))
    data = midi_bytes(song)
    fast, reference = read_midi(data), read_midi(data, backend="mido")
    assert fast == reference
    written = [encode_text(name).decode() for name in names]
    assert [t.name for t in fast.tracks] == [name.strip() or "Acoustic Grand Piano" for name in written]
    assert fast.texts == tuple(TextEvent(tick, kind, encode_text(text).decode()) for tick, kind, text in song.texts)
    assert read_midi(midi_bytes(fast)) == fast


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_readers_agree_on_the_names_and_texts_of_the_fixtures(path: Path) -> None:
    fast, reference = read_midi(path), read_midi(path, backend="mido")
    assert fast.texts == reference.texts
    key = lambda t: (t.program, t.is_drum, t.notes.array.tobytes())  # noqa: E731
    assert sorted((key(t), t.name) for t in fast.tracks) == sorted((key(t), t.name) for t in reference.tracks)


CORRUPT_CHUNKS = {
    "text longer than its chunk": b"\x00\xff\x06\x7fabc",
    "length never ends": b"\x00\xff\x03" + b"\xff" * 40,
    "delta never ends": b"\x00\xff\x06\x01M" + b"\x80" * 30,
    "running status without status": b"\x00\xff\x06\x01M\x00\x3c\x40",
    "huge delta": meta(0x0FFFFFFF, "marker", b"\xe5") * 9,
}


@pytest.mark.parametrize("chunk", CORRUPT_CHUNKS.values(), ids=CORRUPT_CHUNKS.keys())
def test_corrupt_text_events_give_a_song_or_a_read_error(chunk: bytes) -> None:
    for backend in ("symusic", "mido"):
        data = midi_file(meta(0, "name", b"Sp\xe5r") + note(0, 0, 60, 96), chunk)
        try:
            song = read_midi(data, backend=backend)
        except MidiReadError:
            continue
        assert song.texts == tuple(t for t in song.texts if t.tick < 2**31 - 1)
        assert song.tracks[0].name == "Spår"


@given(st.binary(max_size=300), st.integers(0, 10))
def test_the_text_scan_never_raises_on_any_bytes(noise: bytes, declared_extra: int) -> None:
    body = meta(0, "name", b"Sp\xe5r") + noise
    data = b"MThd" + struct.pack(">IHHH", 6, 1, 1, 96) + b"MTrk" + struct.pack(">I", len(body) + declared_extra) + body
    parsed, _, texts = _scan_texts(data)
    assert all(isinstance(t, TextEvent) for t in texts) and len(parsed) >= len(data)


def test_texts_are_validated_kept_by_edits_and_dropped_by_quantize() -> None:
    texts = (TextEvent(960, "lyric", "la"), TextEvent(0, "marker", "Intro"), TextEvent(960, "lyric", "li"))
    song = Song(tempos=(TempoChange(0, 500_000),), time_signatures=(TimeSignature(0, 4, 4),),
                tracks=(Track("a", 0, False, [Note(0, 60, 480, 80)]),), texts=texts)  # fmt: skip
    assert [t.text for t in song.texts] == ["Intro", "la", "li"]  # by tick; one tick keeps its order
    assert song.end_tick == 480 and song.replace(tracks=()).texts == song.texts
    assert quantize(song).texts == () and decode(encode(song)) == quantize(song)
    for bad in (TextEvent(-1, "marker", "x"), TextEvent(0, "chord", "x"), TextEvent(0, "marker", b"x")):
        with pytest.raises(SongError, match="invalid text event"):
            song.replace(texts=(bad,)).validate()


def test_continue_writes_the_prompts_names_and_texts_back(bundle_dir: Path, tmp_path: Path) -> None:
    raw, text = ENCODINGS["latin-1"]
    prompt = tmp_path / "band.mid"
    prompt.write_bytes(band_song(raw))
    out = tmp_path / "out.mid"
    command = [sys.executable, "-m", "meloformer_core.cli", "continue", str(prompt), "-o", str(out), "--bars", "1",
               "--model", str(bundle_dir), "--seed", "0", "--takes", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["bars_added"] == 1
    song, continued = read_midi(prompt), read_midi(out)
    names, texts = expected_song_texts(text)
    assert [t.name for t in continued.tracks] == names and continued.texts == song.texts
    assert [tuple(t) for t in continued.texts] == texts
