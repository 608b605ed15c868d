"""Decoding speed: KV-cached decoding against full recompute, and time to the first bar.

    .venv/bin/python bench/generate.py [--sizes default small] [--contexts 512 1024 2048]

For each size and context length, in one run on randomly initialised weights:
- cached: prefill the context, then feed tokens one at a time through the cache (float32
  weights, exact; and float16 weights, the service's default on a CPU);
- guided: prompt guidance's two streams (the context, and the header alone) fed each
  token together as two rows of one `DecodingGroup` (float16 weights), and one after the
  other;
- recompute: the seed's way, a full forward pass over the whole prefix for every token;
and the time from the start to the first finished bar when continuing an 8-bar prompt
(through the service, grammar-constrained sampling included). Uses a GPU when present.
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from meloformer_core.encoding import DEFAULT_VOCAB, encode
from meloformer_core.encoding.codec import slice_grid
from meloformer_core.encoding.quantize import from_grid, to_grid
from meloformer_core.generation.cache import DecodingCache, DecodingGroup, step_together
from meloformer_core.generation.sampling import SamplingConfig
from meloformer_core.midi_io import read_midi
from meloformer_core.model.bundle import save_bundle
from meloformer_core.model.config import named_config
from meloformer_core.model.masks import build_layout
from meloformer_core.model.transformer import MeloFormer
from meloformer_core.service import GenerationService

ROOT = Path(__file__).resolve().parent.parent
VOCAB = DEFAULT_VOCAB


def song_options(parser: argparse.ArgumentParser) -> None:
    """The options of the benchmarks that generate from one song with the default model:
    ``--seeds``, ``--bars`` and ``--input`` (the bundled chorale by default)."""
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--input", type=Path, default=ROOT / "resources" / "examples" / "bach_chorale.mid")


def long_sequence(length: int) -> np.ndarray:
    """Real tokens: the fixtures' music repeated until long enough (bars and tracks vary)."""
    pieces = [encode(read_midi(path)) for path in sorted((ROOT / "tests" / "fixtures").glob("*.mid"))]
    header = pieces[0][:5]  # BOS + four instruments of the chorale
    body = [p[5:-1] for p in pieces if len(p) > 5 and VOCAB.names(p[:5]) == VOCAB.names(header)] or [pieces[0][5:-1]]
    tokens = list(header)
    while len(tokens) < length:
        for piece in body:
            tokens.extend(piece.tolist())
    return np.array(tokens[:length], dtype=np.int64)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def cached_tokens_per_s(
    model: MeloFormer, tokens: np.ndarray, context: int, steps: int, device: str, half_weights: bool = False
) -> float:
    cache = DecodingCache(model, VOCAB, half_weights)
    cache.prefill(tokens[:context])
    for token in tokens[context : context + 4]:  # warm up
        cache.step(int(token))
    sync(device)
    started = time.perf_counter()
    for token in tokens[context + 4 : context + 4 + steps]:
        cache.step(int(token))
    sync(device)
    return steps / (time.perf_counter() - started)


@torch.no_grad()
def guided_tokens_per_s(model: MeloFormer, tokens: np.ndarray, context: int, steps: int, device: str,
                        together: bool) -> float:  # fmt: skip
    if together:  # two rows of one group
        heard, deaf = DecodingGroup(model, VOCAB, rows=2, half_weights=True).caches()
    else:
        heard, deaf = DecodingCache(model, VOCAB, True), DecodingCache(model, VOCAB, True)
    heard.prefill(tokens[:context])
    deaf.prefill(tokens[:5])  # the header: BOS and the instruments
    for index, token in enumerate(tokens[context : context + 4 + steps].tolist()):
        if index == 4:  # after the warm-up
            sync(device)
            started = time.perf_counter()
        if together:
            step_together([heard, deaf], token)
        else:
            heard.step(token)
            deaf.step(token)
    sync(device)
    return steps / (time.perf_counter() - started)


