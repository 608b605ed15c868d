"""Playback without a device: the schedule, and the player against a recording sink.

No test here asserts how late anything is (a busy machine may delay any thread); they wait
for what must happen by polling, and assert order, content and that nothing comes early.
Timing is measured by bench/playback.py."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meloformer_core.midi_io import read_midi
from meloformer_core.music import Song, TempoChange, TimeSignature, Track
from meloformer_core.playback.player import ALL_NOTES_OFF, Player, schedule
from tests.conftest import FIXTURES
from tests.jack import sounding

# two tracks, 120 then 60 quarters per minute from tick 960 (beat 3)
SONG = Song(480, (TempoChange(0, 500_000), TempoChange(960, 1_000_000)), (), (), (
    Track("piano", 0, False, [(0, 60, 480, 100), (480, 64, 480, 90), (960, 67, 960, 80)]),
    Track("drums", 0, True, [(0, 36, 120, 110), (1440, 38, 120, 100)]),
))  # fmt: skip


class Recorder:
    """A fake port: records what it is sent; once ``failing``, every write raises (after being
    noted in ``attempts``, to see what the player still tried)."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, list[int]]] = []
        self.attempts: list[list[int]] = []
        self.failing = False

    def __call__(self, message: list[int]) -> None:
        self.attempts.append(list(message))
        if self.failing:
            raise OSError("port closed")
        self.messages.append((time.monotonic(), list(message)))

    def sounding(self) -> set[tuple[int, int]]:
        return sounding(self.messages)


def wait_until(check, seconds: float = 20.0, what: str = "the condition") -> None:
    """Poll ``check`` until true; the deadline is generous, it only stops a hung test."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_schedule_follows_the_tempo_map_and_channels() -> None:
    events = schedule(SONG)
    ons = [(round(e.seconds, 6), e.message) for e in events if e.message[0] & 0xF0 == 0x90]
    assert ons == [(0.0, (0x90, 60, 100)), (0.0, (0x99, 36, 110)), (0.5, (0x90, 64, 90)), (1.0, (0x90, 67, 80)),
                   (2.0, (0x99, 38, 100))]  # fmt: skip
    assert [e.message for e in events[:2]] == [(0xC0, 0), (0xC9, 0)]  # programs first
    assert max(e.seconds for e in events) == pytest.approx(3.0)  # the last piano note ends at 1 s + 2 beats at 60
    # a range: notes cut at its end, nothing before its start, programs still sent
    part = schedule(SONG, [0], 480, 1200)
    assert [e.message for e in part if e.message[0] & 0xF0 == 0x80] == [(0x80, 64, 0), (0x80, 67, 0)]
    assert part[-1].tick == 1200 and part[0].message == (0xC0, 0)
    clicks = [e for e in schedule(SONG, [], 0, 1920, metronome=True) if e.message[0] == 0x99]
    assert [e.tick for e in clicks] == [0, 480, 960, 1440] and clicks[0].message[1] != clicks[1].message[1]
    assert all(e.click for e in clicks) and not any(e.click for e in events)


def test_the_metronome_counts_the_metre() -> None:
    """6/8 clicks two dotted quarters a bar, 7/8 seven eighths, each bar's first click high."""
    song = Song(480, (), (TimeSignature(0, 6, 8), TimeSignature(2880, 7, 8)), (), (
        Track("piano", 0, False, [(0, 60, 480, 100), (6000, 62, 240, 100)]),
    ))  # fmt: skip
    clicks = [e for e in schedule(song, [], 0, song.end_tick, metronome=True) if e.message[0] == 0x99]
    six_eight = [0, 720, 1440, 2160]
    seven_eight = [bar + 240 * k for bar in (2880, 4560) for k in range(7)]
    assert [e.tick for e in clicks] == six_eight + seven_eight
    high = [e.tick for e in clicks if e.message[1] == clicks[0].message[1]]
    assert high == [0, 1440, 2880, 4560]
    # from the middle of a bar: only the beats after, the downbeat still marked
    later = [e.tick for e in schedule(song, [], 800, 3200, metronome=True) if e.message[0] == 0x99]
    assert later == [1440, 2160, 2880, 3120]


