"""Who attends to whom: the layout of a batch and the mask predicates built from it.

Legend: B batch, T regular tokens, S summaries (one per (bar, track) segment).

Keys of both attention phases are the concatenation ``[regular tokens (T); summaries (S)]``,
so a key index ``kv < T`` is a regular token and ``kv >= T`` is summary ``kv - T``.

- *summarise* (queries: summaries). Summary ``k`` sees the regular tokens of its own
  segment (SR), the summaries of earlier segments of its document (SS), and itself.
- *update* (queries: regular tokens). Token ``t`` sees (RR) earlier tokens of its document
  that are header tokens, in its own bar (any track), or in a structure-related bar
  (``|bar distance| in related_bar_offsets``; later bars precede only when infilling)
  of its own track or the conductor; and
  (RS) the summaries of segments *closed* before it (last token strictly before ``t``).

Design choices (tested in tests/core/test_model.py):
- a summary attends to itself; a segment's own tokens never see its summary;
- the last segment of every row is treated as still open (its summary is seen by no
  token), which makes a full forward pass, a prefill and step-by-step decoding agree;
- a summary sits at the rotary position of its segment's last token.

The same predicate feeds FlexAttention (``create_block_mask`` with one mask per sequence
of the batch) and the dense boolean masks of the reference path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from meloformer_core.encoding.grammar import HEADER, PADDING, token_metadata
from meloformer_core.encoding.vocab import Vocabulary

OPEN = 1 << 30  # seg_end of a segment that is not closed


@dataclass
class Layout:
    """Per-token and per-summary metadata of a batch, as tensors on the model's device."""

    tokens: torch.Tensor  # (B, T) long
    bar: torch.Tensor  # (B, T) long; HEADER / PADDING as in `token_metadata`
    slot: torch.Tensor  # (B, T) long; 0 conductor, k + 1 track slot k
    segment: torch.Tensor  # (B, T) long; unique within a row, also across packed documents
    document: torch.Tensor  # (B, T) long; padding is document -1
    is_pad: torch.Tensor  # (B, T) bool
    positions: torch.Tensor  # (B, T) long rotary positions (restart at 0 for each document)
    seg_end: torch.Tensor  # (B, S) long index of the segment's last token, OPEN if not closed
    seg_document: torch.Tensor  # (B, S) long
    seg_opener: torch.Tensor  # (B, S) long token that opened the segment (BAR, TRACK_k, EOS)
    seg_valid: torch.Tensor  # (B, S) bool
    seg_positions: torch.Tensor  # (B, S) long rotary positions of the summaries

    @property
    def shape(self) -> tuple[int, int, int]:
        batch, length = self.tokens.shape
        return batch, length, self.seg_end.shape[1]

    def to(self, device: torch.device | str) -> Layout:
        return Layout(**{name: getattr(self, name).to(device) for name in self.__dataclass_fields__})


