"""The editor: turns every gesture and action into one undoable command on the document.

A command swaps whole document states (the `Song` is immutable, so the state before an
edit is its undo). Views call the editor; the editor tells them to repaint through
``changed``. While a generation runs, ``preview`` is shown instead of the document's
song, and the document itself is untouched until the result is accepted.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QUndoCommand, QUndoStack

from meloformer_app.document import edits
from meloformer_app.document.edits import NoteRef
from meloformer_app.document.model import Document, State, TrackView, views_for
from meloformer_core.music import Note, Song, Track


class StateCommand(QUndoCommand):
    def __init__(self, document: Document, before: State, after: State, text: str,
                 selection: frozenset[NoteRef] | None = None) -> None:  # fmt: skip
        super().__init__(text)
        self.document, self.before, self.after = document, before, after
        self.selection_after = selection
        self.selection_before = document.selection

    def redo(self) -> None:
        self.document.set_state(self.after)
        if self.selection_after is not None:
            self.document.select(self.selection_after)

    def undo(self) -> None:
        self.document.set_state(self.before)
        self.document.select(self.selection_before)


class Editor(QObject):
    changed = Signal(set)  # which parts: song, tracks, selection, generated, dirty, preview
    note_touched = Signal(int, int, int)  # track, key, velocity of a note clicked or drawn (to audition)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.document = Document.from_song(Song())
        self.document.listeners.append(self._document_changed)
        self.current_track: int | None = None  # the track being edited; others are ghosts
        self.preview: Song | None = None
        self.preview_generated: tuple[int, int] | None = None
        self.draw_velocity = 90
        self.clipboard: list[NoteRef] = []
        self.undo_stack.cleanChanged.connect(self._clean_changed)

    @Slot(bool)
    def _clean_changed(self, _clean: bool) -> None:
        self.changed.emit({"dirty"})

    # --- document -------------------------------------------------------------------------
    def open_song(self, song: Song, path: Path | None) -> None:
        self.document.listeners.clear()
        self.document = Document.from_song(song, path)
        self.document.listeners.append(self._document_changed)
        self.current_track = None
        self.preview = None
        self.undo_stack.clear()
        self.changed.emit({"song", "tracks", "selection", "generated", "dirty"})

    def _document_changed(self, parts: set[str]) -> None:
        if "tracks" in parts and self.current_track is not None and self.current_track >= len(self.document.views):
            self.current_track = None
        self.changed.emit(parts)

    def apply(self, state: State, text: str, selection: frozenset[NoteRef] | None = None) -> None:
        if state == self.document.state:
            return
        self.undo_stack.push(StateCommand(self.document, self.document.state, state, text, selection))

    def apply_song(self, song: Song, text: str, selection=None) -> None:
        self.apply(self.document.with_song(song), text, None if selection is None else frozenset(selection))

    # --- what the views read --------------------------------------------------------------
    def shown_song(self) -> Song:
        return self.preview if self.preview is not None else self.document.song

    def generated_range(self) -> tuple[int, int] | None:
        return self.preview_generated if self.preview is not None else self.document.state.generated

    def track_views(self) -> tuple[TrackView, ...]:
        views = self.document.views
        if self.preview is not None and len(self.preview.tracks) > len(views):
            return views_for(len(self.preview.tracks), views)
        return views

    def selection(self) -> frozenset[NoteRef]:
        return self.document.selection if self.preview is None else frozenset()

    def select(self, refs, add: bool = False) -> None:
        self.document.select(refs, add)

    def select_all(self) -> None:
        song = self.document.song
        tracks = range(len(song.tracks)) if self.current_track is None else [self.current_track]
        self.select(edits.notes_in(song, tracks, 0, song.end_tick + 1))

    def set_current_track(self, index: int | None) -> None:
        self.current_track = index
        self.changed.emit({"current"})

    def preview_note(self, note: Note, track: int) -> None:
        """A note was clicked or drawn: let it be heard."""
        self.note_touched.emit(track, int(note.pitch), int(note.velocity))

    # --- note edits -----------------------------------------------------------------------
    def draw_track(self) -> int | None:
        """The track a drawn note goes into: the current one, else the first; a new one if none."""
        if self.current_track is not None:
            return self.current_track
        if not self.document.song.tracks:
            self.add_track(Track("Piano", 0))
        return 0

    def add_note(self, track: int, note: Note) -> None:
        song, added = edits.add_notes(self.document.song, [NoteRef(track, note)])
        self.apply_song(song, "Draw note", added)

    def delete_notes(self, refs) -> None:
        self.apply_song(edits.delete_notes(self.document.song, refs), f"Delete {len(refs)} notes", ())

    def delete_selection(self) -> None:
        if self.document.selection:
            self.delete_notes(self.document.selection)

    def move_selection(self, ticks: int, semitones: int) -> None:
        if not self.document.selection:
            return
        song, moved = edits.move_notes(self.document.song, self.document.selection, ticks, semitones)
        what = "Transpose" if not ticks else "Move"
        self.apply_song(song, f"{what} {len(moved)} notes", moved)

    def resize_selection(self, ticks: int) -> None:
        song, resized = edits.resize_notes(self.document.song, self.document.selection, ticks)
        self.apply_song(song, f"Resize {len(resized)} notes", resized)

    def set_velocity(self, refs, velocity: int) -> None:
        song, changed = edits.set_velocity(self.document.song, refs, velocity)
        self.apply_song(song, f"Velocity {velocity}", changed)

    def set_velocities(self, velocities: dict, text: str) -> None:
        """Notes at velocities of their own (a scaled selection, a ramp), as one undo step."""
        song, changed = edits.set_velocities(self.document.song, velocities)
        self.apply_song(song, text, changed)

    def edit_scope(self) -> tuple[list[edits.NoteRef], str] | None:
        """What Quantize, Transpose and Humanize act on: the selected notes, else every note of
        the selected track, with words for it; None when neither is selected (never every
        track at once)."""
        song = self.document.song
        if self.document.selection:
            return sorted(self.document.selection), f"{len(self.document.selection)} selected notes"
        if self.current_track is None:
            return None
        track = song.tracks[self.current_track]
        refs = edits.notes_in(song, [self.current_track], 0, song.end_tick + 1)
        return refs, f"all {len(refs)} notes of track {self.current_track + 1} ({track.name})"

    def quantize(self, refs, what: str, grid: int, strength: float = 1.0, swing: float = 0.0,
                 lengths: bool = True) -> None:  # fmt: skip
        song, snapped = edits.quantize_notes(self.document.song, refs, grid, lengths, strength, swing)
        self.apply_song(song, f"Quantize {what}", snapped)

    def transpose(self, refs, what: str, semitones: int) -> None:
        song, moved = edits.move_notes(self.document.song, refs, 0, semitones)
        self.apply_song(song, f"Transpose {what} by {semitones:+d}", moved)

    def humanize(self, refs, what: str, timing: int, velocity: int, seed: int) -> None:
        song, changed = edits.humanize_notes(self.document.song, refs, timing, velocity, seed)
        self.apply_song(song, f"Humanize {what}", changed)

    def set_conductor(self, tick: int, qpm: float, numerator: int, denominator: int, key, bar: int) -> None:
        """Tempo, metre and key from ``tick`` (the start of ``bar``, 1-based) on, one undo step."""
        song = edits.set_conductor(self.document.song, tick, qpm, numerator, denominator, key)
        self.apply_song(song, f"Tempo, metre and key at bar {bar}")

    def duplicate_selection(self) -> None:
        """Copies of the selected notes in the bars right after theirs, selected."""
        song, copies = edits.duplicate_notes(self.document.song, self.document.selection)
        if copies:
            self.apply_song(song, f"Duplicate {len(copies)} notes", copies)

    def copy(self) -> None:
        self.clipboard = sorted(self.document.selection)

    def cut(self) -> None:
        self.copy()
        self.delete_selection()

    def paste(self, at_tick: int) -> None:
        song, pasted = edits.paste_notes(self.document.song, self.clipboard, at_tick, self.current_track)
        if pasted:
            self.apply_song(song, f"Paste {len(pasted)} notes", pasted)

    # --- track edits ----------------------------------------------------------------------
    def add_track(self, track: Track) -> None:
        """Add ``track`` last, ticked for arranging: a track added to be written is the usual case."""
        state = self.document.state
        views = views_for(len(state.views) + 1, state.views, generate=True)
        self.apply(State(edits.add_track(state.song, track), views, state.generated), f"Add track {track.name}")

    def remove_track(self, index: int) -> None:
        state = self.document.state
        views = state.views[:index] + state.views[index + 1 :]
        name = state.song.tracks[index].name
        self.apply(State(edits.remove_track(state.song, index), views, state.generated), f"Remove track {name}", ())

    def update_track(self, index: int, **changes) -> None:
        state = self.document.state
        what = ", ".join(changes)
        song = edits.update_track(state.song, index, **changes)
        self.apply(State(song, state.views, state.generated), f"Change track {index + 1} {what}")

    def move_track(self, index: int, to: int) -> None:
        state = self.document.state
        if not 0 <= to < len(state.views) or index == to:
            return
        order = edits.track_order_after_move(len(state.views), index, to)
        views = tuple(state.views[i] for i in order)
        self.apply(State(edits.move_track(state.song, index, to), views, state.generated), "Move track", ())
        if self.current_track == index:
            self.set_current_track(to)

    def set_view(self, index: int, **changes) -> None:
        """Mute, solo, colour and "generate" flags (undoable like everything else)."""
        from dataclasses import replace

        state = self.document.state
        views = list(state.views)
        views[index] = replace(views[index], **changes)
        self.apply(State(state.song, tuple(views), state.generated), f"Track {index + 1}: {', '.join(changes)}")

    # --- generation -----------------------------------------------------------------------
    def show_preview(self, song: Song | None, generated: tuple[int, int] | None = None) -> None:
        self.preview, self.preview_generated = song, generated
        self.changed.emit({"preview", "song", "tracks"})

    def accept_generation(self, song: Song, generated: tuple[int, int], text: str) -> None:
        """The result as one undo step; new tracks get views."""
        state = self.document.state
        self.preview = None
        self.apply(State(song, views_for(len(song.tracks), state.views), generated), text, ())
        self.changed.emit({"preview", "song", "tracks"})
