"""One prepared GPU benchmark: training and decoding speed of `default` and `small` on one GPU.

    python bench/gpu.py [--budget-s 360] [--out FILE]    # one H100/H200: about 6 minutes, under 8
    python bench/gpu.py --dry-run [--out FILE]           # a CPU check of the script: tiny sizes, no compile

Measures, in one process, in this order (the required ones first):

1. KV-cached decoding tokens/s of `default` and `small` after a 1,024-token prefill: one
   stream, and four rows decoded together (as takes are), float32 weights as the
   service decodes on a GPU;
2. training tokens/s and peak memory (forward + backward + AdamW, bf16 autocast, batches
   laid out as `meloformer-train` lays them out) for `default` and `small` at 1,024
   tokens a row (16 rows a step) and 8,192 (2 rows), with FlexAttention (its kernels
   compiled, as training runs on a GPU) and with the dense reference attention;
3. while the budget lasts: `small` at 8,192 with gradient checkpointing, and `default` at
   1,024 with the whole model compiled (`--set compile=true`).

A measurement that runs out of memory or fails is recorded as such and the next one
runs; none starts after ``--budget-s`` seconds (it is then listed as skipped). The JSON
file ($OUT/gpu-bench.json when OUT is set, else ``--out``) is rewritten after every
measurement, so a run cut short still leaves what it measured; a table ends the run.

``--dry-run`` runs the same code on a CPU with the `debug` size at 128 and 256 tokens,
one warm-up and one timed step and no compile; FlexAttention, which has no CPU backward,
then runs forward only (marked ``forward_only``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))  # runs from a bare checkout too (bench/ itself is sys.path[0])

import torch  # noqa: E402
from generate import long_sequence  # noqa: E402

from meloformer_core.encoding import DEFAULT_VOCAB  # noqa: E402
from meloformer_core.generation.cache import DecodingCache, DecodingGroup, step_together  # noqa: E402
from meloformer_core.model.config import named_config  # noqa: E402
from meloformer_core.model.loss import document_loss  # noqa: E402
from meloformer_core.model.transformer import MeloFormer  # noqa: E402
from training.train import batch_layout  # noqa: E402

TOKENS_PER_STEP = 16_384  # 16 rows of 1,024 tokens, 2 rows of 8,192


def plan(dry_run: bool) -> dict:
    if dry_run:
        return {"device": "cpu", "sizes": ["debug"], "seq_lens": [128, 256], "tokens_per_step": 256,
                "warmup": 1, "steps": 1, "prefill": 64, "decode_steps": 8, "decode_warmup": 2, "compile": False,
                "extras": [("debug", 256, "dense", False, True), ("debug", 128, "dense", True, False)]}  # fmt: skip
    return {"device": "cuda", "sizes": ["default", "small"], "seq_lens": [1024, 8192],
            "tokens_per_step": TOKENS_PER_STEP, "warmup": 2, "steps": 5, "prefill": 1024, "decode_steps": 128,
            "decode_warmup": 8, "compile": True,
            # (size, tokens a row, attention, compile the whole model, gradient checkpointing)
            "extras": [("small", 8192, "flex", False, True), ("default", 1024, "flex", True, False)]}  # fmt: skip


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def release(device: str) -> None:
    """Free what a measurement left: memory, and compiled graphs (a fresh compile cache per case
    keeps dynamo under its recompile limit)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def train_case(size: str, seq_len: int, rows: int, backend: str, device: str, steps: int, warmup: int,
               compile_model: bool = False, checkpointing: bool = False) -> dict:  # fmt: skip
    """Training tokens/s and peak memory of one configuration."""
    torch.manual_seed(0)
    config = named_config(size, len(DEFAULT_VOCAB), max_seq_len=seq_len, gradient_checkpointing=checkpointing)
    model = MeloFormer(config).to(device).train()
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    tokens = long_sequence(seq_len * rows + 1)
    static = backend == "flex" or compile_model
    layout = batch_layout([tokens[i * seq_len : (i + 1) * seq_len] for i in range(rows)], seq_len, static).to(device)
    bf16 = device == "cuda" or torch.cpu._is_avx512_bf16_supported()
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
    forward_only = backend == "flex" and device == "cpu"  # FlexAttention has no CPU backward

    def step() -> None:
        with torch.no_grad() if forward_only else nullcontext(), autocast:
            logits = step_model(layout, backend)
        if forward_only:
            return
        loss, _ = document_loss(logits, layout)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    for _ in range(warmup):  # the first compiles
        step()
    sync(device)
    warmup_s = time.perf_counter() - started
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    result = {"size": size, "layers": config.n_layers, "parameters": model.parameter_count(), "seq_len": seq_len,
              "rows": rows, "attention": backend, "compiled_attention": backend == "flex" and device == "cuda",
              "compiled_model": compile_model, "gradient_checkpointing": checkpointing,
              "dtype": "bf16" if bf16 else "float32", "warmup_s": round(warmup_s, 2), "step_s": round(seconds, 4),
              "tokens_per_s": round(seq_len * rows / seconds, 1),
              "peak_memory_gb": round(peak, 3) if peak is not None else None}  # fmt: skip
    if forward_only:
        result["forward_only"] = True
    return result