@given(st.lists(st.tuples(st.integers(1, 20_000), st.integers(100_000, 2_000_000)), max_size=5),
       st.lists(st.integers(0, 200_000), min_size=1, max_size=20))  # fmt: skip
def test_ticks_at_inverts_seconds_at(changes, ticks) -> None:
    song = Song(480, tuple(TempoChange(t, us) for t, us in changes))
    assert song.ticks_at(song.seconds_at(ticks)).tolist() == ticks
    # between two ticks, the earlier one is sounding
    halfway = (song.seconds_at(ticks) + song.seconds_at(np.array(ticks) + 1)) / 2
    assert song.ticks_at(halfway).tolist() == ticks


def test_player_sends_every_message_in_order_never_early() -> None:
    """Every message of the schedule, in order, none before its time (how late is for the bench)."""
    recorder = Recorder()
    done = threading.Event()
    player = Player(recorder, on_finished=done.set)
    started = time.monotonic()
    player.play(SONG)
    assert done.wait(30)
    player.close()
    expected = schedule(SONG)
    sent = [m for _, m in recorder.messages]
    assert sent[: len(expected)] == [list(e.message) for e in expected]
    assert all(m[0] & 0xF0 == 0xB0 for m in sent[len(expected) :])  # then only All Notes Off
    for (at, _), event in zip(recorder.messages, expected, strict=False):
        assert at - started >= event.seconds, (event, at - started)
    assert not recorder.sounding()


def test_stop_pause_seek_and_edit_leave_nothing_sounding() -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    recorder = Recorder()
    player = Player(recorder)
    player.play(song)
    wait_until(lambda: recorder.sounding(), what="a note to sound")
    player.pause()
    paused_at = player.current_tick()
    assert not recorder.sounding() and 0 <= paused_at < song.end_tick
    assert {m[0] & 0x0F for _, m in recorder.messages if m[0] & 0xF0 == 0xB0 and m[1] == ALL_NOTES_OFF} == {0, 1, 2, 9}
    player.resume()
    wait_until(lambda: player.current_tick() > paused_at, what="the position to move on")
    bar3 = song.bar_starts()[2]
    player.seek(bar3)
    assert player.current_tick() >= bar3
    mark = len(recorder.messages)
    player.update_song(song.replace(tracks=song.tracks[:1]), tracks=[0])  # only the drums are left
    wait_until(lambda: any(m[0] & 0xF0 == 0x90 for _, m in recorder.messages[mark:]), what="a note after the edit")
    late = [m for _, m in recorder.messages[mark:] if m[0] & 0xF0 == 0x90]
    assert all(m[0] == 0x99 for m in late)
    player.stop()
    assert not recorder.sounding()
    player.close()


def test_loop_region_repeats() -> None:
    recorder = Recorder()
    player = Player(recorder)
    player.loop = (0, 480)  # the first beat, half a second
    player.play(SONG)
    wait_until(lambda: sum(m[:2] == [0x90, 60] for _, m in recorder.messages) >= 3, what="three rounds")
    player.close()
    starts = [t for t, m in recorder.messages if m[:2] == [0x90, 60]]
    # each round is the same beat again, and none starts before the last one has had its half second
    assert all(b - a >= 0.5 - 1e-3 for a, b in itertools.pairwise(starts))
    ons = [m for _, m in recorder.messages if m[0] & 0xF0 == 0x90]
    assert set(map(tuple, ons)) == {(0x90, 60, 100), (0x99, 36, 110)}
    assert not recorder.sounding()


def test_a_failing_write_stops_with_one_message_and_the_note_offs() -> None:
    """The fake port starts failing mid-song: the player stops, still tries a note-off for
    every note it had started (and All Notes Off), reports once, and plays nothing more."""
    recorder, errors = Recorder(), []
    player = Player(recorder, on_error=errors.append)
    player.play(read_midi(FIXTURES / "drum_groove.mid"))
    wait_until(lambda: recorder.sounding(), what="a note to sound")
    recorder.failing = True
    sounding_then = recorder.sounding()
    wait_until(lambda: errors, what="the error")
    assert not player.playing and player.lost == errors[0] and "MIDI output lost: port closed" in errors[0]
    tried = recorder.attempts[len(recorder.messages) :]  # from the first failed write on
    assert not [m for m in tried[1:] if m[0] & 0xF0 == 0x90]  # after the write that failed, no note-on
    offs = {(m[0] & 0x0F, m[1]) for m in tried if m[0] & 0xF0 == 0x80}
    assert sounding_then <= offs and any(m[0] & 0xF0 == 0xB0 and m[1] == ALL_NOTES_OFF for m in tried)
    player.close()
    assert len(errors) == 1


