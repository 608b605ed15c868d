"""The main window's Edit dialogs and menus: Quantize, Transpose, Humanize, the ruler's tempo,
metre and key, Preferences, Help > Keyboard Shortcuts and the roll's right-click menu (a
mixin of `MainWindow`, which owns the widgets)."""

from __future__ import annotations

from fractions import Fraction

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QInputDialog, QLabel, QMenu, QTableWidget, QTableWidgetItem, QVBoxLayout

from meloformer_app.edit_dialogs import ConductorDialog, ConductorSettings, HumanizeDialog, QuantizeDialog
from meloformer_app.position import conductor_at


class EditMixin:
    def _scope(self, action: str):
        """(notes, words for them) that an Edit dialog acts on; with nothing selected, say
        what to select and give None."""
        scope = self.editor.edit_scope()
        if scope is None:
            self.statusBar().showMessage(f"{action}: select some notes, or a track in the track list, first", 10_000)
        return scope

    def edit_conductor(self, tick: int) -> None:
        """The ruler's double-click: tempo, metre and key from the bar at ``tick`` on (undoable)."""
        song = self.editor.document.song
        bar = self.roll.state.bars.bar_at(tick)[0] + 1
        qpm, metre, key = conductor_at(song, tick)
        current = ConductorSettings(round(qpm, 1), metre.numerator, metre.denominator,
                                    None if key is None else (key.sharps, key.minor))  # fmt: skip
        chosen = ConductorDialog.ask(self, bar, current)
        if chosen is not None and chosen != current:
            self.editor.set_conductor(tick, chosen.qpm, chosen.numerator, chosen.denominator, chosen.key, bar)

    def transpose_dialog(self) -> None:
        scope = self._scope("Transpose")
        if scope is None:
            return
        refs, what = scope
        semitones, ok = QInputDialog.getInt(self, "Transpose", f"Transpose {what} by semitones (12 = an octave):",
                                            0, -48, 48)  # fmt: skip
        if ok and semitones:
            self.editor.transpose(refs, what, semitones)

    def humanize_dialog(self) -> None:
        scope = self._scope("Humanize")
        if scope is None:
            return
        refs, what = scope
        chosen = HumanizeDialog.ask(self, f"Humanize {what}", self.humanize_last)
        if chosen is not None:
            self.humanize_last = chosen
            timing = round(chosen.timing * self.editor.document.song.resolution / 480)
            self.editor.humanize(refs, what, timing, chosen.velocity, seed=self.editor.undo_stack.index())

    def show_shortcuts(self) -> None:
        """Help ▸ Keyboard Shortcuts: every action with its keys (the settings file can change them)."""
        dialog = QDialog(self, windowTitle="Keyboard shortcuts")
        table = QTableWidget(0, 2)
        table.setHorizontalHeaderLabels(["Action", "Keys"])
        for action in self.actions.values():
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
            if keys:
                table.insertRow(table.rowCount())
                table.setItem(table.rowCount() - 1, 0, QTableWidgetItem(action.text().replace("&", "")))
                table.setItem(table.rowCount() - 1, 1, QTableWidgetItem(keys))
        table.resizeColumnsToContents()
        note = QLabel('Change a key in the settings file: "shortcuts": {"continue": "F5"}')
        layout = QVBoxLayout(dialog)
        layout.addWidget(table)
        layout.addWidget(note)
        dialog.resize(480, 560)
        self.shortcuts_dialog = dialog  # kept for the tests
        dialog.open()

    def show_preferences(self) -> None:
        from meloformer_app.preferences import PreferencesDialog

        self.preferences_dialog = PreferencesDialog(self)  # kept for the tests
        self.preferences_dialog.open()

    def _roll_menu(self, position) -> None:
        """The roll's right-click menu: the edits of the Edit menu that act on notes."""
        menu = QMenu(self)
        for name in ("cut", "copy", "paste", "delete", "duplicate", None, "quantize", "transpose", "humanize", None,
                     "select_all"):  # fmt: skip
            menu.addSeparator() if name is None else menu.addAction(self.actions[name])
        self.roll_menu = menu  # kept for the tests
        menu.popup(self.roll.canvas.mapToGlobal(position))

    def quantize_dialog(self) -> None:
        """Quantize the selected notes, or the selected track's, with the grid, strength and
        swing chosen in a dialog; with nothing selected, say what to select."""
        scope = self._scope("Quantize")
        if scope is None:
            return
        refs, what = scope
        viewport = self.roll.state.viewport
        grid = Fraction(viewport.grid_ticks(), viewport.resolution)
        chosen = QuantizeDialog.ask(self, f"Quantize {what}", grid, self.quantize_last)
        if chosen is None:
            return
        self.quantize_last = chosen
        ticks = chosen.grid_ticks(self.editor.document.song.resolution)
        self.editor.quantize(refs, what, ticks, chosen.strength / 100, chosen.swing / 100, chosen.lengths)
