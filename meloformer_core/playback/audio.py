"""Where the built-in synth's sound goes: the sound card, a clock of our own, or a file.

A sink pulls blocks from a `synth.SynthOutput` (``output.render(frames)``) on its own thread:

- `DeviceSink`: the system's audio output through miniaudio, whose wheels carry the whole
  audio layer for Linux (PulseAudio/PipeWire, ALSA), macOS (Core Audio) and Windows
  (WASAPI, DirectSound, WinMM): no system library to install. JACK is left out on purpose:
  a JACK client of ours on a server that dies lets libjack free the MIDI ports' clients too
  (see `ports.py`); a JACK user plays the built-in synth through PipeWire or ALSA, or picks a
  JACK MIDI port and a synth of their own.
- `ClockSink`: pulls a block whenever the monotonic clock has moved on by one, as a sound
  card does, with nothing to hear; it can keep what it pulled (tests, benchmarks). Its
  blocks are stamped with the time they stand for, so a late thread never moves a note.

Both hold Python's thread switch interval at 0.5 ms while they run (instead of 5 ms): a
block is rendered in a few dozen numpy calls, each of which may let go of the GIL, and with
the default every one of them could wait 5 ms for a thread computing in pure Python (the
GUI drawing, the model's loop) to hand it back: blocks half a second late
(`bench/synth.py`, "+ busy thread").

`write_audio` writes what `synth.render_song` returns: WAV through the standard library,
FLAC through `soundfile` (libsndfile comes in its wheels).
"""

from __future__ import annotations

import io
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np

from meloformer_core.atomic import write_bytes_atomically
from meloformer_core.playback.ports import _quiet_stderr
from meloformer_core.playback.synth import BLOCK_FRAMES, SAMPLE_RATE, SynthError, SynthOutput

AUDIO_SUFFIXES = (".wav", ".flac")
SWITCH_INTERVAL_S = 0.0005
STALL_SECONDS = 2.0  # a device that has not asked for sound this long while open has stopped


class AudioDeviceError(SynthError):
    """There is no audio device to play on (or it cannot be opened)."""


_running_sinks = 0
_saved_interval = 0.0
_interval_lock = threading.Lock()


def _real_time(starting: bool) -> None:
    """A sink starts or stops: the switch interval is short while any runs (see the module's doc)."""
    global _running_sinks, _saved_interval
    with _interval_lock:
        if starting:
            if _running_sinks == 0:
                _saved_interval = sys.getswitchinterval()
                sys.setswitchinterval(min(_saved_interval, SWITCH_INTERVAL_S))
            _running_sinks += 1
        elif _running_sinks > 0:
            _running_sinks -= 1
            if _running_sinks == 0:
                sys.setswitchinterval(_saved_interval)


def _device_backends(miniaudio) -> list:
    backend = miniaudio.Backend
    if sys.platform == "darwin":
        return [backend.COREAUDIO]
    if sys.platform == "win32":
        return [backend.WASAPI, backend.DSOUND, backend.WINMM]
    return [backend.PULSEAUDIO, backend.ALSA]  # PipeWire answers as either


