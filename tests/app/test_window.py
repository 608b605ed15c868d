"""The real widgets, offscreen: open, draw, edit with the mouse and keys, undo, export."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QTableWidget

from meloformer_app.view.roll import Tool
from meloformer_core.midi_io import read_midi
from tests.conftest import FIXTURES, ROOT


def point(window, tick: float, pitch: int) -> QPoint:
    """The canvas point in the middle of the row of ``pitch`` at ``tick``."""
    vp = window.roll.state.viewport
    return QPoint(round(vp.x(tick)), round(vp.y(pitch) + vp.key_height / 2))


def song_of(window):
    return window.editor.document.song


def test_open_a_real_file_draws_every_track(window) -> None:
    assert window.open_file(FIXTURES / "bach_chorale.mid")
    song = song_of(window)
    assert len(song.tracks) == 4 and window.windowTitle().startswith("bach_chorale.mid")
    assert window.tracks.table.rowCount() == 4
    image = window.roll.canvas.grab().toImage()
    vp = window.roll.state.viewport
    width, height = image.width(), image.height()
    for track, view in zip(song.tracks, window.editor.document.views, strict=True):
        shown = [n for n in track.notes if 0 <= vp.x(n.start) + 4 < width and 0 <= vp.y(n.pitch) + 6 < height]
        colours = [image.pixelColor(round(vp.x(n.start) + 4), round(vp.y(n.pitch) + vp.key_height / 2)) for n in shown]
        drawn = [c for c in colours if c == QColor(view.colour)]
        assert len(shown) > 10 and len(drawn) >= 0.6 * len(shown), track.name  # voices cross, so not all
    # nothing is drawn where there is no note: the row of pitch 20 stays background
    assert image.pixelColor(10, round(vp.y(int(vp.top_pitch) - 1) + 3)) != QColor(view.colour)


def test_bad_file_gives_a_dialog_and_keeps_the_document(window, tmp_path: Path) -> None:
    window.open_file(FIXTURES / "jig_6_8.mid")
    before = song_of(window)
    broken = tmp_path / "broken.mid"
    broken.write_bytes((FIXTURES / "bach_chorale.mid").read_bytes()[:60])
    assert not window.open_file(broken)
    assert song_of(window) is before and window.editor.document.path.name == "jig_6_8.mid"
    _title, text = window.dialogs[-1]
    assert "broken.mid" in text and "\n" not in text.strip()


def test_draw_move_resize_delete_each_undoable(window, qtbot) -> None:
    window.open_file(FIXTURES / "jig_6_8.mid")
    original = song_of(window)
    canvas, vp = window.roll.canvas, window.roll.state.viewport
    window.editor.set_current_track(0)
    window.set_tool(Tool.DRAW)
    quarter = original.resolution
    window.roll.show_ticks(original.end_tick - quarter, original.end_tick + 3 * quarter)  # ~100 px per quarter
    window.grid_box.setCurrentText("1/4")
    grid = vp.grid_ticks()
    assert grid == quarter
    start = original.end_tick + 2 * grid - original.end_tick % grid  # an empty spot after the song
    pitch = int(vp.top_pitch) - 5
    click = point(window, start + grid // 2, pitch)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, click)
    drawn = [n for n in song_of(window).tracks[0].notes if n.start == start and n.pitch == pitch]
    assert drawn and drawn[0].duration == grid
    assert window.isWindowModified()
    # move: drag the note one grid step right and two semitones up
    window.set_tool(Tool.SELECT)
    grab = point(window, start + grid / 3, pitch)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, grab)
    QTest.mouseMove(canvas, point(window, start + grid + grid / 3, pitch + 2))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       point(window, start + grid + grid / 3, pitch + 2))  # fmt: skip
    moved = (start + grid, pitch + 2)
    assert any((n.start, n.pitch) == moved for n in song_of(window).tracks[0].notes)
    # resize: drag its right edge one more grid step
    edge = point(window, start + 2 * grid - 1 / vp.px_per_tick, pitch + 2)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, edge)
    QTest.mouseMove(canvas, edge + QPoint(round(grid * vp.px_per_tick), 0))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       edge + QPoint(round(grid * vp.px_per_tick), 0))  # fmt: skip
    assert [n.duration for n in song_of(window).tracks[0].notes if (n.start, n.pitch) == moved] == [2 * grid]
    # transpose with the arrow keys (Shift = octave), then delete
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)
    assert any((n.start, n.pitch) == (moved[0], moved[1] + 12) for n in song_of(window).tracks[0].notes)
    QTest.keyClick(canvas, Qt.Key.Key_Delete)
    assert song_of(window) == original
    assert not window.isWindowModified() and not window.is_dirty()  # the title agrees with Close: nothing to save
    stack = window.editor.undo_stack
    assert stack.count() == 5
    for expected_notes in (1, 1, 1, 1, 0):
        stack.undo()
        assert song_of(window).note_count == original.note_count + expected_notes
    assert song_of(window) == original and not window.isWindowModified()
    for _ in range(5):
        stack.redo()
    assert song_of(window) == original and stack.index() == 5


def dialog_defaults(monkeypatch) -> list[str]:
    """Quantize's dialog built as the user would see it and accepted as it opens; its scope lines."""
    from meloformer_app.edit_dialogs import QuantizeDialog

    scopes: list[str] = []

    def accept_as_shown(cls, parent, scope, grid, last):
        scopes.append(scope)
        return cls(parent, scope, grid, last).settings()

    monkeypatch.setattr(QuantizeDialog, "ask", classmethod(accept_as_shown))
    return scopes


