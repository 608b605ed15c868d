"""Every action of the app in one place: name, menu text, default shortcut and tip.

Menus and toolbars are built from this list; users may override shortcuts in the
settings file (``shortcuts``: action name → key sequence). Roll actions (arrows, Delete)
apply to the piano roll only, so they never steal keys from text fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QStyle, QWidget


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcuts: tuple[str, ...] = ()
    tip: str = ""
    checkable: bool = False
    roll_only: bool = False  # active while the piano roll has focus


ACTIONS = (
    ActionSpec("new", "&New", ("Ctrl+N",), "Start an empty song"),
    ActionSpec("open", "&Open…", ("Ctrl+O",), "Open a MIDI file (or drop one on the window)"),
    ActionSpec("save", "&Save", ("Ctrl+S",), "Save the song as a MIDI file"),
    ActionSpec("save_as", "Save &As…", ("Ctrl+Shift+S",), "Save the song under another name"),
    ActionSpec("export", "&Export…", ("Ctrl+E",), "Export all, chosen or generated parts, one file or one per track"),
    ActionSpec("export_audio", "Export &Audio…", ("Ctrl+Shift+E",),
               "Render all or the selected tracks, the whole song or the generated bars, to WAV or FLAC"),
    ActionSpec("quit", "&Quit", ("Ctrl+Q",), "Close MeloFormer"),
    ActionSpec("undo", "&Undo", ("Ctrl+Z",), "Undo the last edit"),
    ActionSpec("redo", "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo the edit just undone"),
    ActionSpec("cut", "Cu&t", ("Ctrl+X",), "Cut the selected notes", roll_only=True),
    ActionSpec("copy", "&Copy", ("Ctrl+C",), "Copy the selected notes", roll_only=True),
    ActionSpec("paste", "&Paste", ("Ctrl+V",), "Paste at the playhead (or where the copy came from)", roll_only=True),
    ActionSpec("delete", "&Delete", ("Delete",), "Delete the selected notes", roll_only=True),
    ActionSpec("select_all", "Select &All", ("Ctrl+A",), "Select every note of the track shown", roll_only=True),
    ActionSpec("quantize", "&Quantize…", ("Q",), "Move the selected notes, or the selected track's, to a grid "
               "(strength, swing)", roll_only=True),
    ActionSpec("duplicate", "D&uplicate", ("Ctrl+D",), "Copy the selected notes into the bars right after theirs",
               roll_only=True),
    ActionSpec("transpose", "&Transpose…", ("Ctrl+T",), "Transpose the selected notes, or the selected track's, "
               "by semitones or octaves"),
    ActionSpec("humanize", "&Humanize…", ("Ctrl+H",), "Loosen the timing and velocity of the selected notes, or "
               "the selected track's, at random"),
    ActionSpec("transpose_up", "Transpose Up", ("Up",), "Selected notes one semitone up", roll_only=True),
    ActionSpec("transpose_down", "Transpose Down", ("Down",), "Selected notes one semitone down", roll_only=True),
    ActionSpec("octave_up", "Octave Up", ("Shift+Up",), "Selected notes one octave up", roll_only=True),
    ActionSpec("octave_down", "Octave Down", ("Shift+Down",), "Selected notes one octave down", roll_only=True),
    ActionSpec("tool_select", "&Select Tool", ("1",), "Click, drag or rubber-band to select, move and resize",
               checkable=True),
    ActionSpec("tool_draw", "&Draw Tool", ("2",), "Click or drag to draw notes of the grid length", checkable=True),
    ActionSpec("tool_erase", "&Erase Tool", ("3",), "Click or drag over notes to delete them", checkable=True),
    ActionSpec("snap", "S&nap to Grid", ("S",), "Snap to the grid (hold Alt to place freely)", checkable=True),
    ActionSpec("triplets", "&Triplet Grid", ("T",), "Use a triplet grid", checkable=True),
    ActionSpec("zoom_in", "Zoom &In", ("Ctrl+=", "Ctrl++"), "Zoom in (Ctrl+wheel)"),
    ActionSpec("zoom_out", "Zoom &Out", ("Ctrl+-",), "Zoom out (Ctrl+wheel)"),
    ActionSpec("zoom_fit", "&Fit Song", ("Ctrl+0",), "Show the whole song"),
    ActionSpec("dark_theme", "&Dark Theme", (), "Dark or light colours (remembered)", checkable=True),
    ActionSpec("used_kit_only", "Used &Kit Pieces Only", ("Shift+K",),
               "With a drum track selected, a row for each kit piece it plays and no others", checkable=True),
    ActionSpec("continue", "&Continue", ("Ctrl+Return",), "Add new bars after the song"),
    ActionSpec("shortcuts", "&Keyboard Shortcuts", ("F1",), "Every action and its keys"),
    ActionSpec("preferences", "Pr&eferences…", ("Ctrl+,",), "Theme, output, SoundFont, volume and keys"),
    ActionSpec("arrange", "&Arrange Selected Tracks", ("Ctrl+Shift+A",),
               "Rewrite the tracks ticked “Gen” in the selected bars, under the other tracks"),
    ActionSpec("regenerate", "&Regenerate Selected Bars", ("Ctrl+R",),
               "Rewrite the bars of the selected notes to join what comes before and after"),
    ActionSpec("cancel", "Cancel &Generation", ("Esc",), "Stop generating; the song stays as it was"),
    ActionSpec("play", "&Play / Stop", ("Space",), "Play from the playhead, or stop", roll_only=True),
    ActionSpec("play_start", "Play from &Start", ("Return", "Enter"), "Play from the first bar", roll_only=True),
    ActionSpec("loop", "&Loop", ("L",), "Loop the selected bars (the whole song when nothing is selected)",
               checkable=True),
    ActionSpec("metronome", "&Metronome", ("K",), "Click the beats while playing", checkable=True),
    ActionSpec("refresh_ports", "&Refresh MIDI Ports", (), "Look again for MIDI outputs (devices come and go)"),
    ActionSpec("choose_soundfont", "Choose &SoundFont…", (),
               "Play and export with another General MIDI SoundFont (.sf2) in the built-in synth"),
    ActionSpec("default_soundfont", "&Default SoundFont", (), "Play and export with TimGM6mb, the SoundFont that "
               "comes with MeloFormer"),
)  # fmt: skip


# toolbar icons: Qt's standard icons, which ship with Qt on every platform
ICONS = {
    "new": QStyle.StandardPixmap.SP_FileIcon, "open": QStyle.StandardPixmap.SP_DialogOpenButton,
    "save": QStyle.StandardPixmap.SP_DialogSaveButton, "undo": QStyle.StandardPixmap.SP_ArrowBack,
    "redo": QStyle.StandardPixmap.SP_ArrowForward, "play": QStyle.StandardPixmap.SP_MediaPlay,
    "play_start": QStyle.StandardPixmap.SP_MediaSkipBackward, "loop": QStyle.StandardPixmap.SP_BrowserReload,
    "continue": QStyle.StandardPixmap.SP_MediaSeekForward, "cancel": QStyle.StandardPixmap.SP_BrowserStop,
    "refresh_ports": QStyle.StandardPixmap.SP_DriveNetIcon,
}  # fmt: skip


def build_actions(window: QWidget, roll: QWidget, overrides: dict[str, str]) -> dict[str, QAction]:
    actions = {}
    for spec in ACTIONS:
        action = QAction(spec.text, window)
        if spec.name in ICONS:
            action.setIcon(window.style().standardIcon(ICONS[spec.name]))
        keys = (overrides[spec.name],) if spec.name in overrides else spec.shortcuts
        action.setShortcuts([QKeySequence(k) for k in keys])
        shown = f" ({QKeySequence(keys[0]).toString(QKeySequence.SequenceFormat.NativeText)})" if keys else ""
        action.setToolTip(f"{spec.tip}{shown}")
        action.setStatusTip(spec.tip)
        action.setCheckable(spec.checkable)
        if spec.roll_only:
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            roll.addAction(action)
        else:
            window.addAction(action)
        actions[spec.name] = action
    return actions
