"""The document: the one `Song` being edited, plus what the editor shows about it.

Qt-free, so it is tested on its own. The app changes it only through undoable commands
(`meloformer_app.commands`), each of which swaps a whole `State` (song, per-track view
flags, generated region): a `Song` is immutable, so the previous state is the undo.
Listeners are plain callables told which parts changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from meloformer_app.document.edits import NoteRef
from meloformer_core.music import Song, rows_in

# Track colours, in the order tracks get them: each is as far (CIE L*a*b* distance) from
# every colour before it as the candidates allow, all of medium lightness (seen on the dark
# and the light theme), so the first tracks of a band are told apart at a glance
PALETTE = ("#4f9de0", "#30bf30", "#f25555", "#f255f2", "#f2be55", "#30bfa7", "#f29dd6", "#f2ac9d",
           "#aacc66", "#9966cc", "#f255a4", "#55d8f2", "#cc6677", "#f28955", "#a455f2", "#30bf78")  # fmt: skip


@dataclass(frozen=True)
class TrackView:
    """How the editor treats one track (kept in step with the song's tracks)."""

    colour: str
    muted: bool = False
    solo: bool = False
    generate: bool = False  # "write this track" when arranging (a track added in the app starts ticked)
    # an empty track of the file: its row is folded while it has no notes, and the model
    # does not hear it unless it is asked to write it (`for_the_model`)
    collapsed: bool = False


@dataclass(frozen=True)
class State:
    song: Song
    views: tuple[TrackView, ...]
    generated: tuple[int, int] | None = None  # tick range of the last generated bars


def folded(song: Song, views: tuple[TrackView, ...], track: int) -> bool:
    """Whether ``track`` is an empty track of the file that stays folded (no notes yet)."""
    return views[track].collapsed and not len(song.tracks[track].notes)


def for_the_model(song: Song, views: tuple[TrackView, ...], targets: tuple[int, ...]) -> tuple[Song, tuple[int, ...]]:
    """(``song`` without its folded empty tracks, the indices of the tracks it keeps): a
    setup or placeholder track of the file is not music for the model to continue (it would
    write a piano part into it), unless it is one of the ``targets`` to write."""
    kept = tuple(i for i in range(len(song.tracks)) if i in targets or not folded(song, views, i))
    return song.replace(tracks=tuple(song.tracks[i] for i in kept)), kept


def from_the_model(result: Song, song: Song, kept: tuple[int, ...]) -> Song:
    """``result`` (of `for_the_model`'s song) with ``song``'s tracks left out put back in their places."""
    tracks = list(song.tracks)
    for index, track in zip(kept, result.tracks, strict=False):
        tracks[index] = track
    return result.replace(tracks=(*tracks, *result.tracks[len(kept) :]))


def views_for(count: int, views: tuple[TrackView, ...] = (), generate: bool = False) -> tuple[TrackView, ...]:
    """Views for ``count`` tracks: the given ones first, then new ones in palette colours,
    ticked for arranging when ``generate``."""
    new = range(len(views), count)
    return views[:count] + tuple(TrackView(PALETTE[i % len(PALETTE)], generate=generate) for i in new)


@dataclass
class Document:
    state: State = field(default_factory=lambda: State(Song(), ()))
    path: Path | None = None
    selection: frozenset[NoteRef] = frozenset()
    clean_state: State | None = None  # the state last saved (or opened): anything else is dirty
    listeners: list[Callable[[set[str]], None]] = field(default_factory=list)

    @classmethod
    def from_song(cls, song: Song, path: Path | None = None) -> Document:
        views = tuple(replace(view, collapsed=not len(track.notes))
                      for view, track in zip(views_for(len(song.tracks)), song.tracks, strict=True))  # fmt: skip
        state = State(song, views)
        return cls(state=state, path=path, clean_state=state)

    @property
    def song(self) -> Song:
        return self.state.song

    @property
    def views(self) -> tuple[TrackView, ...]:
        return self.state.views

    @property
    def dirty(self) -> bool:
        return self.state is not self.clean_state and self.state != self.clean_state

    @property
    def title(self) -> str:
        name = self.path.name if self.path else "Untitled"
        return f"{name}{' *' if self.dirty else ''}"

    def notify(self, parts: set[str]) -> None:
        for listener in list(self.listeners):
            listener(parts)

    def set_state(self, state: State) -> None:
        """Used by undo commands only."""
        parts = {"song"} if state.song is not self.state.song else set()

        def headers(song: Song) -> list[tuple]:
            return [(t.name, t.program, t.is_drum) for t in song.tracks]

        if state.views != self.state.views or headers(state.song) != headers(self.state.song):
            parts.add("tracks")
        if state.generated != self.state.generated:
            parts.add("generated")
        self.state = state
        self.selection = self._existing(self.selection)
        self.notify(parts | {"dirty"})

    def _existing(self, refs: frozenset[NoteRef]) -> frozenset[NoteRef]:
        kept: set[NoteRef] = set()
        for track in {ref.track for ref in refs if ref.track < len(self.song.tracks)}:
            asked = [ref for ref in refs if ref.track == track]
            found = rows_in(np.array([tuple(ref.note) for ref in asked]), self.song.tracks[track].notes.array)
            kept.update(ref for ref, there in zip(asked, found, strict=True) if there)
        return frozenset(kept)

    def select(self, refs, add: bool = False) -> None:
        refs = frozenset(refs)
        self.selection = (self.selection | refs) if add else refs
        self.notify({"selection"})

    def mark_clean(self, path: Path | None = None) -> None:
        if path is not None:
            self.path = path
        self.clean_state = self.state
        self.notify({"dirty"})

    def with_song(self, song: Song) -> State:
        """The current state with ``song``; its tracks keep their views, new tracks get one."""
        return replace(self.state, song=song, views=views_for(len(song.tracks), self.state.views))

    def audible_tracks(self) -> list[int]:
        """Tracks to play: the solo ones if any, else every track not muted."""
        solo = [i for i, view in enumerate(self.views) if view.solo]
        return solo or [i for i, view in enumerate(self.views) if not view.muted]