def test_rubber_band_erase_copy_paste_quantize(window, monkeypatch) -> None:
    dialog_defaults(monkeypatch)
    window.open_file(FIXTURES / "bach_chorale.mid")
    song = song_of(window)
    canvas, vp = window.roll.canvas, window.roll.state.viewport
    bar = song.bar_starts()[1]
    window.roll.show_ticks(0, 2 * bar)
    top, bottom = int(vp.top_pitch) - 1, vp.pitch_at(canvas.height() - 2)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(window, 1, top))
    end = bar - song.resolution // 2  # half a beat before bar 2: every note of bar 1 starts before it
    QTest.mouseMove(canvas, point(window, end, bottom))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       point(window, end, bottom))  # fmt: skip
    in_first_bar = {(i, n) for i, t in enumerate(song.tracks) for n in t.notes
                    if n.start < bar and bottom <= n.pitch <= top}  # fmt: skip
    assert {(r.track, r.note) for r in window.editor.document.selection} == in_first_bar
    window.actions["copy"].trigger()
    window.roll.state.playhead = song.end_tick
    window.actions["paste"].trigger()
    assert song_of(window).note_count == song.note_count + len(in_first_bar)
    window.editor.undo_stack.undo()
    # erase: drag across the first note of the soprano
    window.set_tool(Tool.ERASE)
    first = song.tracks[0].notes[0]
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     point(window, first.start + 5, first.pitch))  # fmt: skip
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       point(window, first.start + 5, first.pitch))  # fmt: skip
    assert first not in list(song_of(window).tracks[0].notes)
    window.editor.undo_stack.undo()
    assert song_of(window) == song
    window.editor.select_all()
    window.editor.move_selection(7, 0)  # every note 7 ticks off the grid …
    assert song_of(window) != song
    window.actions["quantize"].trigger()  # … and back on it
    assert song_of(window) == song


def test_velocity_lane_sets_the_velocity(window) -> None:
    window.open_file(FIXTURES / "jig_6_8.mid")
    lane, vp = window.roll.velocity, window.roll.state.viewport
    note = song_of(window).tracks[0].notes[0]
    x = round(vp.x(note.start))
    QTest.mousePress(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, 4))
    QTest.mouseRelease(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, 4))
    assert song_of(window).tracks[0].notes[0].velocity == 127


