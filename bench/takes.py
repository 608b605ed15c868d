"""The cost of takes: continuing the bundled Bach chorale by 8 bars with the default model
and the recommended sampling, decoding 1, 2, 4 and 8 takes together, and automatic takes.

    .venv/bin/python bench/takes.py [--takes 1 2 4 8 auto] [--seeds 3] [--bars 8] [--input MIDI]
                                    [--against BUNDLE] [--against-sampling T,TOP_P,MIN_P]

Each row is the median over the seeds of the whole generation (prefill, every take's
tokens, the choice of the most typical), and its ratio to one take measured in the same
run. ``--against`` also runs another bundle (an earlier default model), alternating with
the default one seed by seed, and prints the default's time as a multiple of the other's
(and per token: two models write different music, so different numbers of tokens).
``--against-sampling`` does the same for the default model under other sampling settings
(temperature, top-p, min-p; an earlier recommended sampling, say).
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from meloformer_core.midi_io import read_midi
from meloformer_core.sampling_settings import RECOMMENDED, parse_takes
from meloformer_core.service import GenerationService


def main() -> None:
    from generate import song_options  # bench/ is on sys.path when run as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", nargs="+", default=["1", "2", "4", "8", "auto"], help="numbers or auto")
    song_options(parser)
    parser.add_argument("--against", type=Path, default=None, metavar="BUNDLE", help="another bundle, run alternately")
    parser.add_argument("--against-sampling", default=None, metavar="T,TOP_P,MIN_P",
                        help="the default model under these sampling settings, run alternately")  # fmt: skip
    args = parser.parse_args()
    service = GenerationService()
    info = service.load()
    other, other_settings = None, {}
    song = read_midi(args.input)
    service.continue_song(song, 1, RECOMMENDED)  # warm up
    if args.against is not None:
        other = GenerationService()
        other.load(args.against)
        other.continue_song(song, 1, RECOMMENDED)
    elif args.against_sampling is not None:
        temperature, top_p, min_p = (float(value) for value in args.against_sampling.split(","))
        other, other_settings = service, {"temperature": temperature, "top_p": top_p, "min_p": min_p}
    against = args.against or (f"sampling {args.against_sampling}" if args.against_sampling else None)
    rows = []
    for takes in args.takes:
        sampling = replace(RECOMMENDED, takes=parse_takes(takes))
        runs, others = [], []
        for seed in range(args.seeds):  # the two models alternate, seed by seed
            runs.append(service.continue_song(song, args.bars, replace(sampling, seed=seed)))
            if other is not None:
                others.append(other.continue_song(song, args.bars, replace(sampling, seed=seed, **other_settings)))
        rows.append({
            "takes": sampling.takes_label, "decoded": len(runs[0].takes),
            "seconds": round(float(np.median([r.total_s for r in runs])), 3),
            "first_bar_s": round(float(np.median([r.first_bar_s for r in runs])), 3),
            "tokens": int(np.median([r.tokens_generated for r in runs])),
        })  # fmt: skip
        if others:
            rows[-1]["against_seconds"] = round(float(np.median([r.total_s for r in others])), 3)
            rows[-1]["ratio_to_against"] = round(rows[-1]["seconds"] / rows[-1]["against_seconds"], 2)
            per_token = [r.total_s / max(r.tokens_generated, 1) for r in runs]
            against_per_token = [r.total_s / max(r.tokens_generated, 1) for r in others]
            ratio = float(np.median(per_token) / np.median(against_per_token))
            rows[-1]["per_token_ratio_to_against"] = round(ratio, 2)
    one = rows[0]["seconds"] if rows and rows[0]["takes"] == "1" else None
    for row in rows:
        row["tokens_per_s"] = round(row["tokens"] / row["seconds"], 1)
        row["ratio_to_one_take"] = round(row["seconds"] / one, 2) if one else None
    print(f"model: {info['name']} on {info['device']}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"input: {args.input.name}, {args.bars} bars")
    print(f"{'takes':>6} {'decoded':>8} {'seconds':>9} {'first bar s':>12} {'tokens':>8} {'tokens/s':>9} "
          f"{'× one take':>11}")  # fmt: skip
    for row in rows:
        print(f"{row['takes']:>6} {row['decoded']:>8} {row['seconds']:>9} {row['first_bar_s']:>12} {row['tokens']:>8} "
              f"{row['tokens_per_s']:>9} {row['ratio_to_one_take']!s:>11}")  # fmt: skip
    if other is not None:
        print(f"against {against}: seconds, and the default's time as a multiple of its (whole; per token)")
        for row in rows:
            print(f"{row['takes']:>6} {row['against_seconds']:>9} {row['ratio_to_against']:>6}× "
                  f"{row['per_token_ratio_to_against']:>6}×")  # fmt: skip
    print(json.dumps({"benchmark": "takes", "input": args.input.name, "bars": args.bars,
                      "against": str(against) if against else None,
                      "sampling": RECOMMENDED.to_dict(), "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