@torch.no_grad()
def decode_case(size: str, device: str, prefill: int, steps: int, warmup: int, rows: int) -> dict:
    """KV-cached decoding tokens/s (per row) after a prefill, ``rows`` streams decoded together."""
    torch.manual_seed(0)
    model = MeloFormer(named_config(size, len(DEFAULT_VOCAB), max_seq_len=prefill + steps + warmup + 16))
    model.to(device).eval()
    tokens = long_sequence(prefill + steps + warmup + 1)
    caches = (
        DecodingGroup(model, DEFAULT_VOCAB, rows=rows).caches() if rows > 1 else [DecodingCache(model, DEFAULT_VOCAB)]
    )
    started = time.perf_counter()
    for cache in caches:
        cache.prefill(tokens[:prefill])
    sync(device)
    prefill_s = time.perf_counter() - started
    for index, token in enumerate(tokens[prefill : prefill + warmup + steps].tolist()):
        if index == warmup:
            sync(device)
            started = time.perf_counter()
        if rows > 1:
            step_together(caches, token)
        else:
            caches[0].step(token)
    sync(device)
    seconds = time.perf_counter() - started
    return {"size": size, "parameters": model.parameter_count(), "prefill": prefill, "rows": rows,
            "steps": steps, "prefill_s": round(prefill_s, 4), "steps_per_s": round(steps / seconds, 1),
            "tokens_per_s": round(steps * rows / seconds, 1), "weights": "float32"}  # fmt: skip


