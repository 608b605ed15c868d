"""Placing generated bars into a `Song`: the grid's steps back to the song's own ticks,
its notes, tempo, metre and key changes kept as they were."""

from __future__ import annotations

import numpy as np

from meloformer_core.encoding.grid import GridSong, in_force
from meloformer_core.encoding.quantize import tick_of_step, us_per_quarter, velocity_value
from meloformer_core.encoding.vocab import STEPS_PER_QUARTER
from meloformer_core.music import KeySignature, Note, NoteArray, Song, TempoChange, TimeSignature


def written_region(song: Song, grid: GridSong, new: GridSong, first_bar: int) -> tuple[int, int]:
    """The ticks [start, end) that the bars of ``new``, placed from ``first_bar`` of ``grid``
    (`place_bars`), take in ``song``."""
    origin = int(grid.bar_starts[min(first_bar, grid.bar_count)])
    return tick_of_step(origin, song.resolution), tick_of_step(origin + int(new.bar_starts[-1]), song.resolution)


def place_bars(song: Song, grid: GridSong, new: GridSong, first_bar: int, replace: set[int] = frozenset()) -> Song:
    """``song`` with the bars of ``new`` (a grid slice starting at step 0) placed from ``first_bar`` of ``grid``.

    ``grid`` is ``to_grid(song)``. Notes of ``new`` go to their tracks; when ``replace`` is
    given, only those slots change: their notes inside those bars are taken from ``new``
    (the old ones are removed). Every other note and map event of the song is kept as it was. Metre, tempo
    and key events of ``new`` are added where they change the song's.
    """
    origin = int(grid.bar_starts[min(first_bar, grid.bar_count)])
    span_end = origin + int(new.bar_starts[-1])
    resolution = song.resolution

    def tick(step: int) -> int:
        return tick_of_step(origin + step, resolution)

    tracks = list(song.tracks)
    notes = new.notes
    for slot, track in enumerate(tracks):
        old = track.notes
        if slot in replace and len(old):
            steps = (old.starts * 2 * STEPS_PER_QUARTER + resolution) // (2 * resolution)  # as `to_grid` rounds
            inside = (steps >= origin) & (steps < span_end)
            old = NoteArray(old.array[~inside])
        if replace and slot not in replace:
            continue  # a kept track: its notes in ``new`` are the song's own, already there
        rows = notes[notes[:, 0] == slot]
        if slot not in replace and not len(rows):
            continue
        if first_bar + new.bar_count < grid.bar_count:  # music follows: no note hangs into it
            rows = rows.copy()
            rows[:, 3] = np.minimum(rows[:, 3], int(new.bar_starts[-1]) - rows[:, 1])
        added = [
            Note(tick(int(onset)), int(pitch), max(1, round(int(duration) * resolution / STEPS_PER_QUARTER)),
                 int(velocity_value(vel)))
            for _, onset, pitch, duration, vel in rows.tolist()
        ]  # fmt: skip
        tracks[slot] = track.with_notes(old.concatenate(NoteArray(added)))
    tempo_in_force = in_force(grid.tempos, origin)[1]
    tempos = list(song.tempos)
    for step, tenths in new.tempos:
        if (step == 0 and tenths == tempo_in_force) or any(t[0] == origin + step for t in grid.tempos):
            continue  # restated by the window, or already the song's
        tempos.append(TempoChange(tick(step), us_per_quarter(tenths)))
    metre_in_force = in_force(grid.time_signatures, first_bar)[1:]
    signatures = list(song.time_signatures)
    for bar, numerator, denominator in new.time_signatures:
        if (bar == 0 and (numerator, denominator) == metre_in_force) or first_bar + bar < grid.bar_count:
            continue
        signatures.append(TimeSignature(tick(int(new.bar_starts[bar])), numerator, denominator))
    key = in_force(grid.keys, first_bar)
    key_in_force = key[1:] if key else None
    keys = list(song.key_signatures)
    for bar, sharps, minor in new.keys:
        if (bar == 0 and (sharps, minor) == key_in_force) or first_bar + bar < grid.bar_count:
            continue
        keys.append(KeySignature(tick(int(new.bar_starts[bar])), sharps, minor))
    return song.replace(
        tracks=tuple(tracks), tempos=tuple(tempos), time_signatures=tuple(signatures), key_signatures=tuple(keys)
    )
