"""Bad and extreme MIDI files, built byte by byte, for every reader of MIDI (app and CLIs).

Each `MidiCase` writes one file (or a path that is not a readable file) into a folder and
says whether a reader must open it (``valid``: extreme but well formed) or refuse it
with one clear line. The bytes are built here with `struct`, never with a MIDI library,
so a case can lie in ways no writer would (a chunk length past the end of the file).
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

NOTE_ON, NOTE_OFF = 0x90, 0x80


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits a byte, high bit = more follows; at most 4 bytes)."""
    if not 0 <= value <= 0x0FFFFFFF:
        raise ValueError(f"{value} does not fit a variable-length quantity")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def header(file_format: int = 1, tracks: int = 1, division: int = 480) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, file_format, tracks, division)


def track_chunk(events: bytes, length: int | None = None) -> bytes:
    """An MTrk chunk holding ``events`` (end of track added); ``length`` may lie."""
    body = events + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body) if length is None else length) + body


def smf(*tracks: bytes, file_format: int = 1, division: int = 480) -> bytes:
    return header(file_format, len(tracks), division) + b"".join(tracks)


def tempo(us_per_quarter: int, delta: int = 0) -> bytes:
    return vlq(delta) + b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big")


def metre(numerator: int, denominator_power: int, delta: int = 0) -> bytes:
    """A time signature: the denominator is 2 ** ``denominator_power``, as the file stores it."""
    return vlq(delta) + b"\xff\x58\x04" + bytes([numerator, denominator_power, 24, 8])


def notes(rows: Iterable[tuple[int, int, int]], channel: int = 0, velocity: int = 90) -> bytes:
    """Note on/off events for (start tick, pitch, duration) rows, with their delta times."""
    events = []
    for start, pitch, duration in rows:
        events.append((start, 1, NOTE_ON | channel, pitch, velocity))
        events.append((start + duration, 0, NOTE_OFF | channel, pitch, 0))  # offs first at one tick
    events.sort()
    out, previous = bytearray(), 0
    for tick, _order, status, pitch, vel in events:
        out += vlq(tick - previous) + bytes([status, pitch, vel])
        previous = tick
    return bytes(out)


def song(*events: bytes, division: int = 480, file_format: int = 1) -> bytes:
    """A conductor track with ``events`` (tempo, metre) and one track with a C major scale."""
    scale = notes((i * division, pitch, division) for i, pitch in enumerate((60, 62, 64, 65, 67, 69, 71, 72)))
    return smf(track_chunk(b"".join(events)), track_chunk(scale), file_format=file_format, division=division)


@dataclass(frozen=True)
class MidiCase:
    name: str
    doc: str  # one line: what the file is
    valid: bool  # a reader must open it (else: refuse it with one line naming the file)
    data: Callable[[], bytes] | None = None  # the file's bytes, or None where make() builds a path
    make_path: Callable[[Path], Path] | None = None

    def make(self, folder: Path) -> Path:
        """Write the case under ``folder`` and return the path to give the reader."""
        if self.make_path is not None:
            return self.make_path(folder)
        path = folder / f"{self.name}.mid"
        path.write_bytes(self.data())
        return path


def _directory(folder: Path) -> Path:
    path = folder / "a_directory.mid"
    path.mkdir()
    return path


def _unreadable(folder: Path) -> Path:
    path = folder / "unreadable.mid"
    path.write_bytes(song())
    path.chmod(0)
    return path


def unreadable_is_readable(path: Path) -> bool:
    """True where the permission case cannot be tested (root reads any file)."""
    return os.access(path, os.R_OK)


CASES = [
    MidiCase("empty", "a file of zero bytes", False, lambda: b""),
    MidiCase("random_bytes", "4 KiB of seeded random bytes", False, lambda: random.Random(21).randbytes(4096)),
    MidiCase(
        "truncated", "a valid file cut off in the middle of its note track", False, lambda: song()[: len(song()) - 40]
    ),
    MidiCase("type_2", "SMF type 2 (independent sequences)", False, lambda: song(file_format=2)),
    MidiCase(
        "lying_track_length",
        "a track chunk whose length says 2 GiB, longer than the file",
        False,
        lambda: smf(track_chunk(notes([(0, 60, 480)]), length=0x7FFFFFF0)),
    ),
    MidiCase(
        "huge_delta",
        "one note after the largest delta time (0x0FFFFFFF ticks, ~140,000 bars)",
        True,
        lambda: smf(track_chunk(notes([(0x0FFFFFFF, 60, 480)]))),
    ),
    MidiCase(
        "huge_delta_at_the_limit",
        "a tempo event 27 ticks before 2**31: the song ends at the 32-bit limit",
        True,
        lambda: smf(
            track_chunk(tempo(500_000, 0x0FFFFFFF) * 7 + tempo(500_000, 0x0FFFFFFF - 19)),
            track_chunk(notes([(0, 60, 480)])),
        ),
    ),
    MidiCase(
        "overflowing_deltas",
        "nine largest delta times: the last note starts past 2**31 ticks",
        False,
        lambda: smf(
            track_chunk(b"".join(vlq(0x0FFFFFFF) + b"\xff\x01\x00" for _ in range(8)) + notes([(0x0FFFFFFF, 60, 480)]))
        ),
    ),
    MidiCase(
        "dense_bar",
        "100,000 notes inside one 4/4 bar",
        True,
        lambda: smf(track_chunk(notes((i % 1920, 24 + (i // 1920) % 80, 1) for i in range(100_000)))),
    ),
    MidiCase(
        "many_bars",
        "30,000 bars of 4/4, one note in each",
        True,
        lambda: smf(track_chunk(notes((bar * 1920, 60 + bar % 12, 480) for bar in range(30_000)))),
    ),
    MidiCase("tempo_fastest", "a tempo of 1 µs per quarter note", True, lambda: song(tempo(1))),
    MidiCase("tempo_slowest", "a tempo of 0xFFFFFF µs (16.8 s) per quarter note", True, lambda: song(tempo(0xFFFFFF))),
    MidiCase("metre_255_1", "a time signature of 255/1", True, lambda: song(metre(255, 0))),
    MidiCase("metre_1_128", "a time signature of 1/128 (denominator power 7)", True, lambda: song(metre(1, 7))),
    MidiCase(
        "metre_1_128_tpq_1",
        "1/128 at 1 tick per quarter: bars of 1/32 tick",
        True,
        lambda: song(metre(1, 7), division=1),
    ),
    MidiCase("metre_zero_numerator", "a time signature of 0/4", False, lambda: song(metre(0, 2))),
    MidiCase(
        "metre_denominator_2_255", "a time signature whose denominator power is 255", False, lambda: song(metre(4, 255))
    ),
    MidiCase("tpq_1", "1 tick per quarter note", True, lambda: song(division=1)),
    MidiCase(
        "tpq_32767", "32767 ticks per quarter note (the largest the header holds)", True, lambda: song(division=32767)
    ),
    MidiCase("directory", "a path that is a directory", False, make_path=_directory),
    MidiCase("unreadable", "a valid file without read permission", False, make_path=_unreadable),
]

BY_NAME = {case.name: case for case in CASES}