def environment(device: str) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()),
                    cuda=torch.version.cuda, gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory
                                                                 / 2**30, 1))  # fmt: skip
    else:
        info.update(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        info["commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def write(path: Path, report: dict) -> None:
    from meloformer_core.atomic import write_bytes_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(path, json.dumps(report, indent=1).encode())


def print_table(report: dict) -> None:
    print(f"{'size':<8} {'tokens':>6} {'rows':>4} {'attention':>9} {'model':>8} {'ckpt':>4} {'tok/s':>10} "
          f"{'peak GB':>8} {'warm-up s':>9}")  # fmt: skip
    for r in report["train"]:
        if "error" in r:
            print(f"{r['size']:<8} {r['seq_len']:>6} {r['rows']:>4} {r['backend']:>9} {'':>8} {'':>4} {r['error']}")
            continue
        model = "compiled" if r["compiled_model"] else "eager"
        peak = r["peak_memory_gb"] if r["peak_memory_gb"] is not None else "-"
        print(f"{r['size']:<8} {r['seq_len']:>6} {r['rows']:>4} {r['attention']:>9} {model:>8} "
              f"{'yes' if r['gradient_checkpointing'] else 'no':>4} {r['tokens_per_s']:>10} {peak:>8} "
              f"{r['warmup_s']:>9}{' (forward only)' if r.get('forward_only') else ''}")  # fmt: skip
    print(f"{'decoding':<8} {'prefill':>7} {'rows':>4} {'tok/s':>10} {'steps/s':>8}")
    for r in report["decode"]:
        if "error" in r:
            print(f"{r['size']:<8} {'':>7} {r['rows']:>4} {r['error']}")
            continue
        print(f"{r['size']:<8} {r['prefill']:>7} {r['rows']:>4} {r['tokens_per_s']:>10} {r['steps_per_s']:>8}")
    for skipped in report["skipped"]:
        print(f"skipped (budget): {skipped}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes and steps on the CPU, no compile")
    parser.add_argument("--budget-s", type=float, default=360.0, help="no measurement starts after this many seconds")
    default_out = Path(os.environ["OUT"]) / "gpu-bench.json" if os.environ.get("OUT") else Path("gpu-bench.json")
    parser.add_argument("--out", type=Path, default=default_out, help=f"the JSON file (default: {default_out})")
    args = parser.parse_args()
    settings = plan(args.dry_run)
    device = settings["device"]
    if device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here; run it on a GPU machine, or check it with --dry-run", file=sys.stderr)
        return 1
    started = time.monotonic()
    report = {"benchmark": "gpu", "dry_run": args.dry_run, **environment(device), "budget_s": args.budget_s,
              "tokens_per_step": settings["tokens_per_step"], "train": [], "decode": [], "skipped": [],
              "seconds": 0.0}  # fmt: skip

    def run(kind: str, label: str, measure, *arguments, **keywords) -> None:
        if time.monotonic() - started > args.budget_s:
            report["skipped"].append(label)
        else:
            print(f"bench/gpu.py: {label}", file=sys.stderr, flush=True)
            try:
                report[kind].append(measure(*arguments, **keywords))
            except torch.cuda.OutOfMemoryError:
                report[kind].append({**keywords, "error": "out of memory"})
            except Exception as error:  # recorded, and the next measurement runs
                report[kind].append({**keywords, "error": f"{type(error).__name__}: {error}"[:300]})
            release(device)
        report["seconds"] = round(time.monotonic() - started, 1)
        write(args.out, report)

    common = {"device": device, "steps": settings["steps"], "warmup": settings["warmup"]}
    for size in settings["sizes"]:
        for rows in (1, 4):
            run("decode", f"decoding {size}, {rows} row(s)", decode_case, size=size, device=device, rows=rows,
                prefill=settings["prefill"], steps=settings["decode_steps"],
                warmup=settings["decode_warmup"])  # fmt: skip
    for seq_len in settings["seq_lens"]:
        rows = max(1, settings["tokens_per_step"] // seq_len)
        for size in settings["sizes"]:
            for backend in ("flex", "dense"):
                run("train", f"training {size} at {seq_len} tokens × {rows}, {backend}", train_case, size=size,
                    seq_len=seq_len, rows=rows, backend=backend, **common)  # fmt: skip
    for size, seq_len, backend, compile_model, checkpointing in settings["extras"]:
        rows = max(1, settings["tokens_per_step"] // seq_len)
        compile_model = compile_model and settings["compile"]
        what = "compiled model" if compile_model else "gradient checkpointing" if checkpointing else "again"
        run("train", f"training {size} at {seq_len} tokens × {rows}, {backend}, {what}", train_case, size=size,
            seq_len=seq_len, rows=rows, backend=backend, compile_model=compile_model,
            checkpointing=checkpointing, **common)  # fmt: skip
    print_table(report)
    print(f"bench/gpu.py: {report['seconds']} s; wrote {args.out}", file=sys.stderr)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
