"""A real JACK server (dummy driver) and MIDI clients for end-to-end playback tests."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def jack_ports() -> list[str]:
    result = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10,
                            env={**os.environ, "JACK_NO_START_SERVER": "1"})  # fmt: skip
    return result.stdout.split("\n") if result.returncode == 0 else []


class JackServer:
    def __init__(self) -> None:
        if not (shutil.which("jackd") and shutil.which("jack_lsp")):
            pytest.skip("JACK is not installed (Debian: jackd2 jack-tools; scripts/system-packages.sh)")
        self.process = None
        if not jack_ports():  # none running yet: start our own
            # --sync: the server waits for every client each cycle. Asynchronously, a client
            # that misses a cycle loses that cycle's MIDI, and test clients without real-time
            # priority on a busy 2-core machine did: ~2 in 100 edits-while-playing lost notes.
            command = ["jackd", "--sync", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"]
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: bool(jack_ports()), 10, "jackd")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


class Receiver:
    """A JACK MIDI input client that records (monotonic time, message).

    It is polled from a Python thread, never called back: RtMidi calls a callback on JACK's
    process thread, which must then take the GIL, and a main thread holding the GIL in a JACK
    call that waits for the process cycle (closing a port or a client) deadlocks with it.
    Times are JACK's own arrival stamps (RtMidi's deltas), not when the poll saw a message.
    """

    def __init__(self, name: str = "mf-receiver") -> None:
        import rtmidi

        self.messages: list[tuple[float, list[int]]] = []
        self.input = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name, queue_size_limit=8192)
        self.input.ignore_types(sysex=True, timing=True, active_sense=True)
        self.input.open_virtual_port("in")
        self.port = f"{name}:in"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="mf-receiver-poll", daemon=True)
        self._thread.start()
        wait_for(lambda: self.port in jack_ports(), 5, self.port)

    def _poll(self) -> None:
        clock = None
        while not self._stop.is_set():
            got = self.input.get_message()
            if got is None:
                time.sleep(0.001)
                continue
            message, delta = got
            clock = time.monotonic() if clock is None else clock + delta
            self.messages.append((clock, message))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.input.close_port()
        self.input.delete()


class FluidSynth:
    """FluidSynth rendering whatever it receives on JACK MIDI to a WAV file, in real time."""

    SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")

    def __init__(self, wav: Path, name: str = "mf-fluid") -> None:
        soundfont = next((s for s in self.SOUNDFONTS if Path(s).exists()), None)
        if not shutil.which("fluidsynth") or soundfont is None:
            pytest.skip("FluidSynth or a GM soundfont is missing (Debian: fluidsynth fluid-soundfont-gm)")
        self.wav = wav
        self.process = subprocess.Popen(
            ["fluidsynth", "-a", "file", "-o", f"audio.file.name={wav}", "-o", "audio.file.type=wav",
             "-m", "jack", "-o", f"midi.jack.id={name}", "-r", "48000", "-R", "0", "-C", "0", "-g", "1.0",
             "-q", "-s", soundfont],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.port = f"{name}:midi_00"
        wait_for(lambda: self.port in jack_ports(), 15, self.port)

    def stop(self) -> None:
        """Quit through its shell, so it finishes the WAV header."""
        try:
            self.process.communicate("quit\n", timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def read_streamed_wav(path: Path) -> tuple[int, np.ndarray]:
    """(sample rate, int16 frames × channels) of a WAV whose sizes were never filled in
    (FluidSynth's file driver streams it), reading the data chunk to the end of the file."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    offset, rate, channels = 12, 0, 0
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if chunk == b"fmt ":
            channels, rate = struct.unpack("<HI", data[offset + 10 : offset + 16])
        elif chunk == b"data":
            samples = np.frombuffer(data[offset + 8 : len(data) - (len(data) - offset - 8) % (2 * channels)], np.int16)
            return rate, samples.reshape(-1, channels)
        offset += 8 + size
    raise ValueError(f"{path}: no data chunk")


def sounding(messages) -> set[tuple[int, int]]:
    """(channel, key) of the notes left sounding by a list of (time, message)."""
    on: set[tuple[int, int]] = set()
    for _, (status, *data) in messages:
        if status & 0xF0 == 0x90 and data[1]:
            on.add((status & 0x0F, data[0]))
        elif status & 0xF0 == 0x80:
            on.discard((status & 0x0F, data[0]))
    return on
