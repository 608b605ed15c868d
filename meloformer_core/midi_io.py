"""MIDI files in and out. The one reading path shared by the app and the preprocessor.

Reading uses symusic (a C++ parser): on a 16-track, 20,000-note file it is two orders
of magnitude faster than mido or pretty_midi (see ``bench/encode.py``), which matters
when preprocessing hundreds of thousands of files. A pure-Python mido reader with the
same semantics is kept as a cross-check in the tests and as a benchmark candidate.

Semantics of reading (both readers):
- tracks are split by (file track, channel, program): a program change in the middle of
  a track starts a new `Track`, and two tracks with the same program stay two tracks;
- channel 10 is drums;
- note-on with velocity 0 is a note-off; overlapping notes of one pitch and channel are
  paired first-in first-out; a note-on that is never switched off is dropped;
- SMF type 0 and 1 are read; type 2 and SMPTE time division are refused.

Writing (`write_midi`) produces SMF type 1: a conductor track with tempo, metre and key
events, then one track per `Track`, each melodic track on its own channel (drums on
channel 10), named, with its program change at tick 0. Overlapping notes of one pitch
are cut where the next one starts, which is what a synthesizer plays anyway and what
keeps every reader's pairing identical.
"""

from __future__ import annotations

import io
import os
import struct
from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from meloformer_core.atomic import write_bytes_atomically
from meloformer_core.errors import MidiReadError, MidiWriteError
from meloformer_core.gm import instrument_name
from meloformer_core.music import DRUM_CHANNEL, KeySignature, NoteArray, Song, TempoChange, TimeSignature, Track

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_TICK = 2**31 - 1

SourceLike = str | os.PathLike[str] | bytes


def read_midi(source: SourceLike, *, name: str | None = None, backend: str = "symusic") -> Song:
    """Read a Standard MIDI File (a path or its bytes) into a `Song`.

    Raises `MidiReadError` with a one-line message naming the file and the problem.
    """
    data, label = _load_bytes(source, name)
    _check_header(data, label)
    if backend == "symusic":
        song = _read_with_symusic(data, label)
    elif backend == "mido":
        song = _read_with_mido(data, label)
    else:
        raise ValueError(f"unknown MIDI reader backend {backend!r}")
    return song.validate(label)


def _load_bytes(source: SourceLike, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray):
        return bytes(source), name or "<MIDI data>"
    path = Path(source)
    label = name or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MidiReadError(f"{label}: file is too large for a MIDI file ({size / 2**20:.0f} MiB)")
        return path.read_bytes(), label
    except FileNotFoundError:
        raise MidiReadError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise MidiReadError(f"{label}: is a directory, not a MIDI file") from None
    except OSError as error:
        raise MidiReadError(f"{label}: cannot read file ({error.strerror or error})") from None