class DeviceSink:
    """The default audio output, opened at once (`AudioDeviceError`, one line, if there is none).
    ``backends`` (miniaudio's names, e.g. ``("null",)``: its device that plays to nowhere on
    its own clock, for the benchmark) replaces the platform's list."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, block_frames: int = BLOCK_FRAMES,
                 backends: tuple[str, ...] | None = None) -> None:  # fmt: skip
        try:
            import miniaudio
        except ImportError:
            raise AudioDeviceError("no audio output: the miniaudio package is not installed") from None
        self.block_frames = block_frames
        self._started = False
        try:
            with _quiet_stderr():  # ALSA prints a page when there is no sound card
                self.device = miniaudio.PlaybackDevice(
                    output_format=miniaudio.SampleFormat.FLOAT32, nchannels=2, sample_rate=sample_rate,
                    buffersize_msec=max(1, round(block_frames * 1000 / sample_rate)),
                    backends=[miniaudio.Backend[name.upper()] for name in backends] if backends
                    else _device_backends(miniaudio), app_name="MeloFormer",
                )  # fmt: skip
        except miniaudio.MiniaudioError as error:
            reason = ", ".join(str(part) for part in error.args) or type(error).__name__
            raise AudioDeviceError(f"no audio device ({reason})") from None
        self.description = f"{self.device.backend}"

    def start(self, output: SynthOutput) -> None:
        def pull():
            frames = yield b""
            while True:
                try:
                    block = output.render(frames)
                except Exception as error:  # a bug: say so through the player, keep the device quiet
                    output.fail(f"rendering failed ({type(error).__name__}: {error})")
                    block = np.zeros((frames, 2), np.float32)
                frames = yield block.tobytes()

        generator = pull()
        next(generator)
        self.device.stop_callback = lambda: output.fail("the audio device stopped")
        with _quiet_stderr():
            self.device.start(generator)
        self._started = True
        _real_time(True)

    def problem(self, output: SynthOutput) -> str | None:
        if time.monotonic() - output.last_render > STALL_SECONDS:
            return "the audio device stopped asking for sound"
        return None

    def close(self) -> None:
        self.device.stop_callback = None
        self.device.close()
        if self._started:
            self._started = False
            _real_time(False)


class ClockSink:
    """Pulls ``block_frames`` at a time on its own thread, paced by the monotonic clock; with
    ``record`` it keeps every block (`audio`). Block *k* stands for the times
    [started_at + k·B/rate, started_at + (k+1)·B/rate), so a message that arrived at time t
    sounds at frame (t - started_at)·rate of the recording (`frame_of`)."""

    def __init__(self, block_frames: int = BLOCK_FRAMES, record: bool = False) -> None:
        self.block_frames, self.record = block_frames, record
        self.blocks: list[np.ndarray] = []
        self.block_times: list[float] = []  # when each block was pulled (monotonic), for the benchmark
        self.started_at = 0.0
        self.sample_rate = SAMPLE_RATE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, output: SynthOutput) -> None:
        self.sample_rate = output.sample_rate
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(output,), name="meloformer-audio-clock", daemon=True)
        self._thread.start()
        _real_time(True)

    def _run(self, output: SynthOutput) -> None:
        block_seconds = self.block_frames / self.sample_rate
        number = 0
        while True:
            block_end = self.started_at + (number + 1) * block_seconds
            if self._stop.wait(max(0.0, block_end - time.monotonic())):
                return
            try:
                audio = output.render(self.block_frames, block_end)
            except Exception as error:
                output.fail(f"rendering failed ({type(error).__name__}: {error})")
                return
            if self.record:
                self.blocks.append(audio)
                self.block_times.append(time.monotonic())
            number += 1

    def frame_of(self, moment: float) -> int:
        """The frame of the recording that sounds what arrived at monotonic time ``moment``."""
        return int((moment - self.started_at) * self.sample_rate)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros((0, 2), np.float32)

    def problem(self, output: SynthOutput) -> str | None:
        return None

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            _real_time(False)
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=2)


def open_synth_output(sink: str | object = "device", block_frames: int = BLOCK_FRAMES) -> SynthOutput:
    """The built-in synth on the system's audio output (``sink="device"``) or on ``sink``.
    Without an audio device it still opens, silent: its ``notice`` says why in one line.
    The SoundFont is set afterwards (`SynthOutput.set_soundfont`)."""
    if sink != "device":
        return SynthOutput(sink)
    try:
        device = DeviceSink(block_frames=block_frames)
    except AudioDeviceError as error:
        notice = f"{str(error)[0].upper()}{str(error)[1:]}: the built-in synth is silent"
        return SynthOutput(None, label="Built-in synth (silent)", discard=True, notice=notice)
    return SynthOutput(device, label=f"Built-in synth ({device.description})")


def audio_device_problem() -> str | None:
    """Why the built-in synth would be silent (no audio device, one line), or None: the
    default device opens (and is closed again at once)."""
    try:
        DeviceSink().close()
    except AudioDeviceError as error:
        return f"{str(error)[0].upper()}{str(error)[1:]}: the built-in synth is silent"
    return None


def write_audio(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write stereo float audio as 16-bit WAV or FLAC (by ``path``'s suffix), atomically."""
    suffix = path.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise SynthError(f"{path}: audio is written as .wav or .flac, not {suffix or 'a file without a suffix'}")
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    if suffix == ".wav":
        with wave.open(buffer, "wb") as out:
            out.setnchannels(pcm.shape[1])
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())
    else:
        try:
            import soundfile
        except (ImportError, OSError):
            raise SynthError(f"{path}: FLAC needs the soundfile package (pip install soundfile); "
                             "write a .wav instead") from None  # fmt: skip
        soundfile.write(buffer, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    try:
        write_bytes_atomically(path, buffer.getvalue())
    except OSError as error:
        raise SynthError(f"{path}: cannot write the audio ({error.strerror or error})") from None
