"""The notes of a song as flat numpy columns, for fast drawing and hit tests (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meloformer_app.document.edits import NoteRef
from meloformer_core.music import Note, Song, rows_in


@dataclass(frozen=True)
class NoteTable:
    track: np.ndarray  # (n,) track index of each note
    data: np.ndarray  # (n, 4) start, pitch, duration, velocity

    @classmethod
    def of(cls, song: Song) -> NoteTable:
        arrays = [t.notes.array for t in song.tracks]
        if not arrays or not sum(len(a) for a in arrays):
            return cls(np.zeros(0, np.int64), np.zeros((0, 4), np.int64))
        track = np.concatenate([np.full(len(a), i, np.int64) for i, a in enumerate(arrays)])
        return cls(track, np.concatenate(arrays))

    def __len__(self) -> int:
        return len(self.track)

    def visible(self, first_tick: float, last_tick: float, low: float, high: float) -> np.ndarray:
        """Indices of notes that overlap the given tick and pitch window."""
        start, pitch, end = self.data[:, 0], self.data[:, 1], self.data[:, 0] + self.data[:, 2]
        return np.flatnonzero((start <= last_tick) & (end >= first_tick) & (pitch >= low) & (pitch <= high))

    def ref(self, index: int) -> NoteRef:
        return NoteRef(int(self.track[index]), Note(*self.data[index].tolist()))

    def hit(self, tick: float, pitch: int, tracks: set[int] | None, slack_ticks: float = 0.0) -> int | None:
        """The note under (tick, pitch) in ``tracks`` (all when None); the latest-starting wins."""
        start, end = self.data[:, 0], self.data[:, 0] + self.data[:, 2]
        mask = (self.data[:, 1] == pitch) & (start <= tick) & (end + slack_ticks > tick)
        if tracks is not None:
            mask &= np.isin(self.track, list(tracks))
        found = np.flatnonzero(mask)
        return int(found[np.argmax(start[found])]) if len(found) else None

    def in_rect(self, t0: float, t1: float, p0: int, p1: int, tracks: set[int] | None) -> list[NoteRef]:
        start, end, pitch = self.data[:, 0], self.data[:, 0] + self.data[:, 2], self.data[:, 1]
        mask = (start < t1) & (end > t0) & (pitch >= p0) & (pitch <= p1)
        if tracks is not None:
            mask &= np.isin(self.track, list(tracks))
        return [self.ref(int(i)) for i in np.flatnonzero(mask)]

    def mask_of(self, refs: frozenset[NoteRef]) -> np.ndarray:
        """Boolean mask of the notes in ``refs``."""
        wanted = np.array([(ref.track, *ref.note) for ref in refs], dtype=np.int64).reshape(-1, 5)
        return rows_in(np.column_stack([self.track, self.data]), wanted)


DENSE = 4000  # more shapes than this in view are merged per pixel (see `one_per_pixel`)


def one_per_pixel(width: int, *columns: np.ndarray) -> np.ndarray:
    """Indices of the shapes to draw when many land on the same pixels: one per distinct set
    of ``columns`` (pixel coordinates; the first two are x, clipped to the widget's ``width``).

    A bar of 100,000 notes made a repaint build and draw 100,000 shapes (a quarter of a
    second); rounded to the pixels the painter fills anyway, they are a few thousand.
    """
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for index, column in enumerate(columns):
        values = np.round(column).astype(np.int64)
        values = np.clip(values, -2, width + 2) + 2 if index < 2 else values - values.min()
        key = key * (int(values.max()) + 1) + values
    return np.unique(key, return_index=True)[1]
