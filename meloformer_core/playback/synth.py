"""The built-in synth: a SoundFont sample player in numpy that the player plays on like a
MIDI port, and that renders songs to audio files.

Why our own: the packages with a SoundFont engine fail the app's install rule (binary
wheels on Linux, macOS and Windows, no system library): `pyfluidsynth` needs the system's
libfluidsynth everywhere; `tinysoundfont` requires PyAudio, which has wheels for Windows
only, and has none past CPython 3.12. Playing samples is a small job for numpy: a voice is
a *pure function of its age* (frames since its note-on) and of the age it was released at,
so the same code renders a live block of 512 frames and a whole note offline in one call.
What a SoundFont says and what we play of it: see `soundfont.py`.

Three ways to use it, one engine (`Synth`: MIDI messages in, stereo float32 out):

- `SynthOutput` looks like `ports.MidiOutput` to the `Player` (``send``, ``problem``,
  ``close``, ``label``). ``send`` only queues the message with its arrival time; the audio
  thread (`audio.DeviceSink`, or `audio.ClockSink` in tests and benchmarks) calls
  ``render`` for each block, which places every message at the frame of the block that
  matches when it arrived. Sound thus follows the player's clock exactly, one block late.
- `render_song` plays a song's schedule (`player.schedule`: the same messages, cut at the
  same places) offline, each voice from its note-on to its end in one go: far faster than
  real time.
- Tests drive `SynthOutput.render` themselves (no sink) to hear what a stream left behind.

Levels follow the SoundFont defaults: velocity, channel volume (CC 7) and expression
(CC 11) as (x/127)², the region's attenuation, equal-power pan (the region's plus CC 10).
Controllers act on notes that start after them. Not played: pitch bend, the sustain pedal,
filters, vibrato, reverb.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np

from meloformer_core.errors import MeloformerError
from meloformer_core.music import DRUM_CHANNEL, Song
from meloformer_core.playback.soundfont import DRUM_BANK, LOOP_CONTINUOUS, LOOP_UNTIL_RELEASE, Region, SoundFont

SAMPLE_RATE = 44100
BLOCK_FRAMES = 512  # 11.6 ms at 44.1 kHz: what a live block holds (see bench/synth.py)
MASTER_GAIN = 1.0  # the four-voice chorale peaks near -10 dBFS, a dense 12-track song near full scale
SILENT_CB = 960.0  # -96 dB: a voice this quiet has ended
MIN_RELEASE_S = 0.006  # a release of "0" still fades out over a few ms instead of clicking
CUT_RELEASE_S = 0.01  # an exclusive class (closed hi-hat) or All Sound Off cuts this fast
TAIL_SECONDS = 2.0  # `render_song` lets the last notes ring this long after the music ends
NOTE_ON, NOTE_OFF, CONTROL, PROGRAM = 0x90, 0x80, 0xB0, 0xC0
ALL_SOUND_OFF, RESET_CONTROLLERS, ALL_NOTES_OFF = 120, 121, 123
_DB_PER_CB = -math.log(10) / 200.0  # amplitude = exp(centibels * _DB_PER_CB)


class SynthError(MeloformerError):
    """The built-in synth cannot play or render (no SoundFont, no audio device, bad output file)."""


class Voice:
    """One region of one note: its parameters, and its envelope as a function of age (frames
    since its note-on). `Synth.render` plays every voice of a block at once from these."""

    __slots__ = ("attack_rate", "channel", "decay_rate", "delay_end", "end_age", "floor_cb", "hold_end", "key", "left",
                 "region", "release_age", "release_level", "release_rate", "right", "sample_rate", "start_frame",
                 "step", "sustain_cb")  # fmt: skip

    def __init__(self, region: Region, channel: int, key: int, velocity: int, gain: float, pan: float,
                 start_frame: int, sample_rate: int) -> None:  # fmt: skip
        self.channel, self.key, self.region, self.start_frame = channel, key, region, start_frame
        self.sample_rate = sample_rate
        pitch_key = region.fixed_key if region.fixed_key >= 0 else key
        cents = (pitch_key - region.root_key) * region.scale_tuning + region.tune_cents
        self.step = 2.0 ** (cents / 1200.0) * region.sample_rate / sample_rate  # sample frames per output frame
        velocity = region.fixed_velocity if region.fixed_velocity >= 0 else velocity
        # FluidSynth scales a region's attenuation by 0.4, as the EMU hardware that SoundFonts were
        # voiced on did; without it, fonts made that way (TimGM6mb among them) play too quietly
        level = gain * (velocity / 127.0) ** 2 * math.exp(0.4 * region.attenuation_cb * _DB_PER_CB)
        angle = (min(0.5, max(-0.5, region.pan + pan)) + 0.5) * math.pi / 2  # equal-power pan
        self.left, self.right = level * math.cos(angle), level * math.sin(angle)
        # the voice has ended once its envelope brings it below -90 dBFS (at full volume)
        self.floor_cb = min(SILENT_CB, max(0.0, 900.0 + 200.0 * math.log10(max(self.left, self.right, 1e-9))))
        self.delay_end = region.delay * sample_rate
        attack = region.attack * sample_rate
        self.attack_rate = 1.0 / attack if attack > 0 else 1e30  # of the linear ramp, per frame
        self.hold_end = self.delay_end + attack + region.hold_seconds(key) * sample_rate
        decay = region.decay_seconds(key) * sample_rate
        self.decay_rate = 1000.0 / decay if decay > 0 else 1e30  # centibels per frame
        self.sustain_cb = region.sustain_cb
        self.release_age = math.inf
        self.release_level = 0.0  # the envelope's amplitude at the release
        self.release_rate = 1000.0 / (max(region.release, MIN_RELEASE_S) * sample_rate)
        self.end_age = self._end_age()

    def held_amplitude(self, age: float) -> float:
        """The envelope while held: delay, linear attack, hold, decay (linear in dB) to sustain."""
        ramp = min(1.0, max(0.0, (age - self.delay_end) * self.attack_rate))
        return ramp * math.exp(min(self.sustain_cb, max(0.0, (age - self.hold_end) * self.decay_rate)) * _DB_PER_CB)

    def amplitude(self, age: float) -> float:
        if age < self.release_age:
            return self.held_amplitude(age)
        return self.release_level * math.exp((age - self.release_age) * self.release_rate * _DB_PER_CB)

    def loops_at(self, age: float) -> bool:
        mode = self.region.loop_mode
        return mode == LOOP_CONTINUOUS or (mode == LOOP_UNTIL_RELEASE and age < self.release_age)

    def position(self, age: float) -> float:
        """Where in the samples the voice is at ``age`` (a loop wrapped, the loop left after a
        release for loop-until-release)."""
        r = self.region
        if r.loop_mode == LOOP_UNTIL_RELEASE and age >= self.release_age:
            return self.position(self.release_age) + (age - self.release_age) * self.step
        position, length = r.start + age * self.step, r.loop_end - r.loop_start
        if self.loops_at(age) and position >= r.loop_end:
            position -= length * math.floor((position - r.loop_start) / length)
        return position

    def _end_age(self) -> float:
        """The age at which the voice has ended (inf while a looped sample is held)."""
        r, ends = self.region, [math.inf]
        if self.sustain_cb >= self.floor_cb:  # decays to silence even while held
            ends.append(self.hold_end + self.floor_cb / self.decay_rate)
        if self.release_age < math.inf:
            level_cb = -math.log(max(self.release_level, 1e-12)) / -_DB_PER_CB
            ends.append(self.release_age + max(0.0, self.floor_cb - level_cb) / self.release_rate)
        if r.loop_mode not in (LOOP_CONTINUOUS, LOOP_UNTIL_RELEASE):
            ends.append((r.end - r.start) / self.step)
        elif r.loop_mode == LOOP_UNTIL_RELEASE and self.release_age < math.inf:
            ends.append(self.release_age + (r.end - self.position(self.release_age)) / self.step)
        end = min(ends)
        return end if end == math.inf else float(math.ceil(end))

    def release(self, age: int, cut: bool = False) -> None:
        """Note-off at ``age`` (or a cut: All Sound Off, an exclusive class). A second note-off
        does nothing; a cut after a note-off shortens the release."""
        if self.release_age < math.inf and not cut:
            return
        age = max(0, age)
        self.release_level = self.amplitude(age)
        self.release_age = float(age)
        if cut:
            self.release_rate = max(self.release_rate, 1000.0 / (CUT_RELEASE_S * self.sample_rate))
        self.end_age = self._end_age()


CONTROL_FRAMES = 16  # the envelope is evaluated every 16 frames (0.36 ms) of the stream, held between


class Synth:
    """MIDI messages in, stereo float32 out, at ``sample_rate``. ``handle`` applies a message
    at an absolute frame of the stream (now, or later in the next block); ``render`` plays
    the next block, every sounding voice at once (numpy across voices and frames, so a
    block costs a few dozen numpy calls however many voices sound)."""

    def __init__(self, soundfont: SoundFont, sample_rate: int = SAMPLE_RATE, max_voices: int | None = 256) -> None:
        self.soundfont, self.sample_rate, self.max_voices = soundfont, sample_rate, max_voices
        self.gain = MASTER_GAIN
        self.frame = 0  # frames rendered so far
        self._samples = np.append(soundfont.samples, np.zeros(2, np.float32))  # one past the last is readable
        self._next = self._samples[1:]  # the sample after each: the other end of the interpolation
        self.reset()

    def reset(self) -> None:
        """Silence at once and forget every controller (a new SoundFont, a new song)."""
        self.voices: list[Voice] = []
        self._held: dict[tuple[int, int], list[Voice]] = {}  # (channel, key) → voices not yet released
        self._exclusive: dict[tuple[int, int], list[Voice]] = {}  # (channel, class) → voices a new one cuts
        self.programs = [0] * 16
        self.volumes, self.expressions, self.pans = [100] * 16, [127] * 16, [64] * 16
        self._presets = [self._preset(channel) for channel in range(16)]

    def _preset(self, channel: int) -> tuple[int, int] | None:
        return self.soundfont.preset(DRUM_BANK if channel == DRUM_CHANNEL else 0, self.programs[channel])

    @property
    def active_voices(self) -> int:
        return sum(self.frame - v.start_frame < v.end_age for v in self.voices)

    def handle(self, message: Iterable[int], frame: int | None = None) -> None:
        """Apply one MIDI message at ``frame`` (default: the start of the next block)."""
        data = list(message)
        if not data:
            return
        at = self.frame if frame is None else frame
        status, channel = data[0] & 0xF0, data[0] & 0x0F
        if status == NOTE_ON and len(data) >= 3 and data[2] > 0:
            self.note_on(channel, data[1], data[2], at)
        elif (status == NOTE_OFF and len(data) >= 2) or (status == NOTE_ON and len(data) >= 3):
            for voice in self._held.pop((channel, data[1]), []):
                voice.release(at - voice.start_frame)
        elif status == PROGRAM and len(data) >= 2:
            self.programs[channel] = data[1]
            self._presets[channel] = self._preset(channel)
        elif status == CONTROL and len(data) >= 3:
            self._control(channel, data[1], data[2], at)

    def _control(self, channel: int, number: int, value: int, at: int) -> None:
        if number == 7:
            self.volumes[channel] = value
        elif number == 11:
            self.expressions[channel] = value
        elif number == 10:
            self.pans[channel] = value
        elif number == RESET_CONTROLLERS:
            self.volumes[channel], self.expressions[channel], self.pans[channel] = 100, 127, 64
        elif number in (ALL_NOTES_OFF, ALL_SOUND_OFF):
            cut = number == ALL_SOUND_OFF
            for voice in self.voices:
                if voice.channel == channel and voice.start_frame <= at:
                    voice.release(at - voice.start_frame, cut=cut)
            for held in [key for key in self._held if key[0] == channel]:
                self._held[held] = [v for v in self._held[held] if v.start_frame > at]

    def note_on(self, channel: int, key: int, velocity: int, at: int) -> None:
        preset = self._presets[channel]
        if preset is None:
            return
        gain = (self.volumes[channel] / 127.0) ** 2 * (self.expressions[channel] / 127.0) ** 2
        pan = (self.pans[channel] - 64) / 128.0
        regions = self.soundfont.regions(preset, key, velocity)
        for exclusive in {r.exclusive_class for r in regions} - {0}:  # a closed hi-hat cuts the open one
            for voice in self._exclusive.pop((channel, exclusive), []):
                voice.release(at - voice.start_frame, cut=True)
        for region in regions:
            voice = Voice(region, channel, key, velocity, gain, pan, at, self.sample_rate)
            self.voices.append(voice)
            self._held.setdefault((channel, key), []).append(voice)
            if region.exclusive_class:
                self._exclusive.setdefault((channel, region.exclusive_class), []).append(voice)
        if self.max_voices is not None and len(self.voices) > self.max_voices:
            del self.voices[: len(self.voices) - self.max_voices]  # the oldest go first

    def render(self, frames: int) -> np.ndarray:
        """The next ``frames`` frames, (frames, 2) float32; ended voices are dropped."""
        first = self.frame
        self.frame += frames
        sounding = [v for v in self.voices if first - v.start_frame < v.end_age]
        self.voices = [v for v in sounding if self.frame - v.start_frame < v.end_age]
        if not sounding:
            return np.zeros((frames, 2), np.float32)
        # looping voices first: they are wrapped as one slice of the arrays
        looping = [v for v in sounding if v.loops_at(first - v.start_frame)]
        voices = looping + [v for v in sounding if not v.loops_at(first - v.start_frame)]
        wave = self._waves(voices, len(looping), first, frames)
        envelope = self._envelopes(voices, first, frames)
        if first % CONTROL_FRAMES == 0 and frames % CONTROL_FRAMES == 0:
            wave.reshape(len(voices), -1, CONTROL_FRAMES)[...] *= envelope[:, :, None]
        else:
            wave *= envelope[:, np.arange(first, self.frame) // CONTROL_FRAMES - first // CONTROL_FRAMES]
        gains = np.array([[v.left for v in voices], [v.right for v in voices]], np.float32) * np.float32(self.gain)
        return np.ascontiguousarray((gains @ wave).T)

    def _envelopes(self, voices: list[Voice], first: int, frames: int) -> np.ndarray:
        """Each voice's envelope on the stream's grid of control frames, (voices, cells): the
        same points whatever the blocks, so a song sounds the same live and offline. A cell's
        value is the envelope at its end."""
        column = lambda values: np.array(values, np.float64)[:, None]  # noqa: E731  one value per voice
        cells = np.arange(first // CONTROL_FRAMES, (first + frames - 1) // CONTROL_FRAMES + 1)
        ages = (cells + 1) * CONTROL_FRAMES - column([v.start_frame for v in voices])
        ramp = np.clip((ages - column([v.delay_end for v in voices])) * column([v.attack_rate for v in voices]), 0, 1)
        held_cb = np.clip((ages - column([v.hold_end for v in voices])) * column([v.decay_rate for v in voices]), 0,
                          column([v.sustain_cb for v in voices]))  # fmt: skip
        envelope = ramp * np.exp(held_cb * _DB_PER_CB)
        released = column([v.release_age for v in voices])
        if np.isfinite(released).any():
            since = np.maximum(ages - released, 0.0)
            after = column([v.release_level for v in voices]) * np.exp(
                since * column([v.release_rate for v in voices]) * _DB_PER_CB)  # fmt: skip
            envelope = np.where(ages >= released, after, envelope)
        envelope[ages >= column([v.end_age for v in voices])] = 0.0
        return envelope.astype(np.float32)

    def _waves(self, voices: list[Voice], n_looping: int, first: int, frames: int) -> np.ndarray:
        """Each voice's sample, read at its pitch with linear interpolation, (voices, frames)
        float32. Exact where it starts (float64, `Voice.position`); within the block, offsets
        from there in float32 (a block moves a voice a few thousand samples at most)."""
        starts = [max(0, first - v.start_frame) for v in voices]
        positions = np.array([v.position(age) for v, age in zip(voices, starts, strict=True)])
        whole = np.floor(positions)
        steps = np.array([v.step for v in voices], np.float32)
        offsets = np.outer(steps, np.arange(frames, dtype=np.float32))
        offsets += (positions - whole).astype(np.float32)[:, None]
        for row, voice in enumerate(voices):
            lead = voice.start_frame - first  # starts inside this block: silent (and still) before
            if lead > 0:
                offsets[row] = (positions[row] - whole[row]) + np.maximum(np.arange(frames) - lead, 0) * voice.step
        index = np.empty((len(voices), frames), np.int64)
        if n_looping:
            loop_start = np.array([v.region.loop_start for v in voices[:n_looping]], np.int64)
            length = np.array([v.region.loop_end - v.region.loop_start for v in voices[:n_looping]], np.float32)
            into = offsets[:n_looping]
            into += (whole[:n_looping] - loop_start).astype(np.float32)[:, None]  # from the loop's start
            laps = np.floor(into * (1 / length)[:, None])
            np.maximum(laps, 0, out=laps)
            into -= laps * length[:, None]
            below = np.floor(into)
            into -= below  # the fraction
            index[:n_looping] = below
            index[:n_looping] += loop_start[:, None]
        if n_looping < len(voices):
            rest = offsets[n_looping:]
            below = rest.astype(np.int64)  # offsets are never negative here
            rest -= below
            below += whole[n_looping:].astype(np.int64)[:, None]
            np.minimum(below, np.array([v.region.end for v in voices[n_looping:]])[:, None], out=below)
            index[n_looping:] = below
        for row, voice in enumerate(voices):  # loop-until-release voices let go of their loop at the release
            age = first - voice.start_frame
            if voice.region.loop_mode == LOOP_UNTIL_RELEASE and age < voice.release_age < age + frames:
                exact = np.array([voice.position(age + k) for k in range(frames)])
                index[row] = np.minimum(np.floor(exact), voice.region.end)
                offsets[row] = exact - np.floor(exact)
        wave = self._samples[index]
        wave += (self._next[index] - wave) * offsets
        return wave


def render_events(events: Iterable[tuple[int, Iterable[int]]], soundfont: SoundFont, frames: int,
                  sample_rate: int = SAMPLE_RATE, progress: Callable[[float], None] | None = None,
                  cancelled: Callable[[], bool] | None = None, block_frames: int = 2048) -> np.ndarray:  # fmt: skip
    """Offline: play (frame, message) pairs (in time order) into ``frames`` frames of stereo
    float32, with the live engine in blocks of ``block_frames``: each message at its own
    frame. ``progress`` gets 0..1; a ``cancelled`` that returns True stops it (`SynthError`)."""
    synth = Synth(soundfont, sample_rate, max_voices=None)
    pending = list(events)
    out = np.empty((frames, 2), np.float32)
    next_event = 0
    for number, first in enumerate(range(0, frames, block_frames)):
        size = min(block_frames, frames - first)
        while next_event < len(pending) and pending[next_event][0] < first + size:
            frame, message = pending[next_event]
            synth.handle(message, max(first, frame))
            next_event += 1
        out[first : first + size] = synth.render(size)
        if number % 16 == 15:
            if cancelled is not None and cancelled():
                raise SynthError("rendering was cancelled")
            if progress is not None:
                progress(first / frames)
    fade = min(frames, int(0.05 * sample_rate))  # whatever still rings at the very end fades out
    if fade:
        out[frames - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    if progress is not None:
        progress(1.0)
    return out


def render_song(song: Song, soundfont: SoundFont, tracks: Iterable[int] | None = None, start_tick: int = 0,
                end_tick: int | None = None, sample_rate: int = SAMPLE_RATE, tail_seconds: float = TAIL_SECONDS,
                progress: Callable[[float], None] | None = None,
                cancelled: Callable[[], bool] | None = None) -> np.ndarray:  # fmt: skip
    """Ticks [start_tick, end_tick) of ``tracks`` (all when None) as stereo float32 audio:
    the player's own schedule, then ``tail_seconds`` for the last notes to ring out. Peaks
    above full scale are scaled down (the whole file, by one factor), never clipped."""
    from meloformer_core.playback.player import schedule

    end = song.end_tick if end_tick is None else end_tick
    events = schedule(song, tracks, start_tick, end)
    origin = float(song.seconds_at([start_tick])[0])
    music_seconds = max(0.0, float(song.seconds_at([end])[0]) - origin)
    frames = round((music_seconds + tail_seconds) * sample_rate)
    timed = ((round((e.seconds - origin) * sample_rate), e.message) for e in events)
    audio = render_events(timed, soundfont, frames, sample_rate, progress, cancelled)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0.999:
        audio *= 0.999 / peak
    return audio


class SynthOutput:
    """The built-in synth as an output of the `Player` (the interface of `ports.MidiOutput`).

    ``sink`` pulls audio from it: an `audio.DeviceSink` (the sound card), an
    `audio.ClockSink` (tests, benchmarks), or None: whoever holds it calls `render`. With
    ``discard`` it takes every message and makes no sound (no audio device: the player and
    the playhead still run); ``notice`` then says why, in one line.
    """

    port = None

    def __init__(self, sink=None, sample_rate: int = SAMPLE_RATE, label: str = "Built-in synth",
                 discard: bool = False, notice: str | None = None) -> None:  # fmt: skip
        self.sink, self.sample_rate, self.label = sink, sample_rate, label
        self.discard, self.notice = discard, notice
        self.synth: Synth | None = None
        self.received = 0  # messages sent to it (tests wait on this)
        self.log: list[tuple[float, int, tuple[int, ...]]] | None = None  # a list: (arrival, frame, note-on) kept
        self.frames = 0  # rendered so far: the stream's frame numbers (and the log's)
        self._queue: deque[tuple[float, tuple[int, ...]]] = deque()
        self._lock = threading.Lock()  # render (the audio thread) against a new SoundFont
        self._volume = 1.0
        self._failure: str | None = None
        self._closed = False
        self.last_render = time.monotonic()
        if sink is not None:
            sink.start(self)

    @property
    def soundfont(self) -> SoundFont | None:
        return self.synth.soundfont if self.synth is not None else None

    def set_soundfont(self, soundfont: SoundFont) -> None:
        """Play with ``soundfont`` from now on (what sounds stops)."""
        with self._lock:
            self.synth = Synth(soundfont, self.sample_rate)
            self.synth.frame = self.frames
            self.synth.gain = MASTER_GAIN * self._volume

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = min(1.0, max(0.0, float(value)))
        if self.synth is not None:
            self.synth.gain = MASTER_GAIN * self._volume

    def send(self, message: list[int]) -> None:
        if self._closed:
            from meloformer_core.playback.ports import OutputLostError

            raise OutputLostError(f"{self.label} was closed")
        self.received += 1
        if not self.discard:
            self._queue.append((time.monotonic(), tuple(message)))

    def render(self, frames: int, block_end: float | None = None) -> np.ndarray:
        """The next block, (frames, 2) float32 in -1..1, for the audio thread. The block holds
        the sound of monotonic times (block_end - frames / rate, block_end] (block_end: now
        when None): each message that arrived in that span starts at its own frame, an older
        one at the first; one that arrives later waits for its block."""
        now = time.monotonic() if block_end is None else block_end
        block_start = now - frames / self.sample_rate
        with self._lock:
            synth = self.synth
            while self._queue and self._queue[0][0] <= now:
                arrived, message = self._queue.popleft()
                if synth is None:
                    continue
                # a thousandth of a frame over: the clock's rounding puts a span of a whole number
                # of frames just under it, which would start the note a frame early
                offset = min(frames - 1, max(0, int((arrived - block_start) * self.sample_rate + 1e-3)))
                synth.handle(message, synth.frame + offset)
                if self.log is not None and message[0] & 0xF0 == NOTE_ON and len(message) > 2 and message[2]:
                    self.log.append((arrived, synth.frame + offset, message))
            audio = np.zeros((frames, 2), np.float32) if synth is None else synth.render(frames)
            self.frames += frames
        self.last_render = time.monotonic()
        np.clip(audio, -1.0, 1.0, out=audio)
        return audio

    def fail(self, why: str) -> None:
        """The audio side broke (called from the sink): the player hears it from `problem`."""
        self._failure = self._failure or why

    def problem(self) -> str | None:
        """Why this output can no longer play (one line), or None."""
        if self._closed:
            return f"{self.label} was closed"
        if self._failure is not None:
            return f"{self.label}: {self._failure}"
        sink_problem = self.sink.problem(self) if self.sink is not None else None
        return f"{self.label}: {sink_problem}" if sink_problem else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.sink is not None:
            self.sink.close()
        self._queue.clear()

    def __enter__(self) -> SynthOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
