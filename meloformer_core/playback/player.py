"""Playing a `Song` on a MIDI output: a schedule of timed messages and a player thread.

Plain Python (no Qt): the app wraps `Player` in a thin adapter, the CLI and the tests
use it directly. Times come from the tempo map (`Song.seconds_at`); the player waits on
a monotonic clock for each event's due time (never a sum of sleeps, so errors do not
accumulate). Stop, pause, seeking, editing the song and losing the port all end with a
note-off for every sounding note and All Notes Off on every channel used: no stuck notes.
Only the player's thread writes to the port (other threads leave the note-offs for it to
send first): RtMidi's JACK output loses messages written from two threads.

The port can go away while it plays. A failed write says so at once; a port whose writes
cannot fail (JACK's, whose server may die) is asked by a second thread: ``check`` is called
every ``check_seconds`` while something sounds, off the thread that keeps time (a check
lists ports, which may take a while), and any answer but None stops the player as a failed
write does: a note-off for what sounds, sent if it still can be, then ``on_error`` gets
one line, once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from meloformer_core.errors import MeloformerError
from meloformer_core.midi_io import assign_channels
from meloformer_core.music import Song

NOTE_ON, NOTE_OFF, CONTROL, PROGRAM = 0x90, 0x80, 0xB0, 0xC0
ALL_NOTES_OFF, ALL_SOUND_OFF = 123, 120
METRONOME_CHANNEL, METRONOME_HIGH, METRONOME_LOW = 9, 76, 77  # hi / low wood block on the drum channel
Sink = Callable[[list[int]], None]
Check = Callable[[], "str | None"]  # why the output is gone, or None while it is there


@dataclass(frozen=True)
class Event:
    seconds: float  # from the start of the song
    tick: int
    order: int  # at equal times: note-offs (0) before programs (1) before note-ons (2)
    message: tuple[int, ...]
    click: bool = False  # a metronome click, not a note of the song


def schedule(song: Song, tracks: Iterable[int] | None = None, start_tick: int = 0, end_tick: int | None = None,
             metronome: bool = False) -> list[Event]:  # fmt: skip
    """Every message to play ticks [start_tick, end_tick) of ``tracks`` (all when None), in
    time order: program changes first, notes cut at ``end_tick``, and metronome clicks on
    the beats of the metre (`Song.beats`, a higher click on each bar's first) when asked.
    Notes that started before ``start_tick`` are not re-struck."""
    end = song.end_tick if end_tick is None else end_tick
    chosen = range(len(song.tracks)) if tracks is None else sorted(set(tracks))
    channels = assign_channels(song)
    starts_s = float(song.seconds_at([start_tick])[0])
    events: list[Event] = []
    for index in chosen:
        track, channel = song.tracks[index], channels[index]
        events.append(Event(starts_s, start_tick, 1, (PROGRAM | channel, track.program)))
        data = track.notes.array
        inside = data[(data[:, 0] >= start_tick) & (data[:, 0] < end)]
        if not len(inside):
            continue
        offs = np.minimum(inside[:, 0] + inside[:, 2], end)
        on_s, off_s = song.seconds_at(inside[:, 0]), song.seconds_at(offs)
        for (tick, pitch, _, velocity), off, t_on, t_off in zip(inside.tolist(), offs.tolist(), on_s.tolist(),
                                                                off_s.tolist(), strict=True):  # fmt: skip
            events.append(Event(t_on, tick, 2, (NOTE_ON | channel, pitch, velocity)))
            events.append(Event(t_off, off, 0, (NOTE_OFF | channel, pitch, 0)))
    if metronome:
        ticks, downbeats = song.beats(start_tick, end)
        offs = np.minimum(ticks + song.resolution // 4, end)  # a short click: a 16th note
        keys = np.where(downbeats, METRONOME_HIGH, METRONOME_LOW)
        for tick, off, key, t_on, t_off in zip(ticks.tolist(), offs.tolist(), keys.tolist(),
                                               song.seconds_at(ticks).tolist(), song.seconds_at(offs).tolist(),
                                               strict=True):  # fmt: skip
            events.append(Event(t_on, tick, 2, (NOTE_ON | METRONOME_CHANNEL, key, 100), click=True))
            events.append(Event(t_off, off, 0, (NOTE_OFF | METRONOME_CHANNEL, key, 0), click=True))
    events.sort(key=lambda e: (e.seconds, e.order))
    return events


class Player:
    """Plays a song on ``sink`` (a callable taking one MIDI message as a list of bytes);
    ``check`` (optional) tells whether the output is still there (see the module's doc)."""

    def __init__(self, sink: Sink, on_error: Callable[[str], None] | None = None,
                 on_finished: Callable[[], None] | None = None, check: Check | None = None,
                 check_seconds: float = 0.5) -> None:  # fmt: skip
        self.sink = sink
        self.on_error = on_error
        self.on_finished = on_finished
        self.check = check
        self.check_seconds = check_seconds
        self.lost: str | None = None  # why the output was lost, once it was (until the next play)
        self._lost_reported = False
        self.song = Song()
        self.tracks: list[int] | None = None
        self.loop: tuple[int, int] | None = None
        self.metronome = False
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._playing = False
        self._paused_tick: int | None = None
        self._origin_clock = 0.0  # monotonic time at which song second `_origin_seconds` sounds
        self._origin_seconds = 0.0
        self._sounding: set[tuple[int, int]] = set()  # (channel, pitch)
        self._channels: set[int] = set()
        self.position_tick = 0
        self._end_tick: int | None = None
        self._closing = False
        self.events: list[Event] = []  # the schedule being played
        self._next = 0
        self._to_silence: list[list[int]] = []  # note-offs and All Notes Off the thread sends next
        self._flushed = threading.Event()
        self._auditions: list[tuple[float, int, int]] = []  # (note-off due, channel, key) of single notes
        self._watcher: threading.Thread | None = None
        self._watch_wake = threading.Event()

    # --- transport ------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._playing

    def play(self, song: Song, start_tick: int = 0, tracks: Iterable[int] | None = None,
             end_tick: int | None = None) -> None:  # fmt: skip
        """Start (or restart) playing ``song`` from ``start_tick`` to ``end_tick`` (or the end)."""
        self.stop()
        with self._lock:
            self.song, self.tracks = song, None if tracks is None else list(tracks)
            self._end_tick = end_tick
            self.lost, self._lost_reported = None, False  # a new try (the check says soon if it is still gone)
            self._start(start_tick)

    def _start(self, tick: int) -> None:
        loop_end = self.loop[1] if self.loop else None
        end = loop_end if loop_end is not None and tick < loop_end else self._end_tick
        self.events = schedule(self.song, self.tracks, tick, end, self.metronome)
        self._next = 0
        self._origin_seconds = float(self.song.seconds_at([tick])[0])
        self._origin_clock = time.monotonic() + 0.01  # a little lead so the first event is on time
        self._channels |= {event.message[0] & 0x0F for event in self.events}
        self.position_tick = tick
        self._playing = True
        self._paused_tick = None
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="meloformer-player", daemon=True)
            self._thread.start()
        if self.check is not None and (self._watcher is None or not self._watcher.is_alive()):
            self._watcher = threading.Thread(target=self._watch, name="meloformer-port-check", daemon=True)
            self._watcher.start()

    def audition(self, channel: int, program: int, key: int, velocity: int = 90, seconds: float = 0.3) -> None:
        """Sound one note now (a click in the editor), alone or over what is playing."""
        with self._lock:
            self._to_silence += [[PROGRAM | channel, program], [NOTE_ON | channel, key, velocity]]
            self._auditions.append((time.monotonic() + seconds, channel, key))
            self._channels.add(channel)
            self._flushed.clear()
            self._ensure_thread()
        self._wake.set()

    def stop(self, wait: float = 0.5) -> None:
        """Stop and silence everything (waiting up to ``wait`` s until it is sent); the position
        stays where it was."""
        with self._lock:
            self._playing = False
            self._silence()
        self._wake.set()
        if self._to_silence and self._thread is not None and self._thread is not threading.current_thread():
            self._flushed.wait(wait)

    def pause(self) -> None:
        with self._lock:
            if not self._playing:
                return
            tick = self.current_tick()
        self.stop()  # not under the lock: it waits for the player's thread to send the note-offs
        with self._lock:
            self._paused_tick = tick

    def resume(self) -> None:
        with self._lock:
            if self._paused_tick is not None and not self._playing:
                self._start(self._paused_tick)

    def seek(self, tick: int) -> None:
        with self._lock:
            if self._playing:
                self._silence()
                self._start(tick)
            else:
                self.position_tick = tick
                if self._paused_tick is not None:
                    self._paused_tick = tick

    def update_song(self, song: Song, tracks: Iterable[int] | None = None) -> None:
        """The song was edited (or tracks muted) while playing: go on from here with the new one."""
        with self._lock:
            self.song, self.tracks = song, None if tracks is None else list(tracks)
            if self._playing:
                tick = self.current_tick()
                self._silence()
                self._start(tick)

    @property
    def origin(self) -> tuple[float, float]:
        """(monotonic time, song second) that coincide in the schedule being played."""
        with self._lock:
            return self._origin_clock, self._origin_seconds

    def current_tick(self) -> int:
        """Where the music is now (for the playhead)."""
        with self._lock:
            if not self._playing:
                return self._paused_tick if self._paused_tick is not None else self.position_tick
            seconds = self._origin_seconds + max(0.0, time.monotonic() - self._origin_clock)
            return int(self.song.ticks_at([seconds])[0])

    def fail(self, message: str) -> None:
        """The output is gone (any thread may say so): stop, send what note-offs still can be
        sent, and report ``message`` to ``on_error`` (once, from the player's thread)."""
        with self._lock:
            self._lose(message)
            self._ensure_thread()
        self._wake.set()

    def close(self) -> None:
        self.stop()
        self._closing = True
        thread, self._thread = self._thread, None
        watcher, self._watcher = self._watcher, None
        self._wake.set()
        self._watch_wake.set()
        for each in (thread, watcher):
            if each is not None and each is not threading.current_thread():
                each.join(timeout=2)

    # --- the thread -----------------------------------------------------------------------
    def _silence(self) -> None:
        """Queue a note-off for every sounding note, then All Notes Off on every channel used."""
        self._to_silence += [[NOTE_OFF | channel, pitch, 0] for channel, pitch in sorted(self._sounding)]
        self._to_silence += [[CONTROL | channel, ALL_NOTES_OFF, 0] for channel in sorted(self._channels)]
        self._sounding.clear()
        self._flushed.clear()

    def _flush(self) -> None:
        """Send what `_silence` queued (on the player's thread), each message that still goes:
        on a port that is failing, a note-off that gets through still ends its note."""
        queued, self._to_silence = self._to_silence, []
        for message in queued:
            with contextlib.suppress(Exception):
                self.sink(message)
        self._flushed.set()

    def _lose(self, message: str) -> None:
        """Under the lock: the output is gone; stop, queue the note-offs, report once."""
        if self.lost is not None:
            return
        self.lost = message
        self._playing = False
        self._silence()
        for _, channel, key in self._auditions:
            self._to_silence.append([NOTE_OFF | channel, key, 0])
        self._auditions = []

    def _watch(self) -> None:
        """The second thread: ask ``check`` every ``check_seconds`` while something sounds."""
        while not self._closing:
            self._watch_wake.wait(self.check_seconds)
            self._watch_wake.clear()
            if self._closing:
                return
            if self.lost is not None or not (self._playing or self._auditions):
                continue
            try:
                problem = self.check()
            except Exception as error:  # a check that cannot even ask: the output is as good as gone
                problem = f"MIDI output lost: {error}"
            if problem and not self._closing:
                self.fail(problem)

    def _run(self) -> None:
        while True:
            self._wake.clear()  # before looking, so a wake-up while we look is not lost
            with self._lock:
                if self._to_silence:
                    self._flush()
                news = self.lost if self.lost is not None and not self._lost_reported else None
                self._lost_reported = self._lost_reported or news is not None
            if news is not None:  # the output is gone: its note-offs went first, now say so
                if self.on_error is not None:
                    self.on_error(news)
                continue
            with self._lock:
                if self._closing:
                    return
                wake_at = self._end_auditions()
                if self._playing:
                    if self._next >= len(self.events):
                        self._finish()
                        continue
                    event = self.events[self._next]
                    due = self._origin_clock + (event.seconds - self._origin_seconds)
                    if due <= time.monotonic():
                        self._send(event)
                        continue
                    wake_at.append(due)
            timeout = None if not wake_at else max(0.0, min(min(wake_at) - time.monotonic(), 0.05))
            self._wake.wait(timeout)

    def _end_auditions(self) -> list[float]:
        """Note-offs for auditioned notes that are due; the times of the others."""
        now = time.monotonic()
        for _, channel, key in [a for a in self._auditions if a[0] <= now]:
            with contextlib.suppress(Exception):  # a port that is gone has nothing sounding
                self.sink([NOTE_OFF | channel, key, 0])
        self._auditions = [a for a in self._auditions if a[0] > now]
        return [a[0] for a in self._auditions]

    def _send(self, event: Event) -> None:
        message = event.message
        try:
            self.sink(list(message))
        except Exception as error:  # the port vanished mid-song
            self._lose(str(error) if isinstance(error, MeloformerError) else f"MIDI output lost: {error}")
            return
        status, channel = message[0] & 0xF0, message[0] & 0x0F
        if status == NOTE_ON:
            self._sounding.add((channel, message[1]))
        elif status == NOTE_OFF:
            self._sounding.discard((channel, message[1]))
        self.position_tick = event.tick
        self._next += 1

    def _finish(self) -> None:
        """At the end of the schedule: loop back, or stop."""
        if self.loop is not None:
            self._silence()
            self._start(self.loop[0])
            return
        self._playing = False
        self._silence()
        self.position_tick = self._end_tick if self._end_tick is not None else self.song.end_tick
        if self.on_finished is not None:
            self.on_finished()
