"""Preprocessing throughput end to end: files per second per worker.

    .venv/bin/python bench/preprocess.py [--files 400] [--workers 1 2]

Generates a multi-track corpus (4-16 tracks, 32-96 bars, like bench/encode.py), then runs
the whole `meloformer-preprocess` pipeline (hashing, dedupe, isolated workers, windows,
Arrow shards, manifest) with each worker count. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from encode import generated_corpus  # bench/ is on sys.path when run as a script

from training.preprocess import Options, preprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-seq-len", type=int, default=2048)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        corpus = Path(directory) / "corpus"
        corpus.mkdir()
        generated_corpus(corpus, args.files, seed=0)
        for workers in args.workers:
            out = Path(directory) / f"out-{workers}"
            started = time.perf_counter()
            options = Options(max_seq_len=args.max_seq_len)
            manifest = preprocess(corpus, out, workers=workers, limit=None, options=options, progress=False)
            seconds = time.perf_counter() - started
            rows.append({"workers": workers, "files": manifest["files_seen"], "kept": manifest["files_kept"],
                         "seconds": round(seconds, 2), "files_per_s": round(args.files / seconds, 1),
                         "files_per_s_per_worker": round(args.files / seconds / workers, 1),
                         "tokens": sum(manifest["tokens"].values())})  # fmt: skip
    print(f"{'workers':>8} {'files':>6} {'kept':>6} {'seconds':>8} {'files/s':>8} {'per worker':>11}")
    for row in rows:
        print(f"{row['workers']:>8} {row['files']:>6} {row['kept']:>6} {row['seconds']:>8} {row['files_per_s']:>8} "
              f"{row['files_per_s_per_worker']:>11}")  # fmt: skip
    print(json.dumps({"benchmark": "preprocess", "rows": rows, "target_files_per_s_per_worker": 100}))


if __name__ == "__main__":
    main()