@torch.no_grad()
def recompute_tokens_per_s(model: MeloFormer, tokens: np.ndarray, context: int, steps: int, device: str) -> float:
    model(build_layout([tokens[:context]], VOCAB).to(device))  # warm up
    sync(device)
    started = time.perf_counter()
    for index in range(steps):
        layout = build_layout([tokens[: context + index]], VOCAB).to(device)
        model(layout)[0, -1]
    sync(device)
    return steps / (time.perf_counter() - started)


def first_bar_seconds(size: str, device: str, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = MeloFormer(named_config(size, len(VOCAB)))
    with tempfile.TemporaryDirectory() as directory:
        bundle = save_bundle(model, VOCAB, Path(directory) / size)
        service = GenerationService(device=device)
        service.load(bundle)
    song = read_midi(ROOT / "tests" / "fixtures" / "bach_chorale.mid")
    prompt = from_grid(slice_grid(to_grid(song), 0, 8))  # an 8-bar prompt
    times, tokens = [], []
    for seed in range(repeats):
        result = service.continue_song(prompt, 1, SamplingConfig(seed=seed, top_k=50))
        times.append(result.first_bar_s)
        tokens.append(result.tokens_generated)
    return float(np.median(times)), float(np.median(tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["default", "small"])
    parser.add_argument("--contexts", nargs="+", type=int, default=[512, 1024, 2048])
    parser.add_argument("--steps", type=int, default=64, help="cached decoding steps per measurement")
    parser.add_argument("--recompute-steps", type=int, default=4)
    parser.add_argument("--first-bar-repeats", type=int, default=5)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_grad_enabled(False)
    tokens = long_sequence(max(args.contexts) + args.steps + 16)
    rows = []
    for size in args.sizes:
        torch.manual_seed(0)
        model = MeloFormer(named_config(size, len(VOCAB), max_seq_len=max(args.contexts) + args.steps + 16))
        model.to(device).eval()
        for context in args.contexts:
            cached = cached_tokens_per_s(model, tokens, context, args.steps, device)
            half = cached_tokens_per_s(model, tokens, context, args.steps, device, half_weights=True)
            guided = guided_tokens_per_s(model, tokens, context, args.steps, device, together=True)
            apart = guided_tokens_per_s(model, tokens, context, args.steps, device, together=False)
            recompute = recompute_tokens_per_s(model, tokens, context, args.recompute_steps, device)
            rows.append({
                "size": size, "parameters": model.parameter_count(), "context": context,
                "cached_tokens_per_s": round(cached, 1), "cached_fp16_tokens_per_s": round(half, 1),
                "guided_fp16_tokens_per_s": round(guided, 1), "guided_apart_fp16_tokens_per_s": round(apart, 1),
                "recompute_tokens_per_s": round(recompute, 2), "speedup": round(cached / recompute, 1),
            })  # fmt: skip
        first_bar, bar_tokens = first_bar_seconds(size, device, args.first_bar_repeats)
        for row in rows:
            if row["size"] == size:
                row["first_bar_s"] = round(first_bar, 3)
                row["first_bar_tokens"] = bar_tokens

    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    columns = (
        "size",
        "params",
        "context",
        "cached tok/s",
        "fp16 w tok/s",
        "guided tok/s",
        "apart tok/s",
        "recompute tok/s",
        "speed-up",
        "first bar s",
    )
    widths = (8, 10, 8, 13, 13, 13, 12, 16, 9, 12)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    print("-" * (sum(widths) + len(widths)))
    for row in rows:
        values = (row["size"], f"{row['parameters']:,}", row["context"], row["cached_tokens_per_s"],
                  row["cached_fp16_tokens_per_s"], row["guided_fp16_tokens_per_s"],
                  row["guided_apart_fp16_tokens_per_s"], row["recompute_tokens_per_s"], f"{row['speedup']}×",
                  row["first_bar_s"])  # fmt: skip
        print(" ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True)))
    print(json.dumps({"benchmark": "generate", "device": device, "rows": rows}))


if __name__ == "__main__":
    main()