def test_track_list_edits_are_undoable(window) -> None:
    window.open_file(FIXTURES / "drum_groove.mid")
    tracks, editor = window.tracks, window.editor
    count = len(song_of(window).tracks)
    editor.add_track(song_of(window).tracks[1].__class__("Strings", 48))
    assert tracks.table.rowCount() == count + 1
    tracks.checkbox(count, 4).setChecked(True)  # mute the new track
    assert editor.document.views[count].muted and editor.document.audible_tracks() == list(range(count))
    editor.set_current_track(count)
    tracks._move(-1)
    assert song_of(window).tracks[count - 1].name == "Strings" and editor.document.views[count - 1].muted
    # the rows show the moved tracks: name, instrument and mute follow the track, not the row
    assert tracks.table.cellWidget(count - 1, 2).text() == "Strings" and tracks.checkbox(count - 1, 4).isChecked()
    assert tracks.table.cellWidget(count - 1, 3).currentIndex() == 48 and not tracks.checkbox(count, 4).isChecked()
    row_widget = tracks.table.cellWidget(0, 3)
    tracks.table.cellWidget(count - 1, 3).setCurrentIndex(40)  # choose an instrument in the list
    assert song_of(window).tracks[count - 1].program == 40
    assert tracks.table.cellWidget(0, 3) is row_widget  # updated in place, not rebuilt
    tracks.table.cellWidget(count - 1, 3).setCurrentIndex(128)  # the drum kit: a drum track
    assert song_of(window).tracks[count - 1].is_drum
    tracks.table.cellWidget(count - 1, 3).setCurrentIndex(33)  # an instrument again: melodic, one undo step
    assert (song_of(window).tracks[count - 1].is_drum, song_of(window).tracks[count - 1].program) == (False, 33)
    editor.undo_stack.undo()
    assert song_of(window).tracks[count - 1].is_drum and tracks.table.cellWidget(count - 1, 3).currentIndex() == 128
    while editor.undo_stack.canUndo():
        editor.undo_stack.undo()
    assert len(song_of(window).tracks) == count and tracks.table.rowCount() == count
    assert [tracks.table.cellWidget(row, 3).currentIndex() for row in range(count)] == [
        128 if track.is_drum else track.program  # a drum track shows the kit
        for track in song_of(window).tracks
    ]
    assert not any(tracks.checkbox(row, 4).isChecked() for row in range(count))


def test_save_and_export_read_back(window, tmp_path: Path) -> None:
    source = tmp_path / "song.mid"
    shutil.copy(FIXTURES / "drum_groove.mid", source)
    window.open_file(source)
    window.editor.move_selection(0, 0)
    window.editor.select_all()
    window.editor.move_selection(0, 1)
    assert window.isWindowModified()
    assert window.save() and not window.isWindowModified()
    assert read_midi(source) == read_midi(source) and read_midi(source).note_count == song_of(window).note_count
    files = window.export(tmp_path / "parts.mid", "all", per_track=True)
    assert len(files) == len(song_of(window).tracks)
    assert [read_midi(f).tracks[0].program for f in files] == [t.program for t in song_of(window).tracks]


def test_a_bar_of_100000_notes_draws_a_shape_per_pixel_not_per_note(window, monkeypatch, tmp_path: Path) -> None:
    """Every repaint built and drew one rectangle (and one velocity stem) per note in view."""
    from PySide6.QtGui import QPainter

    from tests.reliability.midi_cases import BY_NAME

    assert window.open_file(BY_NAME["dense_bar"].make(tmp_path))
    drawn: list[int] = []
    for name in ("drawRects", "drawLines"):
        real = getattr(QPainter, name)
        monkeypatch.setattr(
            QPainter, name, lambda self, shapes, real=real: drawn.append(len(shapes)) or real(self, shapes)
        )
    canvas, lane = window.roll.canvas, window.roll.velocity
    canvas.grab()
    lane.grab()
    bar_px = 1920 * window.roll.state.viewport.px_per_tick
    pitches = len(set(window.editor.document.song.tracks[0].notes.pitches.tolist()))
    assert drawn and max(drawn) <= (bar_px + 5) * pitches < 100_000 / 4  # the pixels the bar covers


