"""HID v2: `encode` a `Song` into tokens and `decode` tokens back into a `Song`.

Bar-major order: bar *n* is complete for every track before bar *n + 1* starts::

    BOS INSTRUMENT_a INSTRUMENT_b …                      header: one token per track, in order
    BAR CHORD_C:maj TIME_SIG_3/4 KEY_+2_major POSITION_0 TEMPO_96 TEMPO_FINE_0   conductor segment, bar 0
    TRACK_0 POSITION_0 PITCH_62 DURATION_12 VELOCITY_19 PITCH_66 DURATION_12 VELOCITY_19 …
    TRACK_1 POSITION_0 DRUM_36 DURATION_3 VELOCITY_24 …  one segment per track that sounds
    BAR CHORD_G:7 …                                      bar 1; metre/key/tempo only where they change
    … EOS

The position token is left out when a note starts where the previous note of its
segment started. ``decode(encode(song)) == quantize(song)`` holds exactly for every
song (see `quantize` for what ``q`` does); the encoder is vectorised with numpy so that
reading and encoding stay well above 200 files per second per core.
"""

from __future__ import annotations

import numpy as np

from meloformer_core.encoding.chords import bar_chords
from meloformer_core.encoding.grammar import _T, GrammarState
from meloformer_core.encoding.grid import GridSong, in_force
from meloformer_core.encoding.quantize import from_grid, to_grid
from meloformer_core.encoding.vocab import DEFAULT_VOCAB, TokenType, Vocabulary
from meloformer_core.errors import EncodingError
from meloformer_core.music import Song


