"""A song on the grid (`GridSong`): what the tokens say, before ticks are put back; and
`in_force`, the one way to ask which metre, tempo or key holds at a bar or a step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Event = TypeVar("Event", bound=tuple)


@dataclass(frozen=True)
class GridSong:
    """A song on the grid: what the tokens say, before ticks are put back."""

    bar_starts: np.ndarray  # (bars + 1,) int64 steps; the last entry is the end of the last bar
    time_signatures: list[tuple[int, int, int]]  # (bar, numerator, denominator)
    tempos: list[tuple[int, int]]  # (step, tenths of a quarter note per minute)
    keys: list[tuple[int, int, bool]]  # (bar, sharps, minor)
    instruments: list[tuple[int, bool]]  # (program, is_drum) of each track slot
    # (n, 5) int64: slot, onset step, pitch, duration steps, velocity bin;
    # sorted by (slot, onset, pitch), which is unique
    notes: np.ndarray

    @property
    def bar_count(self) -> int:
        return len(self.bar_starts) - 1


def in_force(events: list[Event], at: int) -> Event | None:
    """The last of ``events`` (tuples ordered by their first item: a bar or a step) at or
    before ``at``, or None when none is."""
    found = None
    for event in events:
        if event[0] > at:
            break
        found = event
    return found
