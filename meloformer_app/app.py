"""Start the Qt application: the window shows at once, the model loads behind it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from meloformer_app.main_window import MainWindow
from meloformer_app.theme import apply_theme


def run(path: Path | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MeloFormer")
    window = MainWindow()
    apply_theme(app, window.settings.theme)
    window.show()
    QTimer.singleShot(0, lambda: window.start(path))
    quit_after = int(os.environ.get("MELOFORMER_TEST_QUIT_AFTER_MS", "0"))  # start-up tests
    if quit_after:
        QTimer.singleShot(quit_after, window.close)
    return app.exec()
