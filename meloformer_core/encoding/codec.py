"""HID v2: `encode` a `Song` into tokens and `decode` tokens back into a `Song`.

Bar-major order: bar *n* is complete for every track before bar *n + 1* starts::

    BOS INSTRUMENT_a INSTRUMENT_b …                      header: one token per track, in order
    BAR CHORD_C:maj TIME_SIG_3/4 KEY_+2_major POSITION_0 TEMPO_96     conductor segment, bar 0
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
from meloformer_core.encoding.quantize import GridSong, from_grid, to_grid
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
            segment += [position_offset + tempo_position, vocab.tempo(bpm)]
        conductor += segment
        conductor_bar += [bar_index] * len(segment)

    # --- merge: conductor segment of bar n, then its track segments -------------------------
    body = np.concatenate([np.array(conductor, dtype=np.int64), note_tokens])
    sort_key = np.concatenate([np.array(conductor_bar, dtype=np.int64) * 2, note_bar * 2 + 1])
    body = body[np.argsort(sort_key, kind="stable")]
    return np.concatenate([np.array(header, dtype=np.int64), body, [vocab.eos_id]]).astype(np.int32)


def decode_grid(tokens: np.ndarray | list[int], vocab: Vocabulary = DEFAULT_VOCAB) -> GridSong:
    state = GrammarState(vocab)
    config = vocab.config
    bar_starts: list[int] = []
    bar_length = 0
    signatures: list[tuple[int, int, int]] = []
    keys: list[tuple[int, int, bool]] = []
    tempos: list[tuple[int, int]] = []
    rows: list[list[int]] = []  # slot, onset, pitch, duration, velocity
    pending: list[int] = []  # the note being read: slot, onset, pitch, duration
    values = vocab.value_index
    types = vocab.type_of
    bins = config.duration_bins
    for token in np.asarray(tokens, dtype=np.int64).tolist():
        meta = state.feed(token)
        kind = int(types[token])
        value = int(values[token])
        if kind == _T.BAR:
            bar_starts.append(bar_starts[-1] + bar_length if bar_starts else 0)
        elif kind == _T.TIME_SIG:
            numerator, denominator = vocab.value(token)  # type: ignore[misc]
            bar_length = config.bar_steps(numerator, denominator)
            signatures.append((meta.bar, numerator, denominator))
        elif kind == _T.KEY:
            sharps, minor = vocab.value(token)  # type: ignore[misc]
            keys.append((meta.bar, sharps, minor))
        elif kind == _T.TEMPO:
            tempos.append((bar_starts[-1] + meta.position, int(vocab.value(token))))  # type: ignore[arg-type]
        elif kind == _T.PITCH or kind == _T.DRUM:
            pending = [meta.slot - 1, bar_starts[-1] + meta.position, value]
        elif kind == _T.DURATION:
            pending.append(bins[value])
        elif kind == _T.VELOCITY:
            rows.append([*pending, value])
        elif kind == _T.EOS:
            break
    if not bar_starts:
        raise EncodingError("token sequence holds no bar")
    bar_starts.append(bar_starts[-1] + bar_length)
    notes = np.array(rows, dtype=np.int64).reshape(-1, 5)
    notes = notes[np.lexsort((notes[:, 2], notes[:, 1], notes[:, 0]))]
    bars = np.array(bar_starts, dtype=np.int64)
    return GridSong(bars, signatures, tempos, keys, list(state.instruments), notes)
