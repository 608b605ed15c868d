"""Presence plans: which tracks a bar being generated may not leave out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.vocab import TokenType, Vocabulary

if TYPE_CHECKING:
    from meloformer_core.generation.session import Session

PHRASE_BARS = 8  # a continued track is due in a new bar where it played this many bars before (`PhrasePresence`)


def played_by_bar(grid: GridSong) -> list[set[int]]:
    """The track slots with a note starting in each bar of ``grid``."""
    onset_bar = np.searchsorted(grid.bar_starts, grid.notes[:, 1], side="right") - 1
    played: list[set[int]] = [set() for _ in range(grid.bar_count)]
    for bar, slot in set(zip(onset_bar.tolist(), grid.notes[:, 0].tolist(), strict=True)):
        played[bar].add(slot)
    return played


class PhrasePresence:
    """Which tracks a continuation must not leave out of a new bar: those that played in
    the bar a phrase (`PHRASE_BARS`, or the whole song when shorter) before it, in the song
    or in the bars generated since. Until each has opened its segment the bar may not close,
    unless it has grown too long. What and how much a track plays is the model's choice, and
    it may bring in tracks that are not due.

    Why: left to itself the model closed bars before the late tracks of a dense song (on
    real band songs it silenced 19 of the 26 tracks after the seventh that played in the
    prompt, and 9 % of the first seven), where real songs keep them. A track that rested a
    phrase ago may rest again; one that played is not dropped. The plan copies the prompt's
    presence, never its notes.
    """

    def __init__(self, grid: GridSong, vocab: Vocabulary, active: bool = True) -> None:
        self.bars = played_by_bar(grid)[-PHRASE_BARS:] if active else []
        self.period = len(self.bars)
        self.due: set[int] = set()
        self._track = (vocab.offset[TokenType.TRACK], vocab.offset[TokenType.TRACK] + vocab.count[TokenType.TRACK])
        self._bar = vocab.bar_id

    def start_bar(self, session: Session) -> None:
        """Before a BAR token: what the bar just finished played, and what the new one owes."""
        if not self.period:
            return
        if session.history:
            self.bars.append(set(session.decoder.state.used_slots))
        self.due = set(self.bars[-self.period])

    def entered(self, token: int) -> None:
        if self._track[0] <= token < self._track[1]:
            self.due.discard(token - self._track[0])

    def allowed(self, session: Session, allowed: torch.Tensor) -> torch.Tensor:
        """``allowed`` without the bar's end while a due track has not opened its segment."""
        if self.due and allowed[self._bar] and len(session.bar_tokens) < session.bar_limit:
            others = allowed.clone()
            others[self._bar] = False
            if others.any():
                return others
        return allowed


def presence_plan(old_notes: np.ndarray, old_bars: np.ndarray, targets: set[int],
                  has_kept: list[bool]) -> list[set[int]]:  # fmt: skip
    """For each bar of an arranged range, the target slots that must play in it.

    Tracks are asked for to be written: the model is not left to close a bar before a
    target it may think rests (after the kept tracks it mostly closed the bar: regenerating
    the chorale's soprano wrote nothing). A target the range held notes of plays in the bars
    where it played before (its rests stay rests); one that held none, a new track, plays in
    every bar where the kept music sounds. What and how much it plays is the model's choice;
    a bar that reaches the session's length limit closes even so.
    """
    before = {slot: set(old_bars[old_notes[:, 0] == slot].tolist()) for slot in targets}
    return [
        {slot for slot in targets if (bar in before[slot] if before[slot] else kept)}
        for bar, kept in enumerate(has_kept)
    ]
