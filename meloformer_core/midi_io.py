"""MIDI files in and out. The one reading path shared by the app and the preprocessor.

Reading uses symusic (a C++ parser): on a 16-track, 20,000-note file it is two orders
of magnitude faster than mido or pretty_midi (see ``bench/encode.py``), which matters
when preprocessing hundreds of thousands of files. A pure-Python mido reader with the
same semantics is kept as a cross-check in the tests and as a benchmark candidate.

Semantics of reading (both readers):
- tracks are split by (file track, program, drums): a file track playing one program on
  several channels (a piano's two hands) is one `Track`, a program change in the middle
  of a track starts a new `Track`, and two file tracks with the same program stay two
  tracks; a track without notes is not read;
- channel 10 is drums;
- note-on with velocity 0 is a note-off; overlapping notes of one pitch and channel are
  paired first-in first-out; a note-on that is never switched off is dropped;
- SMF type 0 and 1 are read; type 2 and SMPTE time division are refused;
- a track is named by the last track-name event of its file track; texts (markers,
  lyrics, …: `TEXT_KINDS`) of every file track become the song's `texts`; text bytes
  are decoded as UTF-8 when they are valid UTF-8, else as Windows-1252 (see
  `decode_text`), so a name in any encoding reads as text, the same in both readers.

Writing (`write_midi`) produces SMF type 1: a conductor track with tempo, metre and key
events and the song's texts, then one track per `Track`, each melodic track on its own
channel (drums on channel 10), named, with its program change at tick 0. Overlapping
notes of one pitch are cut where the next one starts, which is what a synthesizer plays
anyway and what keeps every reader's pairing identical. Every text is written as UTF-8
(`encode_text`), whatever the string holds, so what was read reads back the same.
"""

from __future__ import annotations

import bisect
import io
import os
import re
import struct
from collections import defaultdict, deque
from pathlib import Path
from typing import NamedTuple

import numpy as np

from meloformer_core.atomic import write_bytes_atomically
from meloformer_core.errors import MidiReadError, MidiWriteError
from meloformer_core.gm import instrument_name
from meloformer_core.music import (
    DRUM_CHANNEL,
    KeySignature,
    NoteArray,
    Song,
    TempoChange,
    TextEvent,
    TimeSignature,
    Track,
)

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_TICK = 2**31 - 1

SourceLike = str | os.PathLike[str] | bytes


def read_midi(source: SourceLike, *, name: str | None = None, backend: str = "symusic",
              empty_tracks: bool = False) -> Song:  # fmt: skip
    """Read a Standard MIDI File (a path or its bytes) into a `Song`.

    ``empty_tracks``: also the file's tracks that play no note, after the others
    (`empty_file_tracks`): what the app shows, where the model and the corpora see only
    music. Raises `MidiReadError` with a one-line message naming the file and the problem.
    """
    data, label = _load_bytes(source, name)
    _check_header(data, label)
    if backend == "symusic":
        song = _read_with_symusic(data, label)
    elif backend == "mido":
        song = _read_with_mido(data, label)
    else:
        raise ValueError(f"unknown MIDI reader backend {backend!r}")
    if empty_tracks:
        song = song.replace(tracks=(*song.tracks, *empty_file_tracks(data)))
    return song.validate(label)


_NOTE_ON = re.compile(rb"[\x90-\x9f]")  # a chunk without such a byte has no note-on status


