"""Context windows of whole bars: how training data and generation prompts are cut.

A window is a run of consecutive bars encoded as a sequence of its own: the header, then
the metre, tempo and key in force restated at its first bar (`slice_grid`). Nothing is
ever cut in the middle of a bar.
"""

from __future__ import annotations

import numpy as np

from meloformer_core.encoding.codec import encode_grid, slice_grid
from meloformer_core.encoding.grammar import token_metadata
from meloformer_core.encoding.quantize import GridSong
from meloformer_core.encoding.vocab import Vocabulary

RESTATED = 8  # at most: metre, key and a two-token tempo with its position, opening a window


def bar_token_counts(grid: GridSong, vocab: Vocabulary, stop_bar: int | None = None) -> tuple[int, np.ndarray]:
    """(header tokens, tokens of each bar) of the song's encoding up to ``stop_bar``."""
    stop_bar = grid.bar_count if stop_bar is None else stop_bar
    tokens = encode_grid(slice_grid(grid, 0, stop_bar), vocab)
    bar_of_token = token_metadata(tokens, vocab)["bar"]
    per_bar = np.bincount(bar_of_token[bar_of_token >= 0], minlength=stop_bar + 1)[:stop_bar]
    return int((bar_of_token < 0).sum()), per_bar


def window_start(grid: GridSong, vocab: Vocabulary, budget: int, stop_bar: int | None = None) -> int:
    """The earliest bar from which bars up to ``stop_bar`` encode in at most ``budget`` tokens
    (EOS not counted); the last bar alone when not even that fits."""
    stop_bar = grid.bar_count if stop_bar is None else stop_bar
    header, per_bar = bar_token_counts(grid, vocab, stop_bar)
    from_bar = np.cumsum(per_bar[::-1])[::-1] + header + RESTATED  # an upper bound for bars [w, stop)
    fitting = np.flatnonzero(from_bar <= budget)
    first = int(fitting[0]) if len(fitting) else stop_bar - 1
    while first > 0 and len(encode_grid(slice_grid(grid, first - 1, stop_bar), vocab)) - 1 <= budget:
        first -= 1  # the bound was loose: take earlier bars while they fit
    return first


def split_into_windows(grid: GridSong, vocab: Vocabulary, max_tokens: int) -> tuple[list[np.ndarray], int]:
    """Cut a song into consecutive windows of whole bars, each at most ``max_tokens`` long.

    Returns (the windows' tokens, the number of bars dropped because one bar alone does not
    fit). A song that fits whole is one window ending with EOS; the others end at a bar line.
    """
    whole = encode_grid(grid, vocab)
    if len(whole) <= max_tokens:
        return [whole], 0
    header, per_bar = bar_token_counts(grid, vocab)
    windows: list[np.ndarray] = []
    dropped = 0
    first = 0
    bars = grid.bar_count
    while first < bars:
        stop = first
        size = header + RESTATED + 1  # + EOS
        while stop < bars and size + per_bar[stop] <= max_tokens:
            size += per_bar[stop]
            stop += 1
        if stop == first:  # this bar alone is longer than a window
            dropped += 1
            first += 1
            continue
        tokens = encode_grid(slice_grid(grid, first, stop), vocab)
        if stop < bars:
            tokens = tokens[:-1]  # the song goes on: no EOS
        windows.append(tokens)
        first = stop
    return windows, dropped
