"""The app plays, loops and stops on a real JACK MIDI port."""

from __future__ import annotations

import pytest

from meloformer_core.playback.player import schedule
from tests.conftest import FIXTURES
from tests.jack import sounding

pytestmark = pytest.mark.timeout(90)  # each takes seconds: a hung MIDI client fails fast


def test_play_loop_and_stop_on_a_jack_port(window, qtbot, receiver) -> None:
    window.refresh_midi_outputs()
    index = window.port_box.findData(f"{receiver.port} (JACK)")
    assert index >= 0, [window.port_box.itemText(i) for i in range(window.port_box.count())]
    window.port_box.setCurrentIndex(index)
    window._port_chosen(index)
    assert window.open_file(FIXTURES / "drum_groove.mid")
    song = window.editor.document.song
    # play from the start: notes arrive and the playhead moves over the roll
    window.actions["play_start"].trigger()
    qtbot.waitUntil(lambda: len(receiver.messages) > 10, timeout=5000)
    qtbot.wait(400)
    assert window.roll.state.playhead and window.roll.state.playhead > 0
    window.actions["play"].trigger()  # Space: stop
    qtbot.wait(100)
    assert not window.transport.playing and not sounding(receiver.messages)
    # loop the first bar: its first note comes back
    first_bar = song.bar_starts()[1]
    window.editor.select(window.roll.state.table.in_rect(0, first_bar - 1, 0, 127, None))
    window.actions["loop"].setChecked(True)
    receiver.messages.clear()
    window.seek(0)
    window.actions["play"].trigger()
    bar_seconds = float(song.seconds_at([first_bar])[0])
    qtbot.wait(int(bar_seconds * 2300))
    window.actions["play"].trigger()
    qtbot.wait(100)
    one_bar = [list(e.message) for e in schedule(song, None, 0, first_bar) if e.message[0] & 0xF0 == 0x90]
    played = [m for _, m in receiver.messages if m[0] & 0xF0 == 0x90]
    assert len(played) > len(one_bar)  # it went round at least once …
    assert played == (one_bar * 4)[: len(played)]  # … playing bar 1 again and again, nothing after it
    assert not sounding(receiver.messages), [m for _, m in receiver.messages if m[0] & 0xF0 != 0x80 or m[1] != 73][-30:]


def test_edits_while_playing_keep_playing(window, qtbot, receiver) -> None:
    window.refresh_midi_outputs()
    window._port_chosen(window.port_box.findData(f"{receiver.port} (JACK)"))
    window.open_file(FIXTURES / "bach_chorale.mid")
    window.play_from(0)
    qtbot.wait(300)
    window.editor.set_view(0, muted=True)  # mute the soprano while it plays
    qtbot.wait(50)  # a note sent just before the mute may still be on its way through JACK
    mark = len(receiver.messages)
    qtbot.wait(800)
    assert window.transport.playing
    later = [m for _, m in receiver.messages[mark:] if m[0] & 0xF0 == 0x90]
    assert later and all(m[0] & 0x0F != 0 for m in later)
    window.transport.stop()
    qtbot.wait(50)
    assert not sounding(receiver.messages)


def test_clicking_a_note_lets_it_be_heard(window, qtbot, receiver) -> None:
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    window.refresh_midi_outputs()
    window._port_chosen(window.port_box.findData(f"{receiver.port} (JACK)"))
    window.open_file(FIXTURES / "jig_6_8.mid")
    note = window.editor.document.song.tracks[0].notes[0]
    vp = window.roll.state.viewport
    at = QPoint(round(vp.x(note.start) + 3), round(vp.y(note.pitch) + vp.key_height / 2))
    QTest.mouseClick(window.roll.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
    qtbot.waitUntil(lambda: any(m[0] & 0xF0 == 0x80 for _, m in receiver.messages), timeout=3000)
    assert [m for _, m in receiver.messages if m[0] & 0xF0 == 0x90] == [[0x90, note.pitch, note.velocity]]
    assert not sounding(receiver.messages)
