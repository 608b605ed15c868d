"""Playback end to end: a real JACK server, a receiving client, and FluidSynth rendering a WAV."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from meloformer_core.midi_io import read_midi
from meloformer_core.playback.player import Player, schedule
from meloformer_core.playback.ports import PortError, list_output_ports, open_output
from tests.conftest import FIXTURES, ROOT
from tests.jack import FluidSynth, read_streamed_wav, sounding

pytestmark = pytest.mark.timeout(90)  # each takes seconds: a hung MIDI client fails fast


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
    # onsets: the time between notes as scheduled (JACK adds a constant latency of up to
    # a period, 5.3 ms here, which shifts every note alike and is reported by bench/playback.py)
    arrived = np.array([t for t, m in receiver.messages if m[0] & 0xF0 == 0x90])
    due = np.array([e.seconds for e in expected if e.message[0] & 0xF0 == 0x90])
    assert arrived[0] - started < 0.1
    errors_ms = np.abs((arrived - arrived[0]) - (due - due[0])) * 1000
    assert errors_ms.mean() <= 5 and errors_ms.max() < 30, (errors_ms.mean(), errors_ms.max())


def test_stop_silences_every_channel(receiver) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    with open_output(receiver.port) as output:
        player = Player(output.send)
        player.play(song)
        time.sleep(0.5)
        player.stop()
        time.sleep(0.1)
        player.close()
    assert not sounding(receiver.messages)
    all_off = {m[0] & 0x0F for _, m in receiver.messages if m[0] & 0xF0 == 0xB0 and m[1] == 123}
    assert all_off == {0, 1, 2, 9}


def test_cli_play_of_a_real_file_into_fluidsynth(jack, tmp_path: Path) -> None:
    """Two bars of the Bach chorale with clicks: the WAV sounds while they play and is silent
    after; the report counts the chorale's notes, not the clicks."""
    wav = tmp_path / "out.wav"
    synth = FluidSynth(wav)
    chorale = ROOT / "resources" / "examples" / "bach_chorale.mid"
    song = read_midi(chorale)
    bars = song.bar_starts()
    seconds = float(song.seconds_at([bars[2]])[0])
    expected = [e for e in schedule(song, None, 0, bars[2]) if e.message[0] & 0xF0 == 0x90]
    time.sleep(0.5)
    command = [sys.executable, "-m", "meloformer_core.cli", "play", str(chorale), "--port", synth.port, "--bars", "1:2",
               "--metronome"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["notes_played"] == len(expected) and abs(report["seconds"] - seconds) < 0.2
    time.sleep(1.5)
    synth.stop()
    rate, audio = read_streamed_wav(wav)
    level = np.abs(audio.astype(np.float64)).max(axis=1)
    window = rate // 20  # 50 ms
    rms = np.array([level[i : i + window].mean() for i in range(0, len(level) - window, window)])
    loud = np.flatnonzero(rms > 200)
    assert len(loud), "the WAV is silent"
    first, span = loud[0], int(seconds * 20)
    assert (rms[first : first + span - 1] > 50).all(), "silence where the chorale has notes"
    tail = rms[first + span + 10 :]  # half a second after the last note-off: release is over
    assert len(tail) > 10 and (tail < 50).all(), "sound after the end"


def test_cli_play_onsets_are_on_time(receiver) -> None:
    """`meloformer play` of a real multi-track file: onsets relative to the first within a few ms."""
    chorale = ROOT / "resources" / "examples" / "bach_chorale.mid"
    song = read_midi(chorale)
    expected = [e.seconds for e in schedule(song, None, 0, song.bar_starts()[3]) if e.message[0] & 0xF0 == 0x90]
    command = [sys.executable, "-m", "meloformer_core.cli", "play", str(chorale), "--port", receiver.port,
               "--bars", "1:3"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    time.sleep(0.1)
    arrived = [t for t, m in receiver.messages if m[0] & 0xF0 == 0x90]
    assert len(arrived) == len(expected)
    errors_ms = np.abs((np.array(arrived) - arrived[0]) - (np.array(expected) - expected[0])) * 1000
    assert errors_ms.mean() <= 5, errors_ms.mean()


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