def test_importing_the_window_leaves_torch_unloaded() -> None:
    code = "import sys, meloformer_app.main_window, meloformer_app.launch; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_app_starts_and_quits_in_a_subprocess(tmp_path: Path) -> None:
    env = {"QT_QPA_PLATFORM": "offscreen", "MELOFORMER_TEST_QUIT_AFTER_MS": "1500",
           "MELOFORMER_CONFIG_DIR": str(tmp_path / "c"), "MELOFORMER_DATA_DIR": str(tmp_path / "d")}  # fmt: skip
    import os

    command = [sys.executable, "-m", "meloformer_app.launch", str(FIXTURES / "drum_groove.mid")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr


def test_no_display_is_one_clear_line(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "meloformer_app.launch"], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "no display" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["sizes", "--help"])
def test_the_launcher_still_runs_headless_commands(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "meloformer_app.launch", command], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_painting_keeps_none_alive(window) -> None:
    """PySide6 6.12.0 lost a reference to None per QPainter call and crashed the app on Python 3.11."""
    window.open_file(FIXTURES / "bach_chorale.mid")
    before = sys.getrefcount(None)
    for _ in range(30):
        window.roll.canvas.repaint()
        window.roll.velocity.repaint()
        window.roll.ruler.repaint()
        window.roll.keyboard.repaint()
    assert sys.getrefcount(None) >= before - 50


def test_no_midi_device_is_said_politely(window, monkeypatch: pytest.MonkeyPatch) -> None:
    import meloformer_app.transport as transport

    problem = "ALSA: MidiOutAlsa::initialize: error creating ALSA sequencer client object."
    monkeypatch.setattr(transport, "list_output_ports", lambda: ([], [problem]))  # whatever this machine has
    window.refresh_midi_outputs()
    assert window.midi_label.text() == "No MIDI output"
    assert problem in window.midi_label.toolTip() and "work without one" in window.midi_label.toolTip()


def test_closing_with_unsaved_work_asks_first(window, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    window.open_file(FIXTURES / "jig_6_8.mid")
    window.editor.select_all()
    window.editor.delete_selection()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Cancel)
    assert not window.close() and window.isVisible()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    assert window.close()


def test_dropping_a_midi_file_opens_it(window) -> None:
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(FIXTURES / "folk_song_3_4.mid"))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)  # fmt: skip
    window.dropEvent(event)
    assert window.editor.document.path.name == "folk_song_3_4.mid"


def test_quantize_acts_on_the_selection_or_the_selected_track_never_silently_on_everything(window, monkeypatch) -> None:
    from meloformer_app.edit_dialogs import QuantizeDialog, QuantizeSettings

    scopes = dialog_defaults(monkeypatch)
    window.open_file(FIXTURES / "bach_chorale.mid")
    song = song_of(window)
    window.editor.select_all()
    window.editor.move_selection(7, 0)  # every note of every track 7 ticks off the grid
    window.editor.select([])
    window.editor.set_current_track(None)
    moved = song_of(window)
    window.actions["quantize"].trigger()  # nothing selected: nothing moves, and the status says why
    assert song_of(window) == moved and not scopes
    assert "select some notes, or a track" in window.statusBar().currentMessage()
    window.editor.set_current_track(1)
    window.actions["quantize"].trigger()  # the selected track only
    assert scopes[-1].startswith("Quantize all") and "track 2" in scopes[-1]
    after = song_of(window)
    assert after.tracks[1] == song.tracks[1]
    assert [after.tracks[i] for i in (0, 2, 3)] == [moved.tracks[i] for i in (0, 2, 3)]
    assert window.editor.undo_stack.undoText().startswith("Quantize all")
    # half strength moves the selected notes half the way
    window.editor.set_current_track(0)
    window.editor.select(edits_notes(window, 0)[:1])
    monkeypatch.setattr(
        QuantizeDialog,
        "ask",
        classmethod(lambda cls, parent, scope, grid, last: QuantizeSettings(grid, strength=50, lengths=False)),
    )
    window.actions["quantize"].trigger()
    off, on = moved.tracks[0].notes[0].start, song.tracks[0].notes[0].start
    assert song_of(window).tracks[0].notes[0].start == round(off + (on - off) / 2)
    assert song_of(window).tracks[0].notes[1:] == moved.tracks[0].notes[1:]


def edits_notes(window, track: int) -> list:
    from meloformer_app.document.edits import NoteRef

    return [NoteRef(track, note) for note in song_of(window).tracks[track].notes]


