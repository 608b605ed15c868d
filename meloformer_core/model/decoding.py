"""Incremental decoding with a KV cache; summaries computed once, when their segment closes.

Legend: H heads, E head width, P prompt tokens, D model width.

Per layer the cache keeps, for every regular token, its keys/values under both attention
projections (``summarise`` for the SR part of a later summary, ``update`` for RR), and for
every closed segment its summary's keys/values under both projections (SS and RS).

Feeding a token that opens a segment (BAR, TRACK, EOS) first closes the previous
segment: its summary runs through all layers *before* the new token, because that
token must see it (DESIGN.md §4). Masks come from the same predicates as training
(`masks.py`), evaluated for one query row over the cached keys, so the logits equal a
full forward pass (tests/core/test_model.py checks ≤ 1e-4 over hundreds of tokens).
Single-query attention is computed directly (scores → softmax → values) over the filled
part of the cache: exact, and on a CPU far cheaper than attending to the whole buffer.
"""

from __future__ import annotations

import numpy as np
import torch

from meloformer_core.encoding.grammar import HEADER, MetadataTracker
from meloformer_core.encoding.vocab import TokenType, Vocabulary
from meloformer_core.model.masks import OPEN, Layout, build_layout, summarise_mask_mod, update_mask_mod
from meloformer_core.model.transformer import MeloFormer

_OPENERS = (int(TokenType.BAR), int(TokenType.TRACK), int(TokenType.EOS))


class ContextFull(Exception):  # noqa: N818 - a signal, not a failure
    """The cache holds ``max_seq_len`` tokens: the caller must re-window and prefill."""


