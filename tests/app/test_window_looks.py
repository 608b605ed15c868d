"""The window's looks, offscreen: themes, track colours, the transport at every width, the
roll's share of the screen, and the preferences that keep them."""

from __future__ import annotations

import pytest

from tests.app.test_window import song_of
from tests.conftest import FIXTURES, ROOT


def test_theme_and_shortcut_overrides_are_remembered(window, qtbot) -> None:
    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    window.actions["dark_theme"].setChecked(False)
    assert Settings.load().theme == "light"
    settings = Settings.load()
    settings.shortcuts = {"continue": "F5"}
    second = MainWindow(settings, load_model=False)
    qtbot.addWidget(second)
    assert second.actions["continue"].shortcut().toString() == "F5" and "(F5)" in second.actions["continue"].toolTip()
    assert not second.actions["dark_theme"].isChecked()
    second.generator.shutdown()


@pytest.mark.parametrize("size", [(1600, 1000), (1280, 720)])
def test_the_transport_shows_output_position_tempo_and_metre_at_every_width(window, qtbot, size) -> None:
    from meloformer_app.position import conductor_text, position_text

    window.resize(*size)
    window.open_file(ROOT / "resources" / "examples" / "band_song.mid")
    qtbot.waitUntil(lambda: window.width() == size[0])
    for widget in (window.port_box, window.position_label, window.conductor_label):  # not in a toolbar's overflow
        assert widget.isVisible()
        corner = widget.mapTo(window, widget.rect().bottomRight())
        assert 0 < corner.x() <= window.width() and 0 < corner.y() <= window.height()
    assert window.position_label.text().strip() == "1.1  0:00.0"
    assert window.conductor_label.text().strip() == "112 bpm  4/4  C major"
    song = song_of(window)
    tick = song.bar_starts()[2] + song.resolution  # bar 3, beat 2
    window._playhead_moved(tick)
    assert window.position_label.text().strip() == position_text(song, tick) == "3.2  0:04.8"
    assert conductor_text(song, tick) == "112 bpm  4/4  C major"
    assert not window.actions["play"].icon().isNull()  # the transport has icons; its text shows on hover


def test_the_roll_gets_most_of_a_laptop_screen_and_the_track_names_stay_whole(window, qtbot) -> None:
    window.resize(1280, 720)
    window.open_file(FIXTURES / "bach_chorale.mid")
    qtbot.waitUntil(lambda: window.width() == 1280)
    qtbot.waitUntil(lambda: window.roll.width() > window.width() / 2)  # both side panels open beside it
    assert all(dock.isVisible() for dock in window.docks.values())
    table = window.tracks.table
    names = [table.cellWidget(row, 2).text() for row in range(table.rowCount())]
    assert names == ["Soprano", "Alto", "Tenor", "Bass"]
    widest = max(table.fontMetrics().horizontalAdvance(name) for name in names)
    assert table.columnWidth(2) > widest  # not cut to "Sopr…"
    window.open_file(ROOT / "resources" / "examples" / "band_song.mid")
    keys = table.cellWidget(1, 2)  # "Electric Piano": wider than the column, it shows its start
    assert keys.text() == "Electric Piano" and keys.cursorPosition() == 0 and keys.toolTip() == "Electric Piano"
    panel = window.panel
    for button in (panel.continue_button, panel.arrange_button, panel.regenerate_button):
        assert button.isVisible() and button.mapTo(window, button.rect().bottomRight()).x() <= window.width()


def test_the_light_theme_reaches_the_roll_ruler_and_velocity_lane(window) -> None:
    from meloformer_app.theme import DARK_ROLL, LIGHT_ROLL

    window.open_file(FIXTURES / "bach_chorale.mid")

    def corner(widget) -> str:  # a pixel of the widget's own background
        return widget.grab().toImage().pixelColor(widget.width() - 3, 2).name()

    window.set_theme(False)
    assert window.settings.theme == "light"
    light = {corner(window.roll.ruler), corner(window.roll.velocity)}
    assert light == {LIGHT_ROLL.ruler, LIGHT_ROLL.lane}
    window.set_theme(True)
    assert {corner(window.roll.ruler), corner(window.roll.velocity)} == {DARK_ROLL.ruler, DARK_ROLL.lane}


def lab_distance(first: str, second: str) -> float:
    """CIE76 colour difference of two #rrggbb colours (sRGB, D65)."""
    import numpy as np

    def lab(colour: str) -> np.ndarray:
        rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
        rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
        xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
        xyz = xyz / np.array([0.95047, 1.0, 1.08883])  # relative to white
        f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
        return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])

    return float(np.linalg.norm(lab(first) - lab(second)))


def test_track_colours_are_told_apart_and_instrument_names_fit(window) -> None:
    import itertools

    from meloformer_app.document.model import PALETTE

    band = PALETTE[:8]  # the first tracks of a band: any two far apart (red, orange and pink too)
    assert min(lab_distance(a, b) for a, b in itertools.combinations(band, 2)) >= 35
    assert min(lab_distance(PALETTE[i], PALETTE[i - 1]) for i in range(len(PALETTE))) >= 35  # neighbours
    assert min(lab_distance(a, b) for a, b in itertools.combinations(PALETTE, 2)) >= 25
    from meloformer_app.panels import COMBO_PADDING_PX, ElidedComboBox

    window.open_file(ROOT / "resources" / "examples" / "band_song.mid")
    table = window.tracks.table
    metrics = table.fontMetrics()
    assert table.columnWidth(3) >= metrics.horizontalAdvance("128 Gunshot") + COMBO_PADDING_PX
    for row in range(table.rowCount()):  # a name fits, or ends in "…" and is whole in the tooltip
        box = table.cellWidget(row, 3)
        assert isinstance(box, ElidedComboBox) and box.currentText() in box.toolTip()
    window.tracks.resize(window.tracks.minimumWidth(), 300)
    assert table.columnWidth(2) >= 60  # the names keep room at the narrowest


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_track_lists_toggles_stand_out_in_both_themes(window, theme) -> None:
    from PySide6.QtWidgets import QApplication

    from meloformer_app.theme import apply_theme

    apply_theme(QApplication.instance(), theme)
    try:
        window.open_file(FIXTURES / "drum_groove.mid")
        box = window.tracks.checkbox(0, 5)  # Mute, unticked
        image, background = box.grab().toImage(), box.palette().window().color()
        strongest = max(
            lab_distance(image.pixelColor(x, y).name(), background.name())
            for x in range(image.width())
            for y in range(image.height())
        )
        assert strongest >= 40  # the box's frame is seen, not a faint outline
    finally:
        apply_theme(QApplication.instance(), "light")


def test_preferences_set_the_theme_volume_and_keys_and_keep_them(window, qtbot) -> None:
    from PySide6.QtGui import QKeySequence

    from meloformer_app.settings import Settings

    window.actions["preferences"].trigger()
    dialog = window.preferences_dialog
    dialog.theme.setCurrentText("Light")
    dialog.volume.setValue(35)
    dialog.key_edit("continue").setKeySequence(QKeySequence("F5"))
    dialog.accept()
    assert window.settings.theme == "light" and window.roll.state.colours.lane != "#1b1d21"
    assert window.volume_slider.value() == 35
    assert window.actions["continue"].shortcut().toString() == "F5"
    kept = Settings.load()
    assert kept.shortcuts["continue"] == "F5" and kept.theme == "light"
    window.actions["preferences"].trigger()
    window.preferences_dialog.reject()  # Cancel changes nothing
    assert window.actions["continue"].shortcut().toString() == "F5"
    window.set_theme(True)