def build_layout(
    rows: Sequence[Sequence[np.ndarray]] | Sequence[np.ndarray],
    vocab: Vocabulary,
    *,
    pad_to: int | None = None,
    summaries_to: int | None = None,
) -> Layout:
    """Layout of a batch. Each row is one token sequence, or a list of packed documents.

    Metadata comes from `token_metadata`, the one function training and generation share.
    """
    # Long on purpose (78 lines): one vectorised pass over the packed rows; its arrays serve every mask
    # it builds.
    packed = [[np.asarray(r)] if isinstance(r, np.ndarray) else [np.asarray(d) for d in r] for r in rows]
    lengths = [sum(len(d) for d in docs) for docs in packed]
    length = max([*lengths, pad_to or 0, 1])
    per_row = []
    for docs in packed:
        columns = {key: [] for key in ("tokens", "bar", "slot", "segment", "document", "positions")}
        seg_end, seg_doc, seg_opener = [], [], []
        offset = segments = 0
        for doc_index, doc in enumerate(docs):
            meta = token_metadata(doc, vocab)
            segment = meta["segment"].astype(np.int64)
            in_segment = segment >= 0
            columns["tokens"].append(doc.astype(np.int64))
            columns["bar"].append(meta["bar"])
            columns["slot"].append(meta["slot"])
            columns["segment"].append(np.where(in_segment, segment + segments, segment))
            columns["document"].append(np.full(len(doc), doc_index))
            columns["positions"].append(np.arange(len(doc)))
            count = int(segment.max()) + 1 if len(doc) and in_segment.any() else 0
            if count:
                ends = np.full(count, -1, dtype=np.int64)
                np.maximum.at(ends, segment[in_segment], np.flatnonzero(in_segment) + offset)
                starts = np.full(count, len(doc), dtype=np.int64)
                np.minimum.at(starts, segment[in_segment], np.flatnonzero(in_segment))
                ends[-1] = OPEN  # the last segment of a document is still open
                seg_end.append(ends)
                seg_doc.append(np.full(count, doc_index))
                seg_opener.append(doc[starts].astype(np.int64))
            offset += len(doc)
            segments += count
        per_row.append((columns, seg_end, seg_doc, seg_opener, segments))
    n_summaries = max([row[4] for row in per_row] + [summaries_to or 0, 1])

    batch = len(packed)
    out = {
        "tokens": np.full((batch, length), vocab.pad_id, dtype=np.int64),
        "bar": np.full((batch, length), PADDING, dtype=np.int64),
        "slot": np.full((batch, length), PADDING, dtype=np.int64),
        "segment": np.full((batch, length), PADDING, dtype=np.int64),
        "document": np.full((batch, length), -1, dtype=np.int64),
        "positions": np.zeros((batch, length), dtype=np.int64),
        "seg_end": np.full((batch, n_summaries), OPEN, dtype=np.int64),
        "seg_document": np.full((batch, n_summaries), -1, dtype=np.int64),
        "seg_opener": np.full((batch, n_summaries), vocab.pad_id, dtype=np.int64),
        "seg_valid": np.zeros((batch, n_summaries), dtype=bool),
    }
    for row, (columns, seg_end, seg_doc, seg_opener, segments) in enumerate(per_row):
        used = lengths[row]
        for key, parts in columns.items():
            if parts:
                out[key][row, :used] = np.concatenate(parts)
        if segments:
            out["seg_end"][row, :segments] = np.concatenate(seg_end)
            out["seg_document"][row, :segments] = np.concatenate(seg_doc)
            out["seg_opener"][row, :segments] = np.concatenate(seg_opener)
            out["seg_valid"][row, :segments] = True
    # Padding tokens are their own document (-1) and never a key for anyone else.
    out["document"][out["tokens"] == vocab.pad_id] = -1
    seg_positions = np.where(out["seg_end"] >= OPEN, 0, out["seg_end"])
    # rotary position of a summary: the position of its segment's last token
    seg_positions = np.take_along_axis(out["positions"], np.clip(seg_positions, 0, length - 1), axis=1)
    tensors = {key: torch.from_numpy(value) for key, value in out.items()}
    return Layout(
        is_pad=tensors["tokens"] == vocab.pad_id,
        seg_positions=torch.from_numpy(seg_positions),
        **tensors,
    )


MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def summarise_mask_mod(layout: Layout) -> MaskMod:
    """Summary ``q`` may attend key ``kv`` (SR: own segment's tokens; SS: earlier summaries; itself)."""
    length = layout.tokens.shape[1]
    segment, seg_valid, seg_document = layout.segment, layout.seg_valid, layout.seg_document

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        regular = kv.clamp(max=length - 1)
        summary = (kv - length).clamp(min=0)
        own_segment = segment[b, regular] == q
        earlier = (summary < q) & seg_valid[b, summary] & (seg_document[b, summary] == seg_document[b, q])
        return torch.where(kv < length, own_segment, earlier | (summary == q))

    return mask_mod


@functools.lru_cache(maxsize=4)
def _related_bars(offsets: tuple[int, ...], length: int, device: str) -> torch.Tensor:
    """Whether bars ``i + PADDING`` and ``j + PADDING`` are related, for bar numbers from
    PADDING up to ``length`` (a bar has a token): their distance, either way (when infilling
    the suffix's later bars come before the middle), is one of ``offsets``. One lookup per
    query-key pair instead of a subtraction and a comparison per offset over the whole
    (B, Q, K) grid of a dense mask; built once per length."""
    numbers = torch.arange(PADDING, length, dtype=torch.int32, device=device)
    distance = (numbers[:, None] - numbers[None, :]).abs()
    return torch.isin(distance, torch.tensor(offsets, dtype=torch.int32, device=device))


def _related_bar_table(layout: Layout, related_bar_offsets: Sequence[int]) -> torch.Tensor:
    offsets = tuple(sorted({abs(offset) for offset in related_bar_offsets}))
    return _related_bars(offsets, layout.tokens.shape[1], str(layout.bar.device))


def _token_sees(related_bars: torch.Tensor, query: tuple, key: tuple) -> torch.Tensor:
    """RR but for causality: whether a query token of (document, segment, bar, slot, padding)
    ``query`` (its segment and padding unused) sees a key token of ``key`` (header, own bar,
    or a related bar of its own track or the conductor, in its document, not padding). The
    one statement of the rule, for the predicate and for `dense_update_mask`."""
    query_document, _, query_bar, query_slot, _ = query
    key_document, key_segment, key_bar, key_slot, key_pad = key
    related = related_bars[query_bar - PADDING, key_bar - PADDING] & ((key_slot == query_slot) | (key_slot == 0))
    visible = (key_segment == HEADER) | (key_bar == query_bar) | related
    return visible & (key_document == query_document) & ~key_pad


