"""The Edit menu's dialogs: Quantize (grid, strength, swing) and Humanize (timing and
velocity), for the selected notes or the selected track; and the ruler's Tempo, metre and
key dialog (a double-click on a bar).

What they act on is said in the dialog and in the undo text; with neither notes nor a track
selected they do nothing but say so (they never change every track's notes at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from meloformer_app.position import MAJOR_KEYS, MINOR_KEYS

# grid choices in quarter notes
GRIDS = {"1/4": Fraction(1), "1/8": Fraction(1, 2), "1/16": Fraction(1, 4), "1/32": Fraction(1, 8),
         "1/8 triplet": Fraction(1, 3), "1/16 triplet": Fraction(1, 6)}  # fmt: skip


def ok_cancel(dialog: QDialog) -> QDialogButtonBox:
    """OK and Cancel buttons that accept and reject ``dialog``."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons


class FormDialog(QDialog):
    """Labelled controls over OK and Cancel; `ask` opens one and gives its ``settings()``."""

    def lay_out(self, rows: list[tuple[str | None, QWidget]]) -> None:
        form = QFormLayout(self)
        for label, widget in rows:
            form.addRow(widget) if label is None else form.addRow(label, widget)
        form.addRow(ok_cancel(self))

    def settings(self):
        raise NotImplementedError

    @classmethod
    def ask(cls, parent: QWidget | None, *args):
        """The settings chosen, or None when cancelled."""
        dialog = cls(parent, *args)
        return dialog.settings() if dialog.exec() == QDialog.DialogCode.Accepted else None


@dataclass(frozen=True)
class QuantizeSettings:
    grid: Fraction  # quarter notes
    strength: int = 100  # % of the way to the grid
    swing: int = 0  # % : every second grid line moves later, up to a third of a grid step (a triplet feel) at 100
    lengths: bool = True  # the note ends too

    def grid_ticks(self, resolution: int) -> int:
        return max(1, round(self.grid * resolution))


class QuantizeDialog(FormDialog):
    def __init__(self, parent: QWidget | None, scope: str, grid: Fraction, last: QuantizeSettings | None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Quantize")
        self.grid = QComboBox(toolTip="The grid the notes move to")
        self.grid.addItems(list(GRIDS))
        nearest = min(GRIDS, key=lambda name: abs(GRIDS[name] - (last.grid if last else grid)))
        self.grid.setCurrentText(nearest)
        self.strength = QSpinBox(suffix=" %", minimum=1, maximum=100, value=last.strength if last else 100,
                                 toolTip="How far each note moves towards the grid: 100 % all the way")  # fmt: skip
        self.swing = QSpinBox(suffix=" %", minimum=0, maximum=100, value=last.swing if last else 0,
                              toolTip="Moves every second grid line later: 0 straight, 100 a triplet feel")  # fmt: skip
        self.lengths = QCheckBox("Note ends too", checked=last.lengths if last else True)
        self.lay_out([(None, QLabel(scope)), ("Grid", self.grid), ("Strength", self.strength), ("Swing", self.swing),
                      ("", self.lengths)])  # fmt: skip

    def settings(self) -> QuantizeSettings:
        return QuantizeSettings(GRIDS[self.grid.currentText()], self.strength.value(), self.swing.value(),
                                self.lengths.isChecked())  # fmt: skip


@dataclass(frozen=True)
class HumanizeSettings:
    timing: int = 10  # ticks per quarter note × this / 480: at most this many 480ths of a quarter early or late
    velocity: int = 8  # at most this much softer or louder


class HumanizeDialog(FormDialog):
    def __init__(self, parent: QWidget | None, scope: str, last: HumanizeSettings | None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Humanize")
        last = last or HumanizeSettings()
        self.timing = QSpinBox(minimum=0, maximum=120, value=last.timing, suffix=" /480 of a beat",
                               toolTip="Each note moves at most this much early or late, at random")  # fmt: skip
        self.velocity = QSpinBox(minimum=0, maximum=64, value=last.velocity,
                                 toolTip="Each note plays at most this much softer or louder, at random")  # fmt: skip
        self.lay_out([(None, QLabel(scope)), ("Timing ±", self.timing), ("Velocity ±", self.velocity)])

    def settings(self) -> HumanizeSettings:
        return HumanizeSettings(self.timing.value(), self.velocity.value())


KEY_NAMES = [f"{name} major" for name in MAJOR_KEYS] + [f"{name} minor" for name in MINOR_KEYS]
NO_KEY = "No key signature"


@dataclass(frozen=True)
class ConductorSettings:
    qpm: float
    numerator: int
    denominator: int
    key: tuple[int, bool] | None  # (sharps, minor), None for none


class ConductorDialog(FormDialog):
    """Tempo, metre and key from the start of a bar on."""

    def __init__(self, parent: QWidget | None, bar: int, current: ConductorSettings) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Tempo, metre and key at bar {bar}")
        self.tempo = QDoubleSpinBox(minimum=10, maximum=400, decimals=1, value=current.qpm, suffix=" bpm",
                                    toolTip="Quarter notes per minute")  # fmt: skip
        self.numerator = QSpinBox(minimum=1, maximum=32, value=current.numerator, toolTip="Beats in a bar")
        self.denominator = QComboBox(toolTip="The note that counts a beat")
        self.denominator.addItems(["1", "2", "4", "8", "16", "32"])
        self.denominator.setCurrentText(str(current.denominator))
        self.key = QComboBox(toolTip="The key signature from this bar on")
        self.key.addItems([NO_KEY, *KEY_NAMES])
        if current.key is not None:
            sharps, minor = current.key
            self.key.setCurrentIndex(1 + sharps + 7 + (15 if minor else 0))
        self.lay_out([("Tempo", self.tempo), ("Metre", self.numerator), ("/", self.denominator), ("Key", self.key)])

    def settings(self) -> ConductorSettings:
        index = self.key.currentIndex() - 1
        key = None if index < 0 else (index % 15 - 7, index >= 15)
        return ConductorSettings(self.tempo.value(), self.numerator.value(), int(self.denominator.currentText()), key)
