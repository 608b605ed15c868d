"""One sequence being generated (`Session`): its caches, grammar, sampling state and
statistics; sessions that share a `DecodingGroup` step and sample together (takes, and
each take's prompt-guidance stream). The window slides at bar lines when the cache fills.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from meloformer_core.encoding.codec import StreamingDecoder, encode_grid, slice_grid
from meloformer_core.encoding.grammar import NO_POSITION, Expect, token_metadata
from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.vocab import CHORD_QUALITIES, ROOT_NAMES, TokenType, Vocabulary
from meloformer_core.encoding.windows import window_start
from meloformer_core.errors import EncodingError, MeloformerError
from meloformer_core.generation.cache import ContextFull, DecodingCache, DecodingGroup, feed_run, step_together
from meloformer_core.generation.sampling import SamplingConfig, choose_tokens
from meloformer_core.gm import playable_range
from meloformer_core.model.transformer import MeloFormer

SLIDE_SHARE = 0.5  # of the context kept when the window slides during generation
BAR_SHARE = 0.25  # longest generated bar, as a share of the context: a slide always fits
# A drum track that has played in this many bars of the prompt keeps to its kit: the model,
# left alone, swapped a groove's ride and maracas for cowbell, toms and congas (`Session._playable`)
KIT_BARS = 2
# ... and keeps its groove: of the chance of what it writes next (a key, its next hit's place,
# the end of its bar), this share goes to what it wrote next from the same place in the
# prompt's bars. Left alone, the model kept the kit but let a groove's ornaments and the
# hi-hat under the kick drop: a tenth of the drums' notes (`Session._keep_groove`)
GROOVE_SHARE = 0.5
# A prompt whose notes (drums aside) keep to the five pitch classes of one pentatonic scale,
# in at least SCALE_NOTES notes over SCALE_BARS bars, keeps its scale: a pitch outside it
# keeps this share of its chance (0: none). Left alone, the model filled Chinese folk tunes
# out to seven notes and more: 6.6 % of new notes off the scale where the real bars have
# 0.4 %. The share was chosen on training tunes (`_scale_bias`, scripts/scale_check.py)
SCALE_SHARE = 0.3
SCALE_NOTES, SCALE_BARS = 16, 4
# A prompt whose notes keep to the seven pitch classes of one major scale (or any of its
# modes), counted the same way, keeps its key in its chords: when a bar moves to another
# chord, one with a tone outside the scale keeps this share of its chance; holding the
# chord, and the moves together, keep theirs (`keep_key`). Left alone, the model gave
# 12.5 % of band bars after such prompts an off-key chord where the real bars have 3.2 %,
# and 3.6 % of their notes fell off the scale where the real bars have 0.9 %
KEY_CHORD_SHARE = 0.3
_PENTATONIC = (0, 2, 4, 7, 9)
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_END = 1 << 20  # a groove's "no more hits in this bar"


class CancelledError(MeloformerError):
    """Generation was cancelled; nothing was changed."""

    def __init__(self) -> None:
        super().__init__("generation cancelled")


@dataclass
class GenerationStats:
    bars_generated: int = 0  # bars written (arranging and infilling add none to the song)
    tokens_generated: int = 0  # tokens sampled
    tokens_fed: int = 0  # known tokens fed through the model, not sampled (arranging: the kept tracks)
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


class Session:
    """One sequence being generated: its caches (rows of a `DecodingGroup`), the decoder
    (grammar + song so far), sampling state and statistics. Takes are sessions that share
    a group and are stepped together (`step`)."""

    def __init__(self, model: MeloFormer, vocab: Vocabulary, prompt: np.ndarray, sampling: SamplingConfig,
                 should_cancel: Callable[[], bool] | None, backend: str, half_weights: bool,
                 can_slide: bool = True, group: DecodingGroup | None = None, take: int = 0,
                 like: Session | None = None) -> None:  # fmt: skip
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
        self.guided = is_guided(sampling, prompt, vocab)
        group = group or decoding_group(model, vocab, 1, self.guided, half_weights)
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
        chord = vocab.offset[TokenType.CHORD]
        self._chords = slice(chord, chord + vocab.count[TokenType.CHORD])
        if like is not None:  # another take of the same prompt: what was read from it, shared
            self._heard, self._grooves, self._scale = like._heard, like._grooves, like._scale
            self._scale_bias, self._key_chord_bias = like._scale_bias, like._key_chord_bias
            self._last_chord = like._last_chord
        else:
            self._heard, self._grooves, self._scale = _prompt_parts(prompt, vocab)
            self._scale_bias = _scale_bias(self._scale, vocab)
            self._key_chord_bias = _key_chord_bias(self._scale, vocab)
            prompt_chords = prompt[vocab.type_of[prompt] == TokenType.CHORD]
            self._last_chord = int(prompt_chords[-1]) - chord if len(prompt_chords) else None  # in `_chords`
        kinds = torch.from_numpy(vocab.type_of.astype(np.int64))
        self._closers = ~torch.isin(kinds, torch.tensor([TokenType.POSITION, TokenType.PITCH, TokenType.DRUM]))

    @property
    def caches(self) -> list[DecodingCache]:
        return [self.cache] if self.guide is None else [self.cache, self.guide]

    def start_bar(self) -> None:
        """Before a BAR token: slide the window if the cache is nearly full."""
        self.bar_tokens = []
        if self.can_slide and self.cache.length > self.capacity - max(64, self.capacity // 8):
            self._slide()

    def enter(self, token: int) -> None:
        """Take ``token`` as the next one (the caller then steps the caches: `step`)."""
        if self.should_cancel is not None and self.should_cancel():
            raise CancelledError
        if self.cache.length >= self.capacity:  # one bar longer than the room left: slide inside the bar
            if not self.can_slide:
                raise MeloformerError(
                    f"the bars to infill do not fit the model's context of {self.capacity} tokens; infill fewer bars"
                )
            self._slide()
        self.decoder.feed(token)
        if self._chords.start <= token < self._chords.stop:
            self._last_chord = token - self._chords.start
        self.bar_tokens.append(token)
        self.history.append(token)

    def feed(self, token: int) -> None:
        """Take ``token`` and step this session alone."""
        self.stats.tokens_fed += 1
        self.enter(token)
        step([self], [token])

    def feed_known(self, tokens: list[int]) -> None:
        """Take known ``tokens`` (kept music) and feed them in one pass (`feed_run`): about
        one step instead of one per token. Token by token when they do not fit."""
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
        return sample_together([self], [allowed])[0]

    def candidates(self, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """For the next token: (its guided logits, the tokens allowed, recent pitches to penalise,
        whether it is drawn from the whole distribution: a note's length or a bar's chord, `choose_tokens`)."""
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
        if GROOVE_SHARE > 0 and slot in self._grooves and state.expect in _GROOVE_STEPS:
            after = _groove_next(self._grooves[slot], state.meta.position, state.last_pitch, vocab)
            logits = self._keep_groove(logits, allowed, after)
        if self._scale_bias is not None and slot in self._heard and state.expect in _PITCH_NEXT:
            logits = logits + self._scale_bias  # `_scale_bias`: a drum track's keys are not pitches
        if self._key_chord_bias is not None and state.expect == Expect.CHORD:
            logits = logits.clone()
            logits[self._chords] = keep_key(logits[self._chords], self._key_chord_bias, self._last_chord)
        return logits, allowed, recent, state.expect in _WHOLE_STEPS

    def _keep_groove(self, logits: torch.Tensor, allowed: torch.Tensor, after: dict[int, float]) -> torch.Tensor:
        """``logits`` with `GROOVE_SHARE` of the chance given to what the prompt's groove writes
        next (``after``, `_groove_next`: a key, a position, or `_END`, shared among the tokens
        that close the track's bar as the model shares it). The lengths and loudness of the hits,
        and whether the track plays a bar at all, stay the model's."""
        probs = torch.softmax(logits.float().masked_fill(~allowed, float("-inf")), dim=-1)
        target = torch.zeros_like(probs)
        for token, share in after.items():
            if token == _END:
                closers = allowed & self._closers
                mass = probs[closers]
                if mass.sum() > 0:
                    target[closers] += share * mass / mass.sum()
            elif allowed[token]:
                target[token] += share
        if not target.sum() > 0:
            return logits
        return torch.log((1 - GROOVE_SHARE) * probs + GROOVE_SHARE * target / target.sum())

    def _playable(self, slot: int) -> torch.Tensor:
        """Every token but the pitches (or drum keys) that the slot's instrument does not play
        and that the slot has not played in the prompt; a drum track that has played in
        `KIT_BARS` bars of the prompt plays only the keys it has played (its kit)."""
        if slot not in self._playable_masks:
            program, is_drum = self.decoder.state.instruments[slot]
            low, high = playable_range(program, is_drum)
            keys, bars = self._heard.get(slot, (np.zeros(0, np.int64), 0))
            if len(keys):  # a part the song already plays outside the range keeps its reach
                low, high = min(low, int(keys.min())), max(high, int(keys.max()))
            mask = torch.ones(len(self.vocab), dtype=torch.bool)
            first = self.vocab.offset[TokenType.DRUM if is_drum else TokenType.PITCH]
            mask[first : first + 128] = False
            if is_drum and bars >= KIT_BARS:
                mask[first + torch.from_numpy(keys)] = True
            else:
                mask[first + low : first + high + 1] = True
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
_WHOLE_STEPS = (Expect.DURATION, Expect.CHORD)  # a note's length, a bar's chord: drawn whole (`choose_tokens`)
_GROOVE_STEPS = (Expect.NOTE_POSITION, Expect.PITCH, Expect.AFTER_NOTE)  # where a drum part's groove is kept


def _prompt_parts(tokens: np.ndarray, vocab: Vocabulary) -> tuple[dict[int, tuple[np.ndarray, int]],
                                                                   dict[int, list[np.ndarray]],
                                                                   np.ndarray | None]:  # fmt: skip
    """What the prompt ``tokens`` play, read once: for each track slot that plays, the
    distinct pitches (or drum keys) it plays and in how many bars; for each drum slot that
    plays in `KIT_BARS` bars, its groove: its hits in each bar it plays, as (position, key)
    rows in the order they are written; and its scale (`prompt_scale`), or None."""
    kinds = vocab.type_of[tokens]
    notes = (kinds == TokenType.PITCH) | (kinds == TokenType.DRUM)
    metadata = token_metadata(tokens, vocab)
    slots, bars, positions = (metadata[name][notes] for name in ("slot", "bar", "position"))
    slots = slots - 1
    pitches = vocab.value_index[tokens[notes]].astype(np.int64)
    drums = kinds[notes] == TokenType.DRUM
    heard, grooves = {}, {}
    for slot in np.unique(slots).tolist():
        mine = slots == slot
        played = np.unique(bars[mine])
        heard[slot] = (np.unique(pitches[mine]), len(played))
        if drums[mine].all() and len(played) >= KIT_BARS:
            grooves[slot] = [np.stack([positions[mine & (bars == bar)], pitches[mine & (bars == bar)]], axis=1)
                             for bar in played.tolist()]  # fmt: skip
    melodic = ~drums
    scale = None
    if melodic.sum() >= SCALE_NOTES and len(np.unique(bars[melodic])) >= SCALE_BARS:
        scale = prompt_scale(pitches[melodic])
    return heard, grooves, scale


def _scale_bias(scale: np.ndarray | None, vocab: Vocabulary) -> torch.Tensor | None:
    """What keeping the prompt's pentatonic ``scale`` adds to a step's logits (`SCALE_SHARE`):
    log of the share on the pitches off it, 0 elsewhere; None when nothing is kept (no
    scale, or a major one). It is added only for tracks that played in the prompt: a track
    the prompt did not hear (a bass arranged under a pentatonic tune plays the roots of
    chords off its scale) is left alone, and a drum track's keys are `DRUM` tokens, never
    touched."""
    if scale is None or len(scale) != len(_PENTATONIC) or SCALE_SHARE == 1:
        return None
    bias = torch.zeros(len(vocab))
    off = vocab.offset[TokenType.PITCH] + np.flatnonzero(~np.isin(np.arange(128) % 12, scale))
    bias[torch.from_numpy(off)] = _log_share(SCALE_SHARE)
    return bias


def _key_chord_bias(scale: np.ndarray | None, vocab: Vocabulary) -> torch.Tensor | None:
    """Over the `CHORD` tokens, in their order: log of `KEY_CHORD_SHARE` for each label with
    a tone off the prompt's major ``scale`` (in C major: D:maj, A:7, B:min …), 0 for the
    others; None when nothing is kept."""
    if scale is None or len(scale) != len(_MAJOR) or KEY_CHORD_SHARE == 1:
        return None
    bias = torch.zeros(vocab.count[TokenType.CHORD])
    for root, name in enumerate(ROOT_NAMES):
        for quality, intervals in CHORD_QUALITIES.items():
            if not np.isin([(root + interval) % 12 for interval in intervals], scale).all():
                bias[vocab.chord(f"{name}:{quality}") - vocab.offset[TokenType.CHORD]] = _log_share(KEY_CHORD_SHARE)
    return bias


def keep_key(chords: torch.Tensor, bias: torch.Tensor, hold: int | None) -> torch.Tensor:
    """The logits ``chords`` of a bar's chord labels with the prompt's key kept: holding the
    last bar's chord (index ``hold``) keeps its chance, and the moves to other chords keep
    theirs together, shared anew after each got ``bias`` (`_key_chord_bias`): the key
    chooses where the harmony moves, not whether it moves (a bias alone gave the hold the
    chance the off-key moves lost)."""
    bias = bias.clone()
    moves = torch.ones_like(bias, dtype=torch.bool)
    if hold is not None:
        moves[hold] = False
        bias[hold] = 0.0
    chance = torch.softmax(chords.float(), 0)
    had, kept = chance[moves].sum(), (chance * bias.exp())[moves].sum()
    if kept > 0:
        bias[moves] += torch.log(had / kept)
    return chords + bias.to(chords.dtype)


def _log_share(share: float) -> float:
    return float(np.log(share)) if share > 0 else float("-inf")


def prompt_scale(pitches: np.ndarray) -> np.ndarray | None:
    """The pitch classes of ``pitches`` when they are exactly those of one pentatonic scale
    (C D E G A, or any of its modes: A C D E G …) or one major scale (C D E F G A B, or any
    of its modes: A natural minor, D dorian …), else None."""
    classes = np.unique(pitches % 12)
    for steps in (_PENTATONIC, _MAJOR):
        if len(classes) == len(steps) and any(
            sorted((root + step) % 12 for step in steps) == classes.tolist() for root in classes.tolist()
        ):
            return classes
    return None


def _groove_next(groove: list[np.ndarray], position: int, key: int, vocab: Vocabulary) -> dict[int, float]:
    """What the groove writes next after its hit ``key`` at ``position`` (key -1: before the
    first key of a hit; position `NO_POSITION`: the start of the bar), as shares of the
    bars that can go on from there: the token of its next key at this position, of its next
    hit's position, or `_END` when the bar has no hit after it."""
    nexts: Counter[int] = Counter()
    for hits in groove:
        later = (hits[:, 0] > position) | ((hits[:, 0] == position) & (hits[:, 1] > key))
        if not later.any():
            nexts[_END] += 1
            continue
        there, hit = (int(v) for v in hits[int(np.argmax(later))])
        if there == position:
            nexts[vocab.offset[TokenType.DRUM] + hit] += 1
        elif key >= 0 or position == NO_POSITION:  # after a key, or at the bar's start: a new hit may come
            nexts[vocab.offset[TokenType.POSITION] + there] += 1
    total = sum(nexts.values())
    return {token: n / total for token, n in nexts.items()}


def is_guided(sampling: SamplingConfig, prompt: np.ndarray, vocab: Vocabulary) -> bool:
    """Whether prompt guidance applies: it is asked for, and the prompt says more than the header."""
    return sampling.prompt_guidance != 1.0 and len(_unheard(prompt, vocab)) < len(prompt)


def decoding_group(model: MeloFormer, vocab: Vocabulary, takes: int, guided: bool, half_weights: bool) -> DecodingGroup:
    """Rows for ``takes`` sessions: take k's cache is row k, its guide's row ``takes + k``
    (a block of its own: the guides are far shorter than the caches they guide)."""
    if not guided:
        return DecodingGroup(model, vocab, takes, half_weights)
    blocks = [range(takes), range(takes, 2 * takes)]
    return DecodingGroup(model, vocab, 2 * takes, half_weights, blocks=blocks)


def step(sessions: list[Session], tokens: list[int]) -> None:
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


def sample_together(sessions: list[Session], allowed: list[torch.Tensor]) -> list[int]:
    """The next token of each session (all with the same sampling settings), among its
    ``allowed`` ones: one filtering pass over all of them, each drawn from its own seed."""
    picked = [session.candidates(mask) for session, mask in zip(sessions, allowed, strict=True)]
    logits, allowed, recent, whole = ([item[part] for item in picked] for part in range(4))
    recent = None if all(r is None for r in recent) else recent
    generators = [session.generator for session in sessions]
    whole_N = torch.tensor(whole) if any(whole) else None  # most steps are neither a length nor a chord
    return choose_tokens(torch.stack(logits), torch.stack(allowed), sessions[0].sampling, generators, recent, whole_N)


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
