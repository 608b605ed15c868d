"""Training data: memory-mapped Arrow shards, packed batches, per-rank order, exact resume.

A *plan* for an epoch is a deterministic function of (seed, epoch, dataset): the windows
are shuffled, packed into rows of at most ``max_seq_len`` tokens (several windows per
row, each its own document: attention never crosses them), and the rows grouped into
micro-batches. Rank ``r`` of ``w`` takes micro-batches ``r, r + w, …``. The loader's state
is just (epoch, micro-batch index): a resumed run continues at the exact sample.

Augmentation, also deterministic per (seed, epoch, window): transposition of melodic
pitches (with the chord roots and key signatures that go with them) within the MIDI
range, new dynamic levels for some tracks, and optional tempo jitter. Augmentations are
token → token functions applied to a window, so others (such as shuffling the track order
inside bars) slot in beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from meloformer_core.encoding.codec import decode_grid, encode_grid
from meloformer_core.encoding.grammar import token_metadata
from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.vocab import DEFAULT_VOCAB, NO_CHORD, ROOT_NAMES, TokenType, Vocabulary
from meloformer_core.errors import MeloformerError

FORMAT = "meloformer-dataset"


class DataError(MeloformerError):
    """A dataset directory is missing, empty, or made with another vocabulary."""


class TokenDataset:
    """The windows of one split of a preprocessed dataset, memory-mapped."""

    def __init__(self, directory: str | Path, split: str = "train", vocab: Vocabulary = DEFAULT_VOCAB) -> None:
        import pyarrow as pa

        root = Path(directory)
        manifest_path = root / "manifest.json"
        if not root.is_dir():
            raise DataError(f"{root}: no such dataset directory (run meloformer-preprocess first)")
        if not manifest_path.is_file():
            raise DataError(f"{root}: no manifest.json; preprocessing has not finished there")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise DataError(f"{manifest_path}: not a MeloFormer dataset manifest")
        if manifest.get("vocab_hash") != vocab.hash:
            raise DataError(
                f"{root}: preprocessed with vocabulary {manifest.get('vocab_hash')}, but this MeloFormer uses "
                f"{vocab.hash}; preprocess the corpus again"
            )
        self.manifest = manifest
        self.vocab = vocab
        self._values: list[np.ndarray] = []
        self._offsets: list[np.ndarray] = []
        shard_of, row_of, lengths = [], [], []
        for index, shard in enumerate(manifest["shards"]):
            source = pa.memory_map(str(root / shard["file"]))
            table = pa.ipc.open_file(source).read_all()
            tokens = table.column("tokens").combine_chunks()
            self._values.append(tokens.values.to_numpy(zero_copy_only=True))
            self._offsets.append(tokens.offsets.to_numpy(zero_copy_only=True))
            wanted = table.column("valid").to_numpy() == (split == "valid")
            rows = np.flatnonzero(wanted)
            shard_of.append(np.full(len(rows), index))
            row_of.append(rows)
            lengths.append(table.column("length").to_numpy()[rows])
        self.shard_of = np.concatenate(shard_of) if shard_of else np.zeros(0, dtype=np.int64)
        self.row_of = np.concatenate(row_of) if row_of else np.zeros(0, dtype=np.int64)
        self.lengths = np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, dtype=np.int64)
        if not len(self.lengths):
            raise DataError(f"{root}: the {split} split is empty")

    def __len__(self) -> int:
        return len(self.lengths)

    def tokens(self, index: int) -> np.ndarray:
        shard, row = int(self.shard_of[index]), int(self.row_of[index])
        offsets = self._offsets[shard]
        return self._values[shard][offsets[row] : offsets[row + 1]].astype(np.int64)

    @property
    def token_count(self) -> int:
        return int(self.lengths.sum())


@dataclass(frozen=True)
class Augmentation:
    max_transpose: int = 5  # semitones either way; 0 turns transposition off
    tempo_jitter: float = 0.0  # relative, e.g. 0.05 for ±5 %
    track_shuffle_rate: float = 0.0  # share of windows whose track order is shuffled inside every bar (arranging)
    fim_rate: float = 0.0  # share of windows turned into fill-in-the-middle layouts (infilling)
    fim_max_gap: int = 8  # bars
    fim_max_suffix: int = 8  # bars
    # share of windows whose dynamics move, as a whole, to a level drawn uniformly from the
    # velocity range. Most of the music21 corpus plays every note at velocity 90: without
    # this a model learns that velocity never changes, cannot follow a prompt's dynamics
    # and is 13 nats surprised by every other velocity.
    velocity_relevel: float = 0.0
    # each track of a re-levelled window moves further by up to this many velocity bins
    # either way, so the tracks keep about the balance they had: one level for the whole
    # window teaches that tracks play together (a track written under others takes their
    # level), the spread that they need not be equal.
    velocity_track_spread: int = 2
    # share of windows in which a phrase of 2, 4 or 8 bars is played twice in a row (later
    # bars dropped to keep the length): teaches the model to recall and restate material
    repeat_rate: float = 0.0
    # share of windows laid out as arranging lays a bar out: one track, its family (drums,
    # bass, the rest) drawn first so drums and bass are targets as often as melodic tracks,
    # comes last in every bar, after the others (see `target_last`)
    arrange_rate: float = 0.0
    # share of windows cut down to the lead and some of the other tracks, the lead
    # renumbered first (see `lead_and_some`): a song of a melody and the tracks arranged
    # under it, as Arrange writes drums and a bass under a bare melody
    thin_rate: float = 0.0
    # share of the other windows in which up to three chordal tracks are each split by
    # register into two tracks of the same instrument (see `split_by_register`): bars of
    # as many tracks as real songs have
    split_rate: float = 0.0


class Augmenter:
    """Deterministic token-level augmentations of a window."""

    def __init__(self, vocab: Vocabulary, settings: Augmentation) -> None:
        self.vocab = vocab
        self.settings = settings
        self._tables: dict[int, np.ndarray] = {}
        pitch = vocab.offset[TokenType.PITCH]
        self._pitch_range = (pitch, pitch + 128)

    def _transpose_table(self, shift: int) -> np.ndarray:
        """token id → token id, moving melodic pitches, chord roots and keys by ``shift``."""
        if shift in self._tables:
            return self._tables[shift]
        vocab = self.vocab
        table = np.arange(len(vocab))
        pitch = vocab.offset[TokenType.PITCH]
        table[pitch : pitch + 128] = pitch + np.clip(np.arange(128) + shift, 0, 127)
        for index, label in enumerate(vocab.values[TokenType.CHORD]):
            if label != NO_CHORD:
                root, quality = label.split(":")
                moved = f"{ROOT_NAMES[(ROOT_NAMES.index(root) + shift) % 12]}:{quality}"
                table[vocab.offset[TokenType.CHORD] + index] = vocab.chord(moved)
        for index, (sharps, minor) in enumerate(vocab.values[TokenType.KEY]):
            table[vocab.offset[TokenType.KEY] + index] = vocab.key(transpose_key(sharps, shift), minor)
        self._tables[shift] = table
        return table

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        settings = self.settings
        if settings.max_transpose:
            low, high = self._pitch_range
            pitched = tokens[(tokens >= low) & (tokens < high)] - low
            if len(pitched):
                down = min(settings.max_transpose, int(pitched.min()))
                up = min(settings.max_transpose, 127 - int(pitched.max()))
                shift = int(rng.integers(-down, up + 1))
                if shift:
                    tokens = self._transpose_table(shift)[tokens]
        if settings.velocity_relevel and rng.random() < settings.velocity_relevel:
            tokens = self._relevel_velocities(tokens, rng, settings.velocity_track_spread)
        if settings.tempo_jitter:
            tokens = self._jitter_tempo(tokens, 1 + rng.uniform(-settings.tempo_jitter, settings.tempo_jitter))
        if settings.thin_rate and rng.random() < settings.thin_rate:
            tokens = lead_and_some(tokens, self.vocab, rng)
        elif settings.split_rate and rng.random() < settings.split_rate:
            tokens = split_by_register(tokens, self.vocab, rng)
        if settings.repeat_rate and rng.random() < settings.repeat_rate:
            tokens = repeat_phrase(tokens, self.vocab, rng)
        if settings.arrange_rate and rng.random() < settings.arrange_rate:
            tokens = target_last(tokens, self.vocab, rng)
        elif settings.track_shuffle_rate and rng.random() < settings.track_shuffle_rate:
            tokens = shuffle_tracks_in_bars(tokens, self.vocab, rng)
        if settings.fim_rate and rng.random() < settings.fim_rate:
            tokens = fill_in_the_middle(tokens, self.vocab, rng, settings.fim_max_gap, settings.fim_max_suffix)
        return tokens

    def _relevel_velocities(self, tokens: np.ndarray, rng: np.random.Generator, spread: int) -> np.ndarray:
        """The window's velocity bins shifted so their median lands on a random level, each track's
        by that shift and up to ``spread`` bins more either way (contrasts kept, within the bins)."""
        low, count = self.vocab.offset[TokenType.VELOCITY], self.vocab.count[TokenType.VELOCITY]
        at = np.flatnonzero((tokens >= low) & (tokens < low + count))
        if not len(at):
            return tokens
        bins, slots = tokens[at] - low, token_metadata(tokens, self.vocab)["slot"][at]
        shift = int(rng.integers(1, count)) - int(np.median(bins))
        tokens = tokens.copy()
        for slot in np.unique(slots).tolist():
            mine = slots == slot
            moved = bins[mine] + shift + int(rng.integers(-spread, spread + 1))
            tokens[at[mine]] = low + np.clip(moved, 0, count - 1)
        return tokens

    def _jitter_tempo(self, tokens: np.ndarray, factor: float) -> np.ndarray:
        vocab = self.vocab
        kinds = vocab.type_of[tokens]
        coarse = np.flatnonzero(kinds == TokenType.TEMPO)
        coarse = coarse[coarse + 1 < len(tokens)]
        if not len(coarse):
            return tokens
        tokens = tokens.copy()
        config = vocab.config
        tenths = (vocab.value_index[tokens[coarse]] + config.tempo_bpm_min) * 10 + vocab.value_index[tokens[coarse + 1]]
        tenths = np.clip(np.round(tenths * factor), config.tempo_bpm_min * 10, config.tempo_bpm_max * 10 + 9).astype(
            np.int64
        )
        whole, tenth = np.divmod(tenths, 10)
        tokens[coarse] = vocab.offset[TokenType.TEMPO] + whole - config.tempo_bpm_min
        tokens[coarse + 1] = vocab.offset[TokenType.TEMPO_FINE] + tenth
        return tokens


def shuffle_tracks_in_bars(tokens: np.ndarray, vocab: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """The same music with the track segments of every bar in a random order.

    The model then learns to write any track after any others of the same bar, which is
    how arranging generates chosen tracks under the kept ones (any order is valid: docs/architecture.md;
    decoding does not depend on it).
    """
    kinds = vocab.type_of[tokens]
    bars = np.append(np.flatnonzero((kinds == TokenType.BAR) | (kinds == TokenType.EOS)), len(tokens))
    pieces = [tokens[: bars[0]]]
    for start, stop in zip(bars[:-1].tolist(), bars[1:].tolist(), strict=True):
        tracks = start + np.flatnonzero(kinds[start:stop] == TokenType.TRACK)
        if len(tracks) < 2:
            pieces.append(tokens[start:stop])
            continue
        pieces.append(tokens[start : tracks[0]])  # the conductor segment stays first
        bounds = np.append(tracks, stop)
        for index in rng.permutation(len(tracks)).tolist():
            pieces.append(tokens[bounds[index] : bounds[index + 1]])
    return np.concatenate(pieces)


def track_families(tokens: np.ndarray, vocab: Vocabulary) -> list[str]:
    """Each track slot's family from the window's header: drums, bass (GM programs 33-40) or other."""
    instruments = tokens[vocab.type_of[tokens] == TokenType.INSTRUMENT]
    families = []
    for token in instruments.tolist():
        program, is_drum = vocab.values[TokenType.INSTRUMENT][token - vocab.offset[TokenType.INSTRUMENT]]
        families.append("drums" if is_drum else "bass" if 32 <= program <= 39 else "other")
    return families


def target_last(tokens: np.ndarray, vocab: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """The same music with one track's segment last in every bar, as arranging writes it.

    Arranging feeds each bar's kept tracks and then samples the target tracks after them
    (meloformer_core/generation/generate.py: arrange_grid). The target is drawn by family first
    (drums, bass, the rest: each family present equally likely), then among the family's
    tracks that play in the window, so a band's drums and bass are arranged as often as
    its melodic tracks; the other tracks keep their order. A window with one sounding
    track is returned as it is.
    """
    kinds = vocab.type_of[tokens]
    families = track_families(tokens, vocab)
    track0 = vocab.offset[TokenType.TRACK]
    sounding = sorted(set((tokens[kinds == TokenType.TRACK] - track0).tolist()))
    if len(sounding) < 2:
        return tokens
    by_family: dict[str, list[int]] = {}
    for slot in sounding:
        by_family.setdefault(families[slot] if slot < len(families) else "other", []).append(slot)
    names = sorted(by_family)
    chosen = by_family[names[int(rng.integers(len(names)))]]
    target = track0 + chosen[int(rng.integers(len(chosen)))]
    bars = np.append(np.flatnonzero((kinds == TokenType.BAR) | (kinds == TokenType.EOS)), len(tokens))
    pieces = [tokens[: bars[0]]]
    for start, stop in zip(bars[:-1].tolist(), bars[1:].tolist(), strict=True):
        tracks = start + np.flatnonzero(kinds[start:stop] == TokenType.TRACK)
        mine = np.flatnonzero(tokens[tracks] == target)
        if not len(mine) or mine[0] == len(tracks) - 1:
            pieces.append(tokens[start:stop])
            continue
        bounds = np.append(tracks, stop)
        at = int(mine[0])
        pieces += [tokens[start : bounds[at]], tokens[bounds[at + 1] : stop], tokens[bounds[at] : bounds[at + 1]]]
    return np.concatenate(pieces)


KEEP_DRUMS_OR_BASS = 0.75  # `lead_and_some`: the chance that a window's drums (or bass) stay
KEEP_OTHERS_AT_MOST = 0.5  # and the most each other track's chance can be (drawn per window)


def pick_lead(pitches: dict[int, np.ndarray]) -> int | None:
    """The lead among melodic, non-bass tracks (their pitches by track): of those playing at
    least a quarter as many notes as the busiest, the highest by median pitch (None without any)."""
    playing = {track: notes for track, notes in pitches.items() if len(notes)}
    if not playing:
        return None
    busiest = max(len(notes) for notes in playing.values())
    busy = [track for track, notes in playing.items() if len(notes) * 4 >= busiest]
    return max(busy, key=lambda track: float(np.median(playing[track])))


def lead_and_some(tokens: np.ndarray, vocab: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """The window cut down to its lead and some of its other sounding tracks, the lead in slot 0.

    The lead is chosen as evaluation chooses it (`pick_lead`): of the melodic, non-bass
    tracks playing at least a quarter as many notes as the busiest, the highest by median
    pitch. Drums and bass stay with chance `KEEP_DRUMS_OR_BASS` each, every other track
    with one chance drawn per window up to `KEEP_OTHERS_AT_MOST`; at least one track stays
    beside the lead. The window is decoded, cut and encoded again, so the header lists just
    the kept tracks and every bar's chord label is what the kept music says: what Arrange
    feeds when a user adds drums and a bass under a melody (the melody first, the new
    tracks after it). Windows of infilling, with fewer than two sounding tracks or without
    a lead are returned as they are.
    """
    kinds = vocab.type_of[tokens]
    if (kinds == TokenType.FIM_GAP).any():
        return tokens
    grid = decode_grid(tokens, vocab)
    slots = np.unique(grid.notes[:, 0])
    if len(slots) < 2:
        return tokens
    families = track_families(tokens, vocab)
    lead = pick_lead({int(s): grid.notes[grid.notes[:, 0] == s, 2] for s in slots if families[s] == "other"})
    if lead is None:
        return tokens
    others_chance = rng.uniform(0, KEEP_OTHERS_AT_MOST)
    rest = [int(s) for s in slots if s != lead]
    kept = [s for s in rest if rng.random() < (KEEP_DRUMS_OR_BASS if families[s] != "other" else others_chance)]
    kept = kept or [rest[int(rng.integers(len(rest)))]]
    order = [lead, *kept]
    renumber = np.full(len(grid.instruments), -1)
    renumber[order] = np.arange(len(order))
    notes = grid.notes[renumber[grid.notes[:, 0]] >= 0].copy()
    notes[:, 0] = renumber[notes[:, 0]]
    result = _encode_tracks(grid, [grid.instruments[s] for s in order], notes, vocab)
    return result if kinds[-1] == TokenType.EOS else result[:-1]


def _encode_tracks(grid: GridSong, instruments: list[tuple[int, bool]], notes: np.ndarray,
                   vocab: Vocabulary) -> np.ndarray:  # fmt: skip
    """The tokens of ``grid`` with its tracks replaced by ``instruments`` and ``notes`` (slots
    renumbered to them, in any order: sorted here as a `GridSong` keeps them)."""
    notes = notes[np.lexsort((notes[:, 2], notes[:, 1], notes[:, 0]))]
    return encode_grid(replace(grid, instruments=instruments, notes=notes), vocab)


SPLIT_CHORD_SHARE = 0.3  # a track is chordal when this share of its notes start together with another
SPLIT_SIDE_SHARE = 0.25  # and each side of the split keeps at least this share of its notes
SPLIT_AT_MOST = 3  # tracks split in one window


def split_by_register(tokens: np.ndarray, vocab: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """The window with up to `SPLIT_AT_MOST` of its chordal tracks each played by two tracks of
    the same instrument: the notes from the track's median pitch up stay, the ones below move
    to a new track right after it (a piano's two hands, divided strings, two guitars).

    The same music, told with more tracks: real songs often have 8-16 tracks where the
    corpora's windows seldom pass 8 (3 % of band windows have 9 or more), and a model that
    has hardly seen a bar with that many segments closes it before the last tracks (on real
    band songs nearly three in four of the tracks after the seventh fell silent; run 15
    trained with it and they still did, docs/model-history.md). Only
    chordal melodic tracks split (a bass line or a melody split by register would jump
    between tracks); the window is decoded, split and encoded again, and cut by whole bars
    to its length (the split always adds tokens, so its last bar goes, and the end of the
    song with it). Windows of infilling, without a chordal track or with no room for another
    track are returned as they are.
    """
    kinds = vocab.type_of[tokens]
    if (kinds == TokenType.FIM_GAP).any():
        return tokens
    grid = decode_grid(tokens, vocab)
    room = vocab.config.max_tracks - len(grid.instruments)
    splits: dict[int, int] = {}  # slot → the pitch its upper part starts at
    for slot, (_, is_drum) in enumerate(grid.instruments):
        notes = grid.notes[grid.notes[:, 0] == slot]
        if is_drum or len(notes) < 8:
            continue
        _, counts = np.unique(notes[:, 1], return_counts=True)
        if (counts[counts > 1].sum()) < SPLIT_CHORD_SHARE * len(notes):
            continue
        at = int(np.median(notes[:, 2]))
        upper = int((notes[:, 2] >= at).sum())
        if min(upper, len(notes) - upper) >= SPLIT_SIDE_SHARE * len(notes):
            splits[slot] = at
    if not splits or room < 1:
        return tokens
    count = int(rng.integers(1, min(SPLIT_AT_MOST, len(splits), room) + 1))
    chosen = sorted(rng.choice(sorted(splits), size=count, replace=False).tolist())
    instruments, renumber, lower_slot = [], np.zeros(len(grid.instruments), dtype=np.int64), {}
    for slot, instrument in enumerate(grid.instruments):
        renumber[slot] = len(instruments)
        instruments.append(instrument)
        if slot in chosen:
            lower_slot[slot] = len(instruments)
            instruments.append(instrument)
    notes = grid.notes.copy()
    notes[:, 0] = renumber[grid.notes[:, 0]]
    for slot in chosen:
        lower = (grid.notes[:, 0] == slot) & (grid.notes[:, 2] < splits[slot])
        notes[lower, 0] = lower_slot[slot]
    result = _encode_tracks(grid, instruments, notes, vocab)
    bars = np.flatnonzero(vocab.type_of[result] == TokenType.BAR)  # more tokens than before: cut
    fitting = bars[bars <= len(tokens)]
    return result[: fitting[-1]] if len(fitting) > 1 else tokens


PHRASE_BARS = (2, 4, 8)


def repeat_phrase(tokens: np.ndarray, vocab: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """The window with a phrase of 2, 4 or 8 bars played again right after itself.

    Only phrases without tempo, metre or key changes are repeated, so the copy is exactly
    what the encoder writes for the repeated music, and only where the whole copy fits in
    the window's length. Bars after the copy are dropped, whole, to keep that length (and
    the end of the song with them); a window with no such phrase is returned as it is.
    """
    kinds = vocab.type_of[tokens]
    bar_at = np.flatnonzero(kinds == TokenType.BAR)
    eos = np.flatnonzero(kinds == TokenType.EOS)
    end = int(eos[0]) if len(eos) else len(tokens)
    bounds = np.append(bar_at, end)
    plain = np.array([_body(kinds, bounds, bar) - bounds[bar] == 2 for bar in range(len(bar_at))], dtype=bool)
    choices = [(first, size) for size in PHRASE_BARS for first in range(len(bar_at) - size + 1)
               if plain[first : first + size].all()
               and 2 * bounds[first + size] - bounds[first] <= len(tokens)]  # the whole copy fits  # fmt: skip
    if not choices:
        return tokens
    first, size = choices[int(rng.integers(len(choices)))]
    stop = bounds[first + size]
    repeated = np.concatenate([tokens[:stop], tokens[bounds[first] : stop], tokens[stop:end]])
    shift = stop - bounds[first]
    # bar starts of the result (the bars up to the copy, the copy, the bars after it) and its end
    starts = np.concatenate([bounds[: first + size], bounds[first:] + shift])
    return repeated[: starts[starts <= len(tokens)][-1]]  # always longer than the window: cut by whole bars


def fill_in_the_middle(
    tokens: np.ndarray, vocab: Vocabulary, rng: np.random.Generator, max_gap: int = 8, max_suffix: int = 8
) -> np.ndarray:
    """The window as an infilling example: prefix, FIM_GAP_g, suffix, FIM_MIDDLE, the g bars, FIM_END.

    Bars [A, A + g) move after up to ``max_suffix`` bars that follow them; the first bar of
    the suffix and of the middle restate the metre, key and tempo in force. The result is
    never longer than the window (suffix bars are dropped to fit); a window of one bar is
    returned as it is.
    """
    kinds = vocab.type_of[tokens]
    bar_at = np.flatnonzero(kinds == TokenType.BAR)
    bars = len(bar_at)
    if bars < 2:
        return tokens
    eos = np.flatnonzero(kinds == TokenType.EOS)
    bounds = np.append(bar_at, eos[0] if len(eos) else len(tokens))
    first = int(rng.integers(0, bars))
    gap = int(rng.integers(1, min(max_gap, bars - first) + 1))
    suffix = int(rng.integers(0, min(max_suffix, bars - first - gap) + 1))
    restated = _restatements(tokens, kinds, bounds, vocab)
    for take in range(suffix, -1, -1):
        stop = first + gap + take
        parts = [tokens[: bar_at[first]], [vocab.offset[TokenType.FIM_GAP] + gap - 1]]
        if take:
            parts += [restated[first + gap], tokens[_body(kinds, bounds, first + gap) : bounds[stop]]]
        parts += [
            [vocab.offset[TokenType.FIM_MIDDLE]],
            restated[first],
            tokens[_body(kinds, bounds, first) : bounds[first + gap]],
        ]
        parts.append([vocab.offset[TokenType.FIM_END]])
        result = np.concatenate([np.asarray(p, dtype=tokens.dtype) for p in parts])
        if len(result) <= len(tokens):
            return result
    return tokens


def _body(kinds: np.ndarray, bounds: np.ndarray, bar: int) -> int:
    """Index of the first token after the conductor segment of ``bar``."""
    start, stop = bounds[bar], bounds[bar + 1]
    tracks = np.flatnonzero(kinds[start:stop] == TokenType.TRACK)
    return int(start + tracks[0]) if len(tracks) else int(stop)


def _restatements(tokens: np.ndarray, kinds: np.ndarray, bounds: np.ndarray, vocab: Vocabulary) -> list[np.ndarray]:
    """For every bar: its conductor segment restating the metre, key and tempo in force."""
    position0 = vocab.offset[TokenType.POSITION]
    metre = key = None
    tempo: list[int] = []
    result = []
    for bar in range(len(bounds) - 1):
        start, body = int(bounds[bar]), _body(kinds, bounds, bar)
        events: list[list[int]] = []  # this bar's tempo changes: [POSITION, TEMPO, TEMPO_FINE]
        for index in range(start + 2, body):
            kind = kinds[index]
            if kind == TokenType.TIME_SIG:
                metre = int(tokens[index])
            elif kind == TokenType.KEY:
                key = int(tokens[index])
            elif kind == TokenType.POSITION:
                events.append([int(t) for t in tokens[index : index + 3]])
        head = [int(tokens[start]), int(tokens[start + 1]), metre] + ([key] if key is not None else [])
        if not events or events[0][0] != position0:
            head += [position0, *tempo]  # the tempo in force from earlier bars
        result.append(np.array(head + [t for event in events for t in event], dtype=tokens.dtype))
        if events:
            tempo = events[-1][1:]
    return result


def transpose_key(sharps: int, shift: int) -> int:
    """The key signature ``shift`` semitones away, spelled with the fewest accidentals."""
    tonic = (sharps * 7) % 12  # major tonic (relative major for minor keys), as a pitch class
    target = (tonic + shift) % 12
    candidates = [s for s in range(-7, 8) if (s * 7) % 12 == target]
    return min(candidates, key=lambda s: (abs(s), -s))


class MixedDataset:
    """The windows of several datasets as one, each drawn at its own *rate* per epoch.

    A rate of 1 takes every window of its dataset once an epoch, 2 twice (with their own
    augmentations), 0.5 a random half, drawn anew each epoch. ``token_shares`` says what
    share of an epoch's tokens each dataset then makes. It has what `PackedLoader` reads
    of a `TokenDataset`, plus ``rates`` (one per window).
    """

    def __init__(self, parts: list, rates: list[float], names: list[str]) -> None:
        if len(parts) != len(rates) or len(parts) != len(names):
            raise DataError(f"{len(parts)} datasets but {len(rates)} mixing rates")
        if any(rate < 0 for rate in rates) or not any(rate > 0 for rate in rates):
            raise DataError(f"mixing rates must be 0 or more, one above 0; got {', '.join(map(str, rates))}")
        self.parts, self.names = parts, names
        self.vocab = parts[0].vocab
        self.part_of = np.concatenate([np.full(len(part), k) for k, part in enumerate(parts)])
        self.index_in = np.concatenate([np.arange(len(part)) for part in parts])
        self.lengths = np.concatenate([part.lengths for part in parts])
        self.rates = np.asarray(rates, dtype=np.float64)[self.part_of]

    def __len__(self) -> int:
        return len(self.lengths)

    def tokens(self, index: int) -> np.ndarray:
        return self.parts[int(self.part_of[index])].tokens(int(self.index_in[index]))

    @property
    def token_count(self) -> int:
        return int(self.lengths.sum())

    def token_shares(self) -> dict[str, float]:
        """Each dataset's expected share of an epoch's tokens."""
        rates = self._part_rates()
        drawn = np.array([part.lengths.sum() * rate for part, rate in zip(self.parts, rates, strict=True)])
        return {name: float(share) for name, share in zip(self.names, drawn / drawn.sum(), strict=True)}

    def _part_rates(self) -> list[float]:
        return [float(self.rates[self.part_of == k][0]) if len(part) else 0.0 for k, part in enumerate(self.parts)]

    def summary(self) -> str:
        shares = self.token_shares()
        parts = zip(self.names, self.parts, self._part_rates(), strict=True)
        return ", ".join(f"{name} {len(part):,} windows × {rate:g} ({shares[name]:.0%} of the tokens)"
                         for name, part, rate in parts)  # fmt: skip


def draws(rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How many times each window is drawn this epoch: the whole part of its rate, and one
    more with the probability of the rest."""
    whole = np.floor(rates)
    return (whole + (rng.random(len(rates)) < rates - whole)).astype(np.int64)


