"""A real JACK server (dummy driver) and MIDI clients for end-to-end playback tests.

Why the receiving client runs in a process of its own
-----------------------------------------------------
Closing a python-rtmidi JACK client in the test process could kill it with a segmentation
fault (seen once in a fixture's teardown, in `Receiver.close`, on a busy machine). The
cause, reproduced: when a process opens a JACK client after its server has gone while
older clients of that process are still open, JACK2's libjack closes and frees those older
clients itself ("Jack server was closed but clients are still allocated, cleanup...", in
`JackLibGlobals::Init`). RtMidi still holds them, so the next close_port() or delete()
reads freed memory. A receiver met that whenever its server went away during a test (a
server shared with another test session that stopped it; one stopped on purpose) and
anything opened a client afterwards: a port listing, the next receiver, the code under
test. A second hazard points the same way: libjack ends a client's process thread with an
asynchronous pthread_cancel when the client closes, and without real-time priority on a
busy machine that thread can still be inside RtMidi's callback (allocating, to queue a
message) when it is cancelled.

So `Receiver` is a child process (`_RECEIVER` below): whatever its client does as it
closes cannot take pytest down, and the only JACK clients left in the test process are the
code under test, which `meloformer_core.playback.ports` keeps from that trap (it never
opens a client while an output of its own sits on a server that has gone).

And every test session runs a JACK server of its own (`JackServer`), named after its
process: sessions running side by side (several people testing one working tree) never
share one, so none stops a server another is using, and their clients' names never clash.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import struct
import subprocess
import sys
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


def jack_ports(env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10,
                            env={**(env or os.environ), "JACK_NO_START_SERVER": "1"})  # fmt: skip
    return result.stdout.split("\n") if result.returncode == 0 else []


def _die_with_parent():
    """For Popen's preexec_fn on Linux: SIGTERM the child when the process that started it dies
    (a test session killed on a timeout must not leave its JACK server running)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_servers = itertools.count()


class JackServer:
    """A JACK server of our own (dummy driver), named ``name`` or after this process.

    Without ``name`` it is the session's: its name goes into os.environ (JACK_DEFAULT_SERVER)
    until `stop`, so every client of the session reaches it, in this process (the code under
    test) and in the ones it starts. With ``name``, only clients given ``env`` reach it: for
    tests that stop their server on purpose.
    """

    def __init__(self, name: str | None = None) -> None:
        if not (shutil.which("jackd") and shutil.which("jack_lsp")):
            pytest.skip("JACK is not installed (Debian: jackd2 jack-tools; scripts/system-packages.sh)")
        self.exported = name is None
        self.name = name or f"mf-tests-{os.getpid()}-{next(_servers)}"
        self.env = {**os.environ, "JACK_NO_START_SERVER": "1", "JACK_DEFAULT_SERVER": self.name}
        # --sync: the server waits for every client each cycle. Asynchronously, a client that
        # misses a cycle loses that cycle's MIDI, and test clients without real-time priority
        # on a busy 2-core machine did: ~2 in 100 edits-while-playing lost notes.
        command = ["jackd", "-n", self.name, "--sync", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent() if sys.platform == "linux" else None)  # fmt: skip
        try:
            wait_for(lambda: bool(jack_ports(self.env)), 30, "jackd")
        except RuntimeError:
            self.stop()
            raise
        self._saved = {key: os.environ.get(key) for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
        if self.exported:
            os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")

    def stop(self) -> None:
        """Stop the server with SIGTERM, so it leaves its slot in JACK's shared registry (eight
        servers at most: one killed with SIGKILL keeps its slot until one of the same name
        starts again), and remove what its clients left in /dev/shm."""
        if self.exported and os.environ.get("JACK_DEFAULT_SERVER") == self.name:
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for leftover in Path("/dev/shm").glob(f"jack_sem.*_{self.name}_*"):  # clients that outlived it
            with contextlib.suppress(OSError):
                leftover.unlink()


# The receiving client (see the module's doc for why it is a process of its own). It prints
# "ready", then one line per message: the arrival time on the monotonic clock (shared by
# every process on Linux; JACK's own stamps, RtMidi's deltas, from the first message on),
# then the bytes. It stops when its stdin closes, after printing what had arrived.
_RECEIVER = r"""
import sys, threading, time
import rtmidi

name, source = sys.argv[1], sys.argv[2]
midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name, queue_size_limit=8192)
midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
if source:
    midi_in.open_port(midi_in.get_ports().index(source), "in")
else:
    midi_in.open_virtual_port("in")
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", flush=True)
clock = None
while True:
    stopping = stop.is_set()
    got = midi_in.get_message()
    if got is None:
        if stopping:
            break
        time.sleep(0.001)
        continue
    message, delta = got
    clock = time.monotonic() if clock is None else clock + delta
    print(repr(clock), *message, flush=True)
midi_in.close_port()
midi_in.delete()
"""


class Receiver:
    """A JACK MIDI input client, in a child process, recording (monotonic time, message).

    Its port is ``<name>:in``: a virtual input, or with ``source`` an input connected to that
    output port. Times are JACK's own arrival stamps (RtMidi's deltas), not when a message
    was read. It is polled, never called back: a callback runs on JACK's process thread,
    which must then take the GIL, and closing a port or client waits for that thread.
    """

    def __init__(self, name: str = "mf-receiver", env: dict[str, str] | None = None, source: str | None = None) -> None:
        self.messages: list[tuple[float, list[int]]] = []
        self.port = f"{name}:in"
        self.env = env
        self._ready = threading.Event()
        self.process = subprocess.Popen([sys.executable, "-c", _RECEIVER, name, source or ""], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env=env)  # fmt: skip
        self._reader = threading.Thread(target=self._read, name="mf-receiver-read", daemon=True)
        self._reader.start()
        wait_for(lambda: self._ready.is_set() or self.process.poll() is not None, 30, f"{self.port} to start")
        if not self._ready.is_set():
            raise RuntimeError(f"the receiver {self.port} could not start (exit status {self.process.poll()})")
        wait_for(lambda: self.port in jack_ports(env), 10, self.port)

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.strip() == "ready":
                self._ready.set()
                continue
            clock, *message = line.split()
            self.messages.append((float(clock), [int(byte) for byte in message]))

    def note_ons(self) -> list[list[int]]:
        return [m for _, m in self.messages if m[0] & 0xF0 == 0x90 and m[2]]

    def close(self) -> None:
        """Stop the child (after it printed everything that arrived) and wait for it."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(10)


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
            preexec_fn=_die_with_parent() if sys.platform == "linux" else None,
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