def empty_file_tracks(data: bytes) -> list[Track]:
    """The file tracks (MTrk chunks) that play no note but are meant for an instrument, as
    empty `Track`s in file order: a chunk with no note-on status byte that sends a channel
    message (a program change, a controller) or has a name and no other text (a lyric or
    marker track is not an instrument). A type-1 file's first chunk is its conductor
    track and never one of them. Named as the file names them, else after their program;
    a drum track when they speak on channel 10."""
    first = 1 if struct.unpack(">H", data[8:10])[0] == 1 else 0
    tracks = []
    for start, end, _ in _track_chunks(data)[first:]:
        if _NOTE_ON.search(data, start, end):
            continue
        walk = _walk_chunk(data, start, end)
        if walk.channel is None and (walk.name is None or walk.texts):
            continue
        is_drum = walk.channel == DRUM_CHANNEL
        tracks.append(_track(decode_text(walk.name or b""), walk.program or 0, is_drum, NoteArray()))
    return tracks


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

    parsed, true_names, texts = _scan_texts(data)
    try:
        score = symusic.Score.from_midi(parsed)
    except Exception as error:  # symusic raises RuntimeError with a parser message
        try:  # data bytes above 127 (seen in real files) are clamped, as other readers do
            score = symusic.Score.from_midi(parsed, sanitize_data=True)
        except Exception:
            raise MidiReadError(f"{label}: corrupt MIDI data ({_first_line(error)})") from None
    tracks = []
    chunks = _chunk_of_tracks(parsed, score)
    for track, chunk in zip(score.tracks, chunks, strict=True):
        if not len(track.notes):  # symusic keeps a file track that has lyrics or controls but no notes
            continue
        columns = track.notes.numpy()
        start = columns["time"].astype(np.int64)
        if start.min() < 0 or (start + columns["duration"]).max() >= MAX_TICK:
            raise MidiReadError(f"{label}: a delta time is too large (times overflow 32 bits)")
        notes = NoteArray.from_columns(
            start, columns["pitch"], columns["duration"], columns["velocity"].astype(np.int64) & 0x7F
        )
        name = true_names.get(track.name, track.name)
        tracks.append((chunk, _track(name, int(track.program), bool(track.is_drum), notes)))
    tracks = _merge_channels(tracks)
    return Song(
        resolution=int(score.ticks_per_quarter),
        tempos=tuple(TempoChange(int(t.time), int(t.mspq)) for t in score.tempos),
        time_signatures=tuple(
            TimeSignature(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures
        ),
        key_signatures=tuple(KeySignature(int(k.time), int(k.key), bool(k.tonality)) for k in score.key_signatures),
        tracks=tuple(tracks),
        texts=tuple(texts),
    )


def _chunk_of_tracks(data: bytes, score) -> list[int]:
    """The file track (MTrk chunk) each of ``score``'s tracks comes from.

    symusic splits a file track by channel and program and does not say which file track a
    track came from. Only when two tracks could merge (the same program and drum flag) is
    it asked again, on a copy of the file whose every chunk ends with a track name of its
    own (a name event before the end of track: symusic names a track by the last one); the
    split is the same, so the names give the chunks. Otherwise every track is its own.
    """
    kinds = [(int(t.program), bool(t.is_drum)) for t in score.tracks if len(t.notes)]
    if len(set(kinds)) == len(kinds):
        return list(range(len(score.tracks)))
    import symusic

    pieces, copied = [], 0
    for index, (start, end, length) in enumerate(_track_chunks(data)):
        end_of_track = (
            end - 3 if data[end - 4 : end] == b"\x00\xff\x2f\x00" else _walk_chunk(data, start, end).end_of_track
        )
        if end_of_track is None:
            continue  # no end of track: this chunk's tracks stay apart
        tag = f"\x00meloformer chunk {index}\x00".encode("ascii")
        event = b"\xff\x03" + _variable_int_bytes(len(tag)) + tag + b"\x00"  # then the delta-0 FF 2F 00
        pieces += [data[copied : start - 4], struct.pack(">I", length + len(event)), data[start:end_of_track], event]
        copied = end_of_track
    try:
        tagged = symusic.Score.from_midi(b"".join([*pieces, data[copied:]]), sanitize_data=True)
    except Exception:  # the file read once already; if the copy does not, nothing merges
        return list(range(len(score.tracks)))
    names = [track.name for track in tagged.tracks]
    if len(names) != len(score.tracks):  # cannot happen with the same events; never merge on a guess
        return list(range(len(score.tracks)))
    fallback = iter(range(-1, -len(names) - 1, -1))  # a track of an untagged chunk: apart from every other
    return [int(name.split()[-1].strip("\x00")) if name.startswith("\x00meloformer chunk ") else next(fallback)
            for name in names]  # fmt: skip


def _merge_channels(tracks: list[tuple[int, Track]]) -> list[Track]:
    """One `Track` per (file track, program, drums), in the order each first appears: the
    channels of a file track that play one program are one part (see the module's semantics)."""
    merged: dict[tuple[int, int, bool], Track] = {}
    for chunk, track in tracks:
        key = (chunk, track.program, track.is_drum)
        if key in merged:
            both = np.concatenate([merged[key].notes.array, track.notes.array])
            merged[key] = merged[key].with_notes(NoteArray(both))
        else:
            merged[key] = track
    return list(merged.values())


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


# --- texts -------------------------------------------------------------------------------
# A MIDI file's texts are bytes in no declared encoding: old files use Latin-1 or
# Windows-1252, newer ones UTF-8, some anything at all. symusic decodes track names and
# markers as UTF-8, turning other bytes into U+FFFD, and skips the other texts; so the
# reader finds texts in the raw track chunks itself. It walks a chunk's events (in
# Python) only where a regular-expression search finds a possible text event other than
# an ASCII track name, so most files (ASCII names only) cost one search of the file.
# A chunk whose true name symusic would mangle gets a tag, a track-name event added just
# before its end of track: symusic names tracks after the last such event, so the tag
# says which file track each of its tracks came from, and the tag is swapped for the name.

_META_TEXT_KINDS = {0x01: "text", 0x02: "copyright", 0x04: "instrument", 0x05: "lyric", 0x06: "marker", 0x07: "cue"}
_MIDO_TEXT_KINDS = {"text": "text", "copyright": "copyright", "instrument_name": "instrument", "lyrics": "lyric",
                    "marker": "marker", "cue_marker": "cue"}  # fmt: skip
_MIDO_TYPES = {kind: mido_type for mido_type, kind in _MIDO_TEXT_KINDS.items()}
_TEXT_EVENT = re.compile(rb"\xff[\x01-\x07]")  # a meta event FF 01-07 starts like this (or a false alarm)
# Data bytes after each status byte 0x80-0xFF: channel messages 0x8n-0xEn (note off, note
# on, key pressure, control, program, channel pressure, pitch bend); system messages,
# which belong in no file, as sent live (0xF0, 0xF7 and 0xFF are handled apart).
_CHANNEL_DATA_BYTES = (2, 2, 2, 2, 1, 1, 2)
_SYSTEM_DATA_BYTES = (0, 1, 2, 1) + (0,) * 12
_DATA_BYTES = bytes([count for count in _CHANNEL_DATA_BYTES for _channel in range(16)] + [*_SYSTEM_DATA_BYTES])
# Latin-1 code point → Windows-1252 character for the bytes 0x80-0x9F where they differ;
# the five bytes Windows-1252 leaves unassigned keep their Latin-1 meaning.
_WINDOWS_1252 = {byte: char for byte in range(0x80, 0xA0) if (char := bytes([byte]).decode("cp1252", "ignore"))}


def decode_text(raw: bytes) -> str:
    """MIDI text bytes as a string: UTF-8 when they are valid UTF-8, else Windows-1252 (the
    superset of Latin-1 that old files use), which decodes any bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1").translate(_WINDOWS_1252)


def encode_text(text: str) -> bytes:
    """A string as MIDI text bytes: UTF-8. Lone surrogates, which no encoding can hold,
    become U+FFFD (a surrogate pair becomes its character)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode("utf-8")


def _text_event(tick: int, kind: str, text: str) -> list[TextEvent]:
    return [TextEvent(tick, kind, text)] if tick < MAX_TICK else []


def _variable_int(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the variable-length number at ``pos`` (IndexError past the end)."""
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos


def _variable_int_bytes(value: int) -> bytes:
    groups = [value & 0x7F]
    while value := value >> 7:
        groups.append(0x80 | (value & 0x7F))
    return bytes(reversed(groups))


def _track_chunks(data: bytes) -> list[tuple[int, int, int]]:
    """(start of data, end of data, declared length) of each MTrk chunk (other chunks are skipped)."""
    chunks = []
    pos = 8 + struct.unpack(">I", data[4:8])[0]
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if data[pos : pos + 4] == b"MTrk":
            chunks.append((pos + 8, min(pos + 8 + length, len(data)), length))
        pos += 8 + length
    return chunks


def _worth_walking(data: bytes, found: re.Match[bytes]) -> bool:
    """Whether a possible text event that the search found may be one other than an ASCII track name."""
    if found[0][1] != 0x03:
        return True
    try:
        length, content = _variable_int(data, found.end())
    except IndexError:
        return True
    return not data[content : content + length].isascii()


class ChunkWalk(NamedTuple):
    name: bytes | None  # the last track name
    texts: list[TextEvent]
    end_of_track: int | None  # where the end-of-track event's FF is
    channel: int | None  # the channel of the first channel message (0-15)
    program: int | None  # the first program change


def _walk_chunk(data: bytes, start: int, end: int) -> ChunkWalk:
    """What one chunk says besides its notes: its name, texts, first channel and program.

    symusic has read the file already and the walk only looks for these, so it stops
    quietly at anything corrupt rather than raise; every step moves forward, so its work
    is bounded by the chunk's length.
    """
    name, texts, end_of_track, channel, program = None, [], None, None, None
    pos, tick, status, data_bytes = start, 0, 0, 0
    try:
        while pos < end:
            byte = data[pos]
            if byte < 0x80:  # the usual one-byte delta time, faster
                pos += 1
                tick += byte
            else:
                delta, pos = _variable_int(data, pos)
                tick += delta
            byte = data[pos]
            if byte < 0x80:  # running status: this byte is the first data byte
                if not status:
                    break
                if program is None and status & 0xF0 == 0xC0:
                    program = byte
                pos += data_bytes
            elif byte < 0xF0:
                status, data_bytes = byte, _DATA_BYTES[byte - 0x80]
                channel = byte & 0x0F if channel is None else channel
                if program is None and byte & 0xF0 == 0xC0:
                    program = data[pos + 1] & 0x7F
                pos += 1 + data_bytes
            elif byte == 0xFF:
                meta = data[pos + 1]
                length, content = _variable_int(data, pos + 2)
                if meta == 0x2F:
                    end_of_track = pos
                    break
                if content + length > end:
                    break
                if meta == 0x03:
                    name = data[content : content + length]
                elif meta in _META_TEXT_KINDS:
                    texts += _text_event(tick, _META_TEXT_KINDS[meta], decode_text(data[content : content + length]))
                pos = content + length
            elif byte == 0xF0 or byte == 0xF7:
                length, pos = _variable_int(data, pos + 1)
                pos += length
            else:
                status, data_bytes = byte, _DATA_BYTES[byte - 0x80]
                pos += 1 + data_bytes
    except IndexError:
        pass
    return ChunkWalk(name, texts, end_of_track, channel, program)


def _scan_texts(data: bytes) -> tuple[bytes, dict[str, str], list[TextEvent]]:
    """(the file for symusic, the true name behind each tag in it, the song's texts)."""
    worth_walking = [found.start() for found in _TEXT_EVENT.finditer(data) if _worth_walking(data, found)]
    if not worth_walking:
        return data, {}, []
    texts: list[TextEvent] = []
    true_names: dict[str, str] = {}
    pieces: list[bytes] = []
    copied = 0
    for index, (start, end, length) in enumerate(_track_chunks(data)):
        first = bisect.bisect_left(worth_walking, start)
        if first == len(worth_walking) or worth_walking[first] >= end:
            continue
        name, chunk_texts, end_of_track, _, _ = _walk_chunk(data, start, end)
        texts += chunk_texts
        if name is None or name.isascii() or end_of_track is None:
            continue  # symusic reads an ASCII name right
        tag = f"\x00meloformer track {index}\x00"
        true_names[tag] = decode_text(name)
        event = b"\xff\x03" + _variable_int_bytes(len(tag)) + tag.encode("ascii") + b"\x00"  # then FF 2F 00
        pieces += [data[copied : start - 4], struct.pack(">I", length + len(event)), data[start:end_of_track], event]
        copied = end_of_track
    if true_names:
        data = b"".join([*pieces, data[copied:]])
    return data, true_names, texts


# --- mido reader (reference semantics, benchmark candidate) -------------------------------


def _read_with_mido(data: bytes, label: str) -> Song:
    import mido

    try:
        midi = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as error:
        raise MidiReadError(f"{label}: corrupt MIDI data ({_first_line(error)})") from None
    tempos, signatures, keys, texts = [], [], [], []
    tracks: list[tuple[int, Track]] = []
    for chunk, mtrk in enumerate(midi.tracks):
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
            elif kind == "track_name":
                name = _mido_text(message.name)
            elif kind in _MIDO_TEXT_KINDS:
                text = message.name if kind == "instrument_name" else message.text
                texts += _text_event(tick, _MIDO_TEXT_KINDS[kind], _mido_text(text))
        for (channel, prog), rows in sorted(notes.items(), key=lambda item: (item[0][0] == DRUM_CHANNEL, item[0])):
            is_drum = channel == DRUM_CHANNEL
            tracks.append((chunk, _track(name, prog, is_drum, NoteArray(rows))))
    tracks = _merge_channels(tracks)
    return Song(midi.ticks_per_beat, tuple(tempos), tuple(signatures), tuple(keys), tuple(tracks), tuple(texts))


def _mido_text(text: str) -> str:
    """mido decodes text bytes as Latin-1: get the bytes back and decode them as `read_midi` does."""
    return decode_text(text.encode("latin-1"))


def _mido_str(text: str) -> str:
    """What to give mido so that it writes ``text`` as UTF-8 (mido encodes text as Latin-1)."""
    return encode_text(text).decode("latin-1")


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
    for text in song.texts:
        mido_type = _MIDO_TYPES[text.kind]
        field = "name" if mido_type == "instrument_name" else "text"
        conductor.append((text.tick, 3, mido.MetaMessage(mido_type, **{field: _mido_str(text.text)})))
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
    track.append(mido.MetaMessage("track_name", name=_mido_str(name), time=0))
    previous = 0
    for tick, _order, message in events:
        track.append(message.copy(time=tick - previous))
        previous = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
