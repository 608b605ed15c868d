"""Where things are on screen: the piano roll's zoom, scroll and grid (Qt-free).

x grows with ticks, y grows downwards as pitch falls (pitch 127 at the top). The snap
grid follows the zoom: the finest note value whose cells are at least ``MIN_CELL_PX``
wide, straight or triplet, unless the user fixes one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

MIN_CELL_PX = 10.0
# note values as fractions of a quarter note (1 = quarter, 1/4 = sixteenth)
STRAIGHT = (Fraction(4), Fraction(2), Fraction(1), Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), Fraction(1, 16))
GRID_CHOICES = {
    "Auto": None, "1/1": Fraction(4), "1/2": Fraction(2), "1/4": Fraction(1), "1/8": Fraction(1, 2),
    "1/16": Fraction(1, 4), "1/32": Fraction(1, 8), "1/4T": Fraction(2, 3), "1/8T": Fraction(1, 3),
    "1/16T": Fraction(1, 6),
}  # fmt: skip


@dataclass
class Viewport:
    resolution: int = 480  # ticks per quarter of the song shown
    px_per_tick: float = 0.1  # horizontal zoom
    key_height: float = 12.0  # vertical zoom: pixels per semitone
    left_tick: float = 0.0  # horizontal scroll
    top_pitch: float = 96.0  # vertical scroll: the pitch at the top edge (fractional)
    grid_choice: str = "Auto"
    triplets: bool = False
    # Only these pitches, one row each, ascending (a drum track's used kit pieces), or every
    # pitch (None). With rows, ``top_pitch`` counts rows, not semitones.
    rows: tuple[int, ...] | None = None
    _row_of: np.ndarray = field(default_factory=lambda: np.arange(128, dtype=float), repr=False, compare=False)
    _linear_top: float = field(default=96.0, repr=False, compare=False)

    # --- mapping ----------------------------------------------------------------------
    def x(self, tick: float) -> float:
        return (tick - self.left_tick) * self.px_per_tick

    def tick_at(self, x: float) -> float:
        return self.left_tick + x / self.px_per_tick

    def y(self, pitch):
        """Top edge of the row of ``pitch`` (a number or an array); the row is ``key_height``
        tall. A pitch without a row (rows shown) is NaN."""
        if self.rows is None:
            return (self.top_pitch - pitch) * self.key_height
        row = self._row_of[np.clip(np.asarray(pitch, dtype=np.int64), 0, 127)]
        return (self.top_pitch - row) * self.key_height

    def pitch_at(self, y: float) -> int:
        row = math.ceil(self.top_pitch - y / self.key_height)  # the row of p spans [y(p), y(p) + key_height)
        if self.rows is None:
            return row
        return self.rows[min(max(row, 0), len(self.rows) - 1)]

    @property
    def span(self) -> int:
        """How many rows there are: 128 pitches, or the rows shown."""
        return 128 if self.rows is None else len(self.rows)

    def pitches_between(self, top_y: float, bottom_y: float) -> list[int]:
        """The pitches with a row between ``top_y`` and ``bottom_y``, low to high."""
        low, high = self.pitch_at(bottom_y), self.pitch_at(top_y)
        if self.rows is None:
            return list(range(max(0, low), min(127, high) + 1))
        return [pitch for pitch in self.rows if low <= pitch <= high]

    def show_rows(self, rows: tuple[int, ...] | None) -> None:
        """Show only ``rows`` (ascending pitches) from the top, or every pitch again where the
        view was before."""
        rows = tuple(rows) if rows else None
        if rows == self.rows:
            return
        if self.rows is None:
            self._linear_top = self.top_pitch
        self.rows = rows
        if rows is None:
            self._row_of = np.arange(128, dtype=float)
            self.top_pitch = self._linear_top
            return
        self._row_of = np.full(128, np.nan)
        self._row_of[list(rows)] = np.arange(len(rows))
        self.top_pitch = float(len(rows) - 1)  # the highest row at the top edge

    # --- grid -------------------------------------------------------------------------
    def grid_ticks(self) -> int:
        """The snap grid in ticks, following the zoom when the choice is Auto."""
        fixed = GRID_CHOICES.get(self.grid_choice)
        if fixed is not None:
            return max(1, round(fixed * self.resolution))
        values = [v * Fraction(2, 3) for v in STRAIGHT] if self.triplets else list(STRAIGHT)
        chosen = values[0]
        for value in values:
            if value * self.resolution * self.px_per_tick >= MIN_CELL_PX:
                chosen = value
        return max(1, round(chosen * self.resolution))

    def snap(self, tick: float, grid: int | None = None, enabled: bool = True) -> int:
        if not enabled:
            return max(0, round(tick))
        grid = grid or self.grid_ticks()
        return max(0, int(tick // grid) * grid)

    def snap_nearest(self, tick: float, enabled: bool = True) -> int:
        if not enabled:
            return round(tick)
        grid = self.grid_ticks()
        return round(tick / grid) * grid

    def zoom_x(self, factor: float, anchor_x: float) -> None:
        """Zoom around the tick under ``anchor_x`` (it stays under the cursor)."""
        anchor_tick = self.tick_at(anchor_x)
        self.px_per_tick = min(4.0, max(0.002, self.px_per_tick * factor))
        self.left_tick = max(0.0, anchor_tick - anchor_x / self.px_per_tick)

    def zoom_y(self, factor: float, anchor_y: float) -> None:
        anchor = self.top_pitch - anchor_y / self.key_height
        self.key_height = min(40.0, max(3.0, self.key_height * factor))
        self.top_pitch = anchor + anchor_y / self.key_height