def encode(song: Song, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """Tokens of ``song`` (an int32 array ending with EOS)."""
    return encode_grid(to_grid(song, vocab), vocab)


def decode(tokens: np.ndarray | list[int], vocab: Vocabulary = DEFAULT_VOCAB) -> Song:
    """The song the tokens describe. Raises `EncodingError` on an ungrammatical sequence.

    A sequence may stop anywhere (a generation cut short): an unfinished note is dropped.
    """
    return from_grid(decode_grid(tokens, vocab))


def encode_grid(grid: GridSong, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    # Long on purpose (67 lines): one pass over the bars, writing each bar's tokens in grammar order.
    config = vocab.config
    if len(grid.instruments) > config.max_tracks:
        raise EncodingError(f"song has {len(grid.instruments)} tracks; the encoding holds at most {config.max_tracks}")
    header = [vocab.bos_id] + [vocab.instrument(program, is_drum) for program, is_drum in grid.instruments]
    bar_starts = grid.bar_starts
    bar_count = grid.bar_count

    # --- notes of every track, ordered by (bar, slot, onset, pitch) ------------------------
    slot, onset, pitch, duration, velocity = grid.notes.T
    bar = np.searchsorted(bar_starts, onset, side="right") - 1
    position = onset - bar_starts[bar]
    # One int64 key: slots < 2**6, positions < 2**8 and pitches < 2**7 (checked by the config).
    order = np.argsort((((bar * 64 + slot) << 8) + position) * 128 + pitch)
    onset, pitch, duration, velocity, slot, bar, position = (
        a[order] for a in (onset, pitch, duration, velocity, slot, bar, position)
    )
    drum_slot = np.array([is_drum for _, is_drum in grid.instruments] + [False], dtype=bool)
    is_drum = drum_slot[slot]
    melodic = ~is_drum
    chords = bar_chords(bar[melodic], onset[melodic], pitch[melodic], duration[melodic], bar_starts[1:], bar_count)

    count = len(onset)
    new_segment = np.ones(count, dtype=bool)
    new_segment[1:] = (bar[1:] != bar[:-1]) | (slot[1:] != slot[:-1])
    new_onset = new_segment.copy()
    new_onset[1:] |= onset[1:] != onset[:-1]
    per_note = 3 + new_segment.astype(np.int64) + new_onset
    first = np.cumsum(per_note) - per_note
    note_tokens = np.empty(int(per_note.sum()), dtype=np.int64)
    note_tokens[first[new_segment]] = vocab.offset[TokenType.TRACK] + slot[new_segment]
    at_position = first + new_segment
    note_tokens[at_position[new_onset]] = vocab.offset[TokenType.POSITION] + position[new_onset]
    at_pitch = at_position + new_onset
    pitch_offset = np.where(is_drum, vocab.offset[TokenType.DRUM], vocab.offset[TokenType.PITCH])
    note_tokens[at_pitch] = pitch_offset + pitch
    note_tokens[at_pitch + 1] = vocab.offset[TokenType.DURATION] + np.searchsorted(config.duration_bin_array, duration)
    note_tokens[at_pitch + 2] = vocab.offset[TokenType.VELOCITY] + velocity
    note_bar = np.repeat(bar, per_note)

    # --- conductor segments (one per bar, also for empty bars) -----------------------------
    signatures = {b: (n, d) for b, n, d in grid.time_signatures}
    keys = {b: (s, m) for b, s, m in grid.keys}
    tempo_steps = np.array([step for step, _ in grid.tempos], dtype=np.int64)
    tempo_bars = np.searchsorted(bar_starts, tempo_steps, side="right") - 1
    tempos_by_bar: dict[int, list[tuple[int, int]]] = {}
    for (step, bpm), tempo_bar in zip(grid.tempos, tempo_bars.tolist(), strict=True):
        tempos_by_bar.setdefault(tempo_bar, []).append((step - int(bar_starts[tempo_bar]), bpm))
    conductor: list[int] = []
    conductor_bar: list[int] = []
    position_offset = vocab.offset[TokenType.POSITION]
    for bar_index in range(bar_count):
        segment = [vocab.bar_id, vocab.chord(chords[bar_index])]
        if bar_index in signatures:
            segment.append(vocab.time_signature(*signatures[bar_index]))
        if bar_index in keys:
            segment.append(vocab.key(*keys[bar_index]))
        for tempo_position, bpm in tempos_by_bar.get(bar_index, ()):
            segment += [position_offset + tempo_position, *vocab.tempo(bpm)]
        conductor += segment
        conductor_bar += [bar_index] * len(segment)

    # --- merge: conductor segment of bar n, then its track segments -------------------------
    body = np.concatenate([np.array(conductor, dtype=np.int64), note_tokens])
    sort_key = np.concatenate([np.array(conductor_bar, dtype=np.int64) * 2, note_bar * 2 + 1])
    body = body[np.argsort(sort_key, kind="stable")]
    return np.concatenate([np.array(header, dtype=np.int64), body, [vocab.eos_id]]).astype(np.int32)


def decode_grid(tokens: np.ndarray | list[int], vocab: Vocabulary = DEFAULT_VOCAB) -> GridSong:
    tokens = np.asarray(tokens, dtype=np.int64)
    kinds = vocab.type_of[tokens]
    if (kinds == TokenType.FIM_GAP).any():
        validate_prefix = GrammarState(vocab)
        for token in tokens.tolist():  # the infilling layout itself must be grammatical
            validate_prefix.feed(token)
        tokens = fim_to_canonical(tokens, vocab)
    decoder = StreamingDecoder(vocab)
    for token in tokens.tolist():
        decoder.feed(token)
        if decoder.state.finished:
            break
    return decoder.grid()


def fim_to_canonical(tokens: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """An infilling sequence (prefix, FIM_GAP, suffix, FIM_MIDDLE, middle, FIM_END) in bar order.

    The restated conductor segments at the start of the middle and of the suffix stay:
    restating the metre and tempo in force is grammatical anywhere. An unfinished sequence
    gives the prefix and the middle so far.
    """
    kinds = vocab.type_of[tokens]
    gap = int(np.flatnonzero(kinds == TokenType.FIM_GAP)[0])
    middles = np.flatnonzero(kinds == TokenType.FIM_MIDDLE)
    middle = int(middles[0]) if len(middles) else len(tokens)
    ends = np.flatnonzero(kinds == TokenType.FIM_END)
    end = int(ends[0]) if len(ends) else len(tokens)
    parts = [tokens[:gap], tokens[middle + 1 : end]]
    if len(ends):  # complete: the suffix goes after the middle, at its true bars
        parts += [tokens[gap + 1 : middle], np.array([vocab.eos_id])]
    # unfinished: where the suffix starts is not known yet, so it is left out
    return np.concatenate(parts).astype(np.int64)


class StreamingDecoder:
    """Decode token by token (generation streams bars through this); validates the grammar."""

    def __init__(self, vocab: Vocabulary = DEFAULT_VOCAB) -> None:
        self.vocab = vocab
        self.state = GrammarState(vocab)
        self.bar_starts: list[int] = []
        self.bar_length = 0
        self.signatures: list[tuple[int, int, int]] = []
        self.keys: list[tuple[int, int, bool]] = []
        self.tempos: list[tuple[int, int]] = []
        self.rows: list[list[int]] = []  # slot, onset, pitch, duration, velocity
        self._pending: list[int] = []  # the note being read: slot, onset, pitch, duration
        self._bins = vocab.config.duration_bins

    def feed(self, token: int) -> None:
        vocab = self.vocab
        meta = self.state.feed(token)
        kind = meta.token_type
        value = int(vocab.value_index[token])
        if kind == _T.BAR:
            self.bar_starts.append(self.bar_starts[-1] + self.bar_length if self.bar_starts else 0)
        elif kind == _T.TIME_SIG:
            numerator, denominator = vocab.value(token)  # type: ignore[misc]
            self.bar_length = vocab.config.bar_steps(numerator, denominator)
            self.signatures.append((meta.bar, numerator, denominator))
        elif kind == _T.KEY:
            sharps, minor = vocab.value(token)  # type: ignore[misc]
            self.keys.append((meta.bar, sharps, minor))
        elif kind == _T.TEMPO:
            self._pending = [self.bar_starts[-1] + meta.position, int(vocab.value(token)) * 10]  # type: ignore[call-overload]
        elif kind == _T.TEMPO_FINE:
            self.tempos.append((self._pending[0], self._pending[1] + value))
        elif kind == _T.PITCH or kind == _T.DRUM:
            self._pending = [meta.slot - 1, self.bar_starts[-1] + meta.position, value]
        elif kind == _T.DURATION:
            self._pending.append(self._bins[value])
        elif kind == _T.VELOCITY:
            self.rows.append([*self._pending, value])

    def grid(self) -> GridSong:
        """Everything decoded so far (an unfinished note is left out)."""
        if not self.state.instruments and not self.bar_starts:
            raise EncodingError("token sequence holds neither a track nor a bar")
        ends = [self.bar_starts[-1] + self.bar_length] if self.bar_starts else [0]  # no bar yet: an empty song
        bars = np.array([*self.bar_starts, *ends], dtype=np.int64)
        notes = np.array(self.rows, dtype=np.int64).reshape(-1, 5)
        notes = notes[np.lexsort((notes[:, 2], notes[:, 1], notes[:, 0]))]
        return GridSong(
            bars, list(self.signatures), list(self.tempos), list(self.keys), list(self.state.instruments), notes
        )


def slice_grid(grid: GridSong, first_bar: int, stop_bar: int | None = None) -> GridSong:
    """Bars ``[first_bar, stop_bar)`` as a song of their own, starting at step 0.

    The metre, tempo and key in force at ``first_bar`` are restated there, so the slice
    encodes to a grammatical sequence (the context window of training and generation).
    Notes keep their full duration even if they sound past ``stop_bar``.
    """
    stop_bar = grid.bar_count if stop_bar is None else min(stop_bar, grid.bar_count)
    if not 0 <= first_bar < stop_bar:
        raise EncodingError(f"empty bar range [{first_bar}, {stop_bar})")
    origin = int(grid.bar_starts[first_bar])
    end = int(grid.bar_starts[stop_bar])
    signatures = [(0, *in_force(grid.time_signatures, first_bar)[1:])] + [
        (b - first_bar, n, d) for b, n, d in grid.time_signatures if first_bar < b < stop_bar
    ]
    tempos = [(0, in_force(grid.tempos, origin)[1])] + [
        (step - origin, bpm) for step, bpm in grid.tempos if origin < step < end
    ]
    key = in_force(grid.keys, first_bar)
    keys = [(0, *key[1:])] if key else []
    keys += [(b - first_bar, s, m) for b, s, m in grid.keys if first_bar < b < stop_bar]
    onset = grid.notes[:, 1]
    notes = grid.notes[(onset >= origin) & (onset < end)].copy()
    notes[:, 1] -= origin
    return GridSong(
        grid.bar_starts[first_bar : stop_bar + 1] - origin, signatures, tempos, keys, list(grid.instruments), notes
    )
