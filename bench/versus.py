"""This checkout against an earlier revision of the project, as a user got each: one take of
the bundled chorale continued by 8 bars with each one's code, default model and
recommended sampling.

    .venv/bin/python bench/versus.py --rev REV [--seeds 6] [--bars 8] [--input MIDI]
                                     [--sampling T,TOP_P,MIN_P,GUIDANCE] [--busy]

The revision is exported with ``git archive`` into a temporary folder this benchmark makes
(and removes), and each side runs in a worker process of its own with this checkout's
virtual environment. The two alternate seed by seed, each after a one-second pause so the
other's threads are at rest, and the table gives this checkout's median time as a multiple
of the revision's (whole; per token, since they write different music). ``--sampling``
gives both sides the same settings instead of their own recommended ones (which isolates
code and model); ``--busy`` keeps one core busy throughout. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Runs inside each checkout: the checkout's own package first, never this one's editable install.
WORKER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
sys.meta_path = [finder for finder in sys.meta_path if "__editable__" not in repr(finder)]
from dataclasses import replace
try:
    from meloformer_core.sampling_settings import RECOMMENDED
except ImportError:  # before the sampling settings moved
    from meloformer_core.model.sampling_config import RECOMMENDED
import meloformer_core
from meloformer_core.midi_io import read_midi
from meloformer_core.service import GenerationService
assert meloformer_core.__file__.startswith(sys.argv[1]), meloformer_core.__file__
settings = json.loads(sys.argv[4])
sampling = replace(RECOMMENDED, takes=1, **settings)
service = GenerationService()
info = service.load()
song, bars = read_midi(sys.argv[2]), int(sys.argv[3])
service.continue_song(song, 1, sampling)  # warm up
print(json.dumps({"model": info["name"], "sampling": sampling.to_dict()}), flush=True)
for line in sys.stdin:
    result = service.continue_song(song, bars, replace(sampling, seed=int(line)))
    print(json.dumps({"seconds": result.total_s, "tokens": result.tokens_generated}), flush=True)
os._exit(0)  # some revisions leave worker threads that would keep the process alive
"""


def answer(worker: subprocess.Popen, side: str) -> dict:
    """The worker's next line, read as JSON; a worker that died ends the benchmark in one line."""
    line = worker.stdout.readline()
    if not line:
        raise SystemExit(f"bench/versus.py: the {side} worker stopped (exit status {worker.wait()})")
    return json.loads(line)


def export(rev: str, into: Path) -> None:
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"bench/versus.py: cannot export {rev}: {done.stderr.decode().strip()}")
    archive = done.stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def main() -> None:
    from generate import song_options  # bench/ is on sys.path when run as a script
    from threads import burn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the earlier revision: a commit, tag or branch")
    song_options(parser)
    parser.add_argument("--sampling", default=None, metavar="T,TOP_P,MIN_P,GUIDANCE",
                        help="the same sampling for both, instead of each one's recommended")  # fmt: skip
    parser.add_argument("--busy", action="store_true", help="keep one core busy throughout")
    parser.set_defaults(seeds=6)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the temporary checkout is removed
    settings = {}
    if args.sampling:
        values = [float(value) for value in args.sampling.split(",")]
        settings = dict(zip(("temperature", "top_p", "min_p", "prompt_guidance"), values, strict=True))
    stop = multiprocessing.Event()
    busy = multiprocessing.Process(target=burn, args=(stop,), daemon=True) if args.busy else None
    if busy is not None:  # before the workers, so that it holds no copy of their pipes
        busy.start()
    with tempfile.TemporaryDirectory(prefix="meloformer-versus-") as folder:
        earlier = Path(folder) / "checkout"
        export(args.rev, earlier)
        workers, started = {}, {}
        for side, root in (("this", ROOT), ("rev", earlier)):
            command = [sys.executable, "-c", WORKER, str(root), str(args.input), str(args.bars), json.dumps(settings)]
            workers[side] = subprocess.Popen(
                command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            started[side] = answer(workers[side], side)
        runs: dict[str, list[dict]] = {"this": [], "rev": []}
        for seed in range(args.seeds):
            for side in ("this", "rev") if seed % 2 == 0 else ("rev", "this"):
                time.sleep(1.0)  # the other worker's threads stop spinning
                workers[side].stdin.write(f"{seed}\n")
                workers[side].stdin.flush()
                runs[side].append(answer(workers[side], side))
                print(f"seed {seed} {side}: {runs[side][-1]}", file=sys.stderr, flush=True)
        for worker in workers.values():
            worker.stdin.close()
        for worker in workers.values():
            worker.wait()
    if busy is not None:
        stop.set()
        busy.join()
    summary = {side: {"seconds": round(float(np.median([r["seconds"] for r in rs])), 3),
                      "tokens": int(np.median([r["tokens"] for r in rs])),
                      "seconds_per_token": float(np.median([r["seconds"] / max(r["tokens"], 1) for r in rs]))}
               for side, rs in runs.items()}  # fmt: skip
    ratio = summary["this"]["seconds"] / summary["rev"]["seconds"]
    per_token = summary["this"]["seconds_per_token"] / summary["rev"]["seconds_per_token"]
    print(f"input: {args.input.name}, {args.bars} bars, one take, {args.seeds} seeds alternating"
          f"{', one core kept busy' if args.busy else ''}")  # fmt: skip
    for side, label in (("this", "this checkout"), ("rev", f"revision {args.rev}")):
        sampling = started[side]["sampling"]
        print(f"{label:>24}: {summary[side]['seconds']:.3f} s, {summary[side]['tokens']} tokens "
              f"(temperature {sampling['temperature']}, top-p {sampling['top_p']}, min-p {sampling['min_p']}, "
              f"guidance {sampling['prompt_guidance']})")  # fmt: skip
    print(f"this checkout's time: {ratio:.2f}× the revision's; per token {per_token:.2f}×")
    print(json.dumps({"benchmark": "versus", "rev": args.rev, "input": args.input.name, "bars": args.bars,
                      "busy": args.busy, "sampling": {s: started[s]["sampling"] for s in started},
                      "runs": runs, "ratio": round(ratio, 3), "per_token_ratio": round(per_token, 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
