"""The music model: `Song`, `Track`, `Note`, the tempo / metre / key maps and the song's texts.

One plain-Python representation flows through the whole product (MIDI file → Song →
tokens → model → tokens → Song → piano roll / playback / MIDI file). Everything here is
immutable: an edit builds a new object, so copying is free, undo can keep old values,
and two songs compare with ``==``.

Notes are stored column-wise in a `NoteArray` (one read-only int64 array of shape
``(n, 4)``: start, pitch, duration, velocity, sorted by that key). Reading a 20,000-note
file would otherwise spend more time building Python objects than parsing the file;
iterating a `NoteArray` still yields ordinary `Note` tuples.

No torch and no Qt may be imported here (checked by tests/test_architecture.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import NamedTuple, overload

import numpy as np

from meloformer_core.errors import SongError

DEFAULT_RESOLUTION = 480  # ticks per quarter note
DEFAULT_US_PER_QUARTER = 500_000  # 120 quarter notes per minute, the MIDI default
DRUM_CHANNEL = 9  # MIDI channel 10, counted from zero


class Note(NamedTuple):
    """One note. Times are in ticks of the song's resolution."""

    start: int
    pitch: int
    duration: int
    velocity: int

    @property
    def end(self) -> int:
        return self.start + self.duration


_NOTE_COLUMNS = 4


class NoteArray(Sequence[Note]):
    """An immutable, sorted sequence of notes stored as one ``(n, 4)`` int64 array.

    Columns are ``start, pitch, duration, velocity``; rows are sorted by that key, so two
    arrays holding the same notes are equal whatever order they were built in.
    """

    __slots__ = ("_data",)

    def __init__(self, notes: Iterable[Note | tuple[int, int, int, int]] | np.ndarray = ()) -> None:
        if isinstance(notes, np.ndarray):
            data = np.array(notes, dtype=np.int64, copy=True).reshape(-1, _NOTE_COLUMNS)
        else:
            rows = list(notes)
            data = np.array(rows, dtype=np.int64).reshape(-1, _NOTE_COLUMNS) if rows else np.zeros((0, 4), np.int64)
        self._data = _sorted_readonly(data)

    @classmethod
    def from_columns(
        cls, start: np.ndarray, pitch: np.ndarray, duration: np.ndarray, velocity: np.ndarray
    ) -> NoteArray:
        """Build from four equally long integer columns (the fast path for readers)."""
        data = np.empty((len(start), _NOTE_COLUMNS), dtype=np.int64)
        data[:, 0] = start
        data[:, 1] = pitch
        data[:, 2] = duration
        data[:, 3] = velocity
        result = cls.__new__(cls)
        result._data = _sorted_readonly(data)
        return result

    # --- columns (read-only views) ---------------------------------------------------
    @property
    def array(self) -> np.ndarray:
        """The read-only ``(n, 4)`` array: start, pitch, duration, velocity."""
        return self._data

    @property
    def starts(self) -> np.ndarray:
        return self._data[:, 0]

    @property
    def pitches(self) -> np.ndarray:
        return self._data[:, 1]

    @property
    def durations(self) -> np.ndarray:
        return self._data[:, 2]

    @property
    def velocities(self) -> np.ndarray:
        return self._data[:, 3]

    @property
    def end(self) -> int:
        """Tick at which the last note stops sounding (0 when empty)."""
        return int((self._data[:, 0] + self._data[:, 2]).max()) if len(self._data) else 0

    # --- sequence protocol ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._data)

    @overload
    def __getitem__(self, index: int) -> Note: ...
    @overload
    def __getitem__(self, index: slice) -> NoteArray: ...
    def __getitem__(self, index: int | slice) -> Note | NoteArray:
        if isinstance(index, slice):
            result = NoteArray.__new__(NoteArray)
            result._data = self._data[index]
            return result
        return Note(*self._data[index].tolist())

    def __iter__(self) -> Iterator[Note]:
        return map(Note._make, self._data.tolist())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteArray):
            return NotImplemented
        return self._data.shape == other._data.shape and bool(np.array_equal(self._data, other._data))

    def __hash__(self) -> int:
        return hash(self._data.tobytes())

    def __repr__(self) -> str:
        shown = ", ".join(repr(n) for n in self[:3])
        more = f", … {len(self) - 3} more" if len(self) > 3 else ""
        return f"NoteArray([{shown}{more}])"

    # --- derived arrays ---------------------------------------------------------------
    def with_notes(self, added: Iterable[Note] = (), removed: Iterable[Note] = ()) -> NoteArray:
        """A new array with ``removed`` taken out (one copy each) and ``added`` put in."""
        data = self._data
        gone = _rows(removed)
        if len(gone):
            ids, gone_ids = row_ids(data, gone)
            wanted = np.bincount(gone_ids, minlength=len(ids) + len(gone_ids))
            have = np.bincount(ids, minlength=len(wanted))
            if (wanted > have).any():
                missing = gone[np.flatnonzero(wanted[gone_ids] > have[gone_ids])[0]]
                raise ValueError(f"note {Note(*missing.tolist())} is not in the array")
            order = np.argsort(ids, kind="stable")  # equal notes side by side, first copies first
            ranked = ids[order]
            copy = np.arange(len(ranked)) - np.searchsorted(ranked, ranked)  # 0 for the first copy of a note, …
            keep = np.ones(len(data), dtype=bool)
            keep[order[copy < wanted[ranked]]] = False
            data = data[keep]
        added = _rows(added)
        result = NoteArray.__new__(NoteArray)
        result._data = _sorted_readonly(np.concatenate([data, added]) if len(added) else data)
        return result

    def concatenate(self, other: NoteArray) -> NoteArray:
        result = NoteArray.__new__(NoteArray)
        result._data = _sorted_readonly(np.concatenate([self._data, other._data]))
        return result


