"""The built-in synth: latency from the player to the synth's buffer, and offline render speed.

    .venv/bin/python bench/synth.py [--seconds 10] [--render-minutes 3] [--repeats 3]

**Latency.** A 10-track song (`band_song`: about 40 note-ons a second) plays through the
`Player` on a `SynthOutput` at the default block size, as the app plays it. For every
note-on the latency is the moment the block holding its first sample was rendered (handed
to the audio layer) minus when the player's clock said it was due. It is measured on three
pullers of blocks: our `ClockSink`; miniaudio's null device (the real audio layer and its
own thread, playing to nowhere); the system's audio device where there is one. "+ busy
thread" runs the clock sink while another Python thread computes without pause, as a busy
GUI would (the audio thread then waits for the GIL). The device's own output buffer comes
on top of these figures (miniaudio is asked for periods of one block). Render time per
block, against the block's duration, shows the margin before the sound would break up.

**Offline.** `band_song` for ``--render-minutes`` rendered with `render_song` (the export and
`meloformer render`), median of ``--repeats``; the target is under a tenth of its duration.

Prints a table and, last, one JSON line (milliseconds, seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meloformer_core.music import Song, TempoChange, Track
from meloformer_core.playback.audio import AudioDeviceError, ClockSink, DeviceSink
from meloformer_core.playback.player import NOTE_ON, Player
from meloformer_core.playback.soundfont import load_soundfont
from meloformer_core.playback.synth import BLOCK_FRAMES, SAMPLE_RATE, SynthOutput, render_song

LEADS = [0, 25, 73, 61, 11]  # piano, guitar, flute, brass, vibraphone: a note every eighth
PADS = [48, 19, 52]  # strings, organ, choir: a three-note chord a bar


def band_song(seconds: float, seed: int = 0) -> Song:
    """Ten tracks at 120 BPM, as a dense arrangement has them: five leads (a note every
    eighth, a sixteenth to a half note long), three pads (a chord a bar), a bass (quarters)
    and drums (sixteenths)."""
    rng = np.random.default_rng(seed)
    eighths, bars = int(seconds * 4), int(seconds / 2)
    tracks = []
    for program in LEADS:
        starts = np.arange(eighths) * 240
        lengths = rng.choice([120, 240, 480, 960], eighths)
        data = np.column_stack([starts, rng.integers(55, 84, eighths), lengths, rng.integers(60, 110, eighths)])
        tracks.append(Track(f"Lead {program}", program, False, data))
    roots = rng.integers(48, 60, bars)
    for program in PADS:
        chords = [(bar * 1920, root + step, 1920, 70) for bar, root in enumerate(roots) for step in (0, 4, 7)]
        tracks.append(Track(f"Pad {program}", program, False, np.array(chords)))
    quarters = eighths // 2
    bass = np.column_stack([np.arange(quarters) * 480, rng.integers(28, 43, quarters), np.full(quarters, 400),
                            rng.integers(80, 110, quarters)])  # fmt: skip
    tracks.append(Track("Bass", 33, False, bass))
    sixteenths = eighths * 2
    beat = np.arange(sixteenths) % 8
    keys = np.where(beat == 0, 36, np.where(beat == 4, 38, 42))
    drums = np.column_stack([np.arange(sixteenths) * 120, keys, np.full(sixteenths, 60),
                             rng.integers(70, 110, sixteenths)])  # fmt: skip
    tracks.append(Track("Drums", 0, True, drums))
    return Song(480, (TempoChange(0, 500_000),), (), (), tuple(tracks))


def busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def latency(soundfont, song: Song, sink, label: str, with_busy_thread: bool = False) -> dict:
    output = SynthOutput(sink)
    output.set_soundfont(soundfont)
    output.log = []
    blocks: list[tuple[int, int, float, float]] = []  # (first frame, frames, render started, rendered)
    render = output.render

    def timed_render(frames: int, block_end: float | None = None) -> np.ndarray:
        first, started = output.frames, time.monotonic()
        audio = render(frames, block_end)
        blocks.append((first, frames, started, time.monotonic()))
        return audio

    output.render = timed_render
    stop = threading.Event()
    worker = threading.Thread(target=busy, args=(stop,), daemon=True) if with_busy_thread else None
    if worker is not None:
        worker.start()
    done = threading.Event()
    player = Player(output.send, on_finished=done.set, check=output.problem)
    player.play(song)
    done.wait(song.seconds_at([song.end_tick])[0] + 30)
    origin_clock, origin_seconds = player.origin
    player.close()
    stop.set()
    time.sleep(0.1)
    output.close()
    due = [origin_clock + e.seconds - origin_seconds for e in player.events
           if e.message[0] & 0xF0 == NOTE_ON and e.message[2]]  # fmt: skip
    starts = np.array([b[0] for b in blocks])
    heard = []
    for _, frame, _ in output.log:
        block = int(np.searchsorted(starts, frame, side="right")) - 1
        heard.append(blocks[block][3])
    count = min(len(due), len(heard))
    errors = (np.array(heard[:count]) - np.array(due[:count])) * 1000
    renders = np.array([(b[3] - b[2]) * 1000 for b in blocks])
    block_ms = BLOCK_FRAMES / SAMPLE_RATE * 1000
    return {"sink": label, "note_ons": count, "median_ms": round(float(np.median(errors)), 2),
            "p95_ms": round(float(np.percentile(errors, 95)), 2), "max_ms": round(float(errors.max()), 2),
            "render_median_ms": round(float(np.median(renders)), 3), "render_max_ms": round(float(renders.max()), 2),
            "block_ms": round(block_ms, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    parser.add_argument("--render-minutes", type=float, default=3.0, help="length of the song rendered offline")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    soundfont = load_soundfont()
    song = band_song(args.seconds)
    rows = [latency(soundfont, song, ClockSink(), "clock sink"),
            latency(soundfont, song, ClockSink(), "clock sink + busy thread", with_busy_thread=True)]  # fmt: skip
    for label, backends in (("miniaudio null device", ("null",)), ("system audio device", None)):
        try:
            rows.append(latency(soundfont, song, DeviceSink(backends=backends), label))
        except AudioDeviceError as error:
            rows.append({"sink": label, "skipped": str(error)})
    long_song = band_song(args.render_minutes * 60, seed=1)
    music = float(long_song.seconds_at([long_song.end_tick])[0])
    times = []
    for _ in range(args.repeats):
        started = time.monotonic()
        audio = render_song(long_song, soundfont)
        times.append(time.monotonic() - started)
    offline = {"music_seconds": round(music, 1), "notes": long_song.note_count, "tracks": len(long_song.tracks),
               "render_seconds_median": round(float(np.median(times)), 2),
               "render_seconds_range": [round(min(times), 2), round(max(times), 2)],
               "fraction_of_duration": round(float(np.median(times)) / music, 4),
               "peak": round(float(np.abs(audio).max()), 3)}  # fmt: skip

    print(f"latency: note-on due → its block rendered, {BLOCK_FRAMES} frames ({rows[0]['block_ms']} ms) a block")
    print(f"{'sink':<28}{'notes':>7}{'median':>9}{'p95':>9}{'max':>9}{'render/blk':>12}{'render max':>12}")
    for row in rows:
        if "skipped" in row:
            print(f"{row['sink']:<28}  skipped: {row['skipped']}")
            continue
        print(f"{row['sink']:<28}{row['note_ons']:>7}{row['median_ms']:>9}{row['p95_ms']:>9}{row['max_ms']:>9}"
              f"{row['render_median_ms']:>12}{row['render_max_ms']:>12}")  # fmt: skip
    print(f"\noffline: {offline['music_seconds']} s, {offline['tracks']} tracks, {offline['notes']:,} notes "
          f"rendered in {offline['render_seconds_median']} s (range {offline['render_seconds_range']}): "
          f"{offline['fraction_of_duration']:.3f} of its duration; peak {offline['peak']}")  # fmt: skip
    print(json.dumps({"block_frames": BLOCK_FRAMES, "sample_rate": SAMPLE_RATE, "latency": rows, "offline": offline}))


if __name__ == "__main__":
    main()
