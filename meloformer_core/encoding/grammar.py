"""Token metadata and the grammar: one source of truth for training and generation.

`token_metadata` (vectorised, for training and prefill) and `MetadataTracker`
(incremental, for decoding token by token) derive, from the token prefix alone:

- ``token_type``: the `TokenType` of the token;
- ``bar``: bar index (``HEADER`` = -1 before the first BAR; EOS opens bar ``n``);
- ``slot``: 0 for the conductor segment (BAR … tempo), ``k + 1`` for track slot ``k``;
- ``segment``: running index of the (bar, slot) segment; BAR, TRACK and EOS open one,
  so a token's segment is known the moment it is fed;
- ``position``: onset step within the bar for POSITION, notes and TEMPO, else -1.

Header tokens have bar, slot and segment ``HEADER``; padding has ``PADDING`` everywhere.
Both functions are defined on *any* token sequence, valid or not, and agree on every
token (tests/core/test_grammar.py).

`GrammarState` runs the same tracker and answers "which tokens may come next" so that
constrained sampling only ever produces sequences that decode to a valid song.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

import numpy as np

from meloformer_core.encoding.vocab import DEFAULT_VOCAB, TokenType, Vocabulary
from meloformer_core.errors import EncodingError

HEADER = -1
PADDING = -2
NO_POSITION = -1

_NOTE_FIELDS = (
    TokenType.POSITION,
    TokenType.PITCH,
    TokenType.DRUM,
    TokenType.DURATION,
    TokenType.VELOCITY,
    TokenType.TEMPO,
)


@dataclass(frozen=True)
class TokenMeta:
    token_type: int
    bar: int
    slot: int
    segment: int
    position: int


def token_metadata(tokens: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB) -> dict[str, np.ndarray]:
    """Metadata of every token of a 1-D sequence, as int32 arrays (see module doc)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    count = len(tokens)
    kind = vocab.type_of[tokens].astype(np.int32)
    value = vocab.value_index[tokens]
    index = np.arange(count)
    opens_bar = (kind == TokenType.BAR) | (kind == TokenType.EOS)
    opener = opens_bar | (kind == TokenType.TRACK)
    bar = np.cumsum(opens_bar) - 1
    segment = np.cumsum(opener) - 1
    last_opener = np.maximum.accumulate(np.where(opener, index, -1)) if count else index
    slot_if_opener = np.where(kind == TokenType.TRACK, value + 1, 0)
    slot = np.where(last_opener >= 0, slot_if_opener[np.maximum(last_opener, 0)], HEADER)
    last_position = np.maximum.accumulate(np.where(kind == TokenType.POSITION, index, -1)) if count else index
    has_position = (last_position > last_opener) & np.isin(kind, [int(t) for t in _NOTE_FIELDS])
    position = np.where(has_position, value[np.maximum(last_position, 0)], NO_POSITION)
    is_pad = kind == TokenType.PAD
    return {
        "token_type": kind,
        "bar": np.where(is_pad, PADDING, bar).astype(np.int32),
        "slot": np.where(is_pad, PADDING, slot).astype(np.int32),
        "segment": np.where(is_pad, PADDING, segment).astype(np.int32),
        "position": np.where(is_pad, PADDING, position).astype(np.int32),
    }


class MetadataTracker:
    """The incremental twin of `token_metadata`: feed tokens one by one."""

    __slots__ = ("bar", "position", "segment", "slot", "vocab")

    def __init__(self, vocab: Vocabulary = DEFAULT_VOCAB) -> None:
        self.vocab = vocab
        self.bar = HEADER
        self.segment = HEADER
        self.slot = HEADER
        self.position = NO_POSITION  # last POSITION value in the current segment

    def feed(self, token: int) -> TokenMeta:
        kind = int(self.vocab.type_of[token])
        if kind == TokenType.PAD:
            return TokenMeta(kind, PADDING, PADDING, PADDING, PADDING)
        if kind in (TokenType.BAR, TokenType.EOS, TokenType.TRACK):
            if kind != TokenType.TRACK:
                self.bar += 1
            self.segment += 1
            self.slot = int(self.vocab.value_index[token]) + 1 if kind == TokenType.TRACK else 0
            self.position = NO_POSITION
        elif kind == TokenType.POSITION:
            self.position = int(self.vocab.value_index[token])
        position = self.position if kind in _NOTE_FIELDS else NO_POSITION
        return TokenMeta(kind, self.bar, self.slot, self.segment, position)