def _rows(notes: Iterable[Note] | np.ndarray) -> np.ndarray:
    if isinstance(notes, np.ndarray):
        return notes.astype(np.int64).reshape(-1, 4)
    return np.asarray([tuple(note) for note in notes], dtype=np.int64).reshape(-1, 4)


def row_ids(*tables: np.ndarray) -> list[np.ndarray]:
    """One id per row of each 2-D table (same width), equal rows sharing an id: membership
    and multiset tests on whole notes without a Python loop per note."""
    stacked = np.concatenate([np.asarray(t, dtype=np.int64) for t in tables])
    ids = np.zeros(len(stacked), dtype=np.int64)
    if len(stacked):
        order = np.lexsort(stacked.T[::-1])  # integer keys: much faster than np.unique(axis=0)
        ordered = stacked[order]
        ids[order] = np.concatenate([[0], np.cumsum((ordered[1:] != ordered[:-1]).any(axis=1))])
    return np.split(ids, np.cumsum([len(t) for t in tables])[:-1])


def rows_in(rows: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``rows`` occur in ``among`` (both 2-D, the same width)."""
    if not len(rows) or not len(among):
        return np.zeros(len(rows), dtype=bool)
    ids, known = row_ids(rows, among)
    return np.isin(ids, known)


def _sorted_readonly(data: np.ndarray) -> np.ndarray:
    if len(data) > 1:
        # Fast path: one int64 key for (start, pitch); the full four-column sort is needed
        # only when two notes share a start and a pitch (rare).
        key = data[:, 0] * 128 + data[:, 1]
        if not (np.diff(key) > 0).all():
            order = np.argsort(key, kind="stable")
            if not (np.diff(key[order]) > 0).all():
                order = np.lexsort((data[:, 3], data[:, 2], data[:, 1], data[:, 0]))
            data = data[order]
    data = np.ascontiguousarray(data)
    data.flags.writeable = False
    return data


class TempoChange(NamedTuple):
    """From ``tick`` on, a quarter note lasts ``us_per_quarter`` microseconds."""

    tick: int
    us_per_quarter: int

    @property
    def qpm(self) -> float:
        """Quarter notes per minute (what most tools call BPM)."""
        return 60_000_000 / self.us_per_quarter


class TimeSignature(NamedTuple):
    tick: int
    numerator: int
    denominator: int

    def bar_ticks(self, resolution: int) -> Fraction:
        """Length of one bar of this metre, in ticks (a fraction for odd resolutions)."""
        return Fraction(self.numerator * 4 * resolution, self.denominator)

    def beat_ticks(self, resolution: int) -> Fraction:
        """Length of one counted beat: a dotted note in compound metres (6/8, 9/8, 12/16), else
        one note of the denominator (so 7/8 counts seven and 2/2 counts two)."""
        unit = Fraction(4 * resolution, self.denominator)
        compound = self.denominator >= 8 and self.numerator > 3 and self.numerator % 3 == 0
        return unit * 3 if compound else unit


class KeySignature(NamedTuple):
    """``sharps`` from -7 (seven flats) to 7 (seven sharps); ``minor`` for minor keys."""

    tick: int
    sharps: int
    minor: bool


TEXT_KINDS = ("text", "copyright", "instrument", "lyric", "marker", "cue")
"""What a `TextEvent` is: the MIDI meta events FF 01 (text), 02 (copyright), 04 (instrument
name), 05 (lyric), 06 (marker) and 07 (cue point). Track names (FF 03) are `Track.name`."""


class TextEvent(NamedTuple):
    """A text of the song at ``tick``: a marker ("Chorus"), a lyric syllable, a copyright line…

    ``kind`` is one of `TEXT_KINDS`. Texts carry no music: they do not make the song longer
    (`Song.end_tick`) and the encoding does not represent them (`quantize` drops them).
    """

    tick: int
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Track:
    name: str
    program: int = 0
    is_drum: bool = False
    notes: NoteArray = field(default_factory=NoteArray)

    def __post_init__(self) -> None:
        if not isinstance(self.notes, NoteArray):
            object.__setattr__(self, "notes", NoteArray(self.notes))

    def with_notes(self, notes: NoteArray | Iterable[Note]) -> Track:
        return replace(self, notes=notes if isinstance(notes, NoteArray) else NoteArray(notes))


@dataclass(frozen=True, slots=True)
class Song:
    """A piece of music: resolution, tempo map, metre map, key map, tracks and texts.

    Maps are tuples sorted by tick. An empty tempo map means 120 quarters per minute and
    an empty metre map means 4/4, as in a MIDI file that has no such events. ``texts``
    (markers, lyrics, …) are sorted by tick too, texts at one tick kept in their order.
    """

    resolution: int = DEFAULT_RESOLUTION
    tempos: tuple[TempoChange, ...] = ()
    time_signatures: tuple[TimeSignature, ...] = ()
    key_signatures: tuple[KeySignature, ...] = ()
    tracks: tuple[Track, ...] = ()
    texts: tuple[TextEvent, ...] = ()

    def __post_init__(self) -> None:
        for name in ("tempos", "time_signatures", "key_signatures", "texts"):
            events = tuple(sorted(getattr(self, name), key=lambda event: event[0]))
            object.__setattr__(self, name, events)
        object.__setattr__(self, "tracks", tuple(self.tracks))

    # --- simple facts -----------------------------------------------------------------
    @property
    def note_count(self) -> int:
        return sum(len(track.notes) for track in self.tracks)

    @property
    def end_tick(self) -> int:
        """The tick after the last note and the last map event (texts do not count)."""
        ends = [track.notes.end for track in self.tracks]
        ends += [event[0] for event in (*self.tempos, *self.time_signatures, *self.key_signatures)]
        return max(ends, default=0)

    def replace(self, **changes: object) -> Song:
        return replace(self, **changes)

    def validate(self, source: str = "song") -> Song:
        """Raise `SongError` naming ``source`` if any value is out of range; return self."""
        if self.resolution <= 0:
            raise SongError(f"{source}: resolution must be positive, got {self.resolution}")
        for tempo in self.tempos:
            if tempo.tick < 0 or tempo.us_per_quarter <= 0:
                raise SongError(f"{source}: invalid tempo change {tuple(tempo)}")
        for ts in self.time_signatures:
            if ts.tick < 0 or ts.numerator <= 0 or ts.denominator <= 0 or ts.denominator & (ts.denominator - 1):
                raise SongError(f"{source}: invalid time signature {ts.numerator}/{ts.denominator} at tick {ts.tick}")
        for key in self.key_signatures:
            if key.tick < 0 or not -7 <= key.sharps <= 7:
                raise SongError(f"{source}: invalid key signature {tuple(key)}")
        for text in self.texts:
            if text.tick < 0 or text.kind not in TEXT_KINDS or not isinstance(text.text, str):
                raise SongError(f"{source}: invalid text event {tuple(text)!r}")
        for index, track in enumerate(self.tracks):
            if not 0 <= track.program <= 127:
                raise SongError(f"{source}: track {index + 1} has program {track.program} (must be 0-127)")
            data = track.notes.array
            if not len(data):
                continue
            problems = [
                ("a negative start", data[:, 0] < 0),
                ("a pitch outside 0-127", (data[:, 1] < 0) | (data[:, 1] > 127)),
                ("a non-positive duration", data[:, 2] <= 0),
                ("a velocity outside 1-127", (data[:, 3] < 1) | (data[:, 3] > 127)),
            ]
            for what, bad in problems:
                if bad.any():
                    note = Note(*data[int(np.argmax(bad))].tolist())
                    raise SongError(f"{source}: track {index + 1} ({track.name!r}) has a note with {what}: {note}")
        return self

    # --- time maps --------------------------------------------------------------------
    def time_signature_at(self, tick: int) -> TimeSignature:
        index = bisect.bisect_right([ts.tick for ts in self.time_signatures], tick) - 1
        return self.time_signatures[index] if index >= 0 else TimeSignature(0, 4, 4)

    def bar_starts(self, until_tick: int | None = None) -> list[int]:
        """Ticks where bars begin, up to and including the bar that holds ``until_tick``.

        Bars follow the metre map; a time-signature change that falls inside a bar
        starts a new bar there (MIDI files do this for pickups and odd edits).
        Fractional bar lengths (odd resolutions) are rounded down to whole ticks.
        """
        until = self.end_tick if until_tick is None else until_tick
        changes = [ts for ts in self.time_signatures if ts.tick > 0]
        current = self.time_signature_at(0)
        starts: list[int] = []
        position = Fraction(0)
        while True:
            starts.append(int(position))
            position += current.bar_ticks(self.resolution)
            while changes and changes[0].tick <= position:
                change = changes.pop(0)
                position = min(position, Fraction(change.tick))
                current = change
            if position > until:
                return starts

    def bar_lines(self) -> list[int]:
        """Bar starts up to the first bar line at or after the end: the song's bars and where
        the next one (a continuation) begins."""
        metres = (self.time_signature_at(0), *self.time_signatures)
        longest = max(ts.bar_ticks(self.resolution) for ts in metres)
        starts = self.bar_starts(self.end_tick + int(longest) + 1)
        return starts[: next(i for i, tick in enumerate(starts) if tick >= self.end_tick) + 1]

    def beats(self, start_tick: int, end_tick: int) -> tuple[np.ndarray, np.ndarray]:
        """(ticks of the counted beats in [start_tick, end_tick), True where a bar begins),
        following the metre map: what a metronome clicks."""
        bars = self.bar_starts(end_tick)
        ticks, downbeats = [], []
        for first, following in zip(bars, [*bars[1:], None], strict=True):
            beat = self.time_signature_at(first).beat_ticks(self.resolution)
            limit = end_tick if following is None else min(following, end_tick)
            count = -(-(limit - first) // beat) if limit > first else 0
            bar_beats = np.array([first + int(beat * k) for k in range(int(count))], dtype=np.int64)
            ticks.append(bar_beats)
            downbeats.append(np.arange(len(bar_beats)) == 0)
        ticks_all, down_all = np.concatenate(ticks), np.concatenate(downbeats)
        inside = ticks_all >= start_tick
        return ticks_all[inside], down_all[inside]

    def _tempo_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tick, second and seconds per tick) at each tempo change, one at tick 0 first."""
        tempos = list(self.tempos) or [TempoChange(0, DEFAULT_US_PER_QUARTER)]
        if tempos[0].tick > 0:
            tempos.insert(0, TempoChange(0, DEFAULT_US_PER_QUARTER))
        change_ticks = np.array([t.tick for t in tempos], dtype=np.float64)
        seconds_per_tick = np.array([t.us_per_quarter for t in tempos], dtype=np.float64) / 1e6 / self.resolution
        change_seconds = np.concatenate([[0.0], np.cumsum(np.diff(change_ticks) * seconds_per_tick[:-1])])
        return change_ticks, change_seconds, seconds_per_tick

    def seconds_at(self, ticks: np.ndarray | Sequence[int]) -> np.ndarray:
        """Convert ticks to seconds through the tempo map (vectorised)."""
        ticks = np.asarray(ticks, dtype=np.float64)
        change_ticks, change_seconds, seconds_per_tick = self._tempo_table()
        index = np.clip(np.searchsorted(change_ticks, ticks, side="right") - 1, 0, len(change_ticks) - 1)
        return change_seconds[index] + (ticks - change_ticks[index]) * seconds_per_tick[index]

    def ticks_at(self, seconds: np.ndarray | Sequence[float]) -> np.ndarray:
        """The tick sounding at each of ``seconds`` (the inverse of `seconds_at`, rounded down)."""
        seconds = np.asarray(seconds, dtype=np.float64)
        change_ticks, change_seconds, seconds_per_tick = self._tempo_table()
        index = np.clip(np.searchsorted(change_seconds, seconds, side="right") - 1, 0, len(change_ticks) - 1)
        ticks = change_ticks[index] + (seconds - change_seconds[index]) / seconds_per_tick[index]
        return np.floor(ticks + 1e-9).astype(np.int64)
