"""Decoding speed on an idle and on a busy machine: torch's threads fixed at 1 and at 2,
and chosen per generation from the idle cores (`meloformer_core.threads`, the default).

    .venv/bin/python bench/threads.py [--seeds 3] [--bars 8] [--input MIDI]

Continues the bundled chorale (or ``--input``) with the default model and the recommended
sampling, one take. "Busy" runs a second process that keeps one core busy the whole time.
The three thread settings alternate seed by seed, so each ratio comes from one run. Prints a
table (median tokens/s) and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from dataclasses import replace

import numpy as np
import torch

from meloformer_core import threads
from meloformer_core.midi_io import read_midi
from meloformer_core.sampling_settings import RECOMMENDED
from meloformer_core.service import GenerationService

SETTINGS = ("1 thread", "2 threads", "adaptive")


def burn(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def measure(service: GenerationService, song, bars: int, seeds: int) -> dict[str, list[float]]:
    speeds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    real_threads_for = threads.threads_for
    for seed in range(seeds):
        for name in SETTINGS:
            fixed = {"1 thread": 1, "2 threads": 2}.get(name)
            threads.threads_for = real_threads_for if fixed is None else (lambda _idle, cores=None, n=fixed: n)
            sampling = replace(RECOMMENDED, takes=1, seed=seed)
            result = service.continue_song(song, bars, sampling)
            speeds[name].append(result.tokens_generated / result.total_s)
    threads.threads_for = real_threads_for
    return speeds


def main() -> None:
    from generate import song_options  # bench/ is on sys.path when run as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    song_options(parser)
    args = parser.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)  # adaptive only adapts when the user has not fixed the count
    torch.set_num_threads(2)
    service = GenerationService(device="cpu")
    info = service.load()
    song = read_midi(args.input)
    service.continue_song(song, 1, replace(RECOMMENDED, takes=1))  # warm up
    idle = measure(service, song, args.bars, args.seeds)
    stop = multiprocessing.Event()
    busy_process = multiprocessing.Process(target=burn, args=(stop,), daemon=True)
    busy_process.start()
    time.sleep(0.5)
    busy = measure(service, song, args.bars, args.seeds)
    stop.set()
    busy_process.join()
    rows = []
    for name in SETTINGS:
        rows.append({"threads": name, "idle_tokens_per_s": round(float(np.median(idle[name])), 1),
                     "busy_tokens_per_s": round(float(np.median(busy[name])), 1)})  # fmt: skip
        rows[-1]["busy_to_idle"] = round(rows[-1]["busy_tokens_per_s"] / rows[-1]["idle_tokens_per_s"], 2)
    today = rows[1]["idle_tokens_per_s"]  # torch's default on this machine: two threads
    print(f"model: {info['name']}, input: {args.input.name}, {args.bars} bars, {args.seeds} seeds, one take")
    print(f"{'threads':>10} {'idle tok/s':>11} {'busy tok/s':>11} {'busy/idle':>10} {'idle / 2 threads idle':>22}")
    for row in rows:
        print(f"{row['threads']:>10} {row['idle_tokens_per_s']:>11} {row['busy_tokens_per_s']:>11} "
              f"{row['busy_to_idle']:>10} {row['idle_tokens_per_s'] / today:>22.2f}")  # fmt: skip
    print(json.dumps({"benchmark": "threads", "input": args.input.name, "bars": args.bars, "seeds": args.seeds,
                      "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
