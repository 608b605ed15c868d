"""Side panels: the track list and the sampling / generation controls."""

from __future__ import annotations

import random
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from meloformer_app.document.model import folded
from meloformer_app.settings import Settings
from meloformer_core.gm import PROGRAM_NAMES
from meloformer_core.music import Track
from meloformer_core.sampling_settings import CONTROLS, RECOMMENDED, SamplingConfig, first_take_seed

# the Generate panel's presets: Balanced is the recommended sampling the model was measured with
RECOMMENDED_PRESET = "Balanced"
PRESETS = {
    "Faithful": replace(RECOMMENDED, temperature=0.6, prompt_guidance=2.0),
    RECOMMENDED_PRESET: RECOMMENDED,
    "Adventurous": replace(RECOMMENDED, temperature=1.2, prompt_guidance=1.0, min_p=0.05),
}
CUSTOM = "Custom"

COLUMNS = ("Gen", "", "Name", "Instrument", "M", "S")
COMBO_PADDING_PX = 40  # an instrument box's frame and drop-down arrow beside its text
INSTRUMENT_MAX_PX = 140  # the Instrument column's widest: the track list keeps room for names on a laptop
FOLDED_ROW_SHARE = 0.6  # an empty track of the file: a row this much of the others' height
TRACKS_MIN_PX = 330  # the track list's narrowest: the roll gets most of a 1280-pixel screen
DRUM_KIT = "Drum kit (GM)"  # the instrument box's last entry: a drum track (MIDI channel 10)
COLUMN_TIPS = {
    0: "Arrange writes the ticked tracks under the others (a track you add starts ticked)",
    3: f"General MIDI instrument; “{DRUM_KIT}” makes a drum track (MIDI channel 10)",
    4: "Mute",
    5: "Solo",
}


class ElidedComboBox(QComboBox):
    """A combo box whose text ends in "…" when it does not fit, instead of being cut."""

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)  # fmt: skip
        option.currentText = self.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideRight,
                                                           field.width())  # fmt: skip
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


