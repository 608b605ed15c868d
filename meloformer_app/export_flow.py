"""The main window's exports: MIDI (all tracks, the chosen ones or the generated bars, one
file or one per track) and audio rendered on a thread (a mixin of `MainWindow`, which owns
the widgets)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QCheckBox, QDialog, QFileDialog, QRadioButton, QVBoxLayout

from meloformer_app.audio_export import AUDIO_FILTER, AudioExport, ask_scope, show_progress
from meloformer_app.document.export import export_song
from meloformer_app.edit_dialogs import ok_cancel
from meloformer_core.errors import MeloformerError

MIDI_FILTER = "MIDI files (*.mid *.midi);;All files (*)"


class ExportMixin:
    def export_dialog(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Export MIDI")
        layout = QVBoxLayout(dialog)
        everything = QRadioButton("All tracks", checked=True)
        chosen = QRadioButton("The selected track (or the tracks of the selected notes)")
        generated = QRadioButton("Only the generated bars")
        generated.setEnabled(self.editor.document.state.generated is not None)
        per_track = QCheckBox("One file per track")
        for widget in (everything, chosen, generated, per_track):
            layout.addWidget(widget)
        layout.addWidget(ok_cancel(dialog))
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.settings.last_directory, MIDI_FILTER)
        if path:
            self.export(Path(path), "chosen" if chosen.isChecked() else "generated" if generated.isChecked() else "all",
                        per_track.isChecked())  # fmt: skip

    def export(self, path: Path, scope: str = "all", per_track: bool = False) -> list[Path]:
        document = self.editor.document
        tracks = self._chosen_tracks() if scope == "chosen" else None
        if scope == "chosen" and not tracks:
            self.error("Nothing to export", "Select a track or some notes first.")
            return []
        ticks = document.state.generated if scope == "generated" else None
        try:
            written = export_song(document.song, path, tracks, ticks, per_track)
        except (MeloformerError, OSError) as error:
            self.error("Could not export", f"{path}: {error}")
            return []
        self.statusBar().showMessage(f"Exported {len(written)} file(s) to {path.parent}")
        return written

    def _chosen_tracks(self) -> list[int]:
        """The selected track, or the tracks of the selected notes."""
        tracks = {ref.track for ref in self.editor.document.selection}
        if self.editor.current_track is not None:
            tracks.add(self.editor.current_track)
        return sorted(tracks)

    def export_audio_dialog(self) -> None:
        scope = ask_scope(self, bool(self._chosen_tracks()), self.editor.document.state.generated is not None)
        if scope is None:
            return
        start = str(Path(self.settings.last_directory or ".") / f"{self.editor.document.title.rstrip(' *')}.wav")
        path, chosen_filter = QFileDialog.getSaveFileName(self, "Export audio to", start, AUDIO_FILTER)
        if path:
            target = Path(path)
            if target.suffix.lower() not in (".wav", ".flac"):
                target = target.with_suffix(".flac" if "FLAC" in chosen_filter else ".wav")
            self.export_audio(target, *scope)

    def export_audio(self, path: Path, tracks: str = "all", bars: str = "song") -> AudioExport | None:
        """Render to ``path`` (.wav or .flac) on a thread, with a progress bar; the status bar
        says when it is written, a dialog why not."""
        document = self.editor.document
        chosen = self._chosen_tracks() if tracks == "chosen" else None
        if tracks == "chosen" and not chosen:
            self.error("Nothing to export", "Select a track or some notes first.")
            return None
        ticks = document.state.generated if bars == "generated" else None
        export = AudioExport(document.song, path, self.settings.soundfont, chosen, ticks, self)
        self._audio_exports.append(export)
        export.finished.connect(lambda line: self._audio_exported(export, line, ""))
        export.failed.connect(lambda line: self._audio_exported(export, "", line))
        self._export_progress = show_progress(self, export)
        export.start()
        return export

    def _audio_exported(self, export: AudioExport, done: str, failure: str) -> None:
        if export in self._audio_exports:
            self._audio_exports.remove(export)
        if done:
            self.statusBar().showMessage(done)
        elif failure:  # "" when cancelled: nothing to say
            self.error("Could not export audio", failure)
