"""Windows of whole bars: cut from one encoding, equal to encoding the bars on their own."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meloformer_core.encoding import DEFAULT_VOCAB, validate
from meloformer_core.encoding.codec import encode_grid, slice_grid
from meloformer_core.encoding.quantize import to_grid
from meloformer_core.encoding.windows import split_into_windows, window_start
from meloformer_core.midi_io import read_midi
from tests.conftest import FIXTURES
from tests.core.strategies import songs

VOCAB = DEFAULT_VOCAB


def reference_windows(grid, max_tokens: int) -> list[np.ndarray]:
    """Greedy windows, each encoded from its own slice of the song (slow, obviously right)."""
    windows, first = [], 0
    while first < grid.bar_count:
        stop, best = first, None
        while stop < grid.bar_count:
            tokens = encode_grid(slice_grid(grid, first, stop + 1), VOCAB)
            if stop + 1 < grid.bar_count:
                tokens = tokens[:-1]
            if len(tokens) > max_tokens:
                break
            best, stop = tokens, stop + 1
        if best is None:
            first += 1
            continue
        windows.append(best)
        first = stop
    return windows


@settings(max_examples=60)
@given(songs(max_tracks=4, max_quarters=96, max_notes=60), st.integers(40, 160))
def test_windows_equal_encoding_each_slice(song, max_tokens: int) -> None:
    grid = to_grid(song, VOCAB)
    windows, _ = split_into_windows(grid, VOCAB, max_tokens)
    expected = reference_windows(grid, max_tokens)
    assert [w.tolist() for w in windows] == [w.tolist() for w in expected]
    for window in windows:
        assert len(window) <= max_tokens
        validate(window)


def test_real_files_cut_into_grammatical_windows_that_keep_every_bar() -> None:
    grid = to_grid(read_midi(FIXTURES / "bach_chorale_tempo.mid"), VOCAB)
    windows, dropped = split_into_windows(grid, VOCAB, 300)
    assert dropped == 0 and len(windows) > 3
    assert sum(VOCAB.names(w).count("BAR") for w in windows) == grid.bar_count
    first = window_start(grid, VOCAB, 300)
    assert len(encode_grid(slice_grid(grid, first), VOCAB)) - 1 <= 300
    assert first == 0 or len(encode_grid(slice_grid(grid, first - 1), VOCAB)) - 1 > 300