class TrackList(QWidget):
    """One row per track: generate flag, colour, name, GM instrument, drum flag, mute, solo."""

    def __init__(self, editor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = editor
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column, tip in COLUMN_TIPS.items():
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)  # fitted to the names (`_fit_instruments`)
        self.table.itemSelectionChanged.connect(self._current_changed)
        buttons = QHBoxLayout()
        for text, tip, slot in (
            ("+", "Add a track", self._add),
            ("−", "Remove the selected track", self._remove),
            ("▲", "Move the selected track up", lambda: self._move(-1)),
            ("▼", "Move the selected track down", lambda: self._move(+1)),
            ("All", "Edit every track (no ghost notes)", lambda: self.table.clearSelection()),
        ):
            button = QToolButton(text=text, toolTip=tip)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch()
        self.setMinimumWidth(TRACKS_MIN_PX)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self._filling = False
        editor.changed.connect(self._changed)
        self.refresh()

    def _changed(self, parts: set) -> None:
        """Rebuild the rows only when the document's tracks change (not on note edits, and not
        for a generation's preview, which the list does not show)."""
        if "tracks" in parts and "preview" not in parts:
            self.refresh()
        elif "current" in parts:
            self._select_current()

    def refresh(self) -> None:
        """Show the document's tracks: a row's widgets are made once and then only updated
        (a mute click must not rebuild every row's instrument menu)."""
        self._filling = True
        song, views = self.editor.document.song, self.editor.document.views
        built = self.table.rowCount()
        self.table.setRowCount(len(song.tracks))
        for row in range(built, len(song.tracks)):
            self._build_row(row)
        for row, (track, view) in enumerate(zip(song.tracks, views, strict=True)):
            self._show_row(row, track, view)
        self._fit_instruments()
        self._select_current()
        self._filling = False

    def _fit_instruments(self) -> None:
        """Make the Instrument column as wide as the longest instrument shown (at least
        "128 Gunshot", at most `INSTRUMENT_MAX_PX`: a longer name ends in "…", whole in the
        tooltip); the Name column takes what is left."""
        boxes = [self.table.cellWidget(row, 3) for row in range(self.table.rowCount())]
        metrics = self.table.fontMetrics()
        texts = [box.currentText() for box in boxes] + ["128 Gunshot"]
        width = max(metrics.horizontalAdvance(text) for text in texts) + COMBO_PADDING_PX
        self.table.setColumnWidth(3, min(width, INSTRUMENT_MAX_PX))

    def _build_row(self, row: int) -> None:
        self._checkbox(row, 0, "Write this track when arranging", lambda on: self.editor.set_view(row, generate=on))
        swatch = QPushButton(toolTip="Track colour")
        swatch.setFixedSize(18, 18)
        swatch.clicked.connect(lambda _=False: self._pick_colour(row))
        self.table.setCellWidget(row, 1, swatch)
        name = QLineEdit()
        name.setFrame(False)
        name.editingFinished.connect(lambda: self._rename(row, name.text()))
        self.table.setCellWidget(row, 2, name)
        program = ElidedComboBox(toolTip="General MIDI instrument")
        program.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)  # "128 Gunshot" is never cut
        program.addItems([f"{i + 1} {n}" for i, n in enumerate(PROGRAM_NAMES)] + [DRUM_KIT])
        program.currentIndexChanged.connect(lambda value: self._choose_instrument(row, value))
        self.table.setCellWidget(row, 3, program)
        self._checkbox(row, 4, "Mute", lambda on: self.editor.set_view(row, muted=on))
        self._checkbox(row, 5, "Solo", lambda on: self.editor.set_view(row, solo=on))

    def _choose_instrument(self, row: int, index: int) -> None:
        """A GM program (a melodic track) or the drum kit (a drum track), as one undo step."""
        if index == len(PROGRAM_NAMES):
            self.editor.update_track(row, is_drum=True)
        elif self.editor.document.song.tracks[row].is_drum:
            self.editor.update_track(row, program=index, is_drum=False)
        else:
            self.editor.update_track(row, program=index)

    def _show_row(self, row: int, track: Track, view) -> None:
        """Put the row's values in its widgets without their signals (no edit comes back)."""
        swatch, name, program = (self.table.cellWidget(row, column) for column in (1, 2, 3))
        swatch.setStyleSheet(f"background:{view.colour}; border:1px solid #222;")
        boxes = {self.checkbox(row, c): on for c, on in ((0, view.generate), (4, view.muted), (5, view.solo))}
        widgets = [name, program, *boxes]
        for widget in widgets:
            widget.blockSignals(True)
        if name.text() != track.name:
            name.setText(track.name)
            name.setCursorPosition(0)  # a name wider than the column shows its start, whole in the tooltip
            name.setToolTip(track.name)
        program.setCurrentIndex(128 if track.is_drum else track.program)  # a drum track shows the kit
        program.setToolTip(f"{program.currentText()}: choose a General MIDI instrument, or the drum kit")
        for box, checked in boxes.items():
            box.setChecked(checked)
        for widget in widgets:
            widget.blockSignals(False)

    def _checkbox(self, row: int, column: int, tip: str, slot) -> None:
        box = QCheckBox(toolTip=tip)
        box.toggled.connect(slot)
        holder = QWidget()
        layout = QHBoxLayout(holder)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(box)
        self.table.setCellWidget(row, column, holder)

    def checkbox(self, row: int, column: int) -> QCheckBox:
        return self.table.cellWidget(row, column).findChild(QCheckBox)

    def _select_current(self) -> None:
        current = self.editor.current_track
        self._filling = True
        if current is None:
            self.table.clearSelection()
        else:
            self.table.selectRow(current)
        for row in range(self.table.rowCount()):
            self._fold(row)
        self._filling = False

    def _fold(self, row: int) -> None:
        """Fold the row of an empty track of the file into one thin line with its name, until
        it is the track being edited (selected) or has notes."""
        document = self.editor.document
        fold = row != self.editor.current_track and folded(document.song, document.views, row)
        for column in range(len(COLUMNS)):
            self.table.cellWidget(row, column).setVisible(not fold)
        if self.table.item(row, 2) is None:
            self.table.setItem(row, 2, QTableWidgetItem())
        item = self.table.item(row, 2)
        item.setText(f"{document.song.tracks[row].name} (empty)" if fold else "")
        item.setToolTip("A track of the file with no notes: select it to draw in it" if fold else "")
        item.setForeground(self.palette().placeholderText())
        height = self.table.verticalHeader().defaultSectionSize()
        self.table.setRowHeight(row, round(height * FOLDED_ROW_SHARE) if fold else height)

    def _current_changed(self) -> None:
        if self._filling:
            return
        rows = self.table.selectionModel().selectedRows()
        self.editor.set_current_track(rows[0].row() if rows else None)

    def _rename(self, row: int, text: str) -> None:
        if row < len(self.editor.document.song.tracks) and text != self.editor.document.song.tracks[row].name:
            self.editor.update_track(row, name=text)

    def _pick_colour(self, row: int) -> None:
        colour = QColorDialog.getColor(QColor(self.editor.document.views[row].colour), self, "Track colour")
        if colour.isValid():
            self.editor.set_view(row, colour=colour.name())

    def _add(self) -> None:
        self.editor.add_track(Track(f"Track {len(self.editor.document.song.tracks) + 1}", 0))

    def _remove(self) -> None:
        if self.editor.current_track is not None:
            self.editor.remove_track(self.editor.current_track)

    def _move(self, step: int) -> None:
        if self.editor.current_track is not None:
            self.editor.move_track(self.editor.current_track, self.editor.current_track + step)


