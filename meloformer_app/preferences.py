"""Edit ▸ Preferences: the theme, where to play (output, SoundFont, volume) and every
action's keys, in one dialog; what it sets is kept in the settings file."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QKeySequenceEdit,
    QLineEdit,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from meloformer_app.actions import ACTIONS
from meloformer_app.edit_dialogs import ok_cancel


class PreferencesDialog(QDialog):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Preferences")
        tabs = QTabWidget()
        general = QWidget()
        form = QFormLayout(general)
        self.theme = QComboBox()
        self.theme.addItems(["Dark", "Light"])
        self.theme.setCurrentText(window.settings.theme.capitalize())
        form.addRow("Theme", self.theme)
        tabs.addTab(general, "General")
        playback = QWidget()
        form = QFormLayout(playback)
        self.output = QComboBox(toolTip="Where to play")
        for index in range(window.port_box.count()):
            self.output.addItem(window.port_box.itemText(index), window.port_box.itemData(index))
        self.output.setCurrentIndex(window.port_box.currentIndex())
        self.soundfont = QLineEdit(window.settings.soundfont, placeholderText="TimGM6mb (comes with MeloFormer)")
        choose = QPushButton("Choose…")
        choose.clicked.connect(self._choose_soundfont)
        row = QHBoxLayout()
        row.addWidget(self.soundfont, 1)
        row.addWidget(choose)
        self.volume = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=window.volume_slider.value())
        form.addRow("Output", self.output)
        form.addRow("SoundFont", row)
        form.addRow("Volume", self.volume)
        tabs.addTab(playback, "Playback")
        self.keys = QTableWidget(len(ACTIONS), 2)
        self.keys.setHorizontalHeaderLabels(["Action", "Keys"])
        for row_index, spec in enumerate(ACTIONS):
            self.keys.setItem(row_index, 0, QTableWidgetItem(spec.text.replace("&", "")))
            edit = QKeySequenceEdit(window.actions[spec.name].shortcut())
            self.keys.setCellWidget(row_index, 1, edit)
        self.keys.resizeColumnsToContents()
        tabs.addTab(self.keys, "Shortcuts")
        buttons = ok_cancel(self)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)
        self.accepted.connect(self.apply)
        self.resize(520, 560)

    def key_edit(self, name: str) -> QKeySequenceEdit:
        row = next(i for i, spec in enumerate(ACTIONS) if spec.name == name)
        return self.keys.cellWidget(row, 1)

    def _choose_soundfont(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Choose a SoundFont", self.soundfont.text(),
                                              "SoundFonts (*.sf2);;All files (*)")  # fmt: skip
        if path:
            self.soundfont.setText(path)

    def apply(self) -> None:
        """Put the choices in force and in the settings file."""
        window, settings = self.window_, self.window_.settings
        window.actions["dark_theme"].setChecked(self.theme.currentText() == "Dark")
        if self.output.currentIndex() != window.port_box.currentIndex():
            window.port_box.setCurrentIndex(self.output.currentIndex())
            window.port_box.activated.emit(self.output.currentIndex())
        if self.soundfont.text() != settings.soundfont:
            window.use_soundfont(self.soundfont.text())
        window.volume_slider.setValue(self.volume.value())
        for spec in ACTIONS:
            keys = self.key_edit(spec.name).keySequence()
            action = window.actions[spec.name]
            if keys != action.shortcut():
                action.setShortcut(keys)
                settings.shortcuts[spec.name] = keys.toString(QKeySequence.SequenceFormat.PortableText)
        settings.save()
