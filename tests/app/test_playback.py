"""The app plays, loops and stops on a real JACK MIDI port, and copes with losing it.

Every wait polls for what must happen (with deadlines generous enough for a busy machine);
nothing asserts how long it took.
"""

from __future__ import annotations

import threading

import pytest

from meloformer_core.playback.player import schedule
from meloformer_core.playback.ports import OutputLostError, OutputPort
from tests.conftest import FIXTURES
from tests.jack import sounding

pytestmark = pytest.mark.timeout(120)  # each takes seconds: a hung MIDI client fails fast

WAIT_MS = 30_000


def _choose(window, receiver) -> None:
    window.refresh_midi_outputs()
    index = window.port_box.findData(f"{receiver.port} (JACK)")
    assert index >= 0, [window.port_box.itemText(i) for i in range(window.port_box.count())]
    window.port_box.setCurrentIndex(index)
    window._port_chosen(index)


def test_play_loop_and_stop_on_a_jack_port(window, qtbot, receiver) -> None:
    _choose(window, receiver)
    assert window.open_file(FIXTURES / "drum_groove.mid")
    song = window.editor.document.song
    # play from the start: notes arrive and the playhead moves over the roll
    window.actions["play_start"].trigger()
    qtbot.waitUntil(lambda: len(receiver.messages) > 10, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(window.roll.state.playhead and window.roll.state.playhead > 0), timeout=WAIT_MS)
    window.actions["play"].trigger()  # Space: stop
    assert not window.transport.playing
    qtbot.waitUntil(lambda: not sounding(receiver.messages), timeout=WAIT_MS)
    # loop the first bar: its first note comes back
    first_bar = song.bar_starts()[1]
    one_bar = [list(e.message) for e in schedule(song, None, 0, first_bar) if e.message[0] & 0xF0 == 0x90]
    window.editor.select(window.roll.state.table.in_rect(0, first_bar - 1, 0, 127, None))
    window.actions["loop"].setChecked(True)
    receiver.messages.clear()
    window.seek(0)
    window.actions["play"].trigger()
    qtbot.waitUntil(lambda: len(receiver.note_ons()) > len(one_bar) + 2, timeout=WAIT_MS)  # round at least once
    window.actions["play"].trigger()
    assert not window.transport.playing
    qtbot.waitUntil(lambda: not sounding(receiver.messages), timeout=WAIT_MS)
    played = receiver.note_ons()
    rounds = len(played) // len(one_bar) + 1
    assert played == (one_bar * rounds)[: len(played)]  # bar 1 again and again, nothing after it


def test_edits_while_playing_keep_playing(window, qtbot, receiver) -> None:
    _choose(window, receiver)
    window.open_file(FIXTURES / "bach_chorale.mid")
    window.play_from(0)
    qtbot.waitUntil(lambda: len(receiver.note_ons()) >= 4, timeout=WAIT_MS)
    window.editor.set_view(0, muted=True)  # mute the soprano while it plays

    def after_the_edit() -> list[list[int]]:
        # the edit silences what sounds (All Notes Off on every channel) and goes on with
        # the new song: everything after that burst comes from the edited song
        messages = [m for _, m in receiver.messages]
        burst = next((i for i, m in enumerate(messages) if m[0] & 0xF0 == 0xB0 and m[1] == 123), None)
        return [] if burst is None else [m for m in messages[burst:] if m[0] & 0xF0 == 0x90]

    qtbot.waitUntil(lambda: len(after_the_edit()) >= 3, timeout=WAIT_MS)
    assert window.transport.playing
    assert all(m[0] & 0x0F != 0 for m in after_the_edit())
    window.transport.stop()
    qtbot.waitUntil(lambda: not sounding(receiver.messages), timeout=WAIT_MS)


def test_clicking_a_note_lets_it_be_heard(window, qtbot, receiver) -> None:
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    _choose(window, receiver)
    window.open_file(FIXTURES / "jig_6_8.mid")
    note = window.editor.document.song.tracks[0].notes[0]
    vp = window.roll.state.viewport
    at = QPoint(round(vp.x(note.start) + 3), round(vp.y(note.pitch) + vp.key_height / 2))
    QTest.mouseClick(window.roll.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
    qtbot.waitUntil(lambda: any(m[0] & 0xF0 == 0x80 for _, m in receiver.messages), timeout=WAIT_MS)
    assert [m for _, m in receiver.messages if m[0] & 0xF0 == 0x90] == [[0x90, note.pitch, note.velocity]]
    assert not sounding(receiver.messages)


class FakeOutput:
    """An open output that goes away on demand: ``gone`` (a port whose writes still succeed,
    as JACK's do with the server dead: only the player's check can tell) or ``broken``
    (every write fails)."""

    label = "Fake Synth (JACK)"

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.gone = self.broken = False
        self.closed = threading.Event()

    def send(self, message: list[int]) -> None:
        if self.broken:
            raise OutputLostError(f"MIDI output {self.label} lost: writing failed (port closed)")
        self.sent.append(list(message))

    def problem(self) -> str | None:
        return f"MIDI output {self.label} lost: the port is gone" if self.gone or self.broken else None

    def close(self) -> None:
        self.closed.set()


@pytest.mark.parametrize("how", ["gone", "broken"])
def test_a_lost_output_shows_in_the_status_bar_and_playback_falls_back(window, qtbot, monkeypatch, how) -> None:
    import meloformer_app.main_window as main_window
    import meloformer_app.transport as transport

    fake, port = FakeOutput(), OutputPort("jack", "Fake Synth", 0)
    listing = [[port]]
    monkeypatch.setattr(transport, "list_output_ports", lambda: (list(listing[0]), []))
    monkeypatch.setattr(main_window, "list_output_ports", lambda: (list(listing[0]), []))
    monkeypatch.setattr(transport, "open_output", lambda name=None: fake)
    window.refresh_midi_outputs()
    assert window.port_box.findData(port.label) >= 0
    assert window.open_file(FIXTURES / "bach_chorale.mid")
    window.play_from(0)
    qtbot.waitUntil(lambda: sum(m[0] & 0xF0 == 0x90 for m in fake.sent) >= 3, timeout=WAIT_MS)
    listing[0] = []  # the synthesizer quits: gone from the listing too
    setattr(fake, how, True)
    qtbot.waitUntil(lambda: not window.transport.playing and window.transport.output is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: fake.closed.is_set(), timeout=WAIT_MS)
    message = window.statusBar().currentMessage()
    assert message.startswith("MIDI output Fake Synth (JACK) lost: "), message
    assert window.midi_label.text() == "MIDI output lost: Fake Synth (JACK)"
    assert window.dialogs == []  # said in the status bar, no dialog in the way
    assert window.actions["play"].text() == "&Play / Stop"
    assert window.port_box.findData(port.label) < 0  # no longer offered
    if how == "gone":  # writes still went: what it had started got its note-off
        assert not sounding([(0, m) for m in fake.sent])