def test_a_drum_track_shows_its_kit_and_hits(window, tmp_path) -> None:
    """With a drum track selected the keyboard names the GM kit pieces; drum notes are drawn
    as hits at their onsets (a held drum note does not paint a long bar), melodic notes as
    long as they sound; the instrument box of a drum track says it is a kit."""
    from meloformer_core.midi_io import write_midi
    from meloformer_core.music import Song, Track

    beat = 480
    held = [(0, 38, 4 * beat, 100)], [(0, 60, 4 * beat, 100)]  # a snare hit and an organ note, both a bar long
    song = Song(tracks=(Track("Drums", 0, True, held[0]), Track("Organ", 16, False, held[1])))
    write_midi(song, tmp_path / "held.mid")
    window.open_file(tmp_path / "held.mid")
    vp = window.roll.state.viewport
    vp.left_tick, vp.px_per_tick, vp.top_pitch, vp.key_height = -beat / 4, 100 / beat, 70, 12
    window.editor.set_current_track(0)
    keyboard = window.roll.keyboard
    assert keyboard.label(38) == "Acoustic Snare" and keyboard.label(42) == "Closed Hi-Hat" and keyboard.label(20) == ""
    window.roll.refresh()
    image = window.roll.canvas.grab().toImage()
    keyboard.grab()  # paints: the keyboard widens to hold the names
    assert keyboard.width() > 100

    def colour(tick: int, pitch: int) -> str:
        return image.pixelColor(round(vp.x(tick)), round(vp.y(pitch) + vp.key_height / 2)).name()

    later = 2 * beat + 50  # half-way through both notes, between grid lines
    rows = {"#2a2e35", "#23272d"}  # the rows' own colours: a kit piece's row, another row
    assert colour(later, 38) == "#2a2e35" and colour(later, 37) == "#2a2e35" and colour(later, 34) == "#23272d"
    assert colour(0, 38) not in rows  # the hit, at the onset
    assert colour(later, 60) not in rows  # the organ's note is held
    assert window.tracks.table.cellWidget(0, 3).currentText() == "Drum kit (GM)"
    assert window.tracks.table.cellWidget(1, 3).currentText() == "17 Drawbar Organ"
    window.editor.set_current_track(1)
    assert keyboard.label(60) == "C4"