def _check_header(data: bytes, label: str) -> None:
    """Refuse what the parsers would misread: the checks are cheap and the messages clear."""
    if not data:
        raise MidiReadError(f"{label}: the file is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        raise MidiReadError(f"{label}: RIFF-wrapped MIDI (.rmi) is not supported; extract the MIDI data first")
    if data[:4] != b"MThd":
        raise MidiReadError(f"{label}: not a MIDI file (it does not start with an MThd header)")
    if len(data) < 14:
        raise MidiReadError(f"{label}: truncated MIDI header")
    length, file_format, track_count, division = struct.unpack(">IHHH", data[4:14])
    if length < 6:
        raise MidiReadError(f"{label}: corrupt MIDI header (length {length})")
    if file_format == 2:
        raise MidiReadError(f"{label}: SMF type 2 (independent sequences) is not supported; save it as type 1")
    if file_format > 2:
        raise MidiReadError(f"{label}: unknown MIDI file format {file_format}")
    if track_count == 0:
        raise MidiReadError(f"{label}: the file contains no tracks")
    if division & 0x8000:
        raise MidiReadError(f"{label}: SMPTE time division is not supported; save it with ticks per quarter note")
    if division == 0:
        raise MidiReadError(f"{label}: corrupt MIDI header (zero ticks per quarter note)")
    if len(data) < 8 + length + 8 or data[8 + length : 12 + length] != b"MTrk":
        raise MidiReadError(f"{label}: truncated or corrupt file (no track chunk after the header)")


# --- symusic reader ----------------------------------------------------------------------


def _read_with_symusic(data: bytes, label: str) -> Song:
    import symusic

    try:
        score = symusic.Score.from_midi(data)
    except Exception as error:  # symusic raises RuntimeError with a parser message
        try:  # data bytes above 127 (seen in real files) are clamped, as other readers do
            score = symusic.Score.from_midi(data, sanitize_data=True)
        except Exception:
            raise MidiReadError(f"{label}: corrupt MIDI data ({_first_line(error)})") from None
    tracks = []
    for track in score.tracks:
        columns = track.notes.numpy()
        start = columns["time"].astype(np.int64)
        if len(start) and (start.min() < 0 or (start + columns["duration"]).max() >= MAX_TICK):
            raise MidiReadError(f"{label}: a delta time is too large (times overflow 32 bits)")
        notes = NoteArray.from_columns(
            start, columns["pitch"], columns["duration"], columns["velocity"].astype(np.int64) & 0x7F
        )
        tracks.append(_track(track.name, int(track.program), bool(track.is_drum), notes))
    return Song(
        resolution=int(score.ticks_per_quarter),
        tempos=tuple(TempoChange(int(t.time), int(t.mspq)) for t in score.tempos),
        time_signatures=tuple(
            TimeSignature(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures
        ),
        key_signatures=tuple(KeySignature(int(k.time), int(k.key), bool(k.tonality)) for k in score.key_signatures),
        tracks=tuple(tracks),
    )


def _track(name: str, program: int, is_drum: bool, notes: NoteArray) -> Track:
    name = name.strip() or instrument_name(program, is_drum)
    # Notes of zero length (on and off at one tick) carry no sound; give them one tick.
    if len(notes) and (notes.durations <= 0).any():
        data = notes.array.copy()
        data[:, 2] = np.maximum(data[:, 2], 1)
        notes = NoteArray(data)
    return Track(name=name, program=program, is_drum=is_drum, notes=notes)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --- mido reader (reference semantics, benchmark candidate) -------------------------------


def _read_with_mido(data: bytes, label: str) -> Song:
    import mido

    try:
        midi = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as error:
        raise MidiReadError(f"{label}: corrupt MIDI data ({_first_line(error)})") from None
    tempos, signatures, keys = [], [], []
    tracks: list[Track] = []
    for mtrk in midi.tracks:
        tick = 0
        name = ""
        program = [0] * 16
        # (channel, program) -> list of note rows; order of first note keeps track order
        notes: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
        pending: dict[tuple[int, int], deque[tuple[int, int, int]]] = defaultdict(deque)
        for message in mtrk:
            tick += message.time
            kind = message.type
            if kind == "note_on" and message.velocity > 0:
                pending[message.channel, message.note].append((tick, message.velocity, program[message.channel]))
            elif kind in ("note_off", "note_on"):
                queue = pending.get((message.channel, message.note))
                if queue:
                    start, velocity, prog = queue.popleft()
                    key = (message.channel, prog)
                    notes.setdefault(key, []).append((start, message.note, tick - start, velocity))
            elif kind == "program_change":
                program[message.channel] = message.program
            elif kind == "set_tempo":
                tempos.append(TempoChange(tick, message.tempo))
            elif kind == "time_signature":
                signatures.append(TimeSignature(tick, message.numerator, message.denominator))
            elif kind == "key_signature":
                keys.append(_mido_key(tick, message.key))
            elif kind == "track_name" and not name:
                name = message.name
        for (channel, prog), rows in sorted(notes.items(), key=lambda item: (item[0][0] == DRUM_CHANNEL, item[0])):
            is_drum = channel == DRUM_CHANNEL
            tracks.append(_track(name, prog, is_drum, NoteArray(rows)))
    return Song(midi.ticks_per_beat, tuple(tempos), tuple(signatures), tuple(keys), tuple(tracks))


_MAJOR_SHARPS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
                 "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5, "Gb": -6, "Cb": -7}  # fmt: skip
_MINOR_SHARPS = {"A": 0, "E": 1, "B": 2, "F#": 3, "C#": 4, "G#": 5, "D#": 6, "A#": 7,
                 "D": -1, "G": -2, "C": -3, "F": -4, "Bb": -5, "Eb": -6, "Ab": -7}  # fmt: skip


def _mido_key(tick: int, key: str) -> KeySignature:
    if key.endswith("m"):
        return KeySignature(tick, _MINOR_SHARPS[key[:-1]], True)
    return KeySignature(tick, _MAJOR_SHARPS[key], False)


def _mido_key_name(key: KeySignature) -> str:
    table = _MINOR_SHARPS if key.minor else _MAJOR_SHARPS
    name = next(name for name, sharps in table.items() if sharps == key.sharps)
    return name + ("m" if key.minor else "")


# --- writer ------------------------------------------------------------------------------


def assign_channels(song: Song) -> list[int]:
    """One MIDI channel per track: drums on channel 10, melodic tracks on the other 15.

    With more than 15 melodic tracks, tracks share channels in turn (their program
    changes then conflict; the file still holds every note).
    """
    melodic = [c for c in range(16) if c != DRUM_CHANNEL]
    channels, next_melodic = [], 0
    for track in song.tracks:
        if track.is_drum:
            channels.append(DRUM_CHANNEL)
        else:
            channels.append(melodic[next_melodic % len(melodic)])
            next_melodic += 1
    return channels


def midi_bytes(song: Song) -> bytes:
    """The song as a type-1 Standard MIDI File."""
    import mido

    song.validate()
    midi = mido.MidiFile(type=1, ticks_per_beat=song.resolution)
    conductor: list[tuple[int, int, mido.MetaMessage]] = []
    for tempo in song.tempos:
        conductor.append((tempo.tick, 0, mido.MetaMessage("set_tempo", tempo=tempo.us_per_quarter)))
    for ts in song.time_signatures:
        meta = mido.MetaMessage("time_signature", numerator=ts.numerator, denominator=ts.denominator)
        conductor.append((ts.tick, 1, meta))
    for key in song.key_signatures:
        conductor.append((key.tick, 2, mido.MetaMessage("key_signature", key=_mido_key_name(key))))
    midi.tracks.append(_delta_track(conductor, "Conductor"))

    for track, channel in zip(song.tracks, assign_channels(song), strict=True):
        events: list[tuple[int, int, mido.Message]] = [
            (0, 0, mido.Message("program_change", channel=channel, program=track.program))
        ]
        for start, pitch, duration, velocity in _cut_same_pitch_overlaps(track.notes):
            # At equal ticks: note-offs (1) before note-ons (2), so a repeated pitch re-sounds.
            events.append((start, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
            events.append((start + duration, 1, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        midi.tracks.append(_delta_track(events, track.name))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def write_midi(song: Song, path: str | os.PathLike[str]) -> None:
    """Write the song to ``path`` (atomically: a failed write leaves no half file)."""
    target = Path(path)
    try:
        write_bytes_atomically(target, midi_bytes(song))
    except OSError as error:
        raise MidiWriteError(f"{target}: cannot write MIDI file ({error.strerror or error})") from None


def _cut_same_pitch_overlaps(notes: NoteArray) -> list[tuple[int, int, int, int]]:
    # Two notes of one pitch at one tick are one sound: keep the longest (rows are
    # sorted by start, pitch, duration, so the last of each group wins).
    unique = {(row[0], row[1]): row for row in notes.array.tolist()}
    rows = list(unique.values())
    last_index_of_pitch: dict[int, int] = {}
    for index, (start, pitch, _duration, _velocity) in enumerate(rows):
        previous = last_index_of_pitch.get(pitch)
        if previous is not None and rows[previous][0] + rows[previous][2] > start:
            rows[previous][2] = start - rows[previous][0]
        last_index_of_pitch[pitch] = index
    return [tuple(row) for row in rows]


def _delta_track(events: list, name: str):
    import mido

    events.sort(key=lambda event: (event[0], event[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    previous = 0
    for tick, _order, message in events:
        track.append(message.copy(time=tick - previous))
        previous = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