def test_a_port_that_disappears_is_noticed_by_the_check() -> None:
    """A port whose writes never fail (JACK's, with its server gone): the check says it is
    gone, and the player stops, ends its notes on it, and reports the check's line once."""
    recorder, errors, gone, checks = Recorder(), [], threading.Event(), []

    def check() -> str | None:
        checks.append(threading.current_thread().name)
        return "MIDI output synth:in (JACK) lost: the JACK server is not running" if gone.is_set() else None

    player = Player(recorder, on_error=errors.append, check=check, check_seconds=0.01)
    player.play(read_midi(FIXTURES / "drum_groove.mid"))
    wait_until(lambda: checks and recorder.sounding(), what="a check while a note sounds")
    gone.set()
    wait_until(lambda: errors, what="the error")
    assert errors == ["MIDI output synth:in (JACK) lost: the JACK server is not running"] and not player.playing
    assert "meloformer-player" not in checks  # asked off the thread that keeps time
    after = len(recorder.messages)
    assert not recorder.sounding()  # every note it had started got its note-off
    player.close()
    assert [m for _, m in recorder.messages[after:] if m[0] & 0xF0 == 0x90] == [] and len(errors) == 1


def test_audition_sounds_one_note_and_ends_it() -> None:
    recorder = Recorder()
    player = Player(recorder)
    started = time.monotonic()
    player.audition(3, 40, 64, 100, seconds=0.1)
    wait_until(lambda: any(m[0] == 0x83 for _, m in recorder.messages), what="the note-off")
    assert [m for _, m in recorder.messages] == [[0xC3, 40], [0x93, 64, 100], [0x83, 64, 0]]
    assert recorder.messages[-1][0] - started >= 0.1  # not cut short
    assert not recorder.sounding()
    player.close()


class FakeClock:
    """`time` for the ports module: ``sleep`` moves the clock on instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class FakeHandle:
    """RtMidi's MidiOut, recording when each call came (on the fake clock)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.calls = clock, []

    def set_error_callback(self, _callback) -> None:
        pass

    def send_message(self, message) -> None:
        self.calls.append(("send", self.clock.now))

    def close_port(self) -> None:
        self.calls.append(("close_port", self.clock.now))

    def delete(self) -> None:
        self.calls.append(("delete", self.clock.now))


def test_a_jack_output_keeps_its_port_until_the_last_messages_can_be_read(monkeypatch) -> None:
    """RtMidi unregisters a JACK port one cycle after the last messages were queued, before a
    synthesizer may have read them: the note-offs that end the music were lost. Closed right
    after a message, a JACK output keeps its port open for the drain time first; one that has
    been quiet that long closes at once, and an output of another MIDI system never waits."""
    from meloformer_core.playback import ports

    clock = FakeClock()
    monkeypatch.setattr(ports, "time", clock)
    for jack_server, quiet, waits in (("mf-server", 0.0, True), ("mf-server", 1.0, False), (None, 0.0, False)):
        handle = FakeHandle(clock)
        output = ports.MidiOutput(None, handle, "synth:in (JACK)")
        output.jack_server = jack_server  # as opened on that JACK server (None: ALSA, CoreMIDI, …)
        output.send([0x80, 60, 0])
        clock.sleep(quiet)
        sent, closing = handle.calls[0][1], clock.now
        output.close()
        closed = dict(handle.calls)["close_port"]
        assert [call for call, _ in handle.calls] == ["send", "close_port", "delete"]
        if waits:
            assert closed - sent == pytest.approx(ports.JACK_DRAIN_SECONDS)
        else:
            assert closed == closing