def test_used_kit_pieces_only_shows_a_row_for_each_piece_the_drum_track_plays(window, qtbot) -> None:
    """A drum track's 47 kit rows shrink to the pieces it plays (View ▸ Used Kit Pieces Only):
    each a row of its own, named, drawn at, clicked at; other tracks and the option off show
    every pitch again where the view was."""
    from meloformer_core.gm import DRUM_KEY_NAMES

    window.open_file(FIXTURES / "drum_groove.mid")
    song = song_of(window)
    drums = next(i for i, t in enumerate(song.tracks) if t.is_drum)
    played = sorted(set(song.tracks[drums].notes.pitches.tolist()))
    state, vp = window.roll.state, window.roll.state.viewport
    window.editor.set_current_track(drums)
    before = vp.top_pitch
    window.actions["used_kit_only"].setChecked(True)
    assert vp.rows == tuple(played) and vp.span == len(played)
    keyboard = window.roll.keyboard
    ys = [vp.y(pitch) for pitch in played]
    assert [a - b for a, b in itertools.pairwise(ys)] == [vp.key_height] * (len(ys) - 1)  # adjacent rows, high on top
    assert all(vp.pitch_at(y + vp.key_height / 2) == pitch for y, pitch in zip(ys, played, strict=True))
    assert [keyboard.label(p) for p in played] == [DRUM_KEY_NAMES[p] for p in played]
    image = window.roll.canvas.grab().toImage()  # paints with the rows (hidden pitches are skipped)
    assert not image.isNull()
    window.actions["tool_draw"].trigger()
    top = played[-1]
    window.roll.refresh()
    x = round(vp.x(song.resolution * 4 + song.resolution // 2))
    QTest.mouseClick(window.roll.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(x, round(vp.y(top) + vp.key_height / 2)))  # fmt: skip
    assert len(song_of(window).tracks[drums].notes) == len(song.tracks[drums].notes) + 1
    assert {n.pitch for n in song_of(window).tracks[drums].notes} == set(played)  # drawn on the row clicked
    other = next(i for i, t in enumerate(song.tracks) if not t.is_drum)
    window.editor.set_current_track(other)
    state.song()
    assert vp.rows is None and vp.top_pitch == before  # a melodic track: every pitch, where it was
    window.editor.set_current_track(drums)
    window.actions["used_kit_only"].setChecked(False)
    assert vp.rows is None


def test_everyday_edits_duplicate_transpose_humanize_context_menu_and_shortcuts(window, qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QInputDialog

    from meloformer_app.edit_dialogs import HumanizeDialog

    window.open_file(FIXTURES / "bach_chorale.mid")
    song = song_of(window)
    bar = song.bar_starts()
    window.editor.set_current_track(0)
    first_bar = [r for r in window.roll.state.table.in_rect(bar[0], bar[1] - 1, 0, 127, {0})]
    window.editor.select(first_bar)
    window.actions["duplicate"].trigger()  # the soprano's bar 1, copied into bar 2
    copies = window.editor.document.selection
    assert window.editor.undo_stack.undoText() == f"Duplicate {len(first_bar)} notes"
    assert sorted((r.note.start - (bar[1] - bar[0]), r.note.pitch) for r in copies) == sorted(
        (r.note.start, r.note.pitch) for r in first_bar
    )
    window.editor.undo_stack.undo()
    window.editor.select([])
    monkeypatch.setattr(QInputDialog, "getInt", lambda *a, **k: (12, True))
    window.actions["transpose"].trigger()  # no selection: the selected track, an octave up
    after = song_of(window)
    assert [n.pitch for n in after.tracks[0].notes] == [n.pitch + 12 for n in song.tracks[0].notes]
    assert after.tracks[1:] == song.tracks[1:] and "Transpose all" in window.editor.undo_stack.undoText()
    window.editor.undo_stack.undo()
    as_shown = classmethod(lambda cls, parent, scope, last: cls(parent, scope, last).settings())
    monkeypatch.setattr(HumanizeDialog, "ask", as_shown)
    window.actions["humanize"].trigger()
    loose = song_of(window).tracks[0].notes
    assert len(loose) == len(song.tracks[0].notes) and song_of(window).tracks[1:] == song.tracks[1:]
    moved = [abs(a.start - b.start) for a, b in zip(loose, song.tracks[0].notes, strict=True)]
    louder = [abs(a.velocity - b.velocity) for a, b in zip(loose, song.tracks[0].notes, strict=True)]
    assert max(moved) <= 10 * song.resolution // 480 and max(louder) <= 8 and (any(moved) or any(louder))
    window.editor.set_current_track(None)
    window.editor.select([])
    count = window.editor.undo_stack.count()
    window.actions["humanize"].trigger()  # nothing selected: nothing changes, the status says why
    assert window.editor.undo_stack.count() == count and "select some notes" in window.statusBar().currentMessage()
    window.roll.canvas.customContextMenuRequested.emit(QPoint(20, 20))
    names = [a.text() for a in window.roll_menu.actions() if a.text()]
    assert {"&Quantize…", "&Transpose…", "&Humanize…", "D&uplicate", "&Copy"} <= set(names)
    window.roll_menu.close()
    window.actions["shortcuts"].trigger()
    table = window.shortcuts_dialog.findChild(QTableWidget)
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Duplicate"] == "Ctrl+D" and rows["Continue"].startswith("Ctrl+")
    window.shortcuts_dialog.close()


def test_the_velocity_lane_scales_a_selection_draws_ramps_and_shows_the_value(window, tmp_path) -> None:
    from meloformer_core.midi_io import write_midi
    from meloformer_core.music import Song, Track

    notes = [(i * 480, 60 + i, 240, velocity) for i, velocity in enumerate((80, 40, 100, 60, 60, 60))]
    write_midi(Song(tracks=(Track("Piano", 0, False, notes),)), tmp_path / "six.mid")
    window.open_file(tmp_path / "six.mid")
    lane, vp = window.roll.velocity, window.roll.state.viewport
    vp.left_tick, vp.px_per_tick = -240, 0.1
    window.roll.refresh()
    first = song_of(window).tracks[0].notes
    window.editor.select([r for r in window.roll.state.table.in_rect(0, 3 * 480 - 1, 0, 127, {0})])  # notes 1-3

    def y_of(velocity: int) -> int:
        return round(lane.height() - velocity / 127 * (lane.height() - 4))

    def at(tick: int, velocity: int) -> QPoint:
        return QPoint(round(vp.x(tick)), y_of(velocity))

    QTest.mousePress(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(0, 80))
    QTest.mouseMove(lane, at(0, 120))
    assert lane.readout.startswith("velocity 120") and "×1.5" in lane.readout  # shown while dragging
    QTest.mouseRelease(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(0, 120))
    assert [n.velocity for n in song_of(window).tracks[0].notes][:4] == [120, 60, 127, 60]  # ×1.5, kept in range
    assert window.editor.undo_stack.undoText().startswith("Velocity 120") and lane.readout == ""
    window.editor.undo_stack.undo()
    assert song_of(window).tracks[0].notes == first
    window.editor.select([])
    shift = Qt.KeyboardModifier.ShiftModifier  # a ramp over notes 2-6, 20 up to 100
    QTest.mousePress(lane, Qt.MouseButton.LeftButton, shift, at(480, 20))
    QTest.mouseMove(lane, at(5 * 480, 100))
    low, high = (int(v) for v in lane.readout.removeprefix("ramp ").split(" → "))
    assert abs(low - 20) <= 1 and abs(high - 100) <= 1  # the mouse moves by pixels: a velocity step or so
    QTest.mouseRelease(lane, Qt.MouseButton.LeftButton, shift, at(5 * 480, 100))
    ramp = [n.velocity for n in song_of(window).tracks[0].notes]
    assert ramp[0] == 80 and ramp[1] == low and ramp[5] == high
    assert ramp[1:] == sorted(ramp[1:]) and len(set(ramp[1:])) == 5  # rising, note by note


def test_tempo_metre_and_key_show_in_the_ruler_and_change_by_double_click(window, monkeypatch, tmp_path) -> None:
    from meloformer_app.edit_dialogs import ConductorDialog, ConductorSettings
    from meloformer_app.view.ruler import conductor_labels

    window.open_file(ROOT / "resources" / "examples" / "band_song.mid")
    song = song_of(window)
    assert conductor_labels(song)[0] == "4/4 ♩=112 C"
    asked: list[ConductorSettings] = []

    def answer(cls, parent, bar, current):
        asked.append(current)
        return ConductorSettings(90.0, 3, 4, (1, True))  # E minor

    monkeypatch.setattr(ConductorDialog, "ask", classmethod(answer))
    ruler, vp = window.roll.ruler, window.roll.state.viewport
    bar = song.bar_starts()
    window.roll.show_ticks(0, song.end_tick)
    QTest.mouseDClick(ruler, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                      QPoint(round(vp.x(bar[4] + song.resolution)), 10))  # fmt: skip
    assert asked == [ConductorSettings(112.0, 4, 4, (0, False))]  # what is in force there
    changed = song_of(window)
    assert conductor_labels(changed)[bar[4]] == "3/4 ♩=90 Em"
    assert window.editor.undo_stack.undoText() == "Tempo, metre and key at bar 5"
    assert window.conductor_label.text().strip() == "112 bpm  4/4  C major"  # the playhead is still at bar 1
    assert window._write(tmp_path / "changed.mid")  # what Save writes
    again = read_midi(tmp_path / "changed.mid")
    assert (bar[4], 3, 4) in [tuple(ts) for ts in again.time_signatures]
    assert [round(t.qpm) for t in again.tempos if t.tick == bar[4]] == [90]
    window.editor.undo_stack.undo()
    assert song_of(window) == song


def test_a_drag_in_the_ruler_sets_a_loop_region_of_whole_bars(window) -> None:
    window.open_file(ROOT / "resources" / "examples" / "band_song.mid")
    song = song_of(window)
    bar = song.bar_starts()
    ruler, vp = window.roll.ruler, window.roll.state.viewport
    window.roll.show_ticks(0, song.end_tick)
    x = lambda tick: round(vp.x(tick))  # noqa: E731
    QTest.mousePress(ruler, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x(bar[1] + 100), 10))
    QTest.mouseMove(ruler, QPoint(x(bar[2] + 900), 10))
    QTest.mouseRelease(ruler, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x(bar[2] + 900), 10))
    assert window._loop_ticks() == (bar[1], bar[3])  # bars 2-3, whole
    assert window.actions["loop"].isChecked() and window.transport.loop_enabled
    ruler.grab()  # the region paints
    window.open_file(FIXTURES / "bach_chorale.mid", confirm=False)
    assert window.roll.state.loop is None  # a new song, no old region
