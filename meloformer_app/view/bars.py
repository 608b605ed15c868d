"""Where the bars of a song start, for painting: only the bars in view, found directly (Qt-free).

`Song.bar_starts` walks from tick 0 to the tick asked for, one bar at a time. The grid
and the ruler repaint many times a second, so walking from the start to the view made
scrolling near the end of a long file (30,000 bars, or one note 2**31 ticks in) take
seconds a frame. Between two metre changes the bars are evenly spaced, so the first bar
in view is one division away; `BarMap` keeps one segment per metre and answers the same
bar starts `Song.bar_starts` gives.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from fractions import Fraction

from meloformer_core.music import Song


@dataclass(frozen=True)
class _Segment:
    start: int  # the tick of the metre change (0 for the first segment)
    bar_ticks: Fraction  # one bar of this metre (a fraction for odd resolutions)
    first_number: int  # the 0-based number of the segment's first bar in the song


class BarMap:
    """The song's bars as evenly spaced runs, one per metre change.

    As in `Song.bar_starts`: a metre change inside a bar starts a new bar there, several
    changes at one tick count as the last, and a fractional bar start is rounded down.
    """

    def __init__(self, song: Song) -> None:
        by_tick = {ts.tick: ts for ts in song.time_signatures if ts.tick > 0}  # the last at a tick wins
        metres = [(0, song.time_signature_at(0)), *sorted(by_tick.items())]
        self.segments: list[_Segment] = []
        number = 0
        for index, (start, metre) in enumerate(metres):
            bar_ticks = metre.bar_ticks(song.resolution)
            self.segments.append(_Segment(start, bar_ticks, number))
            if index + 1 < len(metres):
                number += math.ceil((metres[index + 1][0] - start) / bar_ticks)
        self._starts = [segment.start for segment in self.segments]

    def bar_at(self, tick: float) -> tuple[int, int]:
        """(0-based number, start tick) of the bar that holds ``tick``, found directly."""
        segment = self.segments[max(0, bisect.bisect_right(self._starts, tick) - 1)]
        j = max(0, math.floor((tick - segment.start) / segment.bar_ticks))
        if j and math.floor(segment.start + j * segment.bar_ticks) > tick:  # a rounded-down start past the tick
            j -= 1
        return segment.first_number + j, math.floor(segment.start + j * segment.bar_ticks)

    def bar_ticks_at(self, tick: float) -> Fraction:
        """The length of the bar that holds ``tick``."""
        return self.segments[max(0, bisect.bisect_right(self._starts, tick) - 1)].bar_ticks

    def between(self, first_tick: float, last_tick: float, min_gap_ticks: float = 0.0) -> list[tuple[int, int]]:
        """(0-based bar number, start tick) of the bars starting in [first_tick, last_tick].

        Where bars are closer than ``min_gap_ticks`` (zoomed far out, or a 1/128 bar at one
        tick per quarter), only every n-th bar of a metre is given, its first always
        included, so a view never asks for more bars than it has room to draw.
        """
        found: list[tuple[int, int]] = []
        index = max(0, bisect.bisect_right(self._starts, first_tick) - 1)
        for position, segment in enumerate(self.segments[index:], start=index):
            if segment.start > last_tick:
                break
            end = self.segments[position + 1].start if position + 1 < len(self.segments) else math.inf
            stride = max(1, math.ceil(min_gap_ticks / segment.bar_ticks)) if min_gap_ticks > 0 else 1
            count = math.inf if end == math.inf else math.ceil((end - segment.start) / segment.bar_ticks)
            # the bar numbers j (within the segment) whose rounded-down start can lie in the window
            low = max(0, math.floor((first_tick - segment.start) / segment.bar_ticks))
            high = min(count - 1, math.floor((last_tick + 1 - segment.start) / segment.bar_ticks))
            for j in range(-(-low // stride) * stride, int(high) + 1, stride):
                tick = math.floor(segment.start + j * segment.bar_ticks)
                if first_tick <= tick <= last_tick:
                    found.append((segment.first_number + j, tick))
        return found
