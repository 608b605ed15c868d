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
from dataclasses import dataclass, field

import numpy as np
import torch

from meloformer_core.encoding.codec import StreamingDecoder, decode_grid, encode_grid, slice_grid
from meloformer_core.encoding.grammar import Expect, token_metadata
from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.vocab import TokenType, Vocabulary
from meloformer_core.encoding.windows import window_start
from meloformer_core.errors import EncodingError, MeloformerError
from meloformer_core.gm import playable_range
from meloformer_core.metrics import pitch_class_shares
from meloformer_core.model.decoding import ContextFull, DecodingCache, DecodingGroup, feed_run, step_together
from meloformer_core.model.sampling import SamplingConfig, choose_tokens
from meloformer_core.model.transformer import MeloFormer
from meloformer_core.sampling_settings import AUTO_MAX_TAKES

PROMPT_SHARE = 0.75  # of the context, for the prompt; the rest is room to generate before sliding
SLIDE_SHARE = 0.5  # of the context kept when the window slides during generation
BAR_SHARE = 0.25  # longest generated bar, as a share of the context: a slide always fits
INFILL_PREFIX_SHARE = 0.4  # infilling: the bars before the range …
INFILL_SUFFIX_SHARE = 0.2  # … and after it; the rest of the context is the range's
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
PHRASE_BARS = 8  # a continued track is due in a new bar where it played this many bars before (`PhrasePresence`)


class CancelledError(MeloformerError):
    """Generation was cancelled; nothing was changed."""

    def __init__(self) -> None:
        super().__init__("generation cancelled")


@dataclass
class GenerationStats:
    bars_generated: int = 0  # bars written (arranging and infilling add none to the song)
    tokens_generated: int = 0  # tokens sampled
    tokens_fed: int = 0  # known tokens fed through the model one by one (arranging: the kept tracks)
    prompt_tokens: int = 0
    prefill_s: float = 0.0
    first_bar_s: float = 0.0
    total_s: float = 0.0
    window_slides: int = 0
    bar_seconds: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - self.prefill_s
        return self.tokens_generated / decode_s if decode_s > 0 else 0.0