@dataclass(frozen=True)
class LoaderState:
    epoch: int = 0
    batch: int = 0  # next micro-batch of this rank within the epoch


class PackedLoader:
    """Micro-batches of packed rows for one rank, in a deterministic order."""

    def __init__(
        self,
        dataset: TokenDataset,
        *,
        max_seq_len: int,
        rows_per_batch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        augmentation: Augmentation | None = None,
        shuffle: bool = True,
    ) -> None:
        if dataset.lengths.max() > max_seq_len:
            too_long = int((dataset.lengths > max_seq_len).sum())
            raise DataError(
                f"{too_long} windows are longer than the model's context of {max_seq_len} tokens; "
                f"preprocess with --max-seq-len {max_seq_len}"
            )
        self.dataset = dataset
        self.max_seq_len = max_seq_len
        self.rows_per_batch = rows_per_batch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.augmenter = Augmenter(dataset.vocab, augmentation) if augmentation else None
        self.state = LoaderState()
        self._plan_epoch = -1
        self._plan: list[list[list[int]]] = []

    def plan(self, epoch: int) -> list[list[list[int]]]:
        """This rank's micro-batches for ``epoch``: lists of rows, each a list of window indices."""
        if epoch != self._plan_epoch:
            size = len(self.dataset)
            order = np.arange(size)
            rates = getattr(self.dataset, "rates", None)
            if rates is not None:  # a mix: window w's k-th draw this epoch is w + k × size
                counts = draws(rates, np.random.default_rng([self.seed, epoch, 1]))
                copies = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
                order = np.repeat(order, counts) + copies * size
            if self.shuffle:
                order = order[np.random.default_rng([self.seed, epoch]).permutation(len(order))]
            rows: list[list[int]] = []
            current: list[int] = []
            used = 0
            for index in order.tolist():
                length = int(self.dataset.lengths[index % size])
                if current and used + length > self.max_seq_len:
                    rows.append(current)
                    current, used = [], 0
                current.append(index)
                used += length
            if current:
                rows.append(current)
            batches = [rows[i : i + self.rows_per_batch] for i in range(0, len(rows), self.rows_per_batch)]
            per_rank = len(batches) // self.world_size  # every rank takes the same number of steps
            if per_rank == 0:
                raise DataError(f"the dataset makes {len(batches)} batches, fewer than the {self.world_size} ranks")
            self._plan = batches[self.rank : per_rank * self.world_size : self.world_size]
            self._plan_epoch = epoch
        return self._plan

    def next_batch(self) -> list[list[np.ndarray]]:
        """The next micro-batch (rows of documents' tokens); advances the state across epochs."""
        epoch, index = self.state.epoch, self.state.batch
        plan = self.plan(epoch)
        if index >= len(plan):
            epoch, index = epoch + 1, 0
            plan = self.plan(epoch)
        self.state = LoaderState(epoch, index + 1)
        rows = []
        for row in plan[index]:
            documents = []
            for drawn in row:
                copy, window = divmod(drawn, len(self.dataset))
                tokens = self.dataset.tokens(window)
                if self.augmenter is not None:
                    key = [self.seed, epoch, window] + ([copy] if copy else [])
                    tokens = self.augmenter(tokens, np.random.default_rng(key))
                documents.append(tokens)
            rows.append(documents)
        return rows

    def batches_per_epoch(self) -> int:
        return len(self.plan(self.state.epoch))
