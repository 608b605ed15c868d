"""Opening bad and extreme MIDI files in the real window, through File → Open.

A file that cannot be read is one dialog, one line naming the file, and the song that was
open stays as it was with its undo history; an extreme but valid file opens and can be
scrolled to its end and zoomed. No exception escapes a Qt slot, and memory stays bounded.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6", reason="the app extra (PySide6) is not installed")

from meloformer_core.music import Song
from tests.conftest import FIXTURES
from tests.reliability.midi_cases import BY_NAME, CASES, MidiCase, unreadable_is_readable

MAX_GROWTH_BYTES = 1.5 * 2**30


def max_rss_bytes() -> int:
    """The process's peak resident memory (Linux counts KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@pytest.fixture
def window(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A main window without a model, settings in ``tmp_path``; dialogs are recorded, questions
    answered Discard, and the jig is open with one edit in its undo history."""
    from PySide6.QtWidgets import QMessageBox

    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    monkeypatch.setenv("MELOFORMER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MELOFORMER_DATA_DIR", str(tmp_path / "data"))
    dialogs: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: dialogs.append((title, text)))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    win = MainWindow(Settings(), load_model=False)
    win.dialogs = dialogs
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    assert win.open_file(FIXTURES / "jig_6_8.mid")
    win.jig = win.editor.document.song
    win.editor.select_all()
    win.editor.move_selection(0, 1)
    yield win
    win.editor.document.mark_clean()
    win.generator.shutdown()


def choose_in_open_dialog(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))


def use_everywhere(window, qtbot) -> None:
    """Paint the song whole, at its end zoomed in as far as it goes, and zoomed out again."""
    roll = window.roll
    song = window.editor.document.song
    parts = (roll.canvas, roll.ruler, roll.velocity, roll.keyboard, window.tracks)
    for part in parts:
        part.grab()
    roll.show_ticks(max(0, song.end_tick - song.resolution), song.end_tick)
    for factor in (1.25,) * 40 + (0.8,) * 80:  # to the zoom limits, each a repaint
        roll.zoom(factor)
        roll.canvas.grab()
        roll.ruler.grab()
    roll.hbar.setValue(roll.hbar.maximum())
    for part in parts:
        part.grab()
    qtbot.wait(1)  # let queued repaints run inside the capture


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_open_from_the_file_menu(window, qtbot, monkeypatch, tmp_path: Path, case: MidiCase) -> None:
    path = case.make(tmp_path)
    if case.name == "unreadable" and unreadable_is_readable(path):
        pytest.skip("this user reads files without read permission (root)")
    document, stack = window.editor.document, window.editor.undo_stack
    song, history = document.song, (stack.count(), stack.index(), stack.undoText())
    assert window.is_dirty() and history[0] == 1
    choose_in_open_dialog(monkeypatch, path)
    memory_before = max_rss_bytes()
    with qtbot.captureExceptions() as exceptions:
        window.actions["open"].trigger()
        opened = window.editor.document is not document
        if opened:
            use_everywhere(window, qtbot)
    assert not exceptions, [str(e[1]) for e in exceptions]
    assert max_rss_bytes() - memory_before < MAX_GROWTH_BYTES
    if case.valid:
        assert opened and not window.dialogs, window.dialogs
        assert window.editor.document.path == path and window.editor.document.song.note_count > 0
        assert not window.is_dirty() and window.editor.undo_stack.count() == 0
    else:
        assert not opened and len(window.dialogs) == 1
        _title, text = window.dialogs[0]
        assert str(path) in text and len(text.strip().splitlines()) == 1, text
        assert window.editor.document is document and document.song is song and window.is_dirty()
        assert (stack.count(), stack.index(), stack.undoText()) == history
        stack.undo()  # the history still works: back to the jig as read
        assert window.editor.document.song == window.jig and not window.is_dirty()


def test_the_command_line_open_path_refuses_the_same_way(window, qtbot, tmp_path: Path) -> None:
    """`start(path)` (the file given to `meloformer SONG.mid`) uses the same boundary."""
    path = BY_NAME["lying_track_length"].make(tmp_path)
    with qtbot.captureExceptions() as exceptions:
        window.start(path)
    assert not exceptions and len(window.dialogs) == 1 and str(path) in window.dialogs[0][1]
    assert window.editor.document.path.name == "jig_6_8.mid" and window.is_dirty()


def test_painting_far_into_a_song_never_walks_its_bars_from_the_start(window, qtbot, monkeypatch,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    """The grid and the ruler counted the bars from tick 0 to the view at every repaint:
    seconds a frame at the end of a song that ends near 2**31 ticks."""
    assert window.open_file(BY_NAME["huge_delta_at_the_limit"].make(tmp_path))

    def refuse(self, until_tick=None):
        raise AssertionError(f"bar_starts({until_tick}) walked the bars from the start")

    monkeypatch.setattr(Song, "bar_starts", refuse)
    with qtbot.captureExceptions() as exceptions:
        use_everywhere(window, qtbot)
    assert not exceptions, [str(e[1]) for e in exceptions]
