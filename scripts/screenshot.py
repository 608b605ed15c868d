"""Open the chorale, continue it by 8 bars with the default model, grab the window (see screenshot.sh)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

from meloformer_app.main_window import MainWindow
from meloformer_app.settings import Settings
from meloformer_app.theme import apply_theme

ROOT = Path(__file__).resolve().parent.parent


def wait(app: QApplication, condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("screenshot: timed out")
        app.processEvents()
        time.sleep(0.02)


def main(out: Path) -> int:
    app = QApplication(sys.argv[:1])
    window = MainWindow(Settings(seed=3, bars=8))
    apply_theme(app, "dark")
    window.resize(1600, 1000)
    window.show()
    wait(app, lambda: window.generator.model_info is not None, 120)
    assert window.open_file(ROOT / "resources" / "examples" / "bach_chorale.mid", confirm=False)
    window.continue_song()
    wait(app, lambda: not window.generator.busy, 300)
    song = window.editor.document.song
    window.roll.show_ticks(0, song.end_tick)
    window.editor.set_current_track(None)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    window.screen().grabWindow(window.winId()).save(str(out))
    generated = window.editor.document.state.generated
    print(f"{out}: {len(song.tracks)} tracks, {song.note_count} notes, generated ticks {generated}")
    window.editor.document.mark_clean()
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot.png"))
