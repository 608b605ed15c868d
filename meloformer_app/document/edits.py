"""Edits: pure functions from a `Song` (and the notes they act on) to a new `Song`.

Nothing here knows about Qt or undo: the app wraps each edit in one undoable command that
swaps whole songs (a `Song` is immutable, so the old one is the undo state). Notes are
named by `NoteRef` — the track index and the note's value — and every edit that moves
notes returns where they went, so the selection can follow them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from meloformer_core.music import KeySignature, Note, NoteArray, Song, TempoChange, TimeSignature, Track


class NoteRef(NamedTuple):
    track: int
    note: Note


def _by_track(refs: Iterable[NoteRef]) -> dict[int, list[Note]]:
    grouped: dict[int, list[Note]] = defaultdict(list)
    for ref in refs:
        grouped[ref.track].append(Note(*ref.note))
    return grouped


def _replace_notes(song: Song, changes: dict[int, tuple[list[Note], list[Note]]]) -> Song:
    """Apply per-track (removed, added) lists in one new song."""
    tracks = list(song.tracks)
    for index, (removed, added) in changes.items():
        tracks[index] = tracks[index].with_notes(tracks[index].notes.with_notes(added=added, removed=removed))
    return song.replace(tracks=tuple(tracks))


def clamp_note(note: Note) -> Note:
    return Note(max(0, int(note.start)), min(127, max(0, int(note.pitch))), max(1, int(note.duration)),
                min(127, max(1, int(note.velocity))))  # fmt: skip


def add_notes(song: Song, refs: Iterable[NoteRef]) -> tuple[Song, list[NoteRef]]:
    added = [NoteRef(ref.track, clamp_note(Note(*ref.note))) for ref in refs]
    changes = {track: ([], notes) for track, notes in _by_track(added).items()}
    return _replace_notes(song, changes), added


def delete_notes(song: Song, refs: Iterable[NoteRef]) -> Song:
    return _replace_notes(song, {track: (notes, []) for track, notes in _by_track(refs).items()})


def map_notes(song: Song, refs: Iterable[NoteRef], change) -> tuple[Song, list[NoteRef]]:
    """Replace each referenced note by ``change(note)`` (clamped to valid values)."""
    refs = list(refs)
    moved = [NoteRef(ref.track, clamp_note(change(Note(*ref.note)))) for ref in refs]
    changes: dict[int, tuple[list[Note], list[Note]]] = defaultdict(lambda: ([], []))
    for old, new in zip(refs, moved, strict=True):
        changes[old.track][0].append(Note(*old.note))
        changes[new.track][1].append(new.note)
    return _replace_notes(song, dict(changes)), moved


def move_notes(song: Song, refs: Iterable[NoteRef], ticks: int, semitones: int) -> tuple[Song, list[NoteRef]]:
    refs = list(refs)
    if refs:  # a group keeps its shape: the earliest note stops at tick 0, the pitches at 0 and 127
        ticks = max(ticks, -min(ref.note.start for ref in refs))
        semitones = int(np.clip(semitones, -min(r.note.pitch for r in refs), 127 - max(r.note.pitch for r in refs)))
    return map_notes(song, refs, lambda n: n._replace(start=n.start + ticks, pitch=n.pitch + semitones))


def resize_notes(song: Song, refs: Iterable[NoteRef], ticks: int, minimum: int = 1) -> tuple[Song, list[NoteRef]]:
    return map_notes(song, refs, lambda n: n._replace(duration=max(minimum, n.duration + ticks)))


def set_velocity(song: Song, refs: Iterable[NoteRef], velocity: int) -> tuple[Song, list[NoteRef]]:
    return map_notes(song, refs, lambda n: n._replace(velocity=velocity))


def set_velocities(song: Song, velocities: dict[NoteRef, int]) -> tuple[Song, list[NoteRef]]:
    """Each note at its own velocity (clamped to 1-127)."""
    refs = list(velocities)
    levels = iter(velocities[ref] for ref in refs)
    return map_notes(song, refs, lambda n: n._replace(velocity=next(levels)))


def quantize_notes(song: Song, refs: Iterable[NoteRef], grid: int, lengths: bool = True, strength: float = 1.0,
                   swing: float = 0.0) -> tuple[Song, list[NoteRef]]:  # fmt: skip
    """Move starts (and, with ``lengths``, ends) ``strength`` of the way to the nearest grid line.

    Grid lines are the multiples of ``grid`` ticks, every second one moved later by
    ``swing`` × a third of a grid step (1: a triplet feel). A note keeps at least one tick,
    and at full strength at least one grid step."""
    offset = swing * grid / 3

    def line(tick: float) -> float:
        index = round((tick - offset / 2) / grid)  # the nearest of the swung lines
        return index * grid + (offset if index % 2 else 0)

    def snap(note: Note) -> Note:
        start = round(note.start + strength * (line(note.start) - note.start))
        if not lengths:
            return note._replace(start=max(0, start))
        end = note.start + note.duration
        target = max(line(end), line(note.start) + grid)
        end = round(end + strength * (target - end))
        return note._replace(start=max(0, start), duration=max(1, end - start))

    return map_notes(song, refs, snap)


def duplicate_notes(song: Song, refs: Iterable[NoteRef]) -> tuple[Song, list[NoteRef]]:
    """Copies of the notes right after them: as many whole bars later as the bars they start
    in (a phrase in bars 3-4 is copied into bars 5-6), each into its own track."""
    refs = list(refs)
    if not refs:
        return song, []
    first_tick, last_tick = min(r.note.start for r in refs), max(r.note.start for r in refs)
    starts = song.bar_starts(last_tick)  # up to the bar of the last onset
    first = bisect.bisect_right(starts, first_tick) - 1
    last_bar = int(song.time_signature_at(starts[-1]).bar_ticks(song.resolution))
    after = song.bar_starts(starts[-1] + last_bar)[len(starts)]  # where the bar after them starts
    offset = after - starts[first]
    return add_notes(song, [NoteRef(r.track, r.note._replace(start=r.note.start + offset)) for r in refs])


def humanize_notes(song: Song, refs: Iterable[NoteRef], timing: int, velocity: int,
                   seed: int = 0) -> tuple[Song, list[NoteRef]]:  # fmt: skip
    """Each note up to ``timing`` ticks early or late and ``velocity`` softer or louder, at
    random (the same ``seed``, the same result); never before tick 0 or outside 1-127."""
    refs = sorted(refs)
    rng = np.random.default_rng(seed)
    shifts = iter(rng.integers(-timing, timing + 1, len(refs)).tolist())
    levels = iter(rng.integers(-velocity, velocity + 1, len(refs)).tolist())
    return map_notes(song, refs, lambda n: n._replace(start=n.start + next(shifts), velocity=n.velocity + next(levels)))


def paste_notes(
    song: Song, clipboard: list[NoteRef], at_tick: int, track: int | None = None
) -> tuple[Song, list[NoteRef]]:
    """Paste copied notes so the earliest starts at ``at_tick``; into ``track`` when given
    (every note), otherwise each into the track it was copied from (when it still exists)."""
    if not clipboard:
        return song, []
    offset = at_tick - min(ref.note.start for ref in clipboard)
    targets = []
    for ref in clipboard:
        index = track if track is not None else ref.track
        if 0 <= index < len(song.tracks):
            targets.append(NoteRef(index, ref.note._replace(start=ref.note.start + offset)))
    return add_notes(song, targets)


def set_conductor(song: Song, tick: int, qpm: float, numerator: int, denominator: int,
                  key: tuple[int, bool] | None) -> Song:  # fmt: skip
    """The tempo, metre and key from ``tick`` on (each replacing a change at that tick, added
    only where it differs from what is in force there; ``key`` None keeps the key map)."""
    tempo = TempoChange(tick, round(60_000_000 / qpm))
    in_force = [t for t in song.tempos if t.tick < tick]
    tempos = [t for t in song.tempos if t.tick != tick]
    if round(in_force[-1].qpm if in_force else 120.0, 3) != round(qpm, 3) or tick == 0:
        tempos.append(tempo)
    metre = TimeSignature(tick, numerator, denominator)
    before = song.time_signature_at(tick - 1) if tick else None
    metres = [ts for ts in song.time_signatures if ts.tick != tick]
    if before is None or (before.numerator, before.denominator) != (numerator, denominator):
        metres.append(metre)
    keys = list(song.key_signatures)
    if key is not None:
        keys = [k for k in keys if k.tick != tick] + [KeySignature(tick, key[0], key[1])]
    return song.replace(tempos=tuple(sorted(tempos)), time_signatures=tuple(sorted(metres)),
                        key_signatures=tuple(sorted(keys)))  # fmt: skip


def notes_in(song: Song, tracks: Iterable[int], start: int, stop: int, low: int = 0, high: int = 127) -> list[NoteRef]:
    """Notes of ``tracks`` that overlap ticks [start, stop) with a pitch in [low, high]."""
    found = []
    for index in tracks:
        data = song.tracks[index].notes.array
        hit = (data[:, 0] < stop) & (data[:, 0] + data[:, 2] > start) & (data[:, 1] >= low) & (data[:, 1] <= high)
        found += [NoteRef(index, Note(*row)) for row in data[hit].tolist()]
    return found


# --- tracks ---------------------------------------------------------------------------------
def add_track(song: Song, track: Track, index: int | None = None) -> Song:
    tracks = list(song.tracks)
    tracks.insert(len(tracks) if index is None else index, track)
    return song.replace(tracks=tuple(tracks))


def remove_track(song: Song, index: int) -> Song:
    return song.replace(tracks=song.tracks[:index] + song.tracks[index + 1 :])


def update_track(song: Song, index: int, **changes: object) -> Song:
    from dataclasses import replace

    tracks = list(song.tracks)
    tracks[index] = replace(tracks[index], **changes)
    return song.replace(tracks=tuple(tracks))


def move_track(song: Song, index: int, to: int) -> Song:
    tracks = list(song.tracks)
    tracks.insert(to, tracks.pop(index))
    return song.replace(tracks=tuple(tracks))


def track_order_after_move(count: int, index: int, to: int) -> list[int]:
    """old index of each new position after `move_track` (to remap per-track state)."""
    order = list(range(count))
    order.insert(to, order.pop(index))
    return order


def keep_ranges(song: Song, tracks: Iterable[int] | None, start: int | None, stop: int | None) -> Song:
    """The song with only ``tracks`` (all when None) and only notes starting in [start, stop)
    (shifted so ``start`` is tick 0); the maps move with them. For exporting a part."""
    chosen = [song.tracks[i] for i in (range(len(song.tracks)) if tracks is None else tracks)]
    if start is None:
        return song.replace(tracks=tuple(chosen))
    stop = song.end_tick + 1 if stop is None else stop
    kept = []
    for track in chosen:
        data = track.notes.array
        inside = data[(data[:, 0] >= start) & (data[:, 0] < stop)].copy()
        inside[:, 0] -= start
        inside[:, 2] = np.minimum(inside[:, 2], stop - start - inside[:, 0])
        kept.append(track.with_notes(NoteArray(inside)))

    def shift(events):
        before = [e for e in events if e.tick <= start]
        after = [e._replace(tick=e.tick - start) for e in events if start < e.tick < stop]
        return ([before[-1]._replace(tick=0)] if before else []) + after

    texts = tuple(text._replace(tick=text.tick - start) for text in song.texts if start <= text.tick < stop)
    return song.replace(tracks=tuple(kept), tempos=tuple(shift(song.tempos)),
                        time_signatures=tuple(shift(song.time_signatures)),
                        key_signatures=tuple(shift(song.key_signatures)), texts=texts)  # fmt: skip
