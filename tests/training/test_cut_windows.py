"""Stored windows cut at bar lines to fit a shorter context: equal to encoding the bars again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meloformer_core.encoding import DEFAULT_VOCAB, validate
from meloformer_core.encoding.codec import encode_grid, slice_grid
from meloformer_core.encoding.quantize import to_grid
from meloformer_core.encoding.vocab import TokenType
from meloformer_core.encoding.windows import split_into_windows
from meloformer_core.midi_io import read_midi
from tests.conftest import FIXTURES
from tests.core.strategies import songs
from training.cut_windows import ContextView, cut_at_bar_lines
from training.data import PackedLoader, TokenDataset

VOCAB = DEFAULT_VOCAB


def bars_of(tokens: np.ndarray) -> int:
    return int((VOCAB.type_of[tokens] == TokenType.BAR).sum())


def start_of(grid, window: np.ndarray, from_bar: int) -> int:
    """The bar of the song where ``window`` starts: encoding its bars from there gives it exactly."""
    count = bars_of(window)
    for first in range(from_bar, grid.bar_count - count + 1):
        tokens = encode_grid(slice_grid(grid, first, first + count), VOCAB)
        if first + count < grid.bar_count:
            tokens = tokens[:-1]  # no EOS: the song goes on
        if tokens.tolist() == window.tolist():
            return first
    raise AssertionError(f"no run of {count} bars from bar {from_bar} on encodes to this window")


def check_pieces_equal_reencoding(grid, first_bar: int, window: np.ndarray, max_tokens: int) -> None:
    """Cutting ``window`` (bars from ``first_bar`` on) gives, piece by piece, what encoding the
    piece's bars of the song gives, in order."""
    pieces, dropped = cut_at_bar_lines(window, VOCAB, max_tokens)
    at = first_bar
    for piece in pieces:
        assert len(piece) <= max_tokens
        validate(piece)
        found = start_of(grid, piece, at)
        assert found - at <= dropped  # only bars too long for a piece are skipped
        at = found + bars_of(piece)
    assert at <= first_bar + bars_of(window)


@settings(max_examples=60, deadline=None)
@given(songs(max_tracks=4, max_quarters=96, max_notes=60), st.integers(40, 160))
def test_cutting_a_whole_song_is_preprocessing_with_that_length(song, max_tokens: int) -> None:
    grid = to_grid(song, VOCAB)
    whole = encode_grid(grid, VOCAB)
    pieces, dropped = cut_at_bar_lines(whole, VOCAB, max_tokens)
    expected, expected_dropped = split_into_windows(grid, VOCAB, max_tokens)
    assert [p.tolist() for p in pieces] == [w.tolist() for w in expected]
    assert dropped == expected_dropped


@settings(max_examples=40, deadline=None)
@given(songs(max_tracks=4, max_quarters=128, max_notes=80), st.integers(120, 300), st.integers(40, 119))
def test_cutting_stored_windows_equals_encoding_their_bars(song, stored: int, max_tokens: int) -> None:
    grid = to_grid(song, VOCAB)
    windows, _ = split_into_windows(grid, VOCAB, stored)
    first = 0
    for window in windows:
        first = start_of(grid, window, first)
        check_pieces_equal_reencoding(grid, first, window, max_tokens)
        first += bars_of(window)


def test_real_files_with_tempo_and_metre_changes() -> None:
    for name in ("bach_chorale_tempo.mid", "drum_groove.mid", "folk_song_3_4.mid", "slip_jig_9_8.mid"):
        grid = to_grid(read_midi(FIXTURES / name), VOCAB)
        whole = encode_grid(grid, VOCAB)
        for max_tokens in (96, 200, 333):
            pieces, dropped = cut_at_bar_lines(whole, VOCAB, max_tokens)
            expected, expected_dropped = split_into_windows(grid, VOCAB, max_tokens)
            assert [p.tolist() for p in pieces] == [w.tolist() for w in expected], (name, max_tokens)
            assert dropped == expected_dropped
            stored, _ = split_into_windows(grid, VOCAB, 400)
            first = 0
            for window in stored:
                first = start_of(grid, window, first)
                check_pieces_equal_reencoding(grid, first, window, max_tokens)
                first += bars_of(window)


def test_a_view_fits_any_dataset_to_any_context(dataset: Path) -> None:
    data = TokenDataset(dataset, "train")
    view = ContextView(data, 128)
    assert view.windows_cut == int((data.lengths > 128).sum()) > 0
    assert int(view.lengths.max()) <= 128 and len(view) > len(data)
    assert "cut at bar lines" in view.summary()
    for index in range(len(view)):
        tokens = view.tokens(index)
        assert len(tokens) == view.lengths[index]
        validate(tokens)
    source = int(view.source[np.flatnonzero(view.first_bar >= 0)[0]])
    expected, _ = cut_at_bar_lines(data.tokens(source), VOCAB, 128)
    got = [view.tokens(i).tolist() for i in np.flatnonzero(view.source == source)]
    assert got == [e.tolist() for e in expected]
    loader = PackedLoader(view, max_seq_len=128, rows_per_batch=2, seed=0)
    assert all(sum(len(w) for w in row) <= 128 for row in loader.next_batch())
    unchanged = ContextView(data, 512)
    assert unchanged.windows_cut == 0 and unchanged.summary() == "" and len(unchanged) == len(data)
    assert all(unchanged.tokens(i).tolist() == data.tokens(i).tolist() for i in range(len(data)))


def test_a_context_shorter_than_every_bar_is_one_clear_error(dataset: Path) -> None:
    from training.data import DataError

    with pytest.raises(DataError, match="no window fits"):
        ContextView(TokenDataset(dataset, "train"), 8)
