"""Start the Qt application: the window shows at once, the model loads behind it.

At exit the window is already gone; a model load it started may still be reading the
weights, and the process waits for it (a thread destroyed while it runs aborts the process).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from meloformer_app.generation import wait_for_threads
from meloformer_app.main_window import MainWindow
from meloformer_app.theme import apply_theme

EXIT_WAIT_S = 120  # longer than any model load from a working disk


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
    code = app.exec()
    if not wait_for_threads(EXIT_WAIT_S):  # a load stuck on a dead disk: leave it to the system
        print("meloformer: the model was still loading at exit; leaving without waiting for it", file=sys.stderr)
        sys.stderr.flush()
        os._exit(code)
    return code
