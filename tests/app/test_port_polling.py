"""The window looks for MIDI outputs that come and go, every 5 s, off the GUI thread."""

from __future__ import annotations

import threading

import meloformer_app.main_window as main_window
import meloformer_app.transport as transport
from meloformer_core.playback.ports import OutputPort

SYNTH = OutputPort("jack", "fluidsynth:midi_00", 0)


def test_a_port_that_appears_is_listed_without_blocking_the_window(window, qtbot, monkeypatch) -> None:
    listed_on = []

    def fake_listing():
        listed_on.append(threading.current_thread())
        return [SYNTH], []

    monkeypatch.setattr(main_window, "list_output_ports", fake_listing)
    monkeypatch.setattr(transport, "list_output_ports", lambda: ([SYNTH], []))  # what the refresh then lists
    window._poll_ports()
    qtbot.waitUntil(lambda: window.port_box.findData(SYNTH.label) >= 0, timeout=3000)
    assert listed_on and threading.main_thread() not in listed_on  # listed on the polling thread
    assert "1 port" in window.midi_label.text()
    window._poll_ports()  # the same ports again: nothing to rebuild
    qtbot.waitUntil(lambda: not window._polling, timeout=3000)
    assert window.port_box.findData(SYNTH.label) >= 0


def test_a_slow_midi_system_gets_one_listing_at_a_time_and_a_closed_window_none(window, qtbot, monkeypatch) -> None:
    """A MIDI system that takes long to answer (a JACK server under load) is not asked again
    by the next tick, nor by another window, until it has answered; a closed window stops
    asking."""
    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    answer = threading.Event()
    calls = []

    def slow_listing():
        calls.append(threading.current_thread().name)
        answer.wait(30)
        return [SYNTH], []

    monkeypatch.setattr(main_window, "list_output_ports", slow_listing)
    monkeypatch.setattr(transport, "list_output_ports", lambda: ([SYNTH], []))
    second = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(second)
    window._poll_ports()
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=3000)
    window._poll_ports()  # the next tick
    second._poll_ports()  # another window's tick
    assert len(calls) == 1 and window._polling and not second._polling
    answer.set()
    qtbot.waitUntil(lambda: not window._polling, timeout=3000)
    assert window.port_box.findData(SYNTH.label) >= 0
    second._poll_ports()  # the first listing has ended: the next one may start
    qtbot.waitUntil(lambda: len(calls) == 2 and not second._polling, timeout=3000)

    second.generator.shutdown()
    assert second.close() and not second.ports_timer.isActive()
    second._poll_ports()
    assert len(calls) == 2
