"""Open a 20,000-note MIDI file in the app and draw it: the time a user waits.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/app_open.py [--notes 20000] [--repeat 5]

Steps timed (median of ``--repeat`` runs, in one process): reading the file, building the
document and the roll's note table, and painting the whole window once (the first 32 bars,
as a file opens); then repaints with every note in view and zoomed in to 8 bars, a scroll,
and an edit (transpose 1,000 selected notes: one undo step and a repaint).
Target: open + first draw ≤ 1 s. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def make_file(path: Path, notes: int, seed: int = 0) -> None:
    from meloformer_core.midi_io import write_midi
    from meloformer_core.music import Song, TempoChange, TimeSignature, Track

    rng = np.random.default_rng(seed)
    tracks = []
    per_track = notes // 16
    for index in range(16):
        drum = index == 9
        starts = np.sort(rng.integers(0, 480 * 4 * 400, per_track))
        pitches = rng.integers(35, 82, per_track) if drum else rng.integers(30 + index * 3, 60 + index * 3, per_track)
        data = np.column_stack([starts, pitches, rng.integers(60, 960, per_track), rng.integers(30, 127, per_track)])
        tracks.append(Track(f"Track {index + 1}", (index * 8) % 128, drum, data))
    song = Song(480, (TempoChange(0, 500_000),), (TimeSignature(0, 4, 4),), (), tuple(tracks))
    write_midi(song, path)


def main() -> int:
    # Long on purpose (69 lines): a benchmark script: its measurements in the order the table reports them.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MELOFORMER_CONFIG_DIR"] = os.environ["MELOFORMER_DATA_DIR"] = folder
        path = Path(folder) / "dense.mid"
        make_file(path, args.notes)
        window = MainWindow(Settings(), load_model=False)
        window.resize(1600, 1000)
        window.show()
        app.processEvents()
        names = ("open + first draw", "redraw all notes", "redraw 8 bars", "scroll + redraw", "move 1,000 notes")
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.repeat):
            window.editor.document.mark_clean()
            started = time.perf_counter()
            assert window.open_file(path, confirm=False)
            window.roll.canvas.repaint()
            window.roll.velocity.repaint()
            app.processEvents()
            times["open + first draw"].append(time.perf_counter() - started)
            window.roll.show_ticks(0, window.editor.document.song.end_tick)
            window.roll.state.viewport.key_height = 1000 / 128
            window.roll.state.viewport.top_pitch = 128
            started = time.perf_counter()
            window.roll.canvas.repaint()
            window.roll.velocity.repaint()
            times["redraw all notes"].append(time.perf_counter() - started)
            window.roll.state.viewport.px_per_tick = window.roll.canvas.width() / (480 * 4 * 8)
            window.roll.show_ticks(0, 480 * 4 * 8)
            started = time.perf_counter()
            window.roll.canvas.repaint()
            window.roll.velocity.repaint()
            times["redraw 8 bars"].append(time.perf_counter() - started)
            started = time.perf_counter()
            window.roll.hbar.setValue(window.roll.hbar.value() + 480 * 8)
            window.roll.canvas.repaint()
            window.roll.velocity.repaint()
            times["scroll + redraw"].append(time.perf_counter() - started)
            song = window.editor.document.song
            refs = window.roll.state.table.in_rect(0, song.end_tick, 0, 127, {0, 1})[:1000]
            window.editor.select(refs)
            started = time.perf_counter()
            window.editor.move_selection(0, 1)
            window.roll.canvas.repaint()
            window.roll.velocity.repaint()
            times["move 1,000 notes"].append(time.perf_counter() - started)
        notes = window.editor.document.song.note_count
        window.editor.document.mark_clean()
        window.generator.shutdown()
    result = {name: round(statistics.median(values), 4) for name, values in times.items()}
    print(f"{'step':<22} {'median s':>9}")
    for name, value in result.items():
        print(f"{name:<22} {value:>9.4f}")
    print(
        f"notes: {notes:,}; target open + first draw ≤ 1 s: {'met' if result['open + first draw'] <= 1 else 'MISSED'}"
    )
    keys = {name: name.replace(" + ", "_").replace(",", "").replace(" ", "_") + "_s" for name in result}
    print(json.dumps({"bench": "app_open", "notes": notes, **{keys[k]: v for k, v in result.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
