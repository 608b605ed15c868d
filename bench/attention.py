"""FlexAttention (compiled) against the dense reference path, at 2k, 4k and 8k tokens.

    .venv/bin/python bench/attention.py [--size small] [--lengths 2048 4096 8192] [--train]

Times a full forward pass of a randomly initialised model on real multi-track tokens
with each back end, after a warm-up (which compiles FlexAttention; compiled kernels are
cached in TORCHINDUCTOR_CACHE_DIR, default output/inductor-cache). With --train on a
GPU, also a training step (forward + backward, bf16 autocast) and its peak memory.
FlexAttention has no backward on a CPU, so --train compares only where a GPU is present.
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / "output" / "inductor-cache"))

from generate import long_sequence  # noqa: E402  (bench/ is on sys.path when run as a script)

from meloformer_core.encoding import DEFAULT_VOCAB  # noqa: E402
from meloformer_core.model import transformer  # noqa: E402
from meloformer_core.model.config import named_config  # noqa: E402
from meloformer_core.model.masks import build_layout  # noqa: E402
from meloformer_core.model.transformer import MeloFormer  # noqa: E402

VOCAB = DEFAULT_VOCAB


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(function, device: str, repeats: int) -> float:
    function()  # warm up (compiles)
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    sync(device)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--lengths", nargs="+", type=int, default=[2048, 4096, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="also time a training step (GPU only)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    transformer.COMPILE_FLEX_ON_CPU = True
    torch.manual_seed(0)
    model = MeloFormer(named_config(args.size, len(VOCAB), max_seq_len=max(args.lengths))).to(device)
    tokens = long_sequence(max(args.lengths))
    rows = []
    for length in args.lengths:
        layout = build_layout([tokens[:length]], VOCAB).to(device)
        row = {"size": args.size, "tokens": length, "summaries": int(layout.seg_valid.sum())}
        with torch.no_grad():
            model.eval()
            for backend in ("dense", "flex"):
                forward_s = timed(lambda b=backend, lay=layout: model(lay, b), device, args.repeats)
                row[f"{backend}_forward_s"] = round(forward_s, 4)
                mask_s = timed(lambda b=backend, lay=layout: model.masks(lay, b), device, args.repeats)
                row[f"{backend}_mask_s"] = round(mask_s, 4)
            flex, dense = model(layout, "flex"), model(layout, "dense")
            row["max_abs_difference"] = float((flex - dense).abs().max())
        if args.train and device == "cuda":
            model.train()
            for backend in ("dense", "flex"):
                torch.cuda.reset_peak_memory_stats()

                def step(b: str = backend, lay=layout) -> None:
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        loss = model(lay, b).float().logsumexp(-1).mean()
                    loss.backward()

                row[f"{backend}_train_step_s"] = round(timed(step, device, args.repeats), 4)
                row[f"{backend}_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        rows.append(row)
        print(f"{length} tokens done", flush=True)

    print(f"device: {device}, torch {torch.__version__}")
    print(
        f"{'tokens':>7} {'summaries':>9} {'dense fwd s':>12} {'flex fwd s':>11} {'dense/flex':>11} {'max |diff|':>11}"
    )
    for row in rows:
        ratio = row["dense_forward_s"] / row["flex_forward_s"]
        print(f"{row['tokens']:>7} {row['summaries']:>9} {row['dense_forward_s']:>12.4f} "
              f"{row['flex_forward_s']:>11.4f} {ratio:>10.2f}× {row['max_abs_difference']:>11.2e}")  # fmt: skip
    print(json.dumps({"benchmark": "attention", "device": device, "rows": rows}))


if __name__ == "__main__":
    main()
