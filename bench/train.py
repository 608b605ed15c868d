"""Training throughput: tokens per second and peak memory for a recipe's model.

    .venv/bin/python bench/train.py [--size debug|default|small|…] [--seq-len 1024] [--rows 2] [--steps 5]

Times forward + backward + AdamW steps on packed rows of real multi-track tokens, laid out
as `meloformer-train` lays out its batches (padded to the context; with FlexAttention or
`--compile`, the summary stream padded to a fixed length too). On a
CPU: the dense reference attention (FlexAttention has no CPU backward) in float32, and in
bf16 autocast too where the CPU has native bf16 (what `meloformer-train` then uses). On a
GPU: both attention back ends in bf16 autocast, and `--compile` for torch.compile; peak
memory is reported per row. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from contextlib import nullcontext

import torch
from generate import long_sequence  # bench/ is on sys.path when run as a script

from meloformer_core.encoding import DEFAULT_VOCAB
from meloformer_core.model.config import named_config
from meloformer_core.model.transformer import MeloFormer
from training.train import batch_layout, bf16_native, document_loss


def measure(
    size: str, seq_len: int, rows: int, steps: int, backend: str, device: str, compile_model: bool, bf16: bool
) -> dict:
    torch.manual_seed(0)
    model = MeloFormer(named_config(size, len(DEFAULT_VOCAB), max_seq_len=seq_len)).to(device).train()
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    tokens = long_sequence(seq_len * rows + 1)
    static = backend == "flex" or compile_model
    layout = batch_layout([tokens[i * seq_len : (i + 1) * seq_len] for i in range(rows)], seq_len, static).to(device)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step() -> None:
        with autocast:
            logits = step_model(layout, backend)
        loss, _ = document_loss(logits, layout)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm up (and compile)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {"size": size, "parameters": model.parameter_count(), "backend": backend, "device": device,
            "dtype": "bf16" if bf16 else "float32",
            "seq_len": seq_len, "rows": rows, "step_s": round(seconds, 4),
            "tokens_per_s": round(seq_len * rows / seconds, 1), "peak_memory_gb": round(peak, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        cases = [("dense", True), ("flex", True)]
    else:
        cases = [("dense", False)] + ([("dense", True)] if bf16_native(torch.device("cpu")) else [])
    rows = [measure(args.size, args.seq_len, args.rows, args.steps, b, device, args.compile, bf16) for b, bf16 in cases]
    header = f"{'size':<8} {'params':>12} {'backend':>8} {'dtype':>8} {'tokens':>8} {'step s':>8} {'tokens/s':>10}"
    print(f"{header} {'peak GB':>8}")
    for r in rows:
        print(f"{r['size']:<8} {r['parameters']:>12,} {r['backend']:>8} {r['dtype']:>8} {r['seq_len'] * r['rows']:>8} "
              f"{r['step_s']:>8} {r['tokens_per_s']:>10} {r['peak_memory_gb']:>8}")  # fmt: skip
    print(json.dumps({"benchmark": "train", "rows": rows}))


if __name__ == "__main__":
    main()
