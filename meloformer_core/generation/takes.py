"""Takes: how many to decode (`auto_takes`), and which one to keep (`typicality_order`)."""

from __future__ import annotations

import numpy as np

from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.vocab import TokenType, Vocabulary
from meloformer_core.metrics import pitch_class_shares
from meloformer_core.sampling_settings import AUTO_MAX_TAKES

# Automatic takes (`SamplingConfig.takes` 0): as many as fit a fixed amount of work. A step
# of r rows (a take, and its guide when guided) costs about STEP_ROWS + r: bench/takes.py on
# this 2-core CPU continued the bundled chorale by 8 bars in 2.55, 3.49, 5.38 and 9.03 s with
# 1, 2, 4 and 8 guided takes (2, 4, 8 and 16 rows), 1.62 s + 0.46 s a row, so a step's fixed
# cost is that of 3.5 rows. A continuation's work is its estimated tokens × that. The budget
# is 1.3× one guided take of the chorale's 8 bars (635 tokens × 5.5 = 3,490): music that
# dense gets one take, and sparser music more takes in about the same time.
AUTO_TAKES_BUDGET = 4_500
STEP_ROWS = 3.5
# the prompt's latest bars: their tokens per bar estimate the new bars'
RECENT_BARS = 8
EMPTY_BAR_TOKENS = 32  # the estimate when the prompt has no bar yet


def auto_takes(prompt: np.ndarray, bars: int, guided: bool, vocab: Vocabulary) -> int:
    """How many takes automatic takes decode: the most (up to `AUTO_MAX_TAKES`) whose
    estimated work fits `AUTO_TAKES_BUDGET`, at least 1."""
    starts = np.flatnonzero(vocab.type_of[prompt] == TokenType.BAR)[-RECENT_BARS:]
    per_bar = (len(prompt) - starts[0]) / len(starts) if len(starts) else EMPTY_BAR_TOKENS
    tokens = max(per_bar, 1.0) * bars
    rows = 2 if guided else 1
    return int(np.clip((AUTO_TAKES_BUDGET / tokens - STEP_ROWS) // rows, 1, AUTO_MAX_TAKES))


def _pitch_class_shares(grid: GridSong) -> np.ndarray:
    """The share of each pitch class among the melodic notes of ``grid`` (counted; zeros if none)."""
    melodic = [slot for slot, (_, is_drum) in enumerate(grid.instruments) if not is_drum]
    return pitch_class_shares(grid.notes[np.isin(grid.notes[:, 0], melodic), 2])


def _shares(values: np.ndarray, size: int) -> np.ndarray:
    """The share of each of ``size`` bins among ``values`` (clipped into them; zeros if none)."""
    counts = np.bincount(np.clip(values, 0, size - 1), minlength=size).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def _rhythm_shares(grid: GridSong) -> tuple[np.ndarray, np.ndarray]:
    """Where in their bars the notes of ``grid`` start (a share for each step from the bar
    line) and how long they are (a share for each octave of lengths), every track counted."""
    onsets, lengths = grid.notes[:, 1], grid.notes[:, 3]
    bars = np.clip(np.searchsorted(grid.bar_starts, onsets, side="right") - 1, 0, max(grid.bar_count - 1, 0))
    longest = int(np.diff(grid.bar_starts).max(initial=1))
    where = _shares(onsets - grid.bar_starts[bars], longest)
    how_long = _shares(np.log2(np.maximum(lengths, 1)).astype(np.int64), LENGTH_OCTAVES)
    return where, how_long


LENGTH_OCTAVES = 16  # note lengths, one bin per doubling of steps


def _mean_overlap(shares: list[np.ndarray]) -> np.ndarray:
    """For each take, the mean intersection of its histogram with each other take's."""
    width = max(len(share) for share in shares)
    table = np.array([np.pad(share, (0, width - len(share))) for share in shares])
    overlap = np.minimum(table[:, None], table[None, :]).sum(axis=2)
    return (overlap.sum(axis=1) - overlap.diagonal()) / max(len(shares) - 1, 1)


def typicality_order(takes: list[GridSong]) -> list[int]:
    """The takes' indices, the most typical first: by the mean overlap of a take's histograms
    with each other take's, pitch classes (melodic notes), where notes start in their bars
    and how long they are (every note) weighing alike. Of several continuations sampled from
    the model, the one most like the others in harmony and rhythm stands for what the model
    expects (a minimum-Bayes-risk choice). The prompt has no vote: a vote for the takes most
    like the song so far picks the ones that restate it (2.5× as many restated bars as real
    music has, issue 22). Ties keep the takes' order."""
    rhythms = [_rhythm_shares(take) for take in takes]
    score = _mean_overlap([_pitch_class_shares(take) for take in takes])
    score += _mean_overlap([where for where, _ in rhythms]) + _mean_overlap([length for _, length in rhythms])
    return sorted(range(len(takes)), key=lambda k: -score[k])
