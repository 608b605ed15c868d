"""The generation loop: prefill, then one token at a time under the grammar, bar by bar.

The prompt is windowed by whole bars to fit the context; when the cache fills during a
long generation, the window slides forward to a bar line and the cache is prefilled
again. Every sampled token is allowed by the grammar, so the result always decodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from meloformer_core.encoding.codec import StreamingDecoder, encode_grid, slice_grid
from meloformer_core.encoding.quantize import GridSong
from meloformer_core.encoding.vocab import TokenType, Vocabulary
from meloformer_core.encoding.windows import window_start
from meloformer_core.errors import MeloformerError
from meloformer_core.model.decoding import ContextFull, DecodingCache
from meloformer_core.model.sampling import SamplingConfig, choose_token
from meloformer_core.model.transformer import MeloFormer

PROMPT_SHARE = 0.75  # of the context, for the prompt; the rest is room to generate before sliding
SLIDE_SHARE = 0.5  # of the context kept when the window slides during generation
BAR_SHARE = 0.25  # longest generated bar, as a share of the context: a slide always fits


class CancelledError(MeloformerError):
    """Generation was cancelled; nothing was changed."""

    def __init__(self) -> None:
        super().__init__("generation cancelled")


@dataclass
class GenerationStats:
    bars_added: int = 0
    tokens_generated: int = 0
    prompt_tokens: int = 0
    prefill_s: float = 0.0
    first_bar_s: float = 0.0
    total_s: float = 0.0
    window_slides: int = 0
    bar_seconds: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - self.prefill_s
        return self.tokens_generated / decode_s if decode_s > 0 else 0.0


def continue_grid(
    model: MeloFormer,
    vocab: Vocabulary,
    grid: GridSong,
    bars: int,
    sampling: SamplingConfig,
    *,
    on_bar: Callable[[int, GridSong], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    backend: str = "dense",
    half_weights: bool = False,
) -> tuple[GridSong, GridSong, GenerationStats]:
    """Generate ``bars`` new bars after the last bar of ``grid``.

    Returns (the window the model saw, extended by the new bars; the new bars alone, as a
    slice starting at step 0; statistics). ``on_bar(k, new_bars)`` is called after the
    k-th new bar (1-based) is finished; ``should_cancel`` is polled between tokens;
    ``half_weights`` decodes with float16 weights (see `DecodingCache`).
    """
    started = time.perf_counter()
    stats = GenerationStats()
    capacity = model.config.max_seq_len
    first = window_start(grid, vocab, int(capacity * PROMPT_SHARE))
    window = slice_grid(grid, first)
    prompt = encode_grid(window, vocab)[:-1]  # without EOS
    if len(prompt) > capacity:
        raise MeloformerError(
            f"the last bar of the song takes {len(prompt)} tokens, more than the model's context of {capacity}"
        )
    prompt_bars = window.bar_count
    stats.prompt_tokens = len(prompt)

    decoder = StreamingDecoder(vocab)
    for token in prompt.tolist():
        decoder.feed(token)
    cache = DecodingCache(model, vocab, half_weights)
    cache.prefill(prompt, backend=backend)
    stats.prefill_s = time.perf_counter() - started

    bar_id = vocab.bar_id
    eos = vocab.eos_id
    bar_type = int(TokenType.BAR)
    longest_bar = int(capacity * BAR_SHARE)
    pitch_range = slice(vocab.offset[TokenType.PITCH], vocab.offset[TokenType.PITCH] + vocab.count[TokenType.PITCH])
    generator = torch.Generator(device="cpu")
    generator.manual_seed(sampling.seed if sampling.seed is not None else int(torch.seed() % 2**63))
    history: list[int] = []
    bar_tokens: list[int] = []  # tokens of the bar in progress
    done = 0
    token = bar_id  # the continuation starts a new bar: forced, not sampled
    while True:
        if should_cancel is not None and should_cancel():
            raise CancelledError
        if vocab.type_of[token] == bar_type:
            if history:  # a bar just finished
                done += 1
                now = time.perf_counter() - started
                stats.bar_seconds.append(now)
                if done == 1:
                    stats.first_bar_s = now
                if on_bar is not None:
                    on_bar(done, slice_grid(decoder.grid(), prompt_bars))
                if done == bars:
                    break
            bar_tokens = []
            if cache.length > capacity - max(64, capacity // 8):
                cache = _slide(cache, decoder, bar_tokens, backend)
                stats.window_slides += 1
        decoder.feed(token)
        bar_tokens.append(token)
        history.append(token)
        try:
            logits = cache.step(token)
        except ContextFull:  # one bar longer than the room left: slide inside the bar
            cache = _slide(cache, decoder, bar_tokens[:-1], backend)
            stats.window_slides += 1
            logits = cache.step(token)
        allowed = torch.from_numpy(decoder.state.allowed())
        allowed[eos] = False  # the user asked for a number of bars: the song does not end here
        if len(bar_tokens) >= longest_bar and allowed[bar_id]:
            allowed[:] = False  # this bar is long enough: close it at the next segment boundary
            allowed[bar_id] = True
        if not allowed.any():
            raise MeloformerError("the grammar allows no continuation (too many bars for the encoding)")
        recent = (
            torch.tensor(history[-sampling.repetition_window :], dtype=torch.long)
            if sampling.repetition_window
            else None
        )
        if recent is not None:
            recent = recent[(recent >= pitch_range.start) & (recent < pitch_range.stop)]
        token = choose_token(logits, allowed, sampling, generator, recent)
        stats.tokens_generated += 1
    stats.bars_added = done
    stats.total_s = time.perf_counter() - started
    extended = decoder.grid()
    return extended, slice_grid(extended, prompt_bars), stats


def _slide(old: DecodingCache, decoder: StreamingDecoder, bar_tokens: list[int], backend: str) -> DecodingCache:
    """A new cache over the latest complete bars (plus the bar in progress).

    If not even the last complete bar fits beside the bar in progress, the window keeps
    that bar's metre, key and tempo but not its notes: the model forgets rather than fails.
    """
    model, vocab = old.model, old.vocab
    grid = decoder.grid()
    in_progress = grid.bar_count - 1 if bar_tokens else grid.bar_count
    capacity = model.config.max_seq_len
    budget = int(capacity * SLIDE_SHARE) - len(bar_tokens)
    first = window_start(grid, vocab, budget, stop_bar=in_progress)
    window = slice_grid(grid, first, in_progress)
    context = encode_grid(window, vocab)[:-1]
    if len(context) > budget:
        last = slice_grid(grid, in_progress - 1, in_progress)
        empty = GridSong(
            last.bar_starts, last.time_signatures, last.tempos, last.keys, last.instruments, last.notes[:0]
        )
        context = encode_grid(empty, vocab)[:-1]
    prompt = np.concatenate([context, np.array(bar_tokens, dtype=np.int32)])
    cache = DecodingCache(model, vocab, old.half_weights)
    cache.prefill(prompt, backend=backend)
    return cache
