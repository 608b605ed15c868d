"""Sampling: small pure functions from logits to a token, and the settings that drive them.

Order of operations on the logits of one step (vocabulary-sized 1-D tensors):
grammar mask → repetition penalty → temperature → min-p → top-k → top-p → draw.
The grammar mask comes first so every filter chooses among tokens that keep the
sequence decodable; temperature 0 means greedy. A note's length and a bar's chord are drawn
from their whole tempered distribution, without min-p, top-k and top-p (``whole_N`` of
`choose_tokens`).
With prompt guidance the logits passed in are already guided (`session.Session.candidates`).
"""

from __future__ import annotations

import torch

from meloformer_core.sampling_settings import SamplingConfig, SamplingError  # noqa: F401 (re-exported)


def mask_disallowed(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~allowed, float("-inf"))


def penalise_repetitions(logits: torch.Tensor, recent: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty on the ``recent`` token ids: positive logits divided, negative multiplied."""
    if penalty == 1.0 or not len(recent):
        return logits
    logits = logits.clone()
    chosen = logits[recent]
    logits[recent] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    return logits


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below ``min_p`` times that of the likeliest token."""
    if min_p <= 0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    threshold = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of likeliest tokens whose probabilities add up to at least ``p``."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= p  # mass before this token already ≥ p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose_token(
    logits: torch.Tensor,
    allowed: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator,
    recent_penalised: torch.Tensor | None = None,
    whole: bool = False,
) -> int:
    """One token id from the logits (V,) of one step, among the ``allowed`` ones."""
    recent = None if recent_penalised is None else [recent_penalised]
    whole_N = torch.tensor([True]) if whole else None
    return choose_tokens(logits[None], allowed[None], config, [generator], recent, whole_N)[0]


def choose_tokens(
    logits_NV: torch.Tensor,
    allowed_NV: torch.Tensor,
    config: SamplingConfig,
    generators: list[torch.Generator],
    recent_penalised: list[torch.Tensor] | None = None,
    whole_N: torch.Tensor | None = None,
) -> list[int]:
    """One token id per row of logits (N, V), each row drawn with its own generator: row i
    gets exactly the token it would get alone, whatever the other rows (takes decoded
    together equal their seeds decoded one by one).

    ``whole_N`` (booleans, one per row): rows drawn from their whole tempered distribution,
    without min-p, top-k and top-p. The session asks it where one choice competes with many
    that share its rival's chance, so that a cut by rank keeps the one and drops the many,
    however likely they are as a whole:
    - a note's length: the model spreads a long note's chance over many neighbouring
      lengths (a ringing guitar string lasts 3, 4, 6 or 13 beats) and a short one's over few;
    - a bar's chord: holding the last bar's chord is one token, moving on is shared among the
      chords the harmony may move to. Cut, band continuations held their chord at a quarter
      of bar lines where the real bars do at a tenth."""
    logits = mask_disallowed(logits_NV.float(), allowed_NV)
    if recent_penalised is not None:
        logits = torch.stack([penalise_repetitions(row, recent, config.repetition_penalty)
                              for row, recent in zip(logits, recent_penalised, strict=True)])  # fmt: skip
    if config.temperature == 0:
        return logits.argmax(dim=-1).tolist()
    logits = logits / config.temperature
    filtered = top_p_filter(top_k_filter(min_p_filter(logits, config.min_p), config.top_k), config.top_p)
    logits = filtered if whole_N is None else torch.where(whole_N[:, None], logits, filtered)
    probs = torch.softmax(logits, dim=-1)
    # the draw torch.multinomial(probs, 1) makes (argmax of p / q with q ~ Exp(1)), row by
    # row from each row's generator
    noise = torch.stack([torch.empty_like(row).exponential_(1, generator=generator)
                         for row, generator in zip(probs, generators, strict=True)])  # fmt: skip
    return (probs / noise).argmax(dim=-1).tolist()
