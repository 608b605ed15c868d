"""Playback when its MIDI output goes away mid-song: the JACK server stops, the synthesizer quits.

Each test runs a private JACK server (`JackServer(name=...)`), so stopping it disturbs no
other test or test session. The assertions are about behaviour, never speed: `meloformer
play` exits 1 with one line naming the port and the problem (no traceback, none of
libjack's chatter) and plays fewer notes than the song has; and a process that held an
output on a server that died neither crashes closing it nor listing ports afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meloformer_core.midi_io import read_midi
from tests.conftest import ROOT
from tests.jack import JackServer, Receiver, wait_for

SONG = ROOT / "resources" / "examples" / "bach_chorale.mid"  # 23.5 s, 163 notes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path("/proc/net/unix").exists(), reason="JACK's server is watched through /proc/net/unix"),
]


@pytest.fixture
def private_jack():
    server = JackServer(name=f"mf-faults-{os.getpid()}")
    yield server
    server.stop()


def _play(server: JackServer, port: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "meloformer_core.cli", "play", str(SONG), "--port", port]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=server.env)  # fmt: skip


def _song_notes() -> int:
    return read_midi(SONG).note_count


def test_the_jack_server_stopping_mid_song_ends_play_with_one_line(private_jack) -> None:
    receiver = Receiver("mf-faults-rx", env=private_jack.env)
    try:
        play = _play(private_jack, receiver.port)
        wait_for(lambda: len(receiver.note_ons()) >= 5 or play.poll() is not None, 60, "the song to start")
        private_jack.stop()
        out, err = play.communicate(timeout=120)
    finally:
        receiver.close()
    assert play.returncode == 1, (out, err)
    assert err.splitlines() == [
        f"meloformer play: error: MIDI output {receiver.port} (JACK) lost: the JACK server is not running"
    ], err
    assert 5 <= len(receiver.note_ons()) < _song_notes()


def test_a_synthesizer_quitting_mid_song_ends_play_with_one_line(private_jack) -> None:
    synth = Receiver("mf-faults-synth", env=private_jack.env)
    play = _play(private_jack, synth.port)
    try:
        wait_for(lambda: len(synth.note_ons()) >= 5 or play.poll() is not None, 60, "the song to start")
    finally:
        synth.close()
    out, err = play.communicate(timeout=120)
    assert play.returncode == 1, (out, err)
    assert err.splitlines() == [f"meloformer play: error: MIDI output {synth.port} (JACK) lost: the port is gone"], err
    assert 5 <= len(synth.note_ons()) < _song_notes()


# A process holding an output whose JACK server died, that then lists ports (as the app's
# port poll does) and closes the output. libjack frees a dead server's clients when the
# process opens a new one, so before the guard in ports.py the close segfaulted.
_AFTER_DEATH = r"""
import sys
from meloformer_core.playback.ports import list_output_ports, open_output
output = open_output(sys.argv[1])
print("open", flush=True)
sys.stdin.readline()  # the server is gone now
print(output.problem(), flush=True)
ports, problems = list_output_ports()
print([p.label for p in ports if p.api == "jack"], [p for p in problems if p.startswith("JACK")], flush=True)
output.close()
ports, problems = list_output_ports()
print([p.label for p in ports if p.api == "jack"], flush=True)
"""


def test_an_output_on_a_dead_server_closes_without_crashing(private_jack) -> None:
    synth = Receiver("mf-faults-dead", env=private_jack.env)
    child = subprocess.Popen([sys.executable, "-c", _AFTER_DEATH, synth.port], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**private_jack.env, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "open", child.stderr.read()
        private_jack.stop()
        out, err = child.communicate("go\n", timeout=120)
    finally:
        synth.close()
    assert child.returncode == 0, (child.returncode, out, err)  # -11: a segmentation fault
    problem, listed, after = out.splitlines()
    assert problem == f"MIDI output {synth.port} (JACK) lost: the JACK server is not running"
    assert listed.startswith("[] ['JACK: the server an open output was using is gone")
    assert after == "[]" and err == ""
