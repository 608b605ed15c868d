"""Training throughput and peak memory, without and with gradient checkpointing.

    .venv/bin/python bench/train.py [--sizes default …] [--seq-lens 1024 …] [--rows 2] [--steps 3]
                                    [--dtype auto|float32|bf16] [--backend auto|dense|flex] [--compile]

For each size and sequence length, times forward + backward + AdamW steps on packed rows
of real multi-track tokens, laid out as `meloformer-train` lays out its batches (padded
to the context; with FlexAttention or `--compile`, the summary stream padded to a fixed
length too), once without and once with gradient checkpointing. Each measurement runs in
a process of its own, so that its peak memory is its own: on a GPU the peak that torch
allocated during the timed steps; on a CPU the peak resident memory above what the
process held before it built the model (weights, gradients, optimizer state and
activations). The back end and precision are what `meloformer-train` uses on the device
(`auto`): the dense reference attention on a CPU (FlexAttention has no CPU backward),
FlexAttention on a GPU; bf16 autocast where the device computes it natively. Prints a
table (size, layers, tokens a step, tokens/s and peak GB without and with, the memory
saved, a plain causal GPT of the same widths without checkpointing and the ratio to it) and
a JSON line. The CPU default (`default` at 2 × 1,024 tokens, 3 steps) takes
well under a minute.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def _rss_gb() -> float:
    """The resident memory of this process now (Linux), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def plain_gpt(config):
    """A plain causal GPT of ``config``'s widths (the floor the summary design is measured
    against): the project's RMSNorm, rotary embedding and SwiGLU, one attention per block
    (fused q, k, v), causal `scaled_dot_product_attention` without a mask, tied head."""
    from torch import nn
    from torch.nn import functional as F

    from meloformer_core.model.transformer import RMSNorm, Rotary, SwiGLU

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm, self.norm_mlp = RMSNorm(config.d_model), RMSNorm(config.d_model)
            self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
            self.out = nn.Linear(config.d_model, config.d_model, bias=False)
            self.mlp = SwiGLU(config)

        def forward(self, x: torch.Tensor, rotary: Rotary, positions: torch.Tensor) -> torch.Tensor:
            batch, length, _ = x.shape
            q, k, v = self.qkv(self.norm(x)).view(batch, length, 3, config.n_heads, -1).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(rotary(q, positions), rotary(k, positions), v, is_causal=True)
            x = x + self.out(attended.transpose(1, 2).reshape(batch, length, -1))
            return x + self.mlp(self.norm_mlp(x))

    class PlainGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(config.vocab_size, config.d_model)
            self.rotary = Rotary(config.d_model // config.n_heads, config.max_seq_len, config.rope_base)
            self.blocks = nn.ModuleList(Block() for _ in range(config.n_layers))
            self.norm_out = RMSNorm(config.d_model)

        def forward(self, layout, backend: str = "dense") -> torch.Tensor:
            x = self.embed(layout.tokens)
            for block in self.blocks:
                x = block(x, self.rotary, layout.positions)
            return F.linear(self.norm_out(x), self.embed.weight)

        def parameter_count(self) -> int:
            return sum(p.numel() for p in self.parameters())

    return PlainGPT()


def measure(size: str, seq_len: int, rows: int, steps: int, backend: str, device: str, compile_model: bool,
            bf16: bool, checkpointing: bool, gpt: bool = False) -> dict:  # fmt: skip
    from generate import long_sequence  # bench/ is on sys.path when run as a script

    from meloformer_core.encoding import DEFAULT_VOCAB
    from meloformer_core.model.config import named_config
    from meloformer_core.model.loss import document_loss
    from meloformer_core.model.transformer import MeloFormer
    from training.train import batch_layout

    torch.manual_seed(0)
    tokens = long_sequence(seq_len * rows + 1)
    static = backend == "flex" or compile_model
    layout = batch_layout([tokens[i * seq_len : (i + 1) * seq_len] for i in range(rows)], seq_len, static).to(device)
    before = _rss_gb()
    config = named_config(size, len(DEFAULT_VOCAB), max_seq_len=seq_len, gradient_checkpointing=checkpointing)
    model = (plain_gpt(config) if gpt else MeloFormer(config)).to(device).train()
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
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
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - before
    return {"size": size, "model": "plain GPT" if gpt else "MeloFormer", "layers": config.n_layers,
            "parameters": model.parameter_count(), "backend": backend,
            "device": device, "dtype": "bf16" if bf16 else "float32", "compile": compile_model,
            "gradient_checkpointing": checkpointing, "seq_len": seq_len, "rows": rows, "step_s": round(seconds, 4),
            "tokens_per_s": round(seq_len * rows / seconds, 1), "peak_memory_gb": round(peak, 3)}  # fmt: skip


def measure_apart(case: dict) -> dict:
    """`measure` in a fresh process (its peak memory is then its own)."""
    command = [sys.executable, __file__, "--child", json.dumps(case)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {**case, "error": "out of memory" if "OutOfMemoryError" in result.stderr else last}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", "--size", nargs="+", default=["default"])
    parser.add_argument("--seq-lens", "--seq-len", nargs="+", type=int, default=[1024])
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--dtype", choices=["auto", "float32", "bf16"], default="auto",
                        help="auto: bf16 autocast where the device has it natively (as meloformer-train)")  # fmt: skip
    parser.add_argument("--backend", choices=["auto", "dense", "flex"], default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return
    from meloformer_core.model.transformer import bf16_native

    device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = args.backend if args.backend != "auto" else ("flex" if device == "cuda" else "dense")
    bf16 = bf16_native(torch.device(device)) if args.dtype == "auto" else args.dtype == "bf16"
    results = []
    for size in args.sizes:
        for seq_len in args.seq_lens:
            pair = [measure_apart({"size": size, "seq_len": seq_len, "rows": args.rows, "steps": args.steps,
                                   "backend": backend, "device": device, "compile_model": args.compile,
                                   "bf16": bf16, "checkpointing": checkpointing})
                    for checkpointing in (False, True)]  # fmt: skip
            without, with_ = pair
            gpt = measure_apart({"size": size, "seq_len": seq_len, "rows": args.rows, "steps": args.steps,
                                 "backend": backend, "device": device, "compile_model": args.compile, "bf16": bf16,
                                 "checkpointing": False, "gpt": True})  # fmt: skip
            saving = None
            if "error" not in without and "error" not in with_ and without["peak_memory_gb"] > 0:
                saving = round(1 - with_["peak_memory_gb"] / without["peak_memory_gb"], 3)
            to_gpt = None
            if "error" not in without and "error" not in gpt:
                to_gpt = round(without["tokens_per_s"] / gpt["tokens_per_s"], 2)
            results.append({"size": size, "seq_len": seq_len, "rows": args.rows, "without": without, "with": with_,
                            "memory_saving": saving, "plain_gpt": gpt, "to_plain_gpt": to_gpt})  # fmt: skip

    def cell(run: dict, key: str) -> str:
        return str(run[key]) if key in run else run.get("error", "?")[:10]

    dtype = "bf16" if bf16 else "float32"
    memory = "allocated by torch" if device == "cuda" else "resident, above the process before the model"
    print(f"device {device}, attention {backend}, {dtype}{', compiled' if args.compile else ''}; peak memory: {memory}")
    columns = ("size", "layers", "tokens", "tok/s without", "tok/s with", "GB without", "GB with", "saving",
               "plain GPT tok/s", "× GPT")  # fmt: skip
    widths = (8, 6, 7, 13, 11, 10, 8, 7, 15, 6)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for r in results:
        layers = r["without"].get("layers", r["with"].get("layers", "?"))
        saving = f"{r['memory_saving']:.0%}" if r["memory_saving"] is not None else "-"
        values = (r["size"], layers, r["seq_len"] * r["rows"], cell(r["without"], "tokens_per_s"),
                  cell(r["with"], "tokens_per_s"), cell(r["without"], "peak_memory_gb"),
                  cell(r["with"], "peak_memory_gb"), saving, cell(r["plain_gpt"], "tokens_per_s"),
                  r["to_plain_gpt"] if r["to_plain_gpt"] is not None else "-")  # fmt: skip
        print(" ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True)))
    print(json.dumps({"benchmark": "train", "device": device, "backend": backend, "dtype": dtype,
                      "compile": args.compile, "results": results}))  # fmt: skip


if __name__ == "__main__":
    main()
