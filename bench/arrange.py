"""Arrange and infill: the kept music fed in one pass a bar (`feed_run`, the default) against
token by token, beside continuing the same song by the same bars.

    .venv/bin/python bench/arrange.py [--seeds 3] [--input MIDI] [--bars 8]

Arranges a bass (program 33) under bars 1-``bars`` of the bundled chorale (or ``--input``),
infills the same bars of its first track, and continues it by ``bars`` bars, with the default
model, the recommended sampling and one take. The settings alternate seed by seed, so each
ratio comes from one run. "Token by token" replaces the runs with the single steps every
earlier version used (`Session.feed`), nothing else changes. Prints a table (median
seconds, model steps) and a JSON line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from meloformer_core.generation import session as generate_session
from meloformer_core.midi_io import read_midi
from meloformer_core.sampling_settings import RECOMMENDED
from meloformer_core.service import GenerationService, TrackRequest

TASKS = ("arrange, runs", "arrange, token by token", "infill, runs", "infill, token by token", "continue")


def token_by_token(session: generate_session.Session, tokens: list[int]) -> None:
    for token in tokens:
        session.feed(token)


def run(service: GenerationService, song, bars: int, task: str, seed: int) -> tuple[float, int, int]:
    """(seconds, tokens sampled, tokens fed) of one task."""
    sampling = replace(RECOMMENDED, takes=1, seed=seed)
    real = generate_session.Session.feed_known
    if task.endswith("token by token"):
        generate_session.Session.feed_known = token_by_token
    try:
        if task.startswith("arrange"):
            result = service.arrange_song(song, [TrackRequest("Bass", 33)], (0, bars), sampling)
        elif task.startswith("infill"):
            result = service.infill_song(song, (0, bars), [0], sampling)
        else:
            result = service.continue_song(song, bars, sampling)
    finally:
        generate_session.Session.feed_known = real
    return result.total_s, result.tokens_generated, result.tokens_fed


def main() -> None:
    from generate import song_options  # bench/ is on sys.path when run as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    song_options(parser)
    args = parser.parse_args()
    service = GenerationService(device="cpu")
    info = service.load()
    song = read_midi(args.input)
    run(service, song, 1, "continue", 0)  # warm up
    measured: dict[str, list[tuple[float, int, int]]] = {task: [] for task in TASKS}
    for seed in range(args.seeds):
        for task in TASKS:
            measured[task].append(run(service, song, args.bars, task, seed))
    base = float(np.median([m[0] for m in measured["continue"]]))
    rows = []
    for task in TASKS:
        seconds = float(np.median([m[0] for m in measured[task]]))
        rows.append({"task": task, "seconds": round(seconds, 3), "to_continue": round(seconds / base, 2),
                     "sampled": int(np.median([m[1] for m in measured[task]])),
                     "fed": int(np.median([m[2] for m in measured[task]]))})  # fmt: skip
    print(f"model: {info['name']}, input: {args.input.name}, bars 1-{args.bars}, {args.seeds} seeds, one take")
    print(f"{'task':>24} {'seconds':>8} {'× continue':>11} {'sampled':>8} {'fed':>6}")
    for row in rows:
        print(f"{row['task']:>24} {row['seconds']:>8} {row['to_continue']:>11} {row['sampled']:>8} {row['fed']:>6}")
    print(json.dumps({"benchmark": "arrange", "input": args.input.name, "bars": args.bars, "seeds": args.seeds,
                      "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
