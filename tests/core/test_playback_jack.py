"""Playback end to end: a real JACK server, a receiving client, and FluidSynth rendering a WAV."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from meloformer_core.midi_io import read_midi, write_midi
from meloformer_core.music import Song, TempoChange, Track
from meloformer_core.playback.player import Player, schedule
from meloformer_core.playback.ports import PortError, list_output_ports, open_output
from tests.conftest import FIXTURES, ROOT
from tests.jack import FluidSynth, read_streamed_wav


def test_ports_are_listed_and_a_missing_one_is_one_line(receiver) -> None:
    ports, _ = list_output_ports()
    assert any(p.label == f"{receiver.port} (JACK)" for p in ports)
    with pytest.raises(PortError, match=r"no MIDI output port 'nowhere'; available: .*mf-receiver:in"):
        open_output("nowhere")


def test_every_message_arrives_in_order_on_time(receiver) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    song = song.replace(tracks=song.tracks)
    bar3 = song.bar_starts()[2]
    expected = [e for e in schedule(song, None, 0, bar3)]
    with open_output(receiver.port) as output:
        player = Player(output.send)
        started = time.monotonic()
        player.play(song, 0, end_tick=bar3)
        deadline = time.monotonic() + 10
        while player.playing and time.monotonic() < deadline:
            time.sleep(0.02)
        player.close()
    time.sleep(0.1)
    received = [m for _, m in receiver.messages if m[0] & 0xF0 in (0x80, 0x90, 0xC0)]
    # every note on / off and program change, in order, with its channel, key and velocity
    assert received == [list(e.message) for e in expected]
    onsets = [(t - started, m) for t, m in receiver.messages if m[0] & 0xF0 == 0x90]
    errors_ms = [abs(at - 0.01 - e.seconds) * 1000 for (at, _), e in
                 zip(onsets, [e for e in expected if e.message[0] & 0xF0 == 0x90], strict=True)]  # fmt: skip
    assert np.mean(errors_ms) < 5 and np.max(errors_ms) < 25, (np.mean(errors_ms), np.max(errors_ms))


def test_stop_silences_every_channel(receiver) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    with open_output(receiver.port) as output:
        player = Player(output.send)
        player.play(song)
        time.sleep(0.5)
        player.stop()
        time.sleep(0.1)
        player.close()
    sounding: set[tuple[int, int]] = set()
    for _, (status, *data) in receiver.messages:
        if status & 0xF0 == 0x90 and data[1]:
            sounding.add((status & 0x0F, data[0]))
        elif status & 0xF0 == 0x80:
            sounding.discard((status & 0x0F, data[0]))
    assert not sounding
    all_off = {m[0] & 0x0F for _, m in receiver.messages if m[0] & 0xF0 == 0xB0 and m[1] == 123}
    assert all_off == {0, 1, 2, 9}


def test_cli_play_into_fluidsynth_renders_the_notes(jack, tmp_path: Path) -> None:
    """Three chords in one second, then silence: the WAV sounds where they were played, not after."""
    wav = tmp_path / "out.wav"
    synth = FluidSynth(wav)
    chords = [(0, 60), (480, 64), (960, 67)]
    notes = [(start, pitch + offset, 480, 110) for start, pitch in chords for offset in (0, 4, 7)]
    song = Song(480, (TempoChange(0, 333_333),), (), (), (Track("piano", 0, False, notes),))  # 180 BPM: 1 s
    midi = tmp_path / "chords.mid"
    write_midi(song, midi)
    time.sleep(0.5)
    result = subprocess.run([sys.executable, "-m", "meloformer_core.cli", "play", str(midi), "--port", synth.port],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["notes_played"] == 9
    time.sleep(1.5)
    synth.stop()
    rate, audio = read_streamed_wav(wav)
    level = np.abs(audio.astype(np.float64)).max(axis=1)
    window = rate // 20  # 50 ms
    rms = np.array([level[i : i + window].mean() for i in range(0, len(level) - window, window)])
    loud = np.flatnonzero(rms > 200)
    assert len(loud), "the WAV is silent"
    first = loud[0]
    seconds = lambda w: w / 20  # noqa: E731
    # sound during the three chords (one second), silence from half a second after the end
    assert (rms[first : first + 18] > 50).all(), rms[first : first + 20]
    tail = rms[first + int(1.5 * 20) :]
    assert len(tail) > 10 and (tail < 50).all(), f"sound {seconds(np.argmax(tail > 50))} s after the end"


def test_cli_missing_port_is_one_line_and_non_zero(jack) -> None:
    command = [sys.executable, "-m", "meloformer_core.cli", "play", str(FIXTURES / "jig_6_8.mid"), "--port", "no-such"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "no-such" in result.stderr


def test_a_virtual_port_reaches_a_client_that_connects(jack) -> None:
    import rtmidi

    from meloformer_core.playback.ports import VIRTUAL, virtual_possible

    assert virtual_possible(list_output_ports()[1])
    with open_output(VIRTUAL) as output:
        assert "virtual" in output.label
        listener = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="mf-listener")
        got: list[list[int]] = []
        listener.set_callback(lambda event, _data: got.append(event[0]))
        index = next(i for i, name in enumerate(listener.get_ports()) if name.startswith("MeloFormer"))
        listener.open_port(index)
        output.send([0x90, 60, 100])
        output.send([0x80, 60, 0])
        time.sleep(0.2)
        listener.close_port()
        listener.delete()
    assert got == [[0x90, 60, 100], [0x80, 60, 0]]
