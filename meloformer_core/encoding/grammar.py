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
token (tests/core/test_encoding.py).

`GrammarState` runs the same tracker and answers "which tokens may come next" so that
constrained sampling only ever produces sequences that decode to a valid song.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    TokenType.TEMPO_FINE,
)
_NOTE_FIELD_INTS = frozenset(int(t) for t in _NOTE_FIELDS)


@dataclass(frozen=True)
class TokenMeta:
    token_type: int
    bar: int
    slot: int
    segment: int
    position: int


class _T:
    """`TokenType` values as plain ints: Enum attribute access is slow in Python 3.11's hot loops."""

    PAD, BOS, EOS, INSTRUMENT, BAR, CHORD, TIME_SIG, KEY, TEMPO, TRACK, POSITION, PITCH, DRUM, DURATION, VELOCITY = (
        range(15)
    )
    TEMPO_FINE, FIM_GAP, FIM_MIDDLE, FIM_END = 15, 16, 17, 18


assert [getattr(_T, t.name) for t in TokenType] == [int(t) for t in TokenType]


def token_metadata(tokens: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB) -> dict[str, np.ndarray]:
    """Metadata of every token of a 1-D sequence, as int32 arrays (see module doc)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    count = len(tokens)
    kind = vocab.type_of[tokens].astype(np.int32)
    value = vocab.value_index[tokens]
    index = np.arange(count)
    opens_bar = (kind == TokenType.BAR) | (kind == TokenType.EOS) | (kind == TokenType.FIM_END)
    gap = kind == TokenType.FIM_GAP
    middle = kind == TokenType.FIM_MIDDLE
    opener = opens_bar | (kind == TokenType.TRACK) | gap | middle
    # bar index = running sum of increments: +1 per bar, +n over a gap of n bars, and back
    # to the bar before the gap at FIM_MIDDLE (fixed one FIM_MIDDLE at a time, in order)
    increment = opens_bar.astype(np.int64)
    increment[gap] = value[gap] + 1
    gaps = np.flatnonzero(gap)
    for at in np.flatnonzero(middle).tolist():
        running = np.cumsum(increment[:at]) - 1
        before = int(running[-1]) if at else HEADER
        earlier = gaps[gaps < at]
        saved = (int(running[earlier[-1] - 1]) if earlier[-1] > 0 else HEADER) if len(earlier) else HEADER
        increment[at] = saved - before
    bar = np.cumsum(increment) - 1
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

    __slots__ = ("bar", "position", "saved_bar", "segment", "slot", "vocab")

    def __init__(self, vocab: Vocabulary = DEFAULT_VOCAB) -> None:
        self.vocab = vocab
        self.bar = HEADER
        self.segment = HEADER
        self.slot = HEADER
        self.position = NO_POSITION  # last POSITION value in the current segment
        self.saved_bar = HEADER  # the bar before the latest FIM_GAP

    def feed(self, token: int) -> TokenMeta:
        kind = int(self.vocab.type_of[token])
        if kind == _T.PAD:
            return TokenMeta(kind, PADDING, PADDING, PADDING, PADDING)
        if kind == _T.BAR or kind == _T.EOS or kind == _T.TRACK or kind >= _T.FIM_GAP:
            if kind == _T.BAR or kind == _T.EOS or kind == _T.FIM_END:
                self.bar += 1
            elif kind == _T.FIM_GAP:
                self.saved_bar = self.bar
                self.bar += int(self.vocab.value_index[token]) + 1
            elif kind == _T.FIM_MIDDLE:
                self.bar = self.saved_bar
            self.segment += 1
            self.slot = int(self.vocab.value_index[token]) + 1 if kind == _T.TRACK else 0
            self.position = NO_POSITION
        elif kind == _T.POSITION:
            self.position = int(self.vocab.value_index[token])
        position = self.position if kind in _NOTE_FIELD_INTS else NO_POSITION
        return TokenMeta(kind, self.bar, self.slot, self.segment, position)


class Expect:
    """What the grammar expects next (plain ints, for speed)."""

    BOS = 0
    HEADER = 1  # INSTRUMENT or the first BAR (or FIM_GAP)
    CHORD = 2
    CONDUCTOR = 3  # TIME_SIG / KEY / tempo POSITION, or the end of the conductor segment
    TEMPO = 4
    NOTE_POSITION = 5  # first POSITION after TRACK
    PITCH = 6
    DURATION = 7
    VELOCITY = 8
    AFTER_NOTE = 9  # POSITION / PITCH of a chord / end of the track segment
    END = 10  # after EOS or FIM_END: padding only
    TEMPO_FINE = 11
    PART_START = 12  # after FIM_GAP (a suffix bar or FIM_MIDDLE) or FIM_MIDDLE (a bar)
    NAMES = ("BOS", "HEADER", "CHORD", "CONDUCTOR", "TEMPO", "NOTE_POSITION", "PITCH", "DURATION", "VELOCITY",
             "AFTER_NOTE", "END", "TEMPO_FINE", "PART_START")  # fmt: skip


NORMAL, SUFFIX, MIDDLE = 0, 1, 2  # parts of a sequence; SUFFIX and MIDDLE only when infilling


class GrammarState:
    """Which token may come next. Also the decoder's validator.

    Rules (one bar)::

        BAR CHORD [TIME_SIG] [KEY] (POSITION TEMPO TEMPO_FINE)*  (TRACK ([POSITION] PITCH|DRUM DURATION VELOCITY)+)*

    The first bar of a sequence, of a suffix and of a middle part *restates* its metre and
    its tempo at position 0; positions increase strictly within a segment and stay inside
    the bar; pitches of one onset increase strictly; a track segment appears at most once
    per bar, only for declared tracks, with PITCH for melodic and DRUM for drum tracks;
    EOS ends the song after a bar. Infilling: ``FIM_GAP_n`` (at a segment boundary), the
    suffix bars, ``FIM_MIDDLE``, exactly n bars, ``FIM_END``.
    """

    def __init__(self, vocab: Vocabulary = DEFAULT_VOCAB) -> None:
        self.vocab = vocab
        self.meta = MetadataTracker(vocab)
        self.expect = Expect.BOS
        self.instruments: list[tuple[int, bool]] = []  # (program, is_drum) per track slot
        self.bar_steps = 0
        self.bars = 0
        self.conductor_stage = 0  # 0 after CHORD, 1 after TIME_SIG, 2 after KEY, 3 after a tempo
        self.restating = True  # the current bar must state its metre and its tempo at position 0
        self.used_slots: set[int] = set()
        self.last_pitch = -1
        self.tokens_fed = 0
        self.part = NORMAL
        self.gap = 0  # bars to infill
        self.middle_bars = 0  # bars of the middle part so far
        # (offset, count) of every token type, indexed by type
        self._span = [(vocab.offset[t], vocab.count[t]) for t in TokenType]

    # --- queries -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.expect == Expect.END

    def _may_close_segment(self) -> bool:
        return self.expect == Expect.AFTER_NOTE or (self.expect == Expect.CONDUCTOR and not self.restating)

    def allowed_ranges(self) -> list[tuple[int, int]]:
        """Half-open id ranges ``[start, stop)`` of the tokens that may come next."""
        # Long on purpose (68 lines): the grammar's table: one branch per state, each short.
        span = self._span
        ranges: list[tuple[int, int]] = []

        def allow(token_type: int, start: int = 0, stop: int = 1 << 30) -> None:
            offset, count = span[token_type]
            stop = min(stop, count)
            if start < stop:
                ranges.append((offset + start, offset + stop))

        expect = self.expect
        max_bars = self.vocab.config.max_bars
        if expect == Expect.BOS:
            allow(_T.BOS)
        elif expect == Expect.HEADER:
            if len(self.instruments) < self.vocab.config.max_tracks:
                allow(_T.INSTRUMENT)
            allow(_T.BAR)
            allow(_T.FIM_GAP, 0, max_bars - 1)
        elif expect == Expect.PART_START:
            allow(_T.BAR)
            if self.part == SUFFIX:
                allow(_T.FIM_MIDDLE)
        elif expect == Expect.CHORD:
            allow(_T.CHORD)
        elif expect == Expect.CONDUCTOR:
            stage = self.conductor_stage
            if stage == 0:
                allow(_T.TIME_SIG)
            if stage <= 1 and (stage == 1 or not self.restating):
                allow(_T.KEY)
            if not self.restating:
                allow(_T.POSITION, self.meta.position + 1, self.bar_steps)
            elif stage >= 1:
                allow(_T.POSITION, 0, 1)  # a restating bar states its tempo at its start
        elif expect == Expect.TEMPO:
            allow(_T.TEMPO)
        elif expect == Expect.TEMPO_FINE:
            allow(_T.TEMPO_FINE)
        elif expect == Expect.NOTE_POSITION:
            allow(_T.POSITION, 0, self.bar_steps)
        elif expect == Expect.PITCH:
            allow(self._pitch_type(), self.last_pitch + 1)
        elif expect == Expect.DURATION:
            allow(_T.DURATION)
        elif expect == Expect.VELOCITY:
            allow(_T.VELOCITY)
        elif expect == Expect.AFTER_NOTE:
            allow(_T.POSITION, self.meta.position + 1, self.bar_steps)
            allow(self._pitch_type(), self.last_pitch + 1)
        elif expect == Expect.END:
            allow(_T.PAD)
        if self._may_close_segment():
            for slot in range(len(self.instruments)):
                if slot not in self.used_slots:
                    allow(_T.TRACK, slot, slot + 1)
            part = self.part
            if self.bars < max_bars and (part != MIDDLE or self.middle_bars < self.gap):
                allow(_T.BAR)
            if part == NORMAL:
                allow(_T.EOS)
                allow(_T.FIM_GAP, 0, max_bars - self.bars)
            elif part == SUFFIX:
                allow(_T.FIM_MIDDLE)
            elif self.middle_bars == self.gap:
                allow(_T.FIM_END)
        return ranges

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary of the tokens that may come next."""
        mask = np.zeros(len(self.vocab), dtype=bool)
        for start, stop in self.allowed_ranges():
            mask[start:stop] = True
        return mask

    def is_allowed(self, token: int) -> bool:
        return any(start <= token < stop for start, stop in self.allowed_ranges())

    def _pitch_type(self) -> int:
        return _T.DRUM if self.instruments[self.meta.slot - 1][1] else _T.PITCH

    # --- transitions -------------------------------------------------------------------
    def feed(self, token: int) -> TokenMeta:
        """Advance by one token; raise `EncodingError` if the grammar forbids it."""
        # Long on purpose (63 lines): the grammar's state machine: one branch per token type, each short.
        token = int(token)
        if not self.is_allowed(token):
            name = self.vocab.name(token) if 0 <= token < len(self.vocab) else str(token)
            expected = Expect.NAMES[self.expect]
            raise EncodingError(f"token {self.tokens_fed} ({name}) is not allowed here (expected {expected})")
        kind = int(self.vocab.type_of[token])
        value = int(self.vocab.value_index[token])
        previous_position = self.meta.position
        meta = self.meta.feed(token)
        self.tokens_fed += 1
        if kind == _T.POSITION:
            if self.expect == Expect.CONDUCTOR:
                self.expect = Expect.TEMPO
            else:
                if value != previous_position:
                    self.last_pitch = -1
                self.expect = Expect.PITCH
        elif kind == _T.PITCH or kind == _T.DRUM:
            self.last_pitch = value
            self.expect = Expect.DURATION
        elif kind == _T.DURATION:
            self.expect = Expect.VELOCITY
        elif kind == _T.VELOCITY:
            self.expect = Expect.AFTER_NOTE
        elif kind == _T.TRACK:
            self.used_slots.add(value)
            self.last_pitch = -1
            self.expect = Expect.NOTE_POSITION
        elif kind == _T.BAR:
            self.bars += 1
            if self.part == MIDDLE:
                self.middle_bars += 1
            self.used_slots = set()
            self.expect = Expect.CHORD
        elif kind == _T.CHORD:
            self.conductor_stage = 0
            self.expect = Expect.CONDUCTOR
        elif kind == _T.TIME_SIG:
            self.bar_steps = self.vocab.config.bar_steps(*self.vocab.value(token))  # type: ignore[misc]
            self.conductor_stage = 1
        elif kind == _T.KEY:
            self.conductor_stage = 2
        elif kind == _T.TEMPO:
            self.expect = Expect.TEMPO_FINE
        elif kind == _T.TEMPO_FINE:
            self.restating = False
            self.conductor_stage = 3
            self.expect = Expect.CONDUCTOR
        elif kind == _T.INSTRUMENT:
            self.instruments.append(self.vocab.value(token))  # type: ignore[arg-type]
        elif kind == _T.BOS:
            self.expect = Expect.HEADER
        elif kind == _T.FIM_GAP:
            self.part, self.gap, self.restating = SUFFIX, value + 1, True
            self.expect = Expect.PART_START
        elif kind == _T.FIM_MIDDLE:
            self.part, self.middle_bars, self.restating = MIDDLE, 0, True
            self.expect = Expect.PART_START
        elif kind == _T.EOS or kind == _T.FIM_END:
            self.expect = Expect.END
        return meta


def validate(tokens: np.ndarray | list[int], vocab: Vocabulary = DEFAULT_VOCAB) -> None:
    """Raise `EncodingError` unless the whole sequence is grammatical."""
    state = GrammarState(vocab)
    for token in tokens:
        state.feed(int(token))
