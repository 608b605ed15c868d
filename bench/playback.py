"""Scheduling jitter of the player against a real JACK MIDI receiver.

    .venv/bin/python bench/playback.py [--seconds 20] [--while-generating] [--no-port-check]

Starts a JACK server of its own (dummy driver), a receiving rtmidi client
(a process of its own, tests/jack.py), and plays a dense 16-track song (every track a note
every sixteenth at 120 BPM: 128 note events a second) the way `meloformer play` does,
asking the port every half second whether it is still there (``--no-port-check``: not).
For every note-on the receiver gets, the error is its arrival time (JACK's time stamps,
on the monotonic clock, shared by the two processes) minus when the player's clock said
it was due; its median is the constant latency (JACK delivers MIDI once per period of 256
frames, 5.3 ms at 48 kHz), and jitter is each error's distance from that median. The
duration error is how much longer (or shorter) the first note-on to the last note-off took
than scheduled. With ``--while-generating`` the default model continues a song in another
thread meanwhile, as in the app. Prints a table and a JSON line (milliseconds).

These are the timings the test suite no longer asserts (tests/core/test_playback_jack.py
checks only what arrives, in which order): on a busy machine they are what varies.
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
from meloformer_core.playback.player import Player, schedule
from meloformer_core.playback.ports import open_output
from tests.jack import JackServer, Receiver


def dense_song(seconds: float, seed: int = 0) -> Song:
    rng = np.random.default_rng(seed)
    steps = int(seconds * 8)  # sixteenths at 120 BPM
    tracks = []
    for index in range(16):
        starts = np.arange(steps) * 120
        pitches = rng.integers(36, 84, steps) if index != 9 else rng.choice([36, 38, 42, 46], steps)
        data = np.column_stack([starts, pitches, np.full(steps, 100), rng.integers(40, 120, steps)])
        tracks.append(Track(f"T{index + 1}", index * 8 % 128, index == 9, data))
    return Song(480, (TempoChange(0, 500_000),), (), (), tuple(tracks))


def main() -> int:
    # Long on purpose (64 lines): a benchmark script: its measurements in the order the table reports them.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--while-generating", action="store_true")
    parser.add_argument("--no-port-check", action="store_true", help="do not ask the port whether it is still there")
    args = parser.parse_args()
    server = JackServer()
    receiver = Receiver("bench-receiver")
    song = dense_song(args.seconds)
    expected = [e for e in schedule(song) if e.message[0] & 0xF0 == 0x90]
    stop_generating = threading.Event()
    if args.while_generating:

        def generate() -> None:
            from meloformer_core.midi_io import read_midi
            from meloformer_core.service import GenerationService

            service = GenerationService(device="cpu")
            service.load(None)
            chorale = read_midi(Path(__file__).resolve().parent.parent / "resources/examples/bach_chorale.mid")
            while not stop_generating.is_set():
                service.continue_song(chorale, 4, cancel=stop_generating)

        generator = threading.Thread(target=generate, daemon=True)
        generator.start()
        time.sleep(3)  # the model is loaded and writing
    done = threading.Event()
    try:
        with open_output(receiver.port) as output:
            player = Player(output.send, on_finished=done.set, check=None if args.no_port_check else output.problem)
            player.play(song)
            origin_clock, origin_seconds = player.origin
            done.wait(args.seconds + 30)
            player.close()
        deadline = time.monotonic() + 30  # the last messages reach the receiver
        while sum(m[0] & 0xF0 == 0x80 for _, m in receiver.messages) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_generating.set()
        if args.while_generating:
            generator.join(30)
        receiver.close()
        server.stop()
    arrived = [t - origin_clock + origin_seconds for t, m in receiver.messages if m[0] & 0xF0 == 0x90]
    count = min(len(arrived), len(expected))
    errors_ms = (np.array(arrived[:count]) - np.array([e.seconds for e in expected[:count]])) * 1000
    latency = float(np.median(errors_ms))
    jitter = np.abs(errors_ms - latency)
    offs = [t for t, m in receiver.messages if m[0] & 0xF0 == 0x80]
    scheduled = max(e.seconds for e in schedule(song)) - expected[0].seconds
    duration_error = ((offs[-1] if offs else float("nan")) - (arrived[0] + origin_clock - origin_seconds)) - scheduled
    result = {"bench": "playback", "tracks": 16, "note_ons": len(expected), "received": len(arrived),
              "while_generating": args.while_generating, "port_check": not args.no_port_check,
              "latency_median_ms": round(latency, 3),
              "onset_error_mean_ms": round(float(np.abs(errors_ms).mean()), 3),
              "jitter_mean_ms": round(float(jitter.mean()), 3),
              "jitter_p99_ms": round(float(np.percentile(jitter, 99)), 3),
              "jitter_max_ms": round(float(jitter.max()), 3),
              "duration_error_ms": round(duration_error * 1000, 3)}  # fmt: skip
    for key, value in result.items():
        if key != "bench":
            print(f"{key:<22}{value!s:>10}")
    print(json.dumps(result))
    return 0 if result["received"] == result["note_ons"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
