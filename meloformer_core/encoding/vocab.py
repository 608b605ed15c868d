"""The HID v2 vocabulary: token types, value tables and the JSON form with its hash.

Layout of a sequence (see docs/architecture.md and `codec.py`)::

    BOS INSTRUMENT*                                   header (global, no segment)
    BAR CHORD [TIME_SIG] [KEY] (POSITION TEMPO TEMPO_FINE)*   conductor segment of bar n
    (TRACK ([POSITION] PITCH|DRUM DURATION VELOCITY)+)*   one segment per sounding track of bar n
    … EOS

Infilling (fill in the middle) moves the bars after a gap ahead of it::

    header, bars before A | FIM_GAP_n | bars B… (first restated) | FIM_MIDDLE | bars A…B-1 (first restated)
    | FIM_END

Every table here is fixed by `EncodingConfig`; the vocabulary hash covers both, so a
model trained with one vocabulary refuses data or prompts encoded with another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from functools import cached_property

import numpy as np

from meloformer_core.errors import EncodingError

STEPS_PER_QUARTER = 12  # sixteenths (3 steps) and eighth/sixteenth triplets (4/2 steps)
CANONICAL_RESOLUTION = 480  # decoded songs use this many ticks per quarter
TICKS_PER_STEP = CANONICAL_RESOLUTION // STEPS_PER_QUARTER


class TokenType(IntEnum):
    PAD = 0
    BOS = 1
    EOS = 2
    INSTRUMENT = 3  # header: one per track, program + drum flag, in track order
    BAR = 4  # opens the conductor segment of a bar
    CHORD = 5  # chord label of the bar (derived from the notes; ignored by decode)
    TIME_SIG = 6  # metre from this bar on
    KEY = 7  # key signature from this bar on
    TEMPO = 8  # tempo from the preceding POSITION on
    TRACK = 9  # opens the segment of track slot k in this bar
    POSITION = 10  # onset within the bar, in grid steps
    PITCH = 11  # melodic pitch
    DRUM = 12  # drum key (drums are their own family)
    DURATION = 13
    VELOCITY = 14
    TEMPO_FINE = 15  # tenths of a quarter note per minute, after TEMPO
    FIM_GAP = 16  # infilling: n bars are left out here; the bars after them (the suffix) follow
    FIM_MIDDLE = 17  # infilling: the left-out bars follow
    FIM_END = 18  # infilling: the left-out bars are complete


CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8),
    "sus4": (0, 5, 7), "sus2": (0, 2, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10), "m7b5": (0, 3, 6, 10), "dim7": (0, 3, 6, 9),
}  # fmt: skip
ROOT_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NO_CHORD = "N"


def _duration_bins() -> tuple[int, ...]:
    """Durations in grid steps: every step up to a half note, then coarser, up to 32 quarters."""
    bins = list(range(1, 25))
    for stop, step in ((48, 3), (96, 6), (192, 12), (384, 24)):
        bins += list(range(bins[-1] + step, stop + 1, step))
    return tuple(bins)


@dataclass(frozen=True)
class EncodingConfig:
    """Everything that shapes the vocabulary. Saved with every vocabulary file."""

    version: str = "hid-v2"
    steps_per_quarter: int = STEPS_PER_QUARTER
    max_tracks: int = 32
    max_bar_steps: int = 192  # 16 quarters
    max_bars: int = 16384
    denominators: tuple[int, ...] = (1, 2, 4, 8, 16)
    max_numerator: int = 24
    tempo_bpm_min: int = 20
    tempo_bpm_max: int = 300
    velocity_bins: int = 32
    max_gap_bars: int = 32  # longest bar range an infill can regenerate
    duration_bins: tuple[int, ...] = field(default_factory=_duration_bins)

    def __post_init__(self) -> None:
        if self.steps_per_quarter != STEPS_PER_QUARTER:
            raise EncodingError(f"steps_per_quarter must be {STEPS_PER_QUARTER}")
        if list(self.duration_bins) != sorted(set(self.duration_bins)) or self.duration_bins[0] != 1:
            raise EncodingError("duration_bins must be strictly increasing and start at 1")
        if not 1 <= self.max_tracks <= 64:  # the encoder packs slots into 6 bits
            raise EncodingError("max_tracks must be between 1 and 64")
        if not 1 <= self.max_bar_steps <= 256:  # … and positions into 8 bits
            raise EncodingError("max_bar_steps must be between 1 and 256")
        # Bounds on every table's size, so a vocabulary file cannot ask for gigabytes.
        limits = {"max_bars": (1, 1 << 20), "max_numerator": (1, 64), "tempo_bpm_min": (1, 1000),
                  "tempo_bpm_max": (1, 1000), "velocity_bins": (1, 128), "max_gap_bars": (1, 1024)}  # fmt: skip
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise EncodingError(f"{name} must be a whole number between {low} and {high}, not {value!r}")
        if self.tempo_bpm_min > self.tempo_bpm_max:
            raise EncodingError("tempo_bpm_min must not exceed tempo_bpm_max")
        if not 1 <= len(self.denominators) <= 8 or any(d not in (1, 2, 4, 8, 16, 32, 64) for d in self.denominators):
            raise EncodingError("denominators must be up to 8 powers of two from 1 to 64")
        if len(self.duration_bins) > 512 or self.duration_bins[-1] > 1 << 16:
            raise EncodingError("duration_bins: at most 512 bins of at most 65536 steps")

    @property
    def time_signatures(self) -> tuple[tuple[int, int], ...]:
        """Supported metres: bar length a whole number of steps, at most ``max_bar_steps``."""
        quarter_steps = self.steps_per_quarter
        return tuple(
            (numerator, denominator)
            for denominator in self.denominators
            for numerator in range(1, self.max_numerator + 1)
            if (numerator * 4 * quarter_steps) % denominator == 0
            and numerator * 4 * quarter_steps // denominator <= self.max_bar_steps
        )

    @cached_property
    def time_signature_set(self) -> frozenset[tuple[int, int]]:
        return frozenset(self.time_signatures)

    @cached_property
    def min_bar_steps(self) -> int:
        return min(self.bar_steps(n, d) for n, d in self.time_signatures)

    @cached_property
    def duration_bin_array(self) -> np.ndarray:
        return np.array(self.duration_bins, dtype=np.int64)

    @cached_property
    def duration_bin_midpoints(self) -> np.ndarray:
        bins = self.duration_bin_array
        return (bins[:-1] + bins[1:]) / 2

    def bar_steps(self, numerator: int, denominator: int) -> int:
        return numerator * 4 * self.steps_per_quarter // denominator


class Vocabulary:
    """Token ids ↔ (type, value), with numpy lookup tables for vectorised code."""

    def __init__(self, config: EncodingConfig | None = None) -> None:
        self.config = config = config or EncodingConfig()
        chords = [NO_CHORD] + [f"{root}:{quality}" for root in ROOT_NAMES for quality in CHORD_QUALITIES]
        # (type, values, name of each value) in id order
        self._tables: list[tuple[TokenType, list]] = [
            (TokenType.PAD, [None]),
            (TokenType.BOS, [None]),
            (TokenType.EOS, [None]),
            (TokenType.INSTRUMENT, [(program, False) for program in range(128)] + [(p, True) for p in range(128)]),
            (TokenType.BAR, [None]),
            (TokenType.CHORD, chords),
            (TokenType.TIME_SIG, list(config.time_signatures)),
            (TokenType.KEY, [(sharps, minor) for minor in (False, True) for sharps in range(-7, 8)]),
            (TokenType.TEMPO, list(range(config.tempo_bpm_min, config.tempo_bpm_max + 1))),
            (TokenType.TRACK, list(range(config.max_tracks))),
            (TokenType.POSITION, list(range(config.max_bar_steps))),
            (TokenType.PITCH, list(range(128))),
            (TokenType.DRUM, list(range(128))),
            (TokenType.DURATION, list(config.duration_bins)),
            (TokenType.VELOCITY, list(range(config.velocity_bins))),
            (TokenType.TEMPO_FINE, list(range(10))),
            (TokenType.FIM_GAP, list(range(1, config.max_gap_bars + 1))),
            (TokenType.FIM_MIDDLE, [None]),
            (TokenType.FIM_END, [None]),
        ]
        self.offset: dict[TokenType, int] = {}
        self.count: dict[TokenType, int] = {}
        self.values: dict[TokenType, list] = {}
        self._names: list[str] = []
        types: list[int] = []
        for token_type, values in self._tables:
            self.offset[token_type] = len(self._names)
            self.count[token_type] = len(values)
            self.values[token_type] = values
            self._names += [self._name(token_type, value) for value in values]
            types += [int(token_type)] * len(values)
        self.type_of = np.array(types, dtype=np.int8)  # token id -> TokenType
        # token id -> index of its value within its type (e.g. POSITION_7 -> 7)
        self.value_index = np.arange(len(types)) - np.array([self.offset[TokenType(t)] for t in types])
        self._index = {name: i for i, name in enumerate(self._names)}
        self._time_sig_index = {ts: i for i, ts in enumerate(config.time_signatures)}
        self._key_index = {key: i for i, key in enumerate(self.values[TokenType.KEY])}
        self._chord_index = {name: i for i, name in enumerate(chords)}

    @staticmethod
    def _name(token_type: TokenType, value: object) -> str:
        if value is None:
            return token_type.name
        if token_type is TokenType.INSTRUMENT:
            program, drum = value  # type: ignore[misc]
            return f"INSTRUMENT_{'drums' if drum else 'program'}_{program}"
        if token_type is TokenType.TIME_SIG:
            return f"TIME_SIG_{value[0]}/{value[1]}"  # type: ignore[index]
        if token_type is TokenType.KEY:
            sharps, minor = value  # type: ignore[misc]
            return f"KEY_{sharps:+d}_{'minor' if minor else 'major'}"
        return f"{token_type.name}_{value}"

    # --- sizes and names ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._names)

    @property
    def pad_id(self) -> int:
        return self.offset[TokenType.PAD]

    @property
    def bos_id(self) -> int:
        return self.offset[TokenType.BOS]

    @property
    def eos_id(self) -> int:
        return self.offset[TokenType.EOS]

    @property
    def bar_id(self) -> int:
        return self.offset[TokenType.BAR]

    def name(self, token: int) -> str:
        return self._names[token]

    def names(self, tokens) -> list[str]:
        return [self._names[int(t)] for t in tokens]

    def id(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise EncodingError(f"unknown token {name!r}") from None

    def token(self, token_type: TokenType, value_index: int) -> int:
        """Id of the ``value_index``-th token of ``token_type``."""
        if not 0 <= value_index < self.count[token_type]:
            raise EncodingError(f"{token_type.name} value index {value_index} out of range")
        return self.offset[token_type] + value_index

    def value(self, token: int) -> object:
        return self.values[TokenType(int(self.type_of[token]))][int(self.value_index[token])]

    # --- value lookups used by the encoder ------------------------------------------------
    def instrument(self, program: int, is_drum: bool) -> int:
        return self.offset[TokenType.INSTRUMENT] + program + (128 if is_drum else 0)

    def time_signature(self, numerator: int, denominator: int) -> int:
        return self.offset[TokenType.TIME_SIG] + self._time_sig_index[(numerator, denominator)]

    def key(self, sharps: int, minor: bool) -> int:
        return self.offset[TokenType.KEY] + self._key_index[(sharps, minor)]

    def chord(self, label: str) -> int:
        return self.offset[TokenType.CHORD] + self._chord_index[label]

    def tempo(self, tenths_bpm: int) -> tuple[int, int]:
        """TEMPO and TEMPO_FINE ids of a tempo given in tenths of a quarter note per minute."""
        whole, tenth = divmod(tenths_bpm, 10)
        return self.offset[TokenType.TEMPO] + whole - self.config.tempo_bpm_min, self.offset[
            TokenType.TEMPO_FINE
        ] + tenth

    # --- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        config = asdict(self.config)
        config["denominators"] = list(config["denominators"])
        config["duration_bins"] = list(config["duration_bins"])
        return {"config": config, "tokens": self._names}

    @cached_property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON of config and token names (first 16 hex digits)."""
        return self.hash_of(self.to_dict())

    @staticmethod
    def hash_of(data: dict) -> str:
        """The hash of a vocabulary's JSON form (``config`` and ``tokens``), computed on the data
        as read: a file is checked without building anything from it."""
        text = json.dumps({"config": data.get("config"), "tokens": data.get("tokens")},
                          sort_keys=True, separators=(",", ":"))  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({**self.to_dict(), "hash": self.hash}, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "vocabulary") -> Vocabulary:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not {"config", "tokens", "hash"} <= set(data):
                raise ValueError("it needs config, tokens and hash")
            if Vocabulary.hash_of(data) != data["hash"]:  # before building the tables it describes
                raise EncodingError(f"{source}: corrupt vocabulary (hash mismatch: the content is not what was hashed)")
            raw = dict(data["config"])
            raw["denominators"] = tuple(raw["denominators"])
            raw["duration_bins"] = tuple(raw["duration_bins"])
            vocab = cls(EncodingConfig(**raw))
        except EncodingError as error:
            raise EncodingError(f"{source}: {error}" if source not in str(error) else str(error)) from None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            raise EncodingError(f"{source}: not a valid vocabulary file ({error})") from None
        if vocab._names != data.get("tokens") or vocab.hash != data.get("hash"):
            raise EncodingError(f"{source}: vocabulary does not match this version of MeloFormer (hash mismatch)")
        return vocab


DEFAULT_VOCAB = Vocabulary()
