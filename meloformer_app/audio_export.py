"""File ▸ Export Audio: render the song (all or some tracks, all or the generated bars) with
the built-in synth to WAV or FLAC, on a thread of its own, with a progress bar.

Rendering is offline (`synth.render_song`): a three-minute song takes seconds. The window
stays usable meanwhile; Cancel stops it and writes nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDialog, QGroupBox, QProgressDialog, QRadioButton, QVBoxLayout, QWidget

from meloformer_app.edit_dialogs import ok_cancel
from meloformer_core.errors import MeloformerError
from meloformer_core.music import Song
from meloformer_core.playback.audio import write_audio
from meloformer_core.playback.soundfont import load_soundfont
from meloformer_core.playback.synth import SAMPLE_RATE, render_song

AUDIO_FILTER = "WAV audio (*.wav);;FLAC audio (*.flac)"


class AudioExport(QObject):
    """One export running on its own thread; its signals arrive on the GUI thread."""

    progress = Signal(int)  # percent
    finished = Signal(str)  # one line for the status bar
    failed = Signal(str)  # one line: why nothing was written (or "" when cancelled)

    def __init__(self, song: Song, path: Path, soundfont: str, tracks: list[int] | None,
                 ticks: tuple[int, int] | None, parent: QObject | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.song, self.path, self.soundfont, self.tracks, self.ticks = song, path, soundfont, tracks, ticks
        self.done = False
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meloformer-audio-export", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def _emit(self, signal, value) -> None:
        with contextlib.suppress(RuntimeError):  # the window (and this object) closed meanwhile
            signal.emit(value)

    def _run(self) -> None:
        started = time.monotonic()
        start, end = self.ticks if self.ticks is not None else (0, None)
        try:
            soundfont = load_soundfont(self.soundfont or None)
            audio = render_song(self.song, soundfont, self.tracks, start, end,
                                progress=lambda done: self._emit(self.progress, round(done * 100)),
                                cancelled=self._cancel.is_set)  # fmt: skip
            write_audio(self.path, audio, SAMPLE_RATE)
        except MeloformerError as error:
            self.done = True
            self._emit(self.failed, "" if self._cancel.is_set() else str(error))
            return
        self.done = True
        seconds = len(audio) / SAMPLE_RATE
        self._emit(self.finished, f"Exported {seconds:.1f} s of audio to {self.path} "
                                  f"(rendered in {time.monotonic() - started:.1f} s)")  # fmt: skip


def ask_scope(parent: QWidget, selected: bool, generated: bool) -> tuple[str, str] | None:
    """The tracks ("all" or "chosen") and the range ("song" or "generated") to render; None if cancelled."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Export audio")
    layout = QVBoxLayout(dialog)
    tracks, bars = QGroupBox("Tracks"), QGroupBox("Bars")
    every = QRadioButton("All tracks", checked=True)
    chosen = QRadioButton("The selected track (or the tracks of the selected notes)", enabled=selected)
    whole = QRadioButton("The whole song", checked=True)
    new = QRadioButton("Only the generated bars", enabled=generated)
    for box, buttons in ((tracks, (every, chosen)), (bars, (whole, new))):
        inner = QVBoxLayout(box)
        for button in buttons:
            inner.addWidget(button)
        layout.addWidget(box)
    layout.addWidget(ok_cancel(dialog))
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return ("chosen" if chosen.isChecked() else "all"), ("generated" if new.isChecked() else "song")


def show_progress(parent: QWidget, export: AudioExport) -> QProgressDialog:
    """A progress bar for ``export`` with a Cancel button; it closes when the export ends."""
    bar = QProgressDialog(f"Rendering {export.path.name}…", "Cancel", 0, 100, parent)
    bar.setWindowTitle("Export audio")
    bar.setWindowModality(Qt.WindowModality.WindowModal)
    bar.setMinimumDuration(300)  # a short song is done before the bar would show
    export.progress.connect(bar.setValue)
    bar.canceled.connect(export.cancel)
    export.finished.connect(bar.reset)
    export.failed.connect(bar.reset)
    return bar
