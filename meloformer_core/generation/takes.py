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


def typicality_order(takes: list[GridSong]) -> list[int]:
    """The takes' indices, the most typical first: by the mean overlap of a take's pitch-class
    histogram (melodic notes, counted) with each other take's. Of several continuations
    sampled from the model, the one most like the others stands for what the model expects
    (a minimum-Bayes-risk choice). The prompt has no vote: a vote for the takes most like
    the song so far picks the ones that restate it (2.5× as many restated bars as real
    music has, issue 22). Ties keep the takes' order."""
    shares = np.array([_pitch_class_shares(take) for take in takes]).reshape(len(takes), 12)
    overlap = np.minimum(shares[:, None], shares[None, :]).sum(axis=2)
    score = (overlap.sum(axis=1) - overlap.diagonal()) / max(len(takes) - 1, 1)
    return sorted(range(len(takes)), key=lambda k: -score[k])
