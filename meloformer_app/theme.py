"""Light and dark palettes (Fusion style), for the widgets and for the piano roll's own
painting (canvas, ruler, keyboard and velocity lane follow the theme too)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class RollColours:
    background: str  # the canvas outside the rows
    row_dark: str  # rows of black keys (of pitches outside the kit, for drums)
    row_light: str
    grid: str  # grid lines, beat lines, bar lines
    beat: str
    bar: str
    ruler: str  # the ruler's background, its lines and text, its beat ticks
    ruler_text: str
    ruler_beat: str
    lane: str  # the velocity lane's background
    playhead: str
    note_edge: str
    band: str  # the rubber band's edge


DARK_ROLL = RollColours("#1e2126", "#23272d", "#2a2e35", "#30353d", "#3d434d", "#5a626e", "#2b2f36", "#c8ccd2",
                        "#6c727c", "#1b1d21", "#ff6b6b", "#00000078", "#9cc7ff")  # fmt: skip
LIGHT_ROLL = RollColours("#fbfbfc", "#e6e9ee", "#f6f7f9", "#e0e3e8", "#cdd2d9", "#8f97a3", "#e3e6ea", "#2d3138",
                         "#8a919b", "#f1f3f6", "#d62828", "#00000060", "#2f6fd0")  # fmt: skip


def roll_colours(theme: str) -> RollColours:
    return DARK_ROLL if theme == "dark" else LIGHT_ROLL


# Fusion's check boxes are faint outlines: a clear frame, and a filled box when ticked, so
# Gen, Drums, M and S read at a glance in either theme (frame, box, ticked box, its frame)
CHECK_BOXES = """
QCheckBox::indicator {{ width: 13px; height: 13px; border: 1px solid {0}; border-radius: 2px; background: {1}; }}
QCheckBox::indicator:checked {{ background: {2}; border-color: {3}; }}
QCheckBox::indicator:disabled {{ border-color: #8a8f98; }}
"""
DARK_CHECK_BOXES = CHECK_BOXES.format("#a4aab4", "#1f2226", "#3d7fd9", "#cfe0f8")
LIGHT_CHECK_BOXES = CHECK_BOXES.format("#5f6670", "#ffffff", "#2f6fd0", "#1d4f9e")


def apply_theme(app: QApplication, theme: str) -> None:
    app.setStyle("Fusion")
    if theme != "dark":
        app.setPalette(app.style().standardPalette())
        app.setStyleSheet(LIGHT_CHECK_BOXES)
        return
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#2b2e33", QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1f2226", QPalette.ColorRole.AlternateBase: "#2b2e33",
        QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#353940",
        QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.Highlight: "#3d7fd9",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#2b2e33",
        QPalette.ColorRole.ToolTipText: "#e6e6e6", QPalette.ColorRole.PlaceholderText: "#8a8f98",
    }  # fmt: skip
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#7a7f88"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#7a7f88"))
    app.setPalette(palette)
    app.setStyleSheet(DARK_CHECK_BOXES)
