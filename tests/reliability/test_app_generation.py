"""A song the model cannot take is one dialog naming the file, and the song stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6", reason="the app extra (PySide6) is not installed")

from tests.reliability.midi_cases import BY_NAME


@pytest.fixture
def window(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from PySide6.QtWidgets import QMessageBox

    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    monkeypatch.setenv("MELOFORMER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MELOFORMER_DATA_DIR", str(tmp_path / "data"))
    dialogs: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: dialogs.append((title, text)))
    win = MainWindow(Settings(), load_model=False)
    win.dialogs = dialogs
    qtbot.addWidget(win)
    yield win
    win.editor.document.mark_clean()
    win.generator.shutdown()


def test_continuing_a_song_longer_than_the_encoding_names_the_file(window, qtbot, bundle_dir, tmp_path) -> None:
    with qtbot.waitSignal(window.generator.loaded, timeout=120_000):
        window.load_model(str(bundle_dir))
    path = BY_NAME["many_bars"].make(tmp_path)  # 30,000 bars: the encoding holds 16,384
    assert window.open_file(path)
    song, undo = window.editor.document.song, window.editor.undo_stack.count()
    window.actions["continue"].trigger()
    qtbot.waitUntil(lambda: bool(window.dialogs), timeout=300_000)
    title, text = window.dialogs[-1]
    assert title == "Generation failed" and len(text.splitlines()) == 1
    assert text.startswith(f"{path}: ") and "16384 bars" in text
    assert window.editor.document.song is song and window.editor.undo_stack.count() == undo