def _summary_seen(layout: Layout, b, q: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
    """RS: token ``q`` sees the summaries of its document's segments closed before it."""
    closed = (layout.seg_end[b, summary] < q) & layout.seg_valid[b, summary]
    return closed & (layout.seg_document[b, summary] == layout.document[b, q])


def update_mask_mod(layout: Layout, related_bar_offsets: Sequence[int]) -> MaskMod:
    """Regular token ``q`` may attend key ``kv`` (RR: header, own bar, related bars; RS: closed summaries)."""
    length = layout.tokens.shape[1]
    related_bars = _related_bar_table(layout, related_bar_offsets)
    columns = (layout.document, layout.segment, layout.bar, layout.slot, layout.is_pad)

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        regular = kv.clamp(max=length - 1)
        summary = (kv - length).clamp(min=0)
        query = (layout.document[b, q], None, layout.bar[b, q], layout.slot[b, q], None)  # the terms it uses
        sees = _token_sees(related_bars, query, tuple(column[b, regular] for column in columns))
        rr = ((regular <= q) & sees) | (regular == q)  # every token sees itself (padding too: no empty rows)
        return torch.where(kv < length, rr, _summary_seen(layout, b, q, summary))

    return mask_mod


def dense_update_mask(layout: Layout, related_bar_offsets: Sequence[int]) -> torch.Tensor:
    """`update_mask_mod` materialised as a (B, 1, T, T + S) boolean mask, the same values
    built at the level of groups of tokens: every term of RR but ``kv <= q`` and ``kv == q``
    depends only on the (document, segment, bar, slot, padding) of the query and of the key,
    so the predicate is decided once per pair of groups (a few hundred) and spread over the
    (T, T) grid by one lookup, then cut to the causal triangle. About twice as fast as
    evaluating the predicate over the grid, which a training step on a CPU does every batch."""
    batch, length, summaries = layout.shape
    device = layout.tokens.device
    related_bars = _related_bar_table(layout, related_bar_offsets)
    positions = torch.arange(length, device=device)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril_()
    mask = torch.empty(batch, 1, length, length + summaries, dtype=torch.bool, device=device)
    for b in range(batch):
        columns = (layout.document[b], layout.segment[b], layout.bar[b], layout.slot[b], layout.is_pad[b].long())
        groups, group = torch.unique(torch.stack(columns, dim=1), dim=0, return_inverse=True)
        document, segment, bar, slot, is_pad = groups.unbind(dim=1)
        query = (document[:, None], None, bar[:, None], slot[:, None], None)
        sees = _token_sees(related_bars, query, (document, segment, bar, slot, is_pad.bool()))
        rr = mask[b, 0, :, :length]
        torch.logical_and(sees[group[:, None], group[None, :]], causal, out=rr)
        rr.diagonal().fill_(True)  # every token sees itself (padding too: no empty rows)
        mask[b, 0, :, length:] = _summary_seen(layout, b, positions[:, None], torch.arange(summaries, device=device))
    return mask


@dataclass(frozen=True)
class KeyChunk:
    """Queries ``start:stop`` of a dense mask with only the keys some query among them sees."""

    start: int
    stop: int
    keys: torch.Tensor  # (K_c,) long: the key indices, in order
    mask: torch.Tensor  # (B, 1, stop - start, K_c) bool: the dense mask's rows and those columns


def key_chunks(mask: torch.Tensor, queries: int) -> tuple[KeyChunk, ...]:
    """A (B, 1, Q, K) mask cut into chunks of ``queries`` query rows, each keeping the keys that
    any row of the chunk, in any sequence of the batch, sees. The update mask is sparse: a
    token sees its bar, four related bars of its track, the header and the closed summaries,
    about 7 % of a 3,072-token row; chunks of 128 queries of band music keep 800-950 of its
    3,250 keys, where a causal attention reads 1,536 on average. Built once per pass, shared
    by every block (`chunked_attention`)."""
    chunks = []
    for start in range(0, mask.shape[2], queries):
        rows = mask[:, :, start : start + queries]
        keys = rows.flatten(0, 2).any(dim=0).nonzero().squeeze(1)  # every row sees itself: never empty
        chunks.append(KeyChunk(start, start + rows.shape[2], keys, rows.index_select(3, keys)))
    return tuple(chunks)


def dense_mask(mask_mod: MaskMod, batch: int, queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """The predicate materialised as a (B, 1, Q, K) boolean mask for scaled_dot_product_attention."""
    # 32-bit positions: every comparison over the (B, Q, K) grid moves half the bytes
    b = torch.arange(batch, device=device, dtype=torch.int32)[:, None, None]
    q = torch.arange(queries, device=device, dtype=torch.int32)[None, :, None]
    kv = torch.arange(keys, device=device, dtype=torch.int32)[None, None, :]
    h = torch.zeros((), dtype=torch.int32, device=device)
    return mask_mod(b, h, q, kv).expand(batch, queries, keys)[:, None]


def block_mask(mask_mod: MaskMod, batch: int, queries: int, keys: int, device: torch.device):
    """The predicate as a FlexAttention block mask, one per sequence of the batch."""
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(mask_mod, batch, None, queries, keys, device=str(device))