class SamplingPanel(QWidget):
    """Bars, sampling settings, seed with a dice, takes, model picker, and the buttons."""

    continue_requested = Signal()
    arrange_requested = Signal()
    regenerate_requested = Signal()
    cancel_requested = Signal()
    model_chosen = Signal(str)  # "" = the default bundle
    take_chosen = Signal(int)
    keep_take = Signal(int)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        # Long on purpose (93 lines): the panel's widgets built and laid out in the order they appear.
        super().__init__(parent)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # a narrow panel puts labels above
        self.model = QComboBox(toolTip="The model bundle that writes the music")
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(12)
        self.model.addItem("Default model", "")
        if settings.model_path:
            self.model.addItem(settings.model_path, settings.model_path)
            self.model.setCurrentIndex(1)
        self.model.addItem("Choose a bundle folder…", "?")
        self.model.activated.connect(self._model_activated)
        self.model_info = QLabel("loading…")
        self.model_info.setWordWrap(True)
        self.bars = self._spin(QSpinBox(), 1, 64, settings.bars, "Bars to add after the song (Continue)")
        self.preset = QComboBox(toolTip="Ready-made settings: Balanced is what the model was measured with")
        self.preset.addItems([*PRESETS, CUSTOM])
        # one control per sampling setting, as `CONTROLS` describes it (range, step, help)
        self.controls = {
            c.name: self._spin(QSpinBox() if c.whole else QDoubleSpinBox(), c.minimum, c.maximum,
                               getattr(settings, c.name), c.help, None if c.whole else c.step)
            for c in CONTROLS
        }  # fmt: skip
        self.temperature, self.guidance = self.controls["temperature"], self.controls["prompt_guidance"]
        self.seed = self._spin(QSpinBox(), 0, 2**31 - 1, settings.seed, "Same seed, same model, same song → same music")
        self.dice = QToolButton(text="Dice", toolTip="Roll a new random seed")
        self.dice.clicked.connect(lambda: self.seed.setValue(random.randrange(2**31 - 1)))
        self.seed.setMinimumWidth(50)  # not as wide as its largest value: the row fits a narrow panel
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        takes_tip = ("Write several takes to choose from (Continue writes them together, the most typical "
                     "first). Auto: Continue writes as many takes as fit about the time of one take of a "
                     "4-voice chorale and keeps the most typical; Arrange and Regenerate write one")  # fmt: skip
        self.take_count = self._spin(QSpinBox(specialValueText="Auto"), 0, 8, settings.takes, takes_tip)
        self.reset_button = QPushButton("Reset to recommended", toolTip="Balanced settings, automatic takes")
        self.reset_button.clicked.connect(lambda: self.apply_preset(RECOMMENDED_PRESET, takes=True))
        self.advanced = QGroupBox("Advanced", checkable=True, checked=False)  # ticked: the controls show
        self.advanced.setToolTip("Fine control over how the model chooses what comes next")
        controls = QWidget(visible=False)
        advanced_form = QFormLayout(controls)
        for control in CONTROLS:
            if control.advanced:
                advanced_form.addRow(control.label, self.controls[control.name])
        QVBoxLayout(self.advanced).addWidget(controls)
        self.advanced.toggled.connect(controls.setVisible)
        form.addRow("Model", self.model)
        form.addRow(self.model_info)
        form.addRow("Bars", self.bars)
        form.addRow("Style", self.preset)
        for control in CONTROLS:
            if not control.advanced:
                form.addRow(control.label, self.controls[control.name])
        form.addRow("Seed", seed_row)
        form.addRow("Takes", self.take_count)
        form.addRow(self.advanced)
        form.addRow(self.reset_button)
        for box in self.controls.values():
            box.valueChanged.connect(self._show_preset)
        self.preset.activated.connect(
            lambda index: index < len(PRESETS) and self.apply_preset(self.preset.currentText())
        )
        self._show_preset()
        self.continue_button = QPushButton("Continue", toolTip="Add the bars after the song (Ctrl+Return)")
        self.arrange_button = QPushButton("Arrange tracks", toolTip="Rewrite the tracks ticked “Gen” in the "
                                          "selected bars (all bars when none), under the others")  # fmt: skip
        self.regenerate_button = QPushButton("Regenerate bars", toolTip="Rewrite the bars of the selected notes so "
                                             "they join what comes before and after")  # fmt: skip
        self.cancel_button = QPushButton("Cancel", toolTip="Stop generating; the song stays as it was (Esc)")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.status = QLabel("")
        self.reset_result()
        self.status.setWordWrap(True)
        self.takes = QListWidget(toolTip="Click a take to hear and see it; double-click (or Keep) to use it")
        self.takes.setVisible(False)
        self.takes.currentRowChanged.connect(self.take_chosen)
        self.keep_button = QPushButton("Keep this take")
        self.keep_button.setVisible(False)
        self.keep_button.clicked.connect(lambda: self.keep_take.emit(self.takes.currentRow()))
        self.takes.itemDoubleClicked.connect(lambda _item: self.keep_take.emit(self.takes.currentRow()))
        self.continue_button.clicked.connect(self.continue_requested)
        self.arrange_button.clicked.connect(self.arrange_requested)
        self.regenerate_button.clicked.connect(self.regenerate_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.continue_button, self.arrange_button, self.regenerate_button, self.progress,
                       self.cancel_button, self.status, self.takes, self.keep_button):  # fmt: skip
            layout.addWidget(widget)
        layout.addStretch()

    @staticmethod
    def _spin(box, low, high, value, tip: str, step: float | None = None):
        box.setRange(low, high)
        if step is not None:
            box.setSingleStep(step)
            box.setDecimals(2)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    def _model_activated(self, index: int) -> None:
        data = self.model.itemData(index)
        if data == "?":
            from PySide6.QtWidgets import QFileDialog

            folder = QFileDialog.getExistingDirectory(self, "Choose a model bundle folder")
            if not folder:
                self.model.setCurrentIndex(0)
                return
            self.model.insertItem(self.model.count() - 1, folder, folder)
            self.model.setCurrentIndex(self.model.count() - 2)
            data = folder
        self.model_chosen.emit(data)

    def apply_preset(self, name: str, takes: bool = False) -> None:
        """Put a preset's values in the controls (``takes``: automatic takes too)."""
        config = PRESETS[name]
        for name, box in self.controls.items():
            box.setValue(getattr(config, name))
        if takes:
            self.take_count.setValue(config.takes)
        self._show_preset()

    def _show_preset(self) -> None:
        """The preset the controls hold, or Custom."""
        current = self.sampling()
        for index, config in enumerate(PRESETS.values()):
            if all(getattr(current, name) == getattr(config, name) for name in self.controls):
                self.preset.setCurrentIndex(index)
                return
        self.preset.setCurrentIndex(len(PRESETS))

    def sampling(self) -> SamplingConfig:
        controls = {name: box.value() for name, box in self.controls.items()}
        return SamplingConfig(**controls, seed=first_take_seed(self.seed.value()))

    def store(self, settings: Settings) -> None:
        for name, box in self.controls.items():
            setattr(settings, name, box.value())
        settings.bars, settings.seed = self.bars.value(), self.seed.value()
        settings.takes = self.take_count.value()
        settings.model_path = self.model.currentData() if self.model.currentData() not in ("?", None) else ""

    def reset_result(self, status: str = "") -> None:
        """No generation shown: an empty progress bar (no "0 / 100 bars") and ``status``."""
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText(status)

    def set_running(self, running: bool, total: int = 0) -> None:
        for button in (self.continue_button, self.arrange_button, self.regenerate_button):
            button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setFormat("%v / %m bars")
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(0)
            self.takes.setVisible(False)
            self.keep_button.setVisible(False)

    def show_takes(self, labels: list[str]) -> None:
        self.takes.clear()
        self.takes.addItems(labels)
        self.takes.setVisible(len(labels) > 1)
        self.keep_button.setVisible(len(labels) > 1)
        if labels:
            self.takes.setCurrentRow(0)