class Expect(Enum):
    BOS = auto()
    HEADER = auto()  # INSTRUMENT or the first BAR
    CHORD = auto()
    CONDUCTOR = auto()  # TIME_SIG / KEY / tempo POSITION, or the end of the conductor segment
    TEMPO = auto()
    NOTE_POSITION = auto()  # first POSITION after TRACK
    PITCH = auto()
    DURATION = auto()
    VELOCITY = auto()
    AFTER_NOTE = auto()  # POSITION / PITCH of a chord / end of the track segment
    END = auto()  # after EOS: padding only


class GrammarState:
    """Which token may come next. Also the decoder's validator.

    Rules (one bar)::

        BAR CHORD [TIME_SIG] [KEY] (POSITION TEMPO)*  (TRACK ([POSITION] PITCH|DRUM DURATION VELOCITY)+)*

    The first bar must state its metre and a tempo at position 0; positions increase
    strictly within a segment and stay inside the bar; pitches of one onset increase
    strictly; a track segment appears at most once per bar, only for declared tracks,
    with PITCH for melodic and DRUM for drum tracks; EOS ends the song after a bar.
    """

    def __init__(self, vocab: Vocabulary = DEFAULT_VOCAB) -> None:
        self.vocab = vocab
        self.meta = MetadataTracker(vocab)
        self.expect = Expect.BOS
        self.instruments: list[tuple[int, bool]] = []  # (program, is_drum) per track slot
        self.bar_steps = 0
        self.bars = 0
        self.conductor_stage = 0  # 0 after CHORD, 1 after TIME_SIG, 2 after KEY, 3 after a tempo
        self.tempo_defined = False
        self.used_slots: set[int] = set()
        self.last_pitch = -1
        self.tokens_fed = 0

    # --- queries -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.expect is Expect.END

    @property
    def at_segment_boundary(self) -> bool:
        """True where a BAR, TRACK or EOS may come next (the current segment may close)."""
        return self._may_close_segment()

    def _may_close_segment(self) -> bool:
        if self.expect is Expect.AFTER_NOTE:
            return True
        return self.expect is Expect.CONDUCTOR and self.tempo_defined

    def allowed_ranges(self) -> list[tuple[int, int]]:
        """Half-open id ranges ``[start, stop)`` of the tokens that may come next."""
        vocab = self.vocab
        ranges: list[tuple[int, int]] = []

        def allow(token_type: TokenType, start: int = 0, stop: int | None = None) -> None:
            count = vocab.count[token_type]
            stop = count if stop is None else min(stop, count)
            if start < stop:
                offset = vocab.offset[token_type]
                ranges.append((offset + start, offset + stop))

        expect = self.expect
        if expect is Expect.BOS:
            allow(TokenType.BOS)
        elif expect is Expect.HEADER:
            if len(self.instruments) < vocab.config.max_tracks:
                allow(TokenType.INSTRUMENT)
            allow(TokenType.BAR)
        elif expect is Expect.CHORD:
            allow(TokenType.CHORD)
        elif expect is Expect.CONDUCTOR:
            stage = self.conductor_stage
            if stage == 0:
                allow(TokenType.TIME_SIG)
            if stage <= 1 and (self.bars > 1 or stage == 1):
                allow(TokenType.KEY)
            if self.tempo_defined:
                allow(TokenType.POSITION, self.meta.position + 1, self.bar_steps)
            elif stage >= 1:
                allow(TokenType.POSITION, 0, 1)  # the first bar states a tempo at its start
        elif expect is Expect.TEMPO:
            allow(TokenType.TEMPO)
        elif expect is Expect.NOTE_POSITION:
            allow(TokenType.POSITION, 0, self.bar_steps)
        elif expect is Expect.PITCH:
            allow(self._pitch_type(), self.last_pitch + 1)
        elif expect is Expect.DURATION:
            allow(TokenType.DURATION)
        elif expect is Expect.VELOCITY:
            allow(TokenType.VELOCITY)
        elif expect is Expect.AFTER_NOTE:
            allow(TokenType.POSITION, self.meta.position + 1, self.bar_steps)
            allow(self._pitch_type(), self.last_pitch + 1)
        elif expect is Expect.END:
            allow(TokenType.PAD)
        if self._may_close_segment():
            for slot in range(len(self.instruments)):
                if slot not in self.used_slots:
                    allow(TokenType.TRACK, slot, slot + 1)
            if self.bars < vocab.config.max_bars:
                allow(TokenType.BAR)
            allow(TokenType.EOS)
        return ranges

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary of the tokens that may come next."""
        mask = np.zeros(len(self.vocab), dtype=bool)
        for start, stop in self.allowed_ranges():
            mask[start:stop] = True
        return mask

    def is_allowed(self, token: int) -> bool:
        return any(start <= token < stop for start, stop in self.allowed_ranges())

    def _pitch_type(self) -> TokenType:
        return TokenType.DRUM if self.instruments[self.meta.slot - 1][1] else TokenType.PITCH

    # --- transitions -------------------------------------------------------------------
    def feed(self, token: int) -> TokenMeta:
        """Advance by one token; raise `EncodingError` if the grammar forbids it."""
        token = int(token)
        if not self.is_allowed(token):
            name = self.vocab.name(token) if 0 <= token < len(self.vocab) else str(token)
            raise EncodingError(f"token {self.tokens_fed} ({name}) is not allowed here (expected {self.expect.name})")
        kind = TokenType(int(self.vocab.type_of[token]))
        value = int(self.vocab.value_index[token])
        previous_position = self.meta.position
        meta = self.meta.feed(token)
        self.tokens_fed += 1
        if kind is TokenType.BOS:
            self.expect = Expect.HEADER
        elif kind is TokenType.INSTRUMENT:
            self.instruments.append(self.vocab.value(token))  # type: ignore[arg-type]
        elif kind is TokenType.BAR:
            self.bars += 1
            self.used_slots = set()
            self.expect = Expect.CHORD
        elif kind is TokenType.CHORD:
            self.conductor_stage = 0
            self.expect = Expect.CONDUCTOR
        elif kind is TokenType.TIME_SIG:
            self.bar_steps = self.vocab.config.bar_steps(*self.vocab.value(token))  # type: ignore[misc]
            self.conductor_stage = 1
        elif kind is TokenType.KEY:
            self.conductor_stage = 2
        elif kind is TokenType.POSITION:
            if self.expect is Expect.CONDUCTOR:
                self.expect = Expect.TEMPO
            else:
                if value != previous_position:
                    self.last_pitch = -1
                self.expect = Expect.PITCH
        elif kind is TokenType.TEMPO:
            self.tempo_defined = True
            self.conductor_stage = 3
            self.expect = Expect.CONDUCTOR
        elif kind is TokenType.TRACK:
            self.used_slots.add(value)
            self.last_pitch = -1
            self.expect = Expect.NOTE_POSITION
        elif kind in (TokenType.PITCH, TokenType.DRUM):
            self.last_pitch = value
            self.expect = Expect.DURATION
        elif kind is TokenType.DURATION:
            self.expect = Expect.VELOCITY
        elif kind is TokenType.VELOCITY:
            self.expect = Expect.AFTER_NOTE
        elif kind is TokenType.EOS:
            self.expect = Expect.END
        return meta


def validate(tokens: np.ndarray | list[int], vocab: Vocabulary = DEFAULT_VOCAB) -> None:
    """Raise `EncodingError` unless the whole sequence is grammatical."""
    state = GrammarState(vocab)
    for token in tokens:
        state.feed(int(token))
