"""Playback without a device: the schedule, and the player against a recording sink."""

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
    def __init__(self) -> None:
        self.messages: list[tuple[float, list[int]]] = []
        self.failing = False

    def __call__(self, message: list[int]) -> None:
        if self.failing:
            raise OSError("port closed")
        self.messages.append((time.monotonic(), list(message)))

    def sounding(self) -> set[tuple[int, int]]:
        return sounding(self.messages)


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


def test_player_timing_is_on_a_monotonic_clock() -> None:
    recorder = Recorder()
    done = threading.Event()
    player = Player(recorder, on_finished=done.set)
    started = time.monotonic()
    player.play(SONG)
    assert done.wait(10)
    player.close()
    ons = [(t - started, m) for t, m in recorder.messages if m[0] & 0xF0 == 0x90]
    expected = [0.0, 0.0, 0.5, 1.0, 2.0]
    errors = [abs(at - 0.01 - want) for (at, _), want in zip(ons, expected, strict=True)]  # 10 ms lead
    assert max(errors) < 0.02, errors
    assert not recorder.sounding()


def test_stop_pause_seek_and_edit_leave_nothing_sounding() -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    recorder = Recorder()
    player = Player(recorder)
    player.play(song)
    time.sleep(0.3)
    assert recorder.sounding()
    player.pause()
    paused_at = player.current_tick()
    assert not recorder.sounding() and 0 < paused_at < song.end_tick
    assert {m[0] & 0x0F for _, m in recorder.messages if m[0] & 0xF0 == 0xB0 and m[1] == ALL_NOTES_OFF} == {0, 1, 2, 9}
    player.resume()
    time.sleep(0.2)
    assert player.current_tick() > paused_at
    player.seek(song.bar_starts()[2])
    time.sleep(0.05)
    assert song.bar_starts()[2] <= player.current_tick() < song.bar_starts()[3]
    mark = len(recorder.messages)
    player.update_song(song.replace(tracks=song.tracks[:1]), tracks=[0])  # only the drums are left
    time.sleep(0.5)
    late = [m for _, m in recorder.messages[mark:] if m[0] & 0xF0 == 0x90]
    assert late and all(m[0] == 0x99 for m in late)
    player.stop()
    assert not recorder.sounding()
    player.close()


def test_loop_region_repeats() -> None:
    recorder = Recorder()
    player = Player(recorder)
    player.loop = (0, 480)  # the first beat, half a second
    player.play(SONG)
    time.sleep(1.3)
    player.close()
    starts = [t for t, m in recorder.messages if m[:2] == [0x90, 60]]
    assert len(starts) >= 2 and all(0.4 < b - a < 0.6 for a, b in itertools.pairwise(starts))
    assert not recorder.sounding()


def test_a_vanishing_port_stops_with_a_message() -> None:
    recorder, errors = Recorder(), []
    player = Player(recorder, on_error=errors.append)
    player.play(read_midi(FIXTURES / "drum_groove.mid"))
    time.sleep(0.2)
    recorder.failing = True
    time.sleep(0.3)
    assert errors and "MIDI output lost" in errors[0] and not player.playing
    player.close()


def test_audition_sounds_one_note_and_ends_it() -> None:
    recorder = Recorder()
    player = Player(recorder)
    player.audition(3, 40, 64, 100, seconds=0.1)
    time.sleep(0.05)
    assert recorder.sounding() == {(3, 64)}
    time.sleep(0.15)
    assert not recorder.sounding()
    assert [m for _, m in recorder.messages][:2] == [[0xC3, 40], [0x93, 64, 100]]
    player.close()
