"""The main window: piano roll in the middle, tracks on the left, generation on the right.

Errors stop at this boundary: a bad file, a bad model or a failed generation is one
dialog naming the file and the problem, and the document stays as it was.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSlider,
)

from meloformer_app.actions import build_actions
from meloformer_app.audio_export import AudioExport
from meloformer_app.edit_dialogs import (
    HumanizeSettings,
    QuantizeSettings,
)
from meloformer_app.edit_flow import EditMixin
from meloformer_app.editor import Editor
from meloformer_app.export_flow import MIDI_FILTER, ExportMixin
from meloformer_app.generation import Generator, Take
from meloformer_app.generation_flow import GenerationMixin, bar_span
from meloformer_app.panels import SamplingPanel, TrackList
from meloformer_app.position import conductor_text, position_text
from meloformer_app.settings import Autosave, Settings
from meloformer_app.theme import apply_theme, roll_colours
from meloformer_app.transport import BUILTIN, Transport
from meloformer_app.view.geometry import GRID_CHOICES
from meloformer_app.view.roll import PianoRoll, Tool
from meloformer_core.errors import MeloformerError
from meloformer_core.midi_io import midi_bytes, read_midi, write_midi
from meloformer_core.music import Song
from meloformer_core.playback.audio import audio_device_problem
from meloformer_core.playback.ports import VIRTUAL, list_output_ports, virtual_possible

DOCK_WIDTHS_PX = (330, 260)  # Tracks, Generate when the window opens


_port_poll: threading.Thread | None = None  # the listing of MIDI outputs running now (`MainWindow._poll_ports`)


class MainWindow(GenerationMixin, EditMixin, ExportMixin, QMainWindow):
    _ports_polled = Signal(object)  # the output labels a poll found (None: the listing failed)

    def __init__(self, settings: Settings | None = None, *, load_model: bool = True, device: str | None = None) -> None:
        # Long on purpose (92 lines): the window's parts built and wired in the order they depend on each other.
        super().__init__()
        self.settings = settings or Settings.load()
        self.autosave = Autosave()
        self.editor = Editor(self)
        self.quantize_last: QuantizeSettings | None = None  # the dialogs open with the last choice
        self.humanize_last: HumanizeSettings | None = None
        self.result_region: tuple[int, int] | None = None  # the ticks of the generation last kept
        self.roll = PianoRoll(self.editor)
        self.roll.state.colours = roll_colours(self.settings.theme)
        self.setCentralWidget(self.roll)
        self.tracks = TrackList(self.editor)
        self.panel = SamplingPanel(self.settings)
        self.docks: dict[str, QDockWidget] = {}  # closed, floated and brought back from View
        for title, widget, area in (("Tracks", self.tracks, Qt.DockWidgetArea.LeftDockWidgetArea),
                                    ("Generate", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)):  # fmt: skip
            dock = QDockWidget(title, self)
            dock.setObjectName(title)
            dock.setWidget(widget)
            features = QDockWidget.DockWidgetFeature
            dock.setFeatures(features.DockWidgetMovable | features.DockWidgetClosable | features.DockWidgetFloatable)
            self.addDockWidget(area, dock)
            self.docks[title] = dock
        # the side panels open at their narrowest useful width: the roll gets most of a laptop's screen
        self.resizeDocks(list(self.docks.values()), list(DOCK_WIDTHS_PX), Qt.Orientation.Horizontal)
        self.actions = build_actions(self, self.roll, self.settings.shortcuts)
        self._build_menus()
        self._build_toolbar()
        self.model_label = QLabel("Model: loading…")
        self.midi_label = QLabel("MIDI: …")
        self.audio_label = QLabel("")  # says when the built-in synth has no audio device
        self.statusBar().addPermanentWidget(self.audio_label)
        self.statusBar().addPermanentWidget(self.midi_label)
        self.statusBar().addPermanentWidget(self.model_label)
        self.setAcceptDrops(True)
        self.editor.changed.connect(self._document_changed)
        self.editor.undo_stack.indexChanged.connect(lambda _index: self.undo_moved())
        self.transport = Transport(self)
        self.transport.position.connect(self._playhead_moved)
        self.transport.state_changed.connect(self._playing_changed)
        self.transport.failed.connect(lambda message: self.error("Playback", message))
        self.transport.lost.connect(self._output_lost)
        self.transport.notice.connect(self._audio_notice)
        self.transport.soundfont = self.settings.soundfont
        self.transport.set_volume(self.settings.volume)
        self.volume_slider.setValue(round(self.transport.volume * 100))
        self.volume_slider.valueChanged.connect(self._set_volume)
        self._audio_exports: list[AudioExport] = []  # running: referenced until they end
        self.roll.ruler.seek.connect(self.seek)
        self.roll.ruler.edit_bar.connect(self.edit_conductor)
        self.roll.ruler.loop_dragged.connect(self._loop_dragged)
        self.roll.canvas.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.roll.canvas.customContextMenuRequested.connect(self._roll_menu)
        self.show_position()
        self.editor.note_touched.connect(
            lambda track, key, velocity: self.transport.audition(self.editor.shown_song(), track, key, velocity)
        )
        self.generator = Generator(device=device, parent=self)
        self.generator.loaded.connect(self._model_loaded)
        self.generator.load_failed.connect(self._model_failed)
        self.generator.progress.connect(self._progress)
        self.generator.finished.connect(self._generated)
        self.generator.failed.connect(self._generation_failed)
        self.generator.cancelled.connect(self._generation_cancelled)
        self.panel.continue_requested.connect(self.continue_song)
        self.panel.arrange_requested.connect(self.arrange_tracks)
        self.panel.regenerate_requested.connect(self.regenerate_bars)
        self.panel.cancel_requested.connect(self.generator_cancel)
        self.panel.model_chosen.connect(self.load_model)
        self.panel.take_chosen.connect(self._preview_take)
        self.panel.keep_take.connect(self._keep_take)
        self._takes: list[Take] = []
        self._pending: dict | None = None
        self._model_asked = True
        self._closing = False  # a close was decided: nothing may write the autosave again
        self._autosaved = False  # this window's autosave is on disk
        self.autosave_timer = QTimer(self, interval=max(5, self.settings.autosave_seconds) * 1000)
        self.autosave_timer.timeout.connect(self.write_autosave)
        self.autosave_timer.start()
        if self.settings.geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.geometry.encode()))
        else:
            self.resize(1400, 860)
        self._update_title()
        QTimer.singleShot(0, self.refresh_midi_outputs)
        self._polling = False
        self._ports_polled.connect(self._ports_changed)  # queued: emitted by the polling thread
        self.ports_timer = QTimer(self, interval=5000)  # devices come and go
        self.ports_timer.timeout.connect(self._poll_ports)
        self.ports_timer.start()
        if load_model:
            QTimer.singleShot(0, lambda: self.load_model(self.settings.model_path, asked=False))

    # --- building -------------------------------------------------------------------------
    def _build_menus(self) -> None:
        # Long on purpose (67 lines): the menus as they appear, one entry per line.
        a, bar = self.actions, self.menuBar()
        menus = {
            "&File": ["new", "open", "recent", "save", "save_as", "export", "export_audio", None, "quit"],
            "&Edit": ["undo", "redo", None, "cut", "copy", "paste", "delete", "duplicate", "select_all", None,
                      "quantize", "transpose", "humanize", "transpose_up", "transpose_down", "octave_up",
                      "octave_down", None, "preferences"],
            "&View": ["zoom_in", "zoom_out", "zoom_fit", "used_kit_only", None, "dark_theme"],
            "&Tools": ["tool_select", "tool_draw", "tool_erase", None, "snap", "triplets"],
            "&Generate": ["continue", "arrange", "regenerate", "cancel"],
            "&Play": ["play", "play_start", "loop", "metronome", None, "refresh_ports", None, "choose_soundfont",
                      "default_soundfont"],
            "&Help": ["shortcuts"],
        }  # fmt: skip
        for title, names in menus.items():
            menu = bar.addMenu(title)
            for name in names:
                if name is None:
                    menu.addSeparator()
                elif name == "recent":
                    self.recent_menu = menu.addMenu("Open &Recent")
                    self.recent_menu.aboutToShow.connect(self._fill_recent)
                else:
                    menu.addAction(a[name])
            if title == "&View":
                menu.addSeparator()
                for dock in self.docks.values():
                    menu.addAction(dock.toggleViewAction())  # ticked while shown
        stack = self.editor.undo_stack
        stack.undoTextChanged.connect(lambda text: a["undo"].setText(f"&Undo {text}" if text else "&Undo"))
        stack.redoTextChanged.connect(lambda text: a["redo"].setText(f"&Redo {text}" if text else "&Redo"))
        a["undo"].triggered.connect(stack.undo)
        a["redo"].triggered.connect(stack.redo)
        stack.canUndoChanged.connect(a["undo"].setEnabled)
        stack.canRedoChanged.connect(a["redo"].setEnabled)
        a["undo"].setEnabled(False)
        a["redo"].setEnabled(False)
        e = self.editor
        connections = {
            "new": self.new_song, "open": self.choose_file, "save": self.save, "save_as": self.save_as,
            "export": self.export_dialog, "quit": self.close, "cut": e.cut, "copy": e.copy,
            "paste": lambda: e.paste(self._paste_tick()), "delete": e.delete_selection, "select_all": e.select_all,
            "quantize": self.quantize_dialog, "transpose": self.transpose_dialog,
            "humanize": self.humanize_dialog, "duplicate": e.duplicate_selection, "shortcuts": self.show_shortcuts,
            "preferences": self.show_preferences,
            "transpose_up": lambda: e.move_selection(0, 1), "transpose_down": lambda: e.move_selection(0, -1),
            "octave_up": lambda: e.move_selection(0, 12), "octave_down": lambda: e.move_selection(0, -12),
            "zoom_in": lambda: self.roll.zoom(1.25), "zoom_out": lambda: self.roll.zoom(0.8),
            "zoom_fit": self.roll.fit, "continue": self.continue_song, "arrange": self.arrange_tracks,
            "regenerate": self.regenerate_bars, "cancel": self.generator_cancel,
            "play": self.play_or_stop, "play_start": lambda: self.play_from(0),
            "refresh_ports": self.refresh_midi_outputs, "export_audio": self.export_audio_dialog,
            "choose_soundfont": self.choose_soundfont, "default_soundfont": lambda: self.use_soundfont(""),
        }  # fmt: skip
        for name, slot in connections.items():
            a[name].triggered.connect(slot)
        for name, tool in (("tool_select", Tool.SELECT), ("tool_draw", Tool.DRAW), ("tool_erase", Tool.ERASE)):
            a[name].triggered.connect(lambda _=False, t=tool: self.set_tool(t))
        a["snap"].setChecked(True)
        a["snap"].toggled.connect(lambda on: setattr(self.roll.state, "snap", on))
        a["triplets"].toggled.connect(self._set_triplets)
        a["used_kit_only"].toggled.connect(self._set_used_kit_only)
        a["loop"].toggled.connect(self._set_loop)
        a["dark_theme"].setChecked(self.settings.theme == "dark")
        a["dark_theme"].toggled.connect(self.set_theme)
        a["metronome"].toggled.connect(lambda on: setattr(self.transport, "metronome", on))
        self.set_tool(Tool.SELECT)

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Edit")
        toolbar.setObjectName("EditToolbar")
        for name in ("undo", "redo", None, "tool_select", "tool_draw", "tool_erase", None, "snap", "triplets"):
            toolbar.addSeparator() if name is None else toolbar.addAction(self.actions[name])
        self.grid_box = QComboBox(toolTip="Snap grid (Auto follows the zoom)")
        self.grid_box.addItems(list(GRID_CHOICES))
        self.grid_box.currentTextChanged.connect(self._set_grid)
        toolbar.addWidget(QLabel(" Grid "))
        toolbar.addWidget(self.grid_box)
        toolbar.addSeparator()
        for name in ("zoom_in", "zoom_out", "zoom_fit", None, "continue", "cancel"):
            toolbar.addSeparator() if name is None else toolbar.addAction(self.actions[name])
        self.addToolBarBreak()  # the transport gets a row of its own: its output box is never hidden in an overflow
        play = self.addToolBar("Transport")
        play.setObjectName("PlayToolbar")
        for name in ("play", "play_start", "loop", "metronome"):
            play.addAction(self.actions[name])
        self.position_label = QLabel(toolTip="The playhead: bar.beat and time")
        self.conductor_label = QLabel(toolTip="Tempo, metre and key at the playhead")
        for label in (self.position_label, self.conductor_label):
            label.setMinimumWidth(110)
            play.addWidget(label)
        self.port_box = QComboBox(toolTip="Where to play: the built-in synth (on the audio device) or a MIDI output")
        self.port_box.setMinimumWidth(180)
        self.port_box.activated.connect(self._port_chosen)
        play.addWidget(QLabel(" Out "))
        play.addWidget(self.port_box)
        play.addAction(self.actions["refresh_ports"])
        self.volume_slider = QSlider(Qt.Orientation.Horizontal, toolTip="Volume of the built-in synth")
        self.volume_slider.setRange(0, 100)
        self.volume_slider.setMaximumWidth(100)
        play.addWidget(QLabel(" Vol "))
        play.addWidget(self.volume_slider)

    def set_theme(self, dark: bool) -> None:
        from PySide6.QtWidgets import QApplication

        self.settings.theme = "dark" if dark else "light"
        apply_theme(QApplication.instance(), self.settings.theme)
        self.roll.state.colours = roll_colours(self.settings.theme)
        self.roll.refresh()
        self.settings.save()

    def set_tool(self, tool: Tool) -> None:
        self.roll.state.tool = tool
        for name, each in (("tool_select", Tool.SELECT), ("tool_draw", Tool.DRAW), ("tool_erase", Tool.ERASE)):
            self.actions[name].setChecked(each is tool)

    def _set_grid(self, text: str) -> None:
        self.roll.state.viewport.grid_choice = text
        self.roll.refresh()

    def _set_used_kit_only(self, on: bool) -> None:
        self.roll.state.used_kit_only = on
        self.roll.state.song()  # the rows follow at once
        self.roll.refresh()

    def _set_triplets(self, on: bool) -> None:
        self.roll.state.viewport.triplets = on
        self.roll.refresh()

    def _paste_tick(self) -> int:
        if self.roll.state.playhead is not None:
            return self.roll.state.playhead
        return min((ref.note.start for ref in self.editor.clipboard), default=0)

    # --- document state -------------------------------------------------------------------
    def _document_changed(self, parts: set) -> None:
        if parts & {"song", "tracks"} and self.transport.playing:
            self.transport.update_song(self.editor.shown_song(), self.editor.document.audible_tracks())
        self._update_title()
        self.roll.refresh()
        self.show_position()
        song = self.editor.shown_song()
        self.statusBar().showMessage(f"{len(song.tracks)} tracks, {song.note_count:,} notes", 0)

    def _update_title(self) -> None:
        dirty = self.editor.document.dirty  # what Close asks about: undoing back to the saved state is clean
        name = self.editor.document.path.name if self.editor.document.path else "Untitled"
        self.setWindowTitle(f"{name}[*] — MeloFormer")
        self.setWindowModified(dirty)

    def is_dirty(self) -> bool:
        return self.editor.document.dirty

    # --- files ----------------------------------------------------------------------------
    def new_song(self) -> None:
        with self._autosave_paused():
            if self._confirm_discard():
                self._replace_document(Song(), None)
                self.roll.fit()

    def choose_file(self) -> None:
        with self._autosave_paused():
            if not self._confirm_discard():
                return
            path, _ = QFileDialog.getOpenFileName(self, "Open MIDI file", self.settings.last_directory, MIDI_FILTER)
            if path:
                self.open_file(Path(path), confirm=False)

    def open_file(self, path: Path, confirm: bool = True) -> bool:
        """Open ``path``; on failure show one dialog and keep the current document."""
        with self._autosave_paused():
            if confirm and not self._confirm_discard():
                return False
            try:
                song = read_midi(path, empty_tracks=True)
            except MeloformerError as error:
                self.error("Could not open the file", str(error))
                return False
            self._replace_document(song, path)
        self.settings.add_recent(path)
        self.settings.save()
        self.roll.fit()
        self.statusBar().showMessage(f"Opened {path.name}: {len(song.tracks)} tracks, {song.note_count:,} notes")
        return True

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for text in self.settings.recent_files:
            action = self.recent_menu.addAction(text)
            action.triggered.connect(lambda _=False, p=text: self.open_file(Path(p)))
        if not self.settings.recent_files:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def save(self) -> bool:
        if self.editor.document.path is None or self.editor.document.path.suffix.lower() not in (".mid", ".midi"):
            return self.save_as()
        return self._write(self.editor.document.path)

    def save_as(self) -> bool:
        start = str(self.editor.document.path or Path(self.settings.last_directory or ".") / "untitled.mid")
        path, _ = QFileDialog.getSaveFileName(self, "Save as MIDI", start, MIDI_FILTER)
        return bool(path) and self._write(Path(path) if Path(path).suffix else Path(path).with_suffix(".mid"))

    def _write(self, path: Path) -> bool:
        try:
            write_midi(self.editor.document.song, path)
        except (MeloformerError, OSError) as error:
            self.error("Could not save", f"{path}: {error}")
            return False
        self.editor.document.mark_clean(path)
        self.editor.undo_stack.setClean()
        self.settings.add_recent(path)
        self.autosave.clear()
        self._autosaved = False
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}")
        return True

    def _confirm_discard(self) -> bool:
        if not self.is_dirty():
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", f"Save the changes to {self.editor.document.title.rstrip(' *')}?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        )  # fmt: skip
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def _replace_document(self, song: Song, path: Path | None) -> None:
        """Put ``song`` in place of the document, whose unsaved changes the user gave up:
        its autosave goes with it, or a crash later would offer them back."""
        self.editor.open_song(song, path)
        self.roll.state.loop = None
        self.autosave.clear()
        self._autosaved = False

    @contextlib.contextmanager
    def _autosave_paused(self) -> Iterator[None]:
        """No autosave while the user decides what becomes of the document (a question or a
        file dialog runs the event loop, so the timer would fire in it) or while it is replaced."""
        running = self.autosave_timer.isActive()
        self.autosave_timer.stop()
        try:
            yield
        finally:
            if running and not self._closing:
                self.autosave_timer.start()

    def write_autosave(self) -> bool:
        """Keep the autosave in step with the document: its unsaved state, or nothing once
        there is nothing unsaved (undone back to the saved state). False if it could not be written."""
        if self._closing:
            return False
        if not self.is_dirty():
            if self._autosaved:
                self.autosave.clear()
                self._autosaved = False
            return True
        try:
            self.autosave.write(midi_bytes(self.editor.document.song), self.editor.document.path)
            self._autosaved = True
        except (MeloformerError, OSError) as error:
            self.statusBar().showMessage(f"Autosave failed: {error}")
            return False
        return True

    def start(self, path: Path | None = None) -> None:
        """Once the window shows: offer the work a crash left behind (before the next autosave
        can overwrite it), then open ``path``, unless that is the file just recovered."""
        recovered = self.offer_recovery()
        current = self.editor.document.path
        if path is not None and not (recovered and current is not None and current.resolve() == path.resolve()):
            self.open_file(path, confirm=recovered)

    def offer_recovery(self) -> bool:
        """Offer back the autosaves of sessions that did not end cleanly (their app no longer
        runs: another running MeloFormer's autosave is its own), the newest first, one
        question each. The window holds one song, so recovering a second one asks first
        whether to save the one recovered before, as opening a file does. Recovering or
        declining removes that autosave only; one that cannot be read, or whose recovery is
        cancelled, stays for the next start. True if a song was recovered."""
        recovered = False
        orphans = self.autosave.orphans()
        with self._autosave_paused():
            for number, orphan in enumerate(orphans, 1):
                name = orphan.source.name if orphan.source else "an untitled song"
                written = time.strftime("%Y-%m-%d %H:%M", time.localtime(orphan.written))
                which = f" ({number} of {len(orphans)})" if len(orphans) > 1 else ""
                question = (f"MeloFormer did not close cleanly{which}. Recover the unsaved changes to {name} "
                            f"(autosaved {written})?")  # fmt: skip
                if QMessageBox.question(self, "Recover unsaved work", question) != QMessageBox.StandardButton.Yes:
                    orphan.discard()
                    continue
                try:
                    song = read_midi(orphan.midi, empty_tracks=True)
                except MeloformerError as error:
                    self.error("Could not recover", str(error))
                    continue  # the autosave stays where it is
                if not self._confirm_discard():  # the song recovered before: Cancel keeps both as they are
                    break
                self.editor.open_song(Song(), orphan.source)
                self.editor.apply_song(song, "Recover autosave")
                self.roll.fit()
                recovered = True
                if self.write_autosave():  # the recovered work is this window's autosave before the crash's goes
                    orphan.discard()
        return recovered

    # --- drag and drop --------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        urls = event.mimeData().urls()
        if urls and Path(urls[0].toLocalFile()).suffix.lower() in (".mid", ".midi"):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.open_file(Path(event.mimeData().urls()[0].toLocalFile()))

    def refresh_midi_outputs(self) -> None:
        """List the MIDI outputs, keep the chosen one, and say politely when there is none."""
        ports, problems = self.transport.refresh_ports(), self.transport.problems
        self.port_box.clear()
        self.port_box.addItem("Built-in synth", BUILTIN)
        for port in ports:
            self.port_box.addItem(port.label, port.label)
        if virtual_possible(problems):
            self.port_box.addItem("Virtual output (MeloFormer:out)", VIRTUAL)
        chosen = self.port_box.findData(self.settings.midi_port)
        self.port_box.setCurrentIndex(max(0, chosen))  # the built-in synth when none was chosen (or it is gone)
        self.transport.choose_port(self.port_box.currentData())
        if self.transport.builtin and self.transport.output is None:
            self._audio_notice(audio_device_problem() or "")
        if ports:
            self.midi_label.setText(f"MIDI out: {len(ports)} port(s)")
            self.midi_label.setToolTip("\n".join(port.label for port in ports))
        else:
            self.midi_label.setText("No MIDI output")
            why = "\n".join(problems) or "No MIDI output ports were found."
            self.midi_label.setToolTip(f"{why}\nEditing, generating and exporting work without one.")

    def _audio_notice(self, notice: str) -> None:
        """The built-in synth has no audio device (``notice``, one line), or has one again ("")."""
        self.audio_label.setText("No audio device" if notice else "")
        self.audio_label.setToolTip(notice)
        if notice:
            self.statusBar().showMessage(notice, 10_000)

    def _set_volume(self, value: int) -> None:
        self.transport.set_volume(value / 100)
        self.settings.volume = self.transport.volume

    def choose_soundfont(self) -> None:
        start = self.settings.soundfont or self.settings.last_directory
        path, _ = QFileDialog.getOpenFileName(self, "Choose a SoundFont", start, "SoundFonts (*.sf2);;All files (*)")
        if path:
            self.use_soundfont(path)

    def use_soundfont(self, path: str) -> bool:
        """Play and export with the SoundFont at ``path`` ("" = the default); a dialog if it cannot be read."""
        try:
            name = self.transport.set_soundfont(path)
        except MeloformerError as error:
            self.error("Could not use the SoundFont", str(error))
            return False
        self.settings.soundfont = path
        self.settings.save()
        self.statusBar().showMessage(f"SoundFont: {name}", 5000)
        return True

    def _poll_ports(self) -> None:
        """Look for MIDI outputs that came or went, off the GUI thread: listing opens a client
        per MIDI system (about 50 ms with a JACK server), a visible hitch every 5 s. One
        listing at a time in the whole process: a MIDI system slow to answer gets no second
        client from the next tick (nor from another window) while the first waits."""
        global _port_poll
        if self._closing or self.transport.playing or self.port_box.view().isVisible() or self._polling:
            return
        if _port_poll is not None and _port_poll.is_alive():
            return
        self._polling = True

        def look() -> None:
            try:
                labels = [port.label for port in list_output_ports()[0]]
            except Exception:  # a MIDI system failing mid-listing: try again at the next poll
                labels = None
            with contextlib.suppress(RuntimeError):  # the window was closed meanwhile
                self._ports_polled.emit(labels)

        _port_poll = threading.Thread(target=look, name="meloformer-port-poll", daemon=True)
        _port_poll.start()

    def _ports_changed(self, labels: list[str] | None) -> None:
        self._polling = False
        if labels is not None and labels != [port.label for port in self.transport.ports]:
            self.refresh_midi_outputs()

    def _port_chosen(self, index: int) -> None:
        name = self.port_box.itemData(index) or ""
        self.settings.midi_port = name
        self.transport.choose_port(name)

    def _output_lost(self, label: str, message: str) -> None:
        """The MIDI output went away while open (playback stopped): say so in the status bar,
        not in a dialog, and list what is left; the next Play uses that (or says there is none)."""
        self.refresh_midi_outputs()
        self.midi_label.setText(f"MIDI output lost: {label}")
        self.midi_label.setToolTip(message)
        self.statusBar().showMessage(message)

    # --- playback -------------------------------------------------------------------------
    def play_or_stop(self) -> None:
        if self.transport.playing:
            self.transport.stop()
        else:
            self.play_from(self.transport.start_tick)

    def play_from(self, tick: int) -> None:
        if self.transport.playing:
            self.transport.stop()
        song = self.editor.shown_song()
        if not song.note_count:
            self.statusBar().showMessage("Nothing to play", 5000)
            return
        if not self.transport.builtin and not self.transport.ports and not self.transport.refresh_ports():
            self.error("No MIDI output", "There is no MIDI output to play on (see the MIDI out box); "
                       "connect a device or start a software synthesizer, then Refresh MIDI Ports.")  # fmt: skip
            return
        self.transport.play(song, tick, self.editor.document.audible_tracks(), self._loop_ticks())

    def seek(self, tick: int) -> None:
        self.transport.seek(tick)

    def _loop_dragged(self, start: int, end: int) -> None:
        """A loop region dragged in the ruler: loop it (playing on, if playing)."""
        if self.actions["loop"].isChecked():
            self.transport.set_loop(self._loop_ticks())
        else:
            self.actions["loop"].setChecked(True)

    def _loop_ticks(self) -> tuple[int, int]:
        """The ruler's loop region, else the selected bars, else the whole song."""
        if self.roll.state.loop is not None:
            return self.roll.state.loop
        lines = self.editor.shown_song().bar_lines()  # the ruler's bars: what the user sees
        bars = self._selected_bars(lines)
        return bar_span(lines, bars) if bars is not None else (0, lines[-1])

    def _set_loop(self, on: bool) -> None:
        self.transport.loop_enabled = on
        self.transport.set_loop(self._loop_ticks())

    def _playing_changed(self, playing: bool) -> None:
        self.actions["play"].setText("&Stop" if playing else "&Play / Stop")

    def _playhead_moved(self, tick: int) -> None:
        self.roll.move_playhead(tick)
        self.show_position()

    def show_position(self) -> None:
        """The transport's readout at the playhead (the song's start when there is none)."""
        song, tick = self.roll.state.song(), self.roll.state.playhead or 0
        self.position_label.setText(f" {position_text(song, tick, self.roll.state.bars)} ")
        self.conductor_label.setText(f" {conductor_text(song, tick)} ")

    # --- closing --------------------------------------------------------------------------
    def error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(message.splitlines()[0] if message else title, 10_000)
        QMessageBox.warning(self, title, message)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Ask about unsaved work, then stop for good, at once: a generation is cancelled and
        a model load still running ends behind the closed window (`Generator.shutdown`). The
        autosave timer stops before the question: a tick during it rewrote the autosave of a
        discarded document and the next start offered it back."""
        if self._closing:  # closed already (a second close from quitting): nothing is left to ask
            event.accept()
            return
        with self._autosave_paused():
            if not self._confirm_discard():
                event.ignore()
                return
            self._closing = True
        self.ports_timer.stop()
        self.autosave_timer.stop()
        self.autosave.clear()  # this window's only: another running MeloFormer keeps its own
        self.panel.store(self.settings)
        self.settings.geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.save()
        self.transport.shutdown()
        for export in self._audio_exports:  # a half-written audio file is never left: it is written at the end
            export.cancel()
        self.generator.shutdown()
        event.accept()
