from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6", reason="the app extra (PySide6) is not installed")


@pytest.fixture(autouse=True)
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings and autosave go to a fresh folder for every test."""
    monkeypatch.setenv("MELOFORMER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MELOFORMER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def window(qtbot, monkeypatch: pytest.MonkeyPatch):
    """A main window without a model; dialogs are recorded instead of shown."""
    from PySide6.QtWidgets import QMessageBox

    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    dialogs: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: dialogs.append((title, text)))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    win = MainWindow(Settings(), load_model=False)
    win.dialogs = dialogs
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.editor.document.mark_clean()
    win.generator.shutdown()
