"""The generation loops: prefill, then one token at a time under the grammar, bar by bar.

- *continue*: new bars after the song, every token sampled (conductor included);
- *arrange*: within a bar range, each bar's conductor and the kept tracks are fed as
  they are, then only the target tracks are sampled (they come after the kept ones in
  the bar, an order the training recipes teach by shuffling tracks inside bars).

The prompt is windowed by whole bars to fit the context; when the cache fills during a
long generation, the window slides forward to a bar line and the cache is prefilled
again. Every sampled token is allowed by the grammar, so the result always decodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from meloformer_core.encoding.codec import decode_grid, encode_grid, slice_grid
from meloformer_core.encoding.grammar import Expect
from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.vocab import TokenType, Vocabulary
from meloformer_core.encoding.windows import window_start
from meloformer_core.errors import MeloformerError
from meloformer_core.generation.sampling import SamplingConfig
from meloformer_core.generation.session import (
    GenerationStats,
    Session,
    decoding_group,
    is_guided,
    sample_together,
    step,
)
from meloformer_core.generation.takes import auto_takes, typicality_order
from meloformer_core.model.transformer import MeloFormer

PROMPT_SHARE = 0.75  # of the context, for the prompt; the rest is room to generate before sliding
INFILL_PREFIX_SHARE = 0.4  # infilling: the bars before the range …
INFILL_SUFFIX_SHARE = 0.2  # … and after it; the rest of the context is the range's


def _prompt(grid: GridSong, vocab: Vocabulary, capacity: int, stop_bar: int | None = None) -> tuple[np.ndarray, int]:
    """(tokens of the latest whole bars before ``stop_bar`` that fit the prompt share, first bar)."""
    first = window_start(grid, vocab, int(capacity * PROMPT_SHARE), stop_bar=stop_bar)
    return encode_grid(slice_grid(grid, first, stop_bar), vocab)[:-1], first


def continue_grid(
    model: MeloFormer,
    vocab: Vocabulary,
    grid: GridSong,
    bars: int,
    sampling: SamplingConfig,
    *,
    on_bar: Callable[[int, GridSong], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    backend: str = "dense",
    half_weights: bool = False,
) -> tuple[list[GridSong], list[int], GenerationStats]:
    """Generate ``bars`` new bars after the last bar of ``grid``, ``sampling.takes`` times
    (automatic takes when 0: `auto_takes`).

    The takes (seeds ``seed``, ``seed + 1``, …) are decoded together, one batched step per
    token. Returns (each take's new bars as a grid slice starting at step 0, in seed order;
    the takes' indices, the most typical first: see `typicality_order`; statistics over all takes).
    ``on_bar(k, new_bars)`` is called once every take has finished its k-th new bar (1-based),
    with the bars of the take most typical so far; ``should_cancel`` is polled between
    tokens; ``half_weights`` decodes with 16-bit weights (see `DecodingGroup`).
    """
    # Long on purpose (70 lines): one decoding loop over the bars of every take; the caches and grammars it advances are
    # its local state.
    started = time.perf_counter()
    prompt, first = _prompt(grid, vocab, model.config.max_seq_len)
    prompt_bars = grid.bar_count - first
    guided = is_guided(sampling, prompt, vocab)
    takes = sampling.takes or auto_takes(prompt, bars, guided, vocab)
    group = decoding_group(model, vocab, takes, guided, half_weights)
    sessions: list[Session] = []
    for k in range(takes):  # the first take prefills the prompt, the others copy it
        sessions.append(Session(model, vocab, prompt, sampling, should_cancel, backend, half_weights, group=group,
                                 take=k, like=sessions[0] if sessions else None))  # fmt: skip
    stats = GenerationStats(bars_generated=bars, prompt_tokens=len(prompt), prefill_s=time.perf_counter() - started)

    def new_bars() -> list[GridSong]:
        return [slice_grid(session.decoder.grid(), prompt_bars) for session in sessions]

    bar_type = int(TokenType.BAR)
    done = [0] * len(sessions)
    tokens = [vocab.bar_id] * len(sessions)  # the continuation starts a new bar: forced, not sampled
    active = list(range(len(sessions)))
    while active:
        stepping = []
        for k in active:
            session = sessions[k]
            if vocab.type_of[tokens[k]] == bar_type:
                if session.history:  # a bar just finished
                    done[k] += 1
                    if done[k] == bars:
                        continue  # this take is complete
                session.start_bar()
            session.enter(tokens[k])
            stepping.append(k)
        if min(done) > len(stats.bar_seconds):  # every take has finished one more bar
            stats.bar_seconds.append(time.perf_counter() - started)
            if on_bar is not None:
                so_far = new_bars()
                on_bar(min(done), so_far[typicality_order(so_far)[0]])
        active = stepping
        if active:
            step([sessions[k] for k in active], [tokens[k] for k in active])
            chosen = sample_together([sessions[k] for k in active], [sessions[k].grammar_mask() for k in active])
            for k, token in zip(active, chosen, strict=True):
                tokens[k] = token
    stats.first_bar_s = stats.bar_seconds[0]
    stats.tokens_generated = sum(session.stats.tokens_generated for session in sessions)
    stats.window_slides = sum(session.stats.window_slides for session in sessions)
    stats.total_s = time.perf_counter() - started
    takes = new_bars()
    return takes, typicality_order(takes), stats


@dataclass
class ArrangeLayout:
    """What arranging feeds: the prompt, then per bar of the range its known tokens."""

    prompt: np.ndarray  # the bars before the range (infilling: then FIM_GAP, the bars after, FIM_MIDDLE)
    header: int  # tokens of the header at the prompt's start
    first: int  # the song's first bar in the prompt
    bar_tokens: list[np.ndarray]  # each bar of the range: BAR, chord, conductor, the kept tracks
    has_kept: list[bool]  # whether the bar holds kept music
    playing: list[set[int]]  # the targets due in the bar (`presence_plan`)


def arrange_layout(grid: GridSong, vocab: Vocabulary, targets: set[int], first_bar: int, stop_bar: int,
                   capacity: int, suffix_bars: int) -> ArrangeLayout:  # fmt: skip
    """The tokens `arrange_grid` feeds: the target slots' notes in the range left out, the
    bars before it that fit the prompt's share of ``capacity`` (infilling: the bars after
    it that fit theirs, ahead of it), then the range bar by bar."""
    gap = stop_bar - first_bar
    infill = suffix_bars > 0 and stop_bar < grid.bar_count
    notes = grid.notes
    onset_bar = np.searchsorted(grid.bar_starts, notes[:, 1], side="right") - 1
    in_range = (onset_bar >= first_bar) & (onset_bar < stop_bar)
    kept = notes[~(in_range & np.isin(notes[:, 0], sorted(targets)))]
    given = GridSong(grid.bar_starts, grid.time_signatures, grid.tempos, grid.keys, grid.instruments, kept)
    header = 1 + len(grid.instruments)
    suffix = np.zeros(0, dtype=np.int64)
    if infill:
        for stop in range(min(grid.bar_count, stop_bar + suffix_bars), stop_bar, -1):  # as many bars as fit
            suffix = encode_grid(slice_grid(given, stop_bar, stop), vocab)[header:-1]
            if len(suffix) <= capacity * INFILL_SUFFIX_SHARE:
                break
        else:
            suffix = np.zeros(0, dtype=np.int64)
    budget = int(capacity * (INFILL_PREFIX_SHARE if infill else PROMPT_SHARE))
    first = window_start(given, vocab, budget, stop_bar=first_bar) if first_bar else 0
    if infill:  # prefix, the bars after the range, then the range itself, its first bar restated
        prefix = encode_grid(slice_grid(given, first, first_bar), vocab)[:-1] if first_bar else None
        prefix = prefix if prefix is not None else encode_grid(slice_grid(given, 0, 1), vocab)[:header]
        marker = [vocab.offset[TokenType.FIM_GAP] + gap - 1, *suffix.tolist(), vocab.offset[TokenType.FIM_MIDDLE]]
        prompt = np.concatenate([prefix, np.array(marker, dtype=prefix.dtype)])
        middle = encode_grid(slice_grid(given, first_bar, stop_bar), vocab)[header:-1]
    else:  # one continuous encoding: the prompt, then each bar's kept music
        full = encode_grid(slice_grid(given, first, stop_bar), vocab)[:-1]
        prompt = (
            full[: np.flatnonzero(vocab.type_of[full] == TokenType.BAR)[first_bar - first]]
            if first_bar
            else full[:header]
        )
        middle = full[len(prompt) :]
    bar_at = np.append(np.flatnonzero(vocab.type_of[middle] == TokenType.BAR), len(middle))
    bar_tokens = [middle[bar_at[i] : bar_at[i + 1]] for i in range(gap)]
    has_kept = [bool((vocab.type_of[tokens] == TokenType.TRACK).any()) for tokens in bar_tokens]
    playing = presence_plan(notes[in_range], onset_bar[in_range] - first_bar, targets, has_kept)
    return ArrangeLayout(prompt, header, first, bar_tokens, has_kept, playing)


def arrange_grid(
    model: MeloFormer,
    vocab: Vocabulary,
    grid: GridSong,
    targets: set[int],
    first_bar: int,
    stop_bar: int,
    sampling: SamplingConfig,
    *,
    suffix_bars: int = 0,
    on_bar: Callable[[int, GridSong], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    backend: str = "dense",
    half_weights: bool = False,
    presence: bool = True,
) -> tuple[GridSong, GenerationStats]:
    """Write the ``targets`` track slots in bars ``[first_bar, stop_bar)`` of ``grid``.

    The target slots' notes in the range are ignored; everything else is kept and fed to
    the model bar by bar (conductor, then the kept tracks), and only the target tracks
    are sampled after them. With ``suffix_bars`` > 0 this is *infilling*: up to that many
    bars after the range are put ahead of it (FIM_GAP … FIM_MIDDLE), so the new music
    leads into what follows. A bar with no kept notes gets its chord label sampled.
    Returns (bars ``[first_bar, stop_bar)``, as a grid slice starting at step 0; statistics).
    """
    # Long on purpose (70 lines): one decoding loop over the bars; the caches, the grammar and the plan it advances are
    # its local state.
    if not 0 <= first_bar < stop_bar <= grid.bar_count:
        raise MeloformerError(f"bar range {first_bar + 1}-{stop_bar} is outside the song (1-{grid.bar_count})")
    if not targets or not all(0 <= slot < len(grid.instruments) for slot in targets):
        raise MeloformerError("choose at least one existing track to write")
    gap = stop_bar - first_bar
    infill = suffix_bars > 0 and stop_bar < grid.bar_count
    if infill and gap > vocab.config.max_gap_bars:
        raise MeloformerError(f"infill at most {vocab.config.max_gap_bars} bars at a time (asked for {gap})")
    layout = arrange_layout(grid, vocab, targets, first_bar, stop_bar, model.config.max_seq_len, suffix_bars)
    prompt, header, first = layout.prompt, layout.header, layout.first
    capacity = model.config.max_seq_len
    bar_tokens, has_kept, playing = layout.bar_tokens, layout.has_kept, layout.playing
    session = Session(model, vocab, prompt, sampling, should_cancel, backend, half_weights, can_slide=not infill)
    if infill:  # the whole range must fit beside the prompt: share the room left among its bars
        session.bar_limit = max(32, (capacity - len(prompt) - 8) // gap)
    prompt_bars = first_bar - first
    rules = _TargetRules(vocab, targets)
    head = prompt[:header]

    def new_bars() -> GridSong:
        if not infill:
            return slice_grid(session.decoder.grid(), prompt_bars)
        return decode_grid(np.concatenate([head, np.array(session.history, dtype=head.dtype)]), vocab)

    for index, forced in enumerate(bar_tokens):
        session.start_bar()
        forced = forced.tolist()
        if has_kept[index]:  # the bar line, the chord label of the kept music, the kept music
            session.feed_known(forced)
        else:  # no kept music here: the model plans the chord
            session.feed(forced[0])
            session.feed(session.sample(session.grammar_mask()))
            if len(forced) > 2:
                session.feed_known(forced[2:])
        due = set(playing[index]) if presence else set()  # targets that must still open their segment
        while True:  # the target tracks of this bar, sampled
            token = session.sample(rules.allowed(session, due))
            if vocab.type_of[token] in rules.closers:
                break  # the bar is complete; the next one starts with its forced tokens
            due.discard(token - rules.track_offset)
            session.feed(token)
        session.bar_finished(index + 1)
        if on_bar is not None:
            on_bar(index + 1, new_bars())
    return slice_grid(new_bars(), 0, gap), session.finish(gap)


class _TargetRules:
    """What arranging may sample after a bar's kept music: the target tracks' segments and
    the bar's end, never another track, and never the song's metre, key or tempo (a time
    signature sampled in the middle of a song would move every bar after it). A kept
    track's segment is never drawn on: after its last note comes a target or the bar's end
    (a note sampled there would be heard by the model and then thrown away)."""

    closers = (int(TokenType.BAR), int(TokenType.FIM_END))

    def __init__(self, vocab: Vocabulary, targets: set[int]) -> None:
        def of(*kinds: TokenType) -> torch.Tensor:
            mask = torch.zeros(len(vocab), dtype=torch.bool)
            for kind in kinds:
                mask[vocab.offset[kind] : vocab.offset[kind] + vocab.count[kind]] = True
            return mask

        self.track_offset = vocab.offset[TokenType.TRACK]
        self.targets = targets
        self.sampled = ~of(TokenType.TRACK, TokenType.TIME_SIG, TokenType.KEY, TokenType.TEMPO, TokenType.TEMPO_FINE)
        self.sampled[[self.track_offset + slot for slot in targets]] = True
        self.positions = of(TokenType.POSITION)
        self.closing = of(TokenType.BAR, TokenType.FIM_END)
        self.leaving = self.closing.clone()  # after a kept track: a target's segment or the bar's end
        self.leaving[[self.track_offset + slot for slot in targets]] = True

    def allowed(self, session: Session, due: set[int]) -> torch.Tensor:
        """The tokens the session may sample next; while ``due`` targets have not opened their
        segment (`presence_plan`), not the bar's end, unless the bar has grown too long."""
        allowed = session.grammar_mask() & self.sampled
        state = session.decoder.state
        if state.expect == Expect.CONDUCTOR:  # a POSITION here would open a tempo change
            allowed &= ~self.positions
        elif state.meta.slot > 0 and state.meta.slot - 1 not in self.targets:
            allowed &= self.leaving
        if due and len(session.bar_tokens) < session.bar_limit and (allowed & ~self.closing).any():
            allowed &= ~self.closing
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
