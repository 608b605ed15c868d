"""Stored windows longer than the model's context, cut at bar lines when batches are built.

`meloformer-preprocess --max-seq-len L` cuts songs into windows of at most L tokens. A
recipe with a shorter context cuts each longer window again by the same rule as
`split_into_windows` (meloformer_core/encoding/windows.py): greedy runs of whole bars,
each opening with the header and its first bar's conductor segment restating the metre,
key and tempo in force; a bar that alone is longer than the context is dropped. A piece
is token for token what encoding those bars of the song on their own gives
(tests/training/test_cut_windows.py). It works on the tokens (nothing is decoded), so any
preprocessed dataset fits any recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meloformer_core.encoding.vocab import TokenType, Vocabulary
from training.data import DataError, TokenDataset

_TEMPO_EVENT = (TokenType.POSITION, TokenType.TEMPO, TokenType.TEMPO_FINE)


@dataclass(frozen=True)
class _Bars:
    """Where the bars of one window are: what cutting needs, found once per window."""

    tokens: np.ndarray
    kinds: np.ndarray
    bounds: np.ndarray  # (bars + 1,): each bar's BAR token, then the window's end (its EOS, or its length)
    body: np.ndarray  # (bars,): each bar's first TRACK token (the end of its conductor segment), or its end
    has_eos: bool

    @classmethod
    def of(cls, tokens: np.ndarray, vocab: Vocabulary) -> _Bars:
        kinds = vocab.type_of[tokens]
        bar_at = np.flatnonzero(kinds == TokenType.BAR)
        eos = np.flatnonzero(kinds == TokenType.EOS)
        bounds = np.append(bar_at, int(eos[0]) if len(eos) else len(tokens))
        tracks = np.flatnonzero(kinds == TokenType.TRACK)
        body = bounds[1:].copy()
        if len(tracks):
            first_track = tracks[np.minimum(np.searchsorted(tracks, bar_at), len(tracks) - 1)]
            inside = (first_track > bar_at) & (first_track < bounds[1:])
            body[inside] = first_track[inside]
        return cls(tokens, kinds, bounds, body, bool(len(eos)))

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    def opening(self, bar: int, vocab: Vocabulary) -> np.ndarray:
        """The conductor segment of ``bar`` as a window's first bar: BAR, its chord, the metre and
        key in force, the tempo in force at its start (POSITION_0) and its own tempo changes."""
        tokens, kinds = self.tokens, self.kinds
        start, body = int(self.bounds[bar]), int(self.body[bar])
        before = slice(0, body)  # the conductor segments up to this bar's, inclusive
        metres = np.flatnonzero(kinds[before] == TokenType.TIME_SIG)
        keys = np.flatnonzero(kinds[before] == TokenType.KEY)
        head = [int(tokens[start]), int(tokens[start + 1]), int(tokens[metres[-1]])]
        if len(keys):
            head.append(int(tokens[keys[-1]]))
        own = tokens[start + 2 : body][np.isin(kinds[start + 2 : body], _TEMPO_EVENT)]
        position0 = vocab.offset[TokenType.POSITION]
        if not len(own) or int(own[0]) != position0:  # the tempo in force from earlier bars
            tempo = np.flatnonzero(kinds[:start] == TokenType.TEMPO)[-1]
            head += [position0, int(tokens[tempo]), int(tokens[tempo + 1])]
        return np.concatenate([np.array(head, dtype=tokens.dtype), own])

    def runs(self, header: int, max_tokens: int, vocab: Vocabulary) -> tuple[list[tuple[int, int]], int]:
        """Greedy bar ranges [first, stop) of at most ``max_tokens`` tokens, and the bars dropped."""
        runs, dropped, first = [], 0, 0
        while first < self.count:
            # tokens of bars [first, stop): header + opening + bounds[stop] - body[first] (+ EOS at the end)
            room = max_tokens - header - len(self.opening(first, vocab)) + int(self.body[first])
            stop = min(int(np.searchsorted(self.bounds, room, side="right")) - 1, self.count)
            if stop == self.count and self.has_eos and int(self.bounds[stop]) + 1 > room:
                stop -= 1  # the EOS does not fit after the last bar
            if stop <= first:  # this bar alone is longer than the context
                dropped += 1
                first += 1
                continue
            runs.append((first, stop))
            first = stop
        return runs, dropped

    def piece(self, first: int, stop: int, vocab: Vocabulary) -> np.ndarray:
        tokens = self.tokens
        parts = [tokens[: self.bounds[0]], self.opening(first, vocab), tokens[self.body[first] : self.bounds[stop]]]
        if stop == self.count and self.has_eos:
            parts.append(tokens[self.bounds[stop] : self.bounds[stop] + 1])
        return np.concatenate(parts)


def cut_at_bar_lines(tokens: np.ndarray, vocab: Vocabulary, max_tokens: int) -> tuple[list[np.ndarray], int]:
    """A window cut into windows of at most ``max_tokens`` tokens at bar lines, and the bars
    dropped (each alone longer than that). A window that fits is returned as it is."""
    if len(tokens) <= max_tokens:
        return [tokens], 0
    bars = _Bars.of(tokens, vocab)
    runs, dropped = bars.runs(int(bars.bounds[0]), max_tokens, vocab)
    return [bars.piece(first, stop, vocab) for first, stop in runs], dropped


class ContextView:
    """A dataset's windows as a model of context ``max_seq_len`` sees them: the ones that fit
    as they are, each longer one replaced by its pieces (`cut_at_bar_lines`), in order.

    Only the bar ranges are kept; a piece's tokens are built when it is read, so the view
    costs a few integers per piece whatever the dataset's size. It has what `PackedLoader`
    reads of a `TokenDataset`: ``lengths``, ``tokens(index)``, ``vocab`` and ``len()``.
    """

    def __init__(self, dataset: TokenDataset, max_seq_len: int) -> None:
        self.dataset = dataset
        self.vocab = dataset.vocab
        self.max_seq_len = max_seq_len
        long = np.flatnonzero(dataset.lengths > max_seq_len)
        pieces_of = np.ones(len(dataset), dtype=np.int64)
        runs: dict[int, list[tuple[int, int]]] = {}
        lengths: dict[int, list[int]] = {}
        self.bars_dropped = 0
        for index in long.tolist():
            tokens = dataset.tokens(index)
            bars = _Bars.of(tokens, self.vocab)
            found, dropped = bars.runs(int(bars.bounds[0]), max_seq_len, self.vocab)
            runs[index] = found
            lengths[index] = [len(bars.piece(first, stop, self.vocab)) for first, stop in found]
            pieces_of[index] = len(found)
            self.bars_dropped += dropped
        self.windows_cut = len(long)
        self.source = np.repeat(np.arange(len(dataset)), pieces_of)
        self.first_bar = np.full(len(self.source), -1, dtype=np.int64)  # -1: the stored window as it is
        self.stop_bar = np.full(len(self.source), -1, dtype=np.int64)
        self.lengths = dataset.lengths[self.source].copy()
        starts = np.cumsum(pieces_of) - pieces_of
        for index, found in runs.items():
            at = int(starts[index])
            for offset, (first, stop) in enumerate(found):
                self.first_bar[at + offset], self.stop_bar[at + offset] = first, stop
                self.lengths[at + offset] = lengths[index][offset]
        if not len(self.lengths):
            raise DataError(
                f"no window fits the model's context of {max_seq_len} tokens: every bar is longer than that"
            )

    def __len__(self) -> int:
        return len(self.lengths)

    def tokens(self, index: int) -> np.ndarray:
        tokens = self.dataset.tokens(int(self.source[index]))
        first = int(self.first_bar[index])
        if first < 0:
            return tokens
        return _Bars.of(tokens, self.vocab).piece(first, int(self.stop_bar[index]), self.vocab)

    @property
    def token_count(self) -> int:
        return int(self.lengths.sum())

    def summary(self) -> str:
        """One line saying what was cut, or an empty string when every window fit."""
        if not self.windows_cut:
            return ""
        made = len(self) - (len(self.dataset) - self.windows_cut)
        dropped = f"; {self.bars_dropped:,} bars alone longer than that dropped" if self.bars_dropped else ""
        return (f"{self.windows_cut:,} windows longer than the context of {self.max_seq_len:,} tokens cut at bar "
                f"lines into {made:,}{dropped}")  # fmt: skip
