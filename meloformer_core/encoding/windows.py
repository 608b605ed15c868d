"""Context windows of whole bars: how training data and generation prompts are cut.

A window is a run of consecutive bars encoded as a sequence of its own: the header, then
the metre, tempo and key in force restated at its first bar (`slice_grid`). Nothing is
ever cut in the middle of a bar.
"""

from __future__ import annotations

import numpy as np

from meloformer_core.encoding.codec import encode_grid, slice_grid
from meloformer_core.encoding.grammar import token_metadata
from meloformer_core.encoding.grid import GridSong, in_force
from meloformer_core.encoding.vocab import TokenType, Vocabulary

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
    Windows are cut from one encoding of the song, each opening with the header and a
    restated conductor segment: token for token what encoding `slice_grid` of the same
    bars gives (tests/core/test_windows.py), without encoding the song again per window.
    """
    whole = encode_grid(grid, vocab)
    if len(whole) <= max_tokens:
        return [whole], 0
    bars = grid.bar_count
    kinds = vocab.type_of[whole]
    bar_start = np.append(np.flatnonzero(kinds == TokenType.BAR), len(whole) - 1)  # where bars open; then EOS
    header = whole[: bar_start[0]]
    # where each bar's track segments begin: its first TRACK token, or the next bar if none
    tracks = np.flatnonzero(kinds == TokenType.TRACK)
    first_track = (
        tracks[np.minimum(np.searchsorted(tracks, bar_start[:-1]), max(len(tracks) - 1, 0))] if len(tracks) else None
    )
    body_start = bar_start[1:].copy()
    if first_track is not None:
        inside = (first_track >= bar_start[:-1]) & (first_track < bar_start[1:])
        body_start[inside] = first_track[inside]
    windows: list[np.ndarray] = []
    dropped = 0
    first = 0
    while first < bars:
        opening = _restated_conductor(grid, vocab, first, int(whole[bar_start[first] + 1]))
        size = len(header) + len(opening) + int(bar_start[first + 1] - body_start[first])
        stop = first + 1
        while stop < bars and size + int(bar_start[stop + 1] - bar_start[stop]) + (stop + 1 == bars) <= max_tokens:
            size += int(bar_start[stop + 1] - bar_start[stop])
            stop += 1
        if size + (stop == bars) > max_tokens:  # this bar alone is longer than a window
            dropped += 1
            first += 1
            continue
        parts = [header, opening, whole[body_start[first] : bar_start[stop]]]
        if stop == bars:
            parts.append(whole[-1:])  # EOS
        windows.append(np.concatenate(parts).astype(np.int32))
        first = stop
    return windows, dropped


def _restated_conductor(grid: GridSong, vocab: Vocabulary, bar: int, chord_token: int) -> np.ndarray:
    """The conductor segment of ``bar`` as the first bar of a window: metre, key and tempo in force."""
    origin = int(grid.bar_starts[bar])
    end = int(grid.bar_starts[bar + 1])
    numerator, denominator = in_force(grid.time_signatures, bar)[1:]
    tokens = [vocab.bar_id, chord_token, vocab.time_signature(numerator, denominator)]
    key = in_force(grid.keys, bar)
    if key:
        tokens.append(vocab.key(*key[1:]))
    tempos = [(0, in_force(grid.tempos, origin)[1])] + [
        (step - origin, tenths) for step, tenths in grid.tempos if origin < step < end
    ]
    position = vocab.offset[TokenType.POSITION]
    for offset, tenths in tempos:
        tokens += [position + offset, *vocab.tempo(tenths)]
    return np.array(tokens, dtype=np.int64)
