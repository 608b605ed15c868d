"""Playback end to end: a real JACK server, a receiving client, and FluidSynth rendering a WAV.

These assert what arrives (every note, in order, note-offs, nothing after a stop), never how
late: on a busy machine any of these processes may be held up. bench/playback.py measures
latency, jitter and duration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meloformer_core.midi_io import read_midi
from meloformer_core.playback.player import Player, schedule
from meloformer_core.playback.ports import PortError, list_output_ports, open_output
from tests.conftest import FIXTURES, ROOT
from tests.jack import FluidSynth, Receiver, read_streamed_wav, sounding, wait_for

pytestmark = pytest.mark.timeout(120)  # each takes seconds: a hung MIDI client fails fast


def test_ports_are_listed_and_a_missing_one_is_one_line(receiver) -> None:
    ports, _ = list_output_ports()
    assert any(p.label == f"{receiver.port} (JACK)" for p in ports)
    with pytest.raises(PortError, match=rf"no MIDI output port 'nowhere'; available: .*{re.escape(receiver.port)}"):
        open_output("nowhere")


def test_every_message_arrives_in_order(receiver) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    bar3 = song.bar_starts()[2]
    expected = [list(e.message) for e in schedule(song, None, 0, bar3)]

    def received() -> list[list[int]]:
        return [m for _, m in receiver.messages if m[0] & 0xF0 in (0x80, 0x90, 0xC0)]

    with open_output(receiver.port) as output:
        player = Player(output.send, check=output.problem)
        player.play(song, 0, end_tick=bar3)
        wait_for(lambda: not player.playing, 60, "the end")
        player.close()
    wait_for(lambda: len(received()) >= len(expected), 30, "every message")
    # every note on / off and program change, in order, with its channel, key and velocity
    assert received() == expected
    assert player.lost is None


def test_stop_silences_every_channel(receiver) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    sent: list[list[int]] = []
    with open_output(receiver.port) as output:
        player = Player(lambda message: (sent.append(message), output.send(message)))
        player.play(song)
        wait_for(lambda: len(receiver.note_ons()) >= 3, 30, "notes")
        player.stop()
        player.close()

    def all_off() -> set[int]:
        return {m[0] & 0x0F for _, m in receiver.messages if m[0] & 0xF0 == 0xB0 and m[1] == 123}

    wait_for(lambda: all_off() == {0, 1, 2, 9}, 30, "All Notes Off on every channel")
    assert not sounding(receiver.messages)
    # nothing after the stop: the silencing came last, and every message sent arrived, in order
    assert [m for _, m in receiver.messages] == sent
    assert all(m[0] & 0xF0 in (0x80, 0xB0) for m in sent[sent.index(next(m for m in sent if m[0] & 0xF0 == 0xB0)) :])


def _levels(wav: Path) -> np.ndarray:
    """Mean absolute level of each 50 ms of the WAV so far."""
    rate, audio = read_streamed_wav(wav)
    level = np.abs(audio.astype(np.float64)).max(axis=1)
    window = rate // 20
    return np.array([level[i : i + window].mean() for i in range(0, len(level) - window, window)])


def test_cli_play_of_a_real_file_into_fluidsynth(jack, tmp_path: Path) -> None:
    """Two bars of the Bach chorale with clicks: the WAV sounds for at least as long as they
    play and falls silent after (no stuck note); the report counts the chorale's notes, not
    the clicks."""
    wav = tmp_path / "out.wav"
    synth = FluidSynth(wav)
    chorale = ROOT / "resources" / "examples" / "bach_chorale.mid"
    song = read_midi(chorale)
    bars = song.bar_starts()
    seconds = float(song.seconds_at([bars[2]])[0])
    expected = [e for e in schedule(song, None, 0, bars[2]) if e.message[0] & 0xF0 == 0x90]
    command = [sys.executable, "-m", "meloformer_core.cli", "play", str(chorale), "--port", synth.port, "--bars", "1:2",
               "--metronome"]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        # the release dies away after the last note-off: wait (as long as a busy machine needs)
        # for a second of near silence at the end of what FluidSynth has written
        wait_for(lambda: len(_levels(wav)) > 40 and (_levels(wav)[-20:] < 50).all(), 60, "silence after the end")
    finally:
        synth.stop()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["notes_played"] == len(expected)
    rms = _levels(wav)
    loud = np.flatnonzero(rms > 200)
    assert len(loud), "the WAV is silent"
    # the chorale sustains: it sounds for at least most of its length (held up, it only sounds longer)
    assert loud[-1] - loud[0] >= 0.8 * seconds * 20, (loud[0], loud[-1], seconds)


def test_cli_play_sends_every_note_in_order(receiver) -> None:
    """`meloformer play` of a real multi-track file: every note-on, in order, then silence."""
    chorale = ROOT / "resources" / "examples" / "bach_chorale.mid"
    song = read_midi(chorale)
    expected = [list(e.message) for e in schedule(song, None, 0, song.bar_starts()[3]) if e.message[0] & 0xF0 == 0x90]
    command = [sys.executable, "-m", "meloformer_core.cli", "play", str(chorale), "--port", receiver.port,
               "--bars", "1:3"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no library chatter either
    wait_for(lambda: len(receiver.note_ons()) >= len(expected), 30, "every note")
    wait_for(lambda: not sounding(receiver.messages), 30, "the last note-off")
    assert receiver.note_ons() == expected


def test_cli_missing_port_is_one_line_and_non_zero(jack) -> None:
    command = [sys.executable, "-m", "meloformer_core.cli", "play", str(FIXTURES / "jig_6_8.mid"), "--port", "no-such"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "no-such" in result.stderr


def test_a_virtual_port_reaches_a_client_that_connects(jack) -> None:
    from meloformer_core.playback.ports import VIRTUAL, virtual_possible

    assert virtual_possible(list_output_ports()[1])
    with open_output(VIRTUAL) as output:
        assert "virtual" in output.label and output.problem() is None
        listener = Receiver("mf-listener", source="MeloFormer:out")  # a client of its own that connects to us
        try:
            output.send([0x90, 60, 100])
            output.send([0x80, 60, 0])
            wait_for(lambda: len(listener.messages) >= 2, 30, "both messages")
        finally:
            listener.close()
    assert [m for _, m in listener.messages] == [[0x90, 60, 100], [0x80, 60, 0]]
