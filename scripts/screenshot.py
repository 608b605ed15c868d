"""The app's screenshots (see screenshot.sh), with the default model, under a real X server:

- ``main-1600.png`` and ``main-1280.png``: the bundled chorale continued by 8 bars, the
  window at 1600×1000 and at 1280×720 (the README shows the first);
- ``band-drums.png``: the band example continued by 4 bars, its drum track selected (the
  keyboard names the kit);
- ``quantize.png``: the Quantize dialog; ``generate-panel.png``: the Generate panel with
  its Advanced controls open.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

from meloformer_app.edit_dialogs import QuantizeDialog
from meloformer_app.main_window import MainWindow
from meloformer_app.settings import Settings
from meloformer_app.theme import apply_theme

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "resources" / "examples"


def wait(app: QApplication, condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("screenshot: timed out")
        app.processEvents()
        time.sleep(0.02)


def settle(app: QApplication) -> None:
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)


def continued(app: QApplication, window: MainWindow, song: Path, bars: int) -> None:
    assert window.open_file(song, confirm=False)
    window.panel.bars.setValue(bars)
    window.continue_song()
    wait(app, lambda: not window.generator.busy and window.editor.document.state.generated is not None, 300)


def grab(app: QApplication, widget, out: Path) -> None:
    settle(app)
    widget.grab().save(str(out))
    print(out)


def main(folder: Path) -> int:
    app = QApplication(sys.argv[:1])
    folder.mkdir(parents=True, exist_ok=True)
    window = MainWindow(Settings(seed=3, bars=8))
    apply_theme(app, "dark")
    window.resize(1600, 1000)
    window.show()
    wait(app, lambda: window.generator.model_info is not None, 120)
    continued(app, window, EXAMPLES / "bach_chorale.mid", 8)
    window.roll.show_ticks(0, window.editor.document.song.end_tick)
    grab(app, window, folder / "main-1600.png")
    window.resize(1280, 720)
    grab(app, window, folder / "main-1280.png")
    window.resize(1600, 1000)
    continued(app, window, EXAMPLES / "band_song.mid", 4)
    song = window.editor.document.song
    window.editor.set_current_track(next(i for i, track in enumerate(song.tracks) if track.is_drum))
    window.roll.show_ticks(0, song.end_tick)
    window.roll.state.viewport.top_pitch = 60
    window.roll.refresh()
    grab(app, window, folder / "band-drums.png")
    dialog = QuantizeDialog(window, "Quantize all 116 notes of track 5 (Drums)", window.roll.state.viewport.grid_ticks()
                            / song.resolution, None)  # fmt: skip
    dialog.show()
    grab(app, dialog, folder / "quantize.png")
    dialog.close()
    window.panel.advanced.setChecked(True)
    grab(app, window.panel, folder / "generate-panel.png")
    window.editor.document.mark_clean()
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"))
