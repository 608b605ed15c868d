"""Incremental decoding with a KV cache, run through the network's own blocks.

Legend: H heads, E head width, P prompt tokens, D model width.

Per layer the cache keeps, for every regular token, its keys/values under both attention
projections (``summarise`` for the SR part of a later summary, ``update`` for RR), and for
every closed segment its summary's keys/values under both projections (SS and RS).

Tokens go through `MeloFormer.run` — the same `Block.forward` as training — with a
`_CachedKeys` as the blocks' `Keys`: each block stores the keys and values of what it is
fed in the buffer and attends over the buffer's slots. Feeding a token that opens a
segment (BAR, TRACK, EOS) closes the previous segment: its summary goes through the
blocks with the token, and each block computes it before the token attends to it
(docs/architecture.md, KV-cached decoding). Masks come from the same predicates as
training (`masks.py`), evaluated for one query row over the cached keys when a segment
opens; the next tokens of the segment see the same keys and themselves, so their mask is
extended in place. The logits equal a full forward pass (tests/core/test_model.py checks
≤ 1e-4 over hundreds of tokens).

The buffer is append-only: regular tokens and summaries take the next free slot in the
order they are produced, and ``slot_key`` maps a slot back to its key index in the
training layout (``t`` for token t, ``T + m`` for summary m) so the same predicates give
the mask.

Sequences decoded side by side (prompt guidance's two streams, several takes) are rows of
one `DecodingGroup`: one key/value buffer with a row per sequence. `step_together` feeds
each row its own token as one batch through the blocks, so every matrix product and the
attention of all rows are single operations (each row masked to its own slots), with the
summaries of the segments that close in the same step; a step for N rows costs far less
than N steps. Takes of one prompt prefill it once (`DecodingCache.copy_from`).

Known tokens (the kept music of arrange and infill) go through in one pass (`feed_run`),
each attending what it would attend stepped alone, whatever segments they open and close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from meloformer_core.encoding.grammar import HEADER, MetadataTracker
from meloformer_core.encoding.vocab import TokenType, Vocabulary
from meloformer_core.model.masks import OPEN, build_layout, summarise_mask_mod, update_mask_mod
from meloformer_core.model.transformer import (
    BlockWeights,
    MeloFormer,
    SequenceKeys,
    Turns,
    bf16_native,
    linear,
    merge_heads,
    split_heads,
)

# tokens that open a segment (as `MetadataTracker` counts them)
_OPENERS = tuple(int(t) for t in (TokenType.BAR, TokenType.TRACK, TokenType.EOS, TokenType.FIM_GAP,
                                  TokenType.FIM_MIDDLE, TokenType.FIM_END))  # fmt: skip


HALF_ROWS = 2  # float16 weights pay for products of up to this many rows (see `DecodingGroup`)


class ContextFull(Exception):  # noqa: N818 - a signal, not a failure
    """The cache holds ``max_seq_len`` tokens: the caller must re-window and prefill."""


class DecodingGroup:
    """What the caches decoded together share: the weights they decode with (the model's own,
    or 16-bit casts of them) and one key/value buffer with a row per cache, so a step runs
    all of them through the blocks and attends for all of them in one operation.

    ``half_weights``: 16-bit copies of the weights (activations and the cache stay float32).
    One token reads every weight once, so on a CPU such a product is bound by memory
    traffic. Products of one or two rows use float16 weights (logits differ from the
    float32 pass by ~1e-3 relative); products of more rows use bfloat16 weights where the
    processor computes in bfloat16 (AVX-512 BF16 or AMX: for 16 rows of the default model's
    projections, 356 µs against 473 µs in float32 and 1,590 µs in float16), and the model's
    own float32 weights elsewhere (on an AVX2 CPU, which converts bfloat16 in software, 97
    rows — a bar of kept music fed in one pass — took 9.4 ms in bfloat16 against 1.0 ms in
    float32; `HALF_ROWS`).

    ``blocks``: ranges of rows that attend together, each over its own longest row; rows
    of very different lengths (a take's cache and its guide's) belong in different blocks.
    """

    def __init__(self, model: MeloFormer, vocab: Vocabulary, rows: int = 1, half_weights: bool = False,
                 blocks: list[range] | None = None) -> None:  # fmt: skip
        config = model.config
        self.model, self.vocab, self.rows, self.half_weights = model, vocab, rows, half_weights
        self.blocks = blocks or [range(rows)]
        if sorted(row for block in self.blocks for row in block) != list(range(rows)):
            raise ValueError(f"blocks {self.blocks} do not cover rows 0-{rows - 1} once each")
        self.capacity = config.max_seq_len
        self.summary_capacity = config.max_seq_len // 2 + 2  # every segment but EOS has ≥ 2 tokens
        parameter = next(model.parameters())
        device, dtype = parameter.device, parameter.dtype
        shape = (rows, config.n_layers, config.n_heads, self.capacity + self.summary_capacity, config.head_dim)
        # [row, layer, head, slot, :] under the summarise and the update projections
        self.sum_k = torch.zeros(shape, device=device, dtype=dtype)
        self.sum_v = torch.zeros(shape, device=device, dtype=dtype)
        self.upd_k = torch.zeros(shape, device=device, dtype=dtype)
        self.upd_v = torch.zeros(shape, device=device, dtype=dtype)
        # [row, slot]: the slots the row's latest token attends to (the update mask)
        self.mask = torch.zeros(rows, shape[3], device=device, dtype=torch.bool)

        self._half = self._prepared(torch.float16) if half_weights else None
        self._batch_dtype = torch.bfloat16 if half_weights and bf16_native(device) else None
        self._full = self._prepared(self._batch_dtype) if not half_weights or rows > HALF_ROWS else None

    def _prepared(self, weight_dtype: torch.dtype | None) -> tuple[list[BlockWeights] | None, torch.Tensor]:
        """(per block, its weights cast to ``weight_dtype``; the output head), or the model's
        own (None per block) when ``weight_dtype`` is None."""
        model = self.model
        if weight_dtype is None:
            return None, model.head.weight
        return [block.weights(weight_dtype) for block in model.blocks], model.head.weight.detach().to(weight_dtype)

    def weights(self, rows: int) -> tuple[list[BlockWeights] | None, torch.Tensor]:
        """(per block, the weights for a product of ``rows`` rows, or None for the model's own; the output head)."""
        if self._half is not None and rows <= HALF_ROWS:
            return self._half
        if self._full is None:  # a group of few rows feeding a run of tokens: prepared once, when first needed
            self._full = self._prepared(self._batch_dtype)
        return self._full

    def cache(self, row: int) -> DecodingCache:
        """An empty cache on ``row``."""
        return DecodingCache(self.model, self.vocab, group=self, row=row)

    def caches(self) -> list[DecodingCache]:
        """An empty cache on every row."""
        return [self.cache(row) for row in range(self.rows)]


class DecodingCache:
    """The state of one sequence being decoded: its row of a `DecodingGroup` (a group of its
    own unless one is given) and the layout of what it has heard."""

    def __init__(self, model: MeloFormer, vocab: Vocabulary, half_weights: bool = False, *,
                 group: DecodingGroup | None = None, row: int = 0) -> None:  # fmt: skip
        self.group = group if group is not None else DecodingGroup(model, vocab, 1, half_weights)
        self.model, self.vocab, self.row = model, vocab, row
        self.capacity = self.group.capacity
        self.summary_capacity = self.group.summary_capacity
        # this row's [layer, head, slot, :] views of the group's buffers
        self.sum_k, self.sum_v = self.group.sum_k[row], self.group.sum_v[row]
        self.upd_k, self.upd_v = self.group.upd_k[row], self.group.upd_v[row]
        self.mask = self.group.mask[row]
        device = self.sum_k.device
        self._zero = torch.zeros((), dtype=torch.long, device=device)
        self.clear()

    def clear(self) -> None:
        """Forget everything heard (the row's buffers are reused, not freed)."""
        device = self.sum_k.device
        self.slot_key = torch.zeros(self.capacity + self.summary_capacity, dtype=torch.long, device=device)
        self.filled = 0  # slots used
        self.mask.zero_()
        self.mask[0] = True  # never empty: a row that is not stepped still attends somewhere
        self._mask_current = False  # whether ``mask`` is the last entered token's
        empty = build_layout(
            [np.zeros(0, dtype=np.int64)], self.vocab, pad_to=self.capacity, summaries_to=self.summary_capacity
        )
        self.layout = empty.to(device)
        self.layout.seg_end.fill_(OPEN)
        self.length = 0  # tokens fed
        self.closed = 0  # summaries computed
        self.tracker = MetadataTracker(self.vocab)
        self._summarise = summarise_mask_mod(self.layout)
        self._update = update_mask_mod(self.layout, self.model.config.related_bar_offsets)

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
        prompt = layout.tokens.shape[1]
        has_segments = bool(layout.seg_valid[0].any())
        closed = int(layout.seg_valid[0].sum()) - 1 if has_segments else 0  # the last one stays open
        buffers = ((self.sum_k, self.sum_v), (self.upd_k, self.upd_v))

        def store(layer: int, phase: int, k: torch.Tensor, v: torch.Tensor) -> None:
            """The prompt's tokens, then its closed segments' summaries, in the buffer's first slots."""
            for buffer, value in zip(buffers[phase], (k, v), strict=True):
                buffer[layer, :, : prompt + closed] = value[0, :, : prompt + closed]

        keys = SequenceKeys(layout, model.masks(layout, backend), model.rotary, model.config.n_heads, store=store)
        x, _ = model.run(model.embed(layout.tokens), model.initial_summaries(layout.seg_opener), keys)
        self.slot_key[:prompt] = torch.arange(prompt, device=device)
        self.slot_key[prompt : prompt + closed] = self.capacity + torch.arange(closed, device=device)
        self.filled = prompt + closed
        logits = model.head(model.norm_out(x[:, -1]))[0]
        # adopt the prompt's metadata; its last segment stays open until the next opener
        for name in ("tokens", "bar", "slot", "segment", "document", "is_pad", "positions"):
            getattr(self.layout, name)[0, :prompt] = getattr(layout, name)[0]
        if has_segments:
            self.layout.seg_opener[0, : closed + 1] = layout.seg_opener[0, : closed + 1]
        for name in ("seg_end", "seg_document", "seg_valid", "seg_positions"):
            getattr(self.layout, name)[0, :closed] = getattr(layout, name)[0, :closed]
        self.length, self.closed = prompt, closed
        for token in np.asarray(tokens).tolist():
            self.tracker.feed(token)
        return logits

    def copy_from(self, source: DecodingCache) -> None:
        """Hear exactly what ``source`` (another row of the same group) has heard: the same
        prompt prefilled once serves every take."""
        if source.group is not self.group:
            raise ValueError("a cache copies only another row of its own group")
        filled = source.filled
        for buffer in (self.group.sum_k, self.group.sum_v, self.group.upd_k, self.group.upd_v):
            buffer[self.row, :, :, :filled] = buffer[source.row, :, :, :filled]
        self.clear()
        self.mask.copy_(source.mask)
        self.slot_key.copy_(source.slot_key)
        for name in self.layout.__dataclass_fields__:
            getattr(self.layout, name).copy_(getattr(source.layout, name))
        self.filled, self.length, self.closed = filled, source.length, source.closed
        self._mask_current = source._mask_current
        for name in MetadataTracker.__slots__:
            setattr(self.tracker, name, getattr(source.tracker, name))

    # --- one token -------------------------------------------------------------------------
    def step(self, token: int) -> torch.Tensor:
        """Feed one token; return the logits (V,) for the next one."""
        return step_together([self], token)[0]

    def _enter(self, token: int, closing: list[_Closing]) -> tuple[int, int]:
        """Record ``token`` and its update mask (``mask``); return its (slot, position).

        If it opens a segment, the segment before is closed first and appended to
        ``closing``: its summary goes through the blocks with the token, before it attends."""
        if self.length >= self.capacity:
            raise ContextFull
        kind = int(self.vocab.type_of[token])
        if kind in _OPENERS and self.tracker.segment >= 0:
            closing.append(self._close_segment())
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
        slot = self._take_slot(t)
        if self._mask_current and kind not in _OPENERS:
            # the same segment as the token before: the same keys, and itself
            self.mask[slot] = True
        else:
            filled = self.filled
            self.mask[:filled] = self._update(self._zero, self._zero, torch.tensor(t), self.slot_key[:filled])
            self._mask_current = True
        return slot, t

    def _close_segment(self) -> _Closing:
        """Close the segment that ends with the last fed token: its summary takes the next slot."""
        k_index = self.tracker.segment
        self.closed = k_index + 1
        last = self.length - 1
        layout = self.layout
        layout.seg_end[0, k_index] = last
        layout.seg_document[0, k_index] = 0
        layout.seg_valid[0, k_index] = True
        layout.seg_positions[0, k_index] = layout.positions[0, last]
        slot = self._take_slot(self.capacity + k_index)
        mask = self._summarise(self._zero, self._zero, torch.tensor(k_index), self.slot_key[: self.filled])
        return _Closing(self, slot, int(layout.positions[0, last]), int(layout.seg_opener[0, k_index]), mask)

    # --- helpers ---------------------------------------------------------------------------
    def _take_slot(self, key: int) -> int:
        slot = self.filled
        self.slot_key[slot] = key
        self.filled = slot + 1
        return slot


@dataclass
class _Closing:
    """A segment just closed in ``cache``: its summary goes to ``slot`` and attends ``mask``."""

    cache: DecodingCache
    slot: int
    position: int  # the rotary position of the segment's last token
    opener: int  # the token that opened the segment
    mask: torch.Tensor  # over the cache's slots up to and including ``slot``


def _places(group: DecodingGroup, rows: list[int], slots: list[int]) -> torch.Tensor:
    """Where (row, slot) pairs lie in layer 0 of a buffer seen as (rows·layers·heads·slots, E):
    (N, H) indices; layer ``l`` is ``l·H·slots`` further (see `_CachedKeys.write`)."""
    _, layers, heads, slot_count, _ = group.sum_k.shape
    rows_, slots_ = torch.tensor(rows), torch.tensor(slots)
    return ((rows_[:, None] * layers * heads + torch.arange(heads)) * slot_count + slots_[:, None]).to(
        group.sum_k.device
    )


class _CachedKeys:
    """The network's `Keys` for one pass of entered tokens through a group's buffers: each
    block's keys and values of the tokens (at ``token_places``) and of the summaries closing
    before them (``closing``) are stored, then attended where the cache's masks say."""

    def __init__(self, group: DecodingGroup, token_places: torch.Tensor, token_positions: torch.Tensor,
                 closing: list[_Closing]) -> None:  # fmt: skip
        model = group.model
        device = group.sum_k.device
        self.group, self.closing, self.heads = group, closing, model.config.n_heads
        self.rotate = model.rotary.rotate
        self.token_places, self.token_turns = token_places, model.rotary.turns(token_positions)
        if closing:
            self.summary_places = _places(group, [item.cache.row for item in closing], [item.slot for item in closing])
            positions = torch.tensor([[item.position] for item in closing], device=device)
            self.summary_turns = model.rotary.turns(positions)

    def write(self, layer: int, places: torch.Tensor, turns: Turns, pairs: list[tuple]) -> None:
        """Store (B, L, D) keys (rotated by ``turns``) and values at ``places`` (B·L, H) of
        ``layer``: ``pairs`` of ((keys, values), (key buffer, value buffer))."""
        _, _, heads, slot_count, width = self.group.sum_k.shape
        index = (places + layer * heads * slot_count).flatten()
        for (k, v), (key_buffer, value_buffer) in pairs:
            rotated = self.rotate(split_heads(k, heads), turns).transpose(1, 2)
            key_buffer.view(-1, width).index_copy_(0, index, rotated.reshape(-1, width))
            value_buffer.view(-1, width).index_copy_(0, index, v.reshape(-1, width))

    def tokens(self, layer: int, summarise: tuple, update: tuple) -> None:
        group = self.group
        pairs = [(summarise, (group.sum_k, group.sum_v)), (update, (group.upd_k, group.upd_v))]
        self.write(layer, self.token_places, self.token_turns, pairs)

    def summarise(self, layer: int, queries: torch.Tensor, summaries: tuple) -> torch.Tensor:
        """Each closing summary over its own row's slots, up to and including its own."""
        group = self.group
        self.write(layer, self.summary_places, self.summary_turns, [(summaries, (group.sum_k, group.sum_v))])
        q = self.rotate(split_heads(queries, self.heads), self.summary_turns)  # (C, H, 1, E)
        attended = [
            torch.nn.functional.scaled_dot_product_attention(
                q[i : i + 1],
                group.sum_k[item.cache.row, layer, None, :, : len(item.mask)],
                group.sum_v[item.cache.row, layer, None, :, : len(item.mask)],
                attn_mask=item.mask[None, None, None],
            )
            for i, item in enumerate(self.closing)
        ]
        return merge_heads(torch.cat(attended))

    def update(self, layer: int, queries: torch.Tensor, summaries: tuple | None) -> torch.Tensor:
        group = self.group
        if summaries is not None:
            self.write(layer, self.summary_places, self.summary_turns, [(summaries, (group.upd_k, group.upd_v))])
        return self.attend(layer, self.rotate(split_heads(queries, self.heads), self.token_turns))

    def attend(self, layer: int, q_BHLE: torch.Tensor) -> torch.Tensor:
        """The tokens' update attention (B, L, D), their keys stored."""
        raise NotImplementedError


@torch.inference_mode()
def step_together(caches: list[DecodingCache], tokens: int | list[int]) -> list[torch.Tensor]:
    """Feed one token to each cache (the same one when ``tokens`` is an int); return each
    cache's next logits (V,).

    The caches must be rows of one `DecodingGroup`. Decoding one token on a CPU is bound by
    reading the weights and by the count of operations, so the rows go through every
    matrix product and every attention together: one read of the weights, one attention
    over the group's buffer (each row masked to its own slots). Raises `ContextFull`
    before changing anything if any cache is full.
    """
    group = caches[0].group
    if any(cache.group is not group for cache in caches):
        raise ValueError("caches stepped together must belong to one DecodingGroup")
    if any(cache.length >= cache.capacity for cache in caches):
        raise ContextFull
    tokens = [tokens] * len(caches) if isinstance(tokens, int) else list(tokens)
    closing: list[_Closing] = []
    entered = [cache._enter(token, closing) for cache, token in zip(caches, tokens, strict=True)]
    device = group.sum_k.device
    places = _places(group, [cache.row for cache in caches], [slot for slot, _ in entered])
    positions = torch.tensor([[position] for _, position in entered], device=device)
    keys = _StepKeys(group, places, positions, closing, caches)
    return list(_forward(group, torch.tensor(tokens, device=device)[:, None], closing, keys))


class _StepKeys(_CachedKeys):
    """One token for each of several rows: attention runs per block of rows over views of the
    buffer and of the masks (no copy); a row of the block that is not stepped gets a zero
    query under its last mask (never empty), and its output is dropped."""

    def __init__(self, group: DecodingGroup, places: torch.Tensor, positions: torch.Tensor, closing: list[_Closing],
                 caches: list[DecodingCache]) -> None:  # fmt: skip
        super().__init__(group, places, positions, closing)
        device = group.sum_k.device
        self.attending = []  # (the block's rows, its stepped rows' places among ``caches`` and in it, slots, mask)
        for block in group.blocks:
            stepped = {cache.row - block.start: place for place, cache in enumerate(caches) if cache.row in block}
            if not stepped:
                continue
            filled = max(caches[place].filled for place in stepped.values())
            mask = group.mask[block.start : block.stop, :filled]
            window = slice(block.start, block.stop)
            if list(stepped.items()) == list(enumerate(range(len(caches)))) and len(block) == len(caches):
                self.attending.append((window, None, None, filled, mask))  # every row, in order: no gather
                continue
            where = torch.tensor(list(stepped.values()), device=device)
            inside = torch.tensor(list(stepped.keys()), device=device)
            self.attending.append((window, where, inside, filled, mask))

    def attend(self, layer: int, q_BHLE: torch.Tensor) -> torch.Tensor:
        group = self.group
        if self.attending[0][1] is None:  # one block of all the rows stepped, in their order
            window, _, _, filled, mask = self.attending[0]
            keys, values = group.upd_k[window, layer, :, :filled], group.upd_v[window, layer, :, :filled]
            out = torch.nn.functional.scaled_dot_product_attention(q_BHLE, keys, values, attn_mask=mask[:, None, None])
            return out.reshape(len(q_BHLE), 1, -1)
        queries = q_BHLE[:, :, 0]  # (N, H, E)
        attended = torch.empty_like(queries)
        for window, where, inside, filled, mask in self.attending:
            query = torch.zeros(window.stop - window.start, *queries.shape[1:], device=queries.device,
                                dtype=queries.dtype)  # fmt: skip
            query[inside] = queries[where]
            out = torch.nn.functional.scaled_dot_product_attention(
                query[:, :, None],
                group.upd_k[window, layer, :, :filled],
                group.upd_v[window, layer, :, :filled],
                attn_mask=mask[:, None, None],
            )
            attended[where] = out[inside, :, 0]
        return attended.reshape(len(queries), 1, -1)


class _RunKeys(_CachedKeys):
    """A run of one segment's tokens in one row: token j attends what the run's first token
    attends, and the run up to itself."""

    def __init__(self, cache: DecodingCache, places: torch.Tensor, positions: torch.Tensor,
                 closing: list[_Closing], mask: torch.Tensor) -> None:  # fmt: skip
        super().__init__(cache.group, places, positions, closing)
        self.row, self.mask, self.filled = cache.row, mask, cache.filled

    def attend(self, layer: int, q_BHLE: torch.Tensor) -> torch.Tensor:
        group, filled = self.group, self.filled
        out = torch.nn.functional.scaled_dot_product_attention(
            q_BHLE,  # (1, H, L, E)
            group.upd_k[self.row, layer, None, :, :filled],
            group.upd_v[self.row, layer, None, :, :filled],
            attn_mask=self.mask[None, None],
        )
        return merge_heads(out)


def _forward(group: DecodingGroup, tokens: torch.Tensor, closing: list[_Closing], keys: _CachedKeys,
             last_only: bool = False) -> torch.Tensor:  # fmt: skip
    """The network's own blocks (`MeloFormer.run`) over entered tokens (B, L): rows of one
    step, or a run of one segment, with the summaries of the segments ``closing`` before
    them. Returns the logits (B·L, V), or (1, V) of the last token with ``last_only``."""
    model = group.model
    weights, head = group.weights(tokens.numel())
    x = model.embed.weight[tokens]
    s = None
    if closing:
        s = model.initial_summaries(torch.tensor([[item.opener] for item in closing], device=tokens.device))
    x, _ = model.run(x, s, keys, weights)
    x = x.reshape(-1, x.shape[-1])
    if last_only:
        x = x[-1:]
    return linear(model.norm_out(x), head)


@torch.inference_mode()
def feed_run(cache: DecodingCache, tokens: list[int]) -> torch.Tensor:
    """Feed known ``tokens`` to one cache in one pass through the network; return the logits
    (V,) after the last one. Equal to stepping them one by one (to float rounding,
    tests/core/test_model.py), at about the cost of one step.

    Every token attends what it would attend stepped alone (its mask is recorded as it
    enters). The segments that its openers close get their summaries in the same pass: a
    block computes the summaries from the tokens' keys before the tokens attend them, as
    in training. Raises `ContextFull` before changing anything if the tokens do not fit.
    """
    if not tokens:
        raise ValueError("no tokens to feed")
    if cache.length + len(tokens) > cache.capacity:
        raise ContextFull
    group, device = cache.group, cache.sum_k.device
    closing: list[_Closing] = []
    entered, masks = [], []
    for token in tokens:
        entered.append(cache._enter(token, closing))
        masks.append(cache.mask[: cache.filled].clone())  # what this token attends
    mask = torch.zeros(len(tokens), cache.filled, dtype=torch.bool, device=device)
    for row, attends in enumerate(masks):
        mask[row, : len(attends)] = attends
    positions = torch.tensor([[position for _, position in entered]], device=device)
    places = _places(group, [cache.row] * len(tokens), [slot for slot, _ in entered])
    keys = _RunKeys(cache, places, positions, closing, mask)
    return _forward(group, torch.tensor([tokens], device=device), closing, keys, last_only=True)[0]