def _unheard(prompt: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """What prompt guidance's second stream hears: the header (BOS, instruments) and, when
    infilling, that some bars are left out (with nothing heard around them)."""
    in_header = np.isin(vocab.type_of[prompt], (TokenType.BOS, TokenType.INSTRUMENT))
    unheard = prompt[: len(prompt) if in_header.all() else int(np.argmin(in_header))]
    gap = prompt[vocab.type_of[prompt] == TokenType.FIM_GAP]
    if len(gap):
        unheard = np.append(unheard, [gap[0], vocab.offset[TokenType.FIM_MIDDLE]])
    return unheard


class _Session:
    """One sequence being generated: its caches (rows of a `DecodingGroup`), the decoder
    (grammar + song so far), sampling state and statistics. Takes are sessions that share
    a group and are stepped together (`_step`)."""

    def __init__(self, model: MeloFormer, vocab: Vocabulary, prompt: np.ndarray, sampling: SamplingConfig,
                 should_cancel: Callable[[], bool] | None, backend: str, half_weights: bool,
                 can_slide: bool = True, group: DecodingGroup | None = None, take: int = 0,
                 like: _Session | None = None) -> None:  # fmt: skip
        self.started = time.perf_counter()
        self.vocab = vocab
        self.sampling = sampling
        self.should_cancel = should_cancel
        self.backend = backend
        self.can_slide = can_slide  # an infilling layout cannot be cut at a bar line
        self.capacity = model.config.max_seq_len
        self.bar_limit = int(self.capacity * BAR_SHARE)  # longest bar before it is closed
        self.stats = GenerationStats(prompt_tokens=len(prompt))
        if len(prompt) > self.capacity:
            raise MeloformerError(
                f"the last bar of the song takes {len(prompt)} tokens, more than the model's context of {self.capacity}"
            )
        self.unheard = _unheard(prompt, vocab)
        self.guided = _guided(sampling, prompt, vocab)
        group = group or _group(model, vocab, 1, self.guided, half_weights)
        self.cache = group.cache(take)
        self.guide = group.cache(group.rows // 2 + take) if self.guided else None
        self.decoder = StreamingDecoder(vocab)
        for token in prompt.tolist():
            self.decoder.feed(token)
        if like is None:
            self.logits = self.cache.prefill(prompt, backend=backend)
        else:  # another take of the same prompt: its prefilled rows, copied
            self.cache.copy_from(like.cache)
            self.logits = like.logits
        self.generator = torch.Generator(device="cpu")
        seed = sampling.seed + take if sampling.seed is not None else int(torch.seed() % 2**63)
        self.generator.manual_seed(seed)
        self.history: list[int] = []
        self.bar_tokens: list[int] = []  # tokens of the bar in progress
        self.guide_logits = self.logits
        if like is not None and self.guide is not None:
            self.guide.copy_from(like.guide)
            self.guide_logits = like.guide_logits
        else:
            self._restart_guide()
        self.stats.prefill_s = time.perf_counter() - self.started
        pitch = vocab.offset[TokenType.PITCH]
        self._pitches = (pitch, pitch + vocab.count[TokenType.PITCH])
        self._fim_end = vocab.offset[TokenType.FIM_END]
        self._fim_start = slice(vocab.offset[TokenType.FIM_GAP], vocab.offset[TokenType.FIM_END])  # GAP and MIDDLE
        self._playable_masks: dict[int, torch.Tensor] = {}
        self._heard_pitches = like._heard_pitches if like is not None else _pitch_reach(prompt, vocab)

    @property
    def caches(self) -> list[DecodingCache]:
        return [self.cache] if self.guide is None else [self.cache, self.guide]

    def start_bar(self) -> None:
        """Before a BAR token: slide the window if the cache is nearly full."""
        self.bar_tokens = []
        if self.can_slide and self.cache.length > self.capacity - max(64, self.capacity // 8):
            self._slide()

    def enter(self, token: int) -> None:
        """Take ``token`` as the next one (the caller then steps the caches: `_step`)."""
        if self.should_cancel is not None and self.should_cancel():
            raise CancelledError
        if self.cache.length >= self.capacity:  # one bar longer than the room left: slide inside the bar
            if not self.can_slide:
                raise MeloformerError(
                    f"the bars to infill do not fit the model's context of {self.capacity} tokens; infill fewer bars"
                )
            self._slide()
        self.decoder.feed(token)
        self.bar_tokens.append(token)
        self.history.append(token)

    def feed(self, token: int) -> None:
        """Take ``token`` and step this session alone."""
        self.stats.tokens_fed += 1
        self.enter(token)
        _step([self], [token])

    def feed_known(self, tokens: list[int]) -> None:
        """Take known ``tokens`` (kept music) and feed them in runs (`feed_run`): about one
        step per segment instead of one per token. Token by token when they do not fit."""
        if any(cache.length + len(tokens) > cache.capacity for cache in self.caches):
            for token in tokens:  # the window slides on the way
                self.feed(token)
            return
        self.stats.tokens_fed += len(tokens)
        for token in tokens:
            self.enter(token)
        self.logits = feed_run(self.cache, tokens)
        if self.guide is not None:
            self.guide_logits = feed_run(self.guide, tokens)

    def _slide(self) -> None:
        _slide(self.cache, self.decoder, self.bar_tokens, self.backend)
        self.stats.window_slides += 1
        self._restart_guide()

    def _restart_guide(self) -> None:
        """Start the guide stream, or restart it after the main window slid: what it has not
        heard, then the bar in progress. It never holds more than the main window, which holds
        both (an infilling session, whose guide holds two tokens more, never slides)."""
        if self.guide is None:
            return
        self.guide.clear()
        tokens = np.append(self.unheard, np.array(self.bar_tokens, dtype=self.unheard.dtype))
        self.guide_logits = self.guide.prefill(tokens, backend=self.backend)

    def sample(self, allowed: torch.Tensor) -> int:
        """A token among ``allowed`` (already intersected with the grammar by the caller)."""
        return _sample_together([self], [allowed])[0]

    def candidates(self, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """For the next token: (its guided logits, the tokens allowed, recent pitches to penalise)."""
        vocab = self.vocab
        allowed[vocab.eos_id] = False  # the user asked for bars: the song does not end here
        allowed[self._fim_start] = False  # infilling layouts are built by the caller, never sampled
        state = self.decoder.state
        slot = state.meta.slot - 1  # the track being written (-1: the conductor)
        if slot >= 0 and state.expect in _PITCH_NEXT:  # its instrument's pitches only (`gm.playable_range`),
            # unless that leaves nothing
            in_range = allowed & self._playable(slot)
            if in_range.any():
                allowed = in_range
        if len(self.bar_tokens) >= self.bar_limit:  # this bar is long enough: close it at the next boundary
            closers = torch.zeros_like(allowed)
            closers[vocab.bar_id] = allowed[vocab.bar_id]
            closers[self._fim_end] = allowed[self._fim_end]
            if closers.any():
                allowed = closers
        if not allowed.any():
            raise MeloformerError("the grammar allows no continuation (too many bars for the encoding)")
        recent = None
        if self.sampling.repetition_window and self.sampling.repetition_penalty != 1.0:
            recent = torch.tensor(self.history[-self.sampling.repetition_window :], dtype=torch.long)
            recent = recent[(recent >= self._pitches[0]) & (recent < self._pitches[1])]
        self.stats.tokens_generated += 1
        logits = self.logits
        if self.guide is not None:
            logits = self.guide_logits + self.sampling.prompt_guidance * (logits - self.guide_logits)
        return logits, allowed, recent

    def _playable(self, slot: int) -> torch.Tensor:
        """Every token but the pitches (or drum keys) that the slot's instrument does not play
        and that the slot has not played in the prompt."""
        if slot not in self._playable_masks:
            program, is_drum = self.decoder.state.instruments[slot]
            low, high = playable_range(program, is_drum)
            heard = self._heard_pitches.get(slot)
            if heard is not None:  # a part the song already plays outside the range keeps its reach
                low, high = min(low, heard[0]), max(high, heard[1])
            mask = torch.ones(len(self.vocab), dtype=torch.bool)
            first = self.vocab.offset[TokenType.DRUM if is_drum else TokenType.PITCH]
            mask[first : first + low] = False
            mask[first + high + 1 : first + 128] = False
            self._playable_masks[slot] = mask
        return self._playable_masks[slot]

    def grammar_mask(self) -> torch.Tensor:
        return torch.from_numpy(self.decoder.state.allowed())

    def bar_finished(self, done: int) -> None:
        now = time.perf_counter() - self.started
        self.stats.bar_seconds.append(now)
        if done == 1:
            self.stats.first_bar_s = now

    def finish(self, done: int) -> GenerationStats:
        self.stats.bars_generated = done
        self.stats.total_s = time.perf_counter() - self.started
        return self.stats


_PITCH_NEXT = (Expect.PITCH, Expect.AFTER_NOTE)  # the grammar states in which a pitch may come


def _pitch_reach(tokens: np.ndarray, vocab: Vocabulary) -> dict[int, tuple[int, int]]:
    """The lowest and highest pitch (or drum key) each track slot plays in ``tokens``."""
    kinds = vocab.type_of[tokens]
    notes = (kinds == TokenType.PITCH) | (kinds == TokenType.DRUM)
    slots = token_metadata(tokens, vocab)["slot"][notes] - 1
    pitches = vocab.value_index[tokens[notes]]
    return {int(s): (int(pitches[slots == s].min()), int(pitches[slots == s].max())) for s in np.unique(slots)}


def _guided(sampling: SamplingConfig, prompt: np.ndarray, vocab: Vocabulary) -> bool:
    """Whether prompt guidance applies: it is asked for, and the prompt says more than the header."""
    return sampling.prompt_guidance != 1.0 and len(_unheard(prompt, vocab)) < len(prompt)


def _group(model: MeloFormer, vocab: Vocabulary, takes: int, guided: bool, half_weights: bool) -> DecodingGroup:
    """Rows for ``takes`` sessions: take k's cache is row k, its guide's row ``takes + k``
    (a block of its own: the guides are far shorter than the caches they guide)."""
    if not guided:
        return DecodingGroup(model, vocab, takes, half_weights)
    blocks = [range(takes), range(takes, 2 * takes)]
    return DecodingGroup(model, vocab, 2 * takes, half_weights, blocks=blocks)


def _step(sessions: list[_Session], tokens: list[int]) -> None:
    """Step the caches of ``sessions`` (which share a group) together, each with its token."""
    caches = [cache for session in sessions for cache in session.caches]
    fed = [token for session, token in zip(sessions, tokens, strict=True) for _ in session.caches]
    try:
        logits = iter(step_together(caches, fed))
    except ContextFull:  # only an infilling guide can fill up first: its layout never slides
        raise MeloformerError("the bars to generate do not fit the model's context; ask for fewer bars") from None
    for session in sessions:
        session.logits = next(logits)
        if session.guide is not None:
            session.guide_logits = next(logits)


def _sample_together(sessions: list[_Session], allowed: list[torch.Tensor]) -> list[int]:
    """The next token of each session (all with the same sampling settings), among its
    ``allowed`` ones: one filtering pass over all of them, each drawn from its own seed."""
    picked = [session.candidates(mask) for session, mask in zip(sessions, allowed, strict=True)]
    logits, allowed, recent = ([item[part] for item in picked] for part in range(3))
    recent = None if all(r is None for r in recent) else recent
    generators = [session.generator for session in sessions]
    return choose_tokens(torch.stack(logits), torch.stack(allowed), sessions[0].sampling, generators, recent)


def auto_takes(prompt: np.ndarray, bars: int, guided: bool, vocab: Vocabulary) -> int:
    """How many takes automatic takes decode: the most (up to `AUTO_MAX_TAKES`) whose
    estimated work fits `AUTO_TAKES_BUDGET`, at least 1."""
    starts = np.flatnonzero(vocab.type_of[prompt] == TokenType.BAR)[-RECENT_BARS:]
    per_bar = (len(prompt) - starts[0]) / len(starts) if len(starts) else EMPTY_BAR_TOKENS
    tokens = max(per_bar, 1.0) * bars
    rows = 2 if guided else 1
    return int(np.clip((AUTO_TAKES_BUDGET / tokens - STEP_ROWS) // rows, 1, AUTO_MAX_TAKES))


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
    presence: bool = True,
) -> tuple[list[GridSong], list[int], GenerationStats]:
    """Generate ``bars`` new bars after the last bar of ``grid``, ``sampling.takes`` times
    (automatic takes when 0: `auto_takes`).

    The takes (seeds ``seed``, ``seed + 1``, …) are decoded together, one batched step per
    token. Returns (each take's new bars as a grid slice starting at step 0, in seed order;
    the takes' indices, the most typical first: see `typicality_order`; statistics over all takes).
    ``on_bar(k, new_bars)`` is called once every take has finished its k-th new bar (1-based),
    with the bars of the take most typical so far; ``should_cancel`` is polled between
    tokens; ``half_weights`` decodes with 16-bit weights (see `DecodingGroup`); ``presence``
    False leaves the model free to close a bar before a track that is due (`PhrasePresence`).
    """
    # Long on purpose (75 lines): one decoding loop over the bars of every take; the caches and grammars it advances are
    # its local state.
    started = time.perf_counter()
    prompt, first = _prompt(grid, vocab, model.config.max_seq_len)
    prompt_bars = grid.bar_count - first
    guided = _guided(sampling, prompt, vocab)
    takes = sampling.takes or auto_takes(prompt, bars, guided, vocab)
    group = _group(model, vocab, takes, guided, half_weights)
    sessions: list[_Session] = []
    for k in range(takes):  # the first take prefills the prompt, the others copy it
        sessions.append(_Session(model, vocab, prompt, sampling, should_cancel, backend, half_weights, group=group,
                                 take=k, like=sessions[0] if sessions else None))  # fmt: skip
    stats = GenerationStats(bars_generated=bars, prompt_tokens=len(prompt), prefill_s=time.perf_counter() - started)
    plans = [PhrasePresence(grid, vocab, active=presence) for _ in sessions]

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
                plans[k].start_bar(session)
                session.start_bar()
            plans[k].entered(tokens[k])
            session.enter(tokens[k])
            stepping.append(k)
        if min(done) > len(stats.bar_seconds):  # every take has finished one more bar
            stats.bar_seconds.append(time.perf_counter() - started)
            if on_bar is not None:
                so_far = new_bars()
                on_bar(min(done), so_far[typicality_order(so_far)[0]])
        active = stepping
        if active:
            _step([sessions[k] for k in active], [tokens[k] for k in active])
            masks = [plans[k].allowed(sessions[k], sessions[k].grammar_mask()) for k in active]
            chosen = _sample_together([sessions[k] for k in active], masks)
            for k, token in zip(active, chosen, strict=True):
                tokens[k] = token
    stats.first_bar_s = stats.bar_seconds[0]
    stats.tokens_generated = sum(session.stats.tokens_generated for session in sessions)
    stats.window_slides = sum(session.stats.window_slides for session in sessions)
    stats.total_s = time.perf_counter() - started
    takes = new_bars()
    return takes, typicality_order(takes), stats


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

    def start_bar(self, session: _Session) -> None:
        """Before a BAR token: what the bar just finished played, and what the new one owes."""
        if not self.period:
            return
        if session.history:
            self.bars.append(set(session.decoder.state.used_slots))
        self.due = set(self.bars[-self.period])

    def entered(self, token: int) -> None:
        if self._track[0] <= token < self._track[1]:
            self.due.discard(token - self._track[0])

    def allowed(self, session: _Session, allowed: torch.Tensor) -> torch.Tensor:
        """``allowed`` without the bar's end while a due track has not opened its segment."""
        if self.due and allowed[self._bar] and len(session.bar_tokens) < session.bar_limit:
            others = allowed.clone()
            others[self._bar] = False
            if others.any():
                return others
        return allowed


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
    session = _Session(model, vocab, prompt, sampling, should_cancel, backend, half_weights, can_slide=not infill)
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
    signature sampled in the middle of a song would move every bar after it)."""

    closers = (int(TokenType.BAR), int(TokenType.FIM_END))

    def __init__(self, vocab: Vocabulary, targets: set[int]) -> None:
        def of(*kinds: TokenType) -> torch.Tensor:
            mask = torch.zeros(len(vocab), dtype=torch.bool)
            for kind in kinds:
                mask[vocab.offset[kind] : vocab.offset[kind] + vocab.count[kind]] = True
            return mask

        self.track_offset = vocab.offset[TokenType.TRACK]
        self.sampled = ~of(TokenType.TRACK, TokenType.TIME_SIG, TokenType.KEY, TokenType.TEMPO, TokenType.TEMPO_FINE)
        self.sampled[[self.track_offset + slot for slot in targets]] = True
        self.positions = of(TokenType.POSITION)
        self.closing = of(TokenType.BAR, TokenType.FIM_END)

    def allowed(self, session: _Session, due: set[int]) -> torch.Tensor:
        """The tokens the session may sample next; while ``due`` targets have not opened their
        segment (`presence_plan`), not the bar's end, unless the bar has grown too long."""
        allowed = session.grammar_mask() & self.sampled
        if session.decoder.state.expect == Expect.CONDUCTOR:  # a POSITION here would open a tempo change
            allowed &= ~self.positions
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


def _slide(cache: DecodingCache, decoder: StreamingDecoder, bar_tokens: list[int], backend: str) -> None:
    """Refill ``cache`` with the latest complete bars (plus the bar in progress).

    If not even the last complete bar fits beside the bar in progress, the window keeps
    that bar's metre, key and tempo but not its notes: the model forgets rather than fails.
    """
    model, vocab = cache.model, cache.vocab
    grid = decoder.grid()
    in_progress = grid.bar_count - 1 if bar_tokens else grid.bar_count
    capacity = model.config.max_seq_len
    budget = int(capacity * SLIDE_SHARE) - len(bar_tokens)
    if in_progress == 0:  # the first bar alone outgrows the context: there is nothing to slide
        raise EncodingError(
            f"bar {in_progress + 1} holds more tokens ({len(bar_tokens):,} so far) than the model's context of "
            f"{capacity:,} takes: it is too dense for this model"
        )
    first = window_start(grid, vocab, budget, stop_bar=in_progress)
    window = slice_grid(grid, first, in_progress)
    context = encode_grid(window, vocab)[:-1]
    if len(context) > budget:
        last = slice_grid(grid, in_progress - 1, in_progress)
        empty = GridSong(
            last.bar_starts, last.time_signatures, last.tempos, last.keys, last.instruments, last.notes[:0]
        )
        context = encode_grid(empty, vocab)[:-1]
    cache.clear()
    cache.prefill(np.concatenate([context, np.array(bar_tokens, dtype=np.int32)]), backend=backend)