class DecodingCache:
    """The state of one sequence being decoded (batch size 1)."""

    def __init__(self, model: MeloFormer, vocab: Vocabulary) -> None:
        config = model.config
        self.model = model
        self.vocab = vocab
        self.capacity = config.max_seq_len
        self.summary_capacity = config.max_seq_len // 2 + 2  # every segment but EOS has ≥ 2 tokens
        parameter = next(model.parameters())
        device, dtype = parameter.device, parameter.dtype
        shape = (config.n_layers, config.n_heads, self.capacity + self.summary_capacity, config.head_dim)
        # [layer, head, key, :]; keys [0, capacity) are regular tokens, then summaries
        self.sum_k = torch.zeros(shape, device=device, dtype=dtype)
        self.sum_v = torch.zeros(shape, device=device, dtype=dtype)
        self.upd_k = torch.zeros(shape, device=device, dtype=dtype)
        self.upd_v = torch.zeros(shape, device=device, dtype=dtype)
        empty = build_layout(
            [np.zeros(0, dtype=np.int64)], vocab, pad_to=self.capacity, summaries_to=self.summary_capacity
        )
        self.layout = empty.to(device)
        self.layout.seg_end.fill_(OPEN)
        self.length = 0  # tokens fed
        self.closed = 0  # summaries computed
        self.tracker = MetadataTracker(vocab)
        self._summarise = summarise_mask_mod(self.layout)
        self._update = update_mask_mod(self.layout, config.related_bar_offsets)
        self._key_index = torch.arange(self.capacity + self.summary_capacity, device=device)
        self._zero = torch.zeros((), dtype=torch.long, device=device)

    @property
    def open_segment(self) -> int:
        return self.tracker.segment

    # --- prefill ---------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, tokens: np.ndarray, backend: str = "dense") -> torch.Tensor:
        """Run the full forward pass over a prompt, fill the cache, return the last logits (V,)."""
        if self.length:
            raise RuntimeError("prefill needs an empty cache")
        if len(tokens) > self.capacity:
            raise ContextFull
        if not len(tokens):
            raise ValueError("empty prompt")
        model = self.model
        device = self.layout.tokens.device
        layout = build_layout([np.asarray(tokens)], self.vocab).to(device)
        masks = model.masks(layout, backend)
        prompt, summaries = layout.tokens.shape[1], layout.seg_end.shape[1]
        x = model.embed(layout.tokens)
        s = model.initial_summaries(layout.seg_opener)
        for index, block in enumerate(model.blocks):
            captured: list = []
            x, s = block(x, s, layout, masks, model.rotary, capture=captured)
            (sum_k, sum_v), (upd_k, upd_v) = captured
            self._store(self.sum_k, self.sum_v, index, sum_k, sum_v, prompt, summaries)
            self._store(self.upd_k, self.upd_v, index, upd_k, upd_v, prompt, summaries)
        logits = model.head(model.norm_out(x))[0, -1]
        # adopt the prompt's metadata; its last segment stays open until the next opener
        for name in ("tokens", "bar", "slot", "segment", "document", "is_pad", "positions"):
            getattr(self.layout, name)[0, :prompt] = getattr(layout, name)[0]
        has_segments = bool(layout.seg_valid[0].any())
        closed = int(layout.seg_valid[0].sum()) - 1 if has_segments else 0
        if has_segments:
            self.layout.seg_opener[0, : closed + 1] = layout.seg_opener[0, : closed + 1]
        for name in ("seg_end", "seg_document", "seg_valid", "seg_positions"):
            getattr(self.layout, name)[0, :closed] = getattr(layout, name)[0, :closed]
        self.length, self.closed = prompt, closed
        for token in np.asarray(tokens).tolist():
            self.tracker.feed(token)
        return logits

    def _store(self, keys, values, layer: int, k, v, prompt: int, summaries: int) -> None:
        keys[layer, :, :prompt] = k[0, :, :prompt]
        values[layer, :, :prompt] = v[0, :, :prompt]
        keys[layer, :, self.capacity : self.capacity + summaries] = k[0, :, prompt:]
        values[layer, :, self.capacity : self.capacity + summaries] = v[0, :, prompt:]

    # --- one token -------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, token: int) -> torch.Tensor:
        """Feed one token; return the logits (V,) for the next one."""
        if self.length >= self.capacity:
            raise ContextFull
        kind = int(self.vocab.type_of[token])
        if kind in _OPENERS and self.tracker.segment >= 0:
            self._close_segment()
        meta = self.tracker.feed(token)
        t = self.length
        layout = self.layout
        layout.tokens[0, t] = token
        layout.bar[0, t] = meta.bar
        layout.slot[0, t] = meta.slot
        layout.segment[0, t] = meta.segment
        layout.document[0, t] = 0
        layout.is_pad[0, t] = False
        layout.positions[0, t] = t
        if meta.segment != HEADER and kind in _OPENERS:
            layout.seg_opener[0, meta.segment] = token
        self.length = t + 1

        model = self.model
        position = layout.positions[:, t : t + 1]
        mask = self._update(self._zero, self._zero, torch.tensor(t), self._key_index)
        x = model.embed(layout.tokens[:, t : t + 1])
        for index, block in enumerate(model.blocks):
            nx = block.norm_regular(x)
            k, v = block.summarise.project(nx, position, model.rotary)
            self.sum_k[index, :, t] = k[0, :, 0]
            self.sum_v[index, :, t] = v[0, :, 0]
            k, v = block.update.project(nx, position, model.rotary)
            self.upd_k[index, :, t] = k[0, :, 0]
            self.upd_v[index, :, t] = v[0, :, 0]
            q = block.update.project_queries(nx, position, model.rotary)
            x = x + self._attend(block.update, q, self.upd_k[index], self.upd_v[index], mask)
            x = x + block.mlp(block.norm_mlp(x))
        return model.head(model.norm_out(x))[0, 0]

    def _close_segment(self) -> None:
        """Compute the summary of the segment that ends with the last fed token."""
        k_index = self.tracker.segment
        self.closed = k_index + 1  # attention below covers summaries 0..k_index (itself included)
        last = self.length - 1
        layout = self.layout
        layout.seg_end[0, k_index] = last
        layout.seg_document[0, k_index] = 0
        layout.seg_valid[0, k_index] = True
        layout.seg_positions[0, k_index] = layout.positions[0, last]
        model = self.model
        position = layout.seg_positions[:, k_index : k_index + 1]
        slot = self.capacity + k_index
        mask = self._summarise(self._zero, self._zero, torch.tensor(k_index), self._key_index)
        s = model.initial_summaries(layout.seg_opener[:, k_index : k_index + 1])
        for index, block in enumerate(model.blocks):
            ns = block.norm_summary(s)
            k, v = block.summarise.project(ns, position, model.rotary)
            self.sum_k[index, :, slot] = k[0, :, 0]
            self.sum_v[index, :, slot] = v[0, :, 0]
            q = block.summarise.project_queries(ns, position, model.rotary)
            s = s + self._attend(block.summarise, q, self.sum_k[index], self.sum_v[index], mask)
            s = s + block.mlp(block.norm_mlp(s))
            k, v = block.update.project(block.norm_summary(s), position, model.rotary)
            self.upd_k[index, :, slot] = k[0, :, 0]
            self.upd_v[index, :, slot] = v[0, :, 0]

    def _attend(self, attention, q_1HQE, keys_HKE, values_HKE, mask_K) -> torch.Tensor:
        """Single-query attention over the filled regular keys and the computed summaries."""
        regular = slice(0, self.length)
        summary = slice(self.capacity, self.capacity + max(self.closed, 1))
        keys = torch.cat([keys_HKE[:, regular], keys_HKE[:, summary]], dim=1)  # (H, K', E)
        values = torch.cat([values_HKE[:, regular], values_HKE[:, summary]], dim=1)
        mask = torch.cat([mask_K[regular], mask_K[summary]])
        scores = (q_1HQE[0] @ keys.transpose(1, 2)) / attention.head_dim**0.5  # (H, 1, K')
        scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ values  # (H, 1, E)
        return attention.out_proj(out.transpose(0, 1).reshape(1, 1, -1))


def full_layout(tokens: np.ndarray, vocab: Vocabulary, device: torch.device | str = "cpu") -> Layout:
    return build_layout([np.asarray(tokens)], vocab).to(device)
