"""The melodies `meloformer-corpus --band` arranges: tunes of the music21 corpus's folk
collections (training composers only), each with its metre, key, pickup, notes and chords.

Chords come from the tune: its own chord symbols where it has them (music21 ChordSymbol
objects; the Nottingham reels and the lead sheets), otherwise one chord a bar from the
project's chord labeller (meloformer_core/encoding/chords.py) run on the melody, so the
band always plays in the melody's key.

An ABC file holds many tunes (Essen and O'Neill's files hold hundreds): a tune is read on
its own, its text cut from the file between ``X:`` lines with the file's header, which
takes milliseconds instead of parsing the whole collection.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from meloformer_core.encoding.chords import bar_chords
from meloformer_core.encoding.vocab import NO_CHORD, ROOT_NAMES
from meloformer_core.errors import MeloformerError

# the folk collections of the training composers (docs/training.md): melodies to arrange
FOLK_COLLECTIONS = (
    "essenFolksong", "oneills1850", "ryansMammoth", "nottingham-dataset", "airdsAirs", "miscFolk", "leadSheet",
)  # fmt: skip
SUFFIXES = (".abc", ".mxl", ".xml", ".musicxml")
RESOLUTION = 480  # ticks per quarter note of the arrangements
MIN_NOTES = 8
MAX_EXPANSION = 3  # repeats at most double a section, a da capo adds one more pass
SYMBOLS_PER_BAR = Fraction(1, 4)  # fewer chord symbols than one per 4 bars are stray text: label instead
ABC_CHORD = re.compile(r'"[A-G][#b]?(?:m|min|maj|dim|aug|sus|M)?[0-9]*(?:/[A-G][#b]?)?"')

FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# MMA's chord names (all checked with `mma`) for music21's chord kinds, and for the labeller's
# qualities simplified to what a band plays under a folk tune: triads and dominant sevenths
# (the labeller reads a melody's passing sevenths as maj7 or min7 chords, and a bar without
# a third as sus2, sus4 or either triad: those take the third of the key, see `_labelled`)
LABEL_SUFFIX = {"maj": "", "min": "m", "dim": "dim", "aug": "", "sus4": None, "sus2": None, "7": "7", "maj7": "",
                "min7": "m", "m7b5": "dim", "dim7": "dim7"}  # fmt: skip
KIND_SUFFIX = {
    "major": "", "minor": "m", "augmented": "aug", "diminished": "dim", "dominant-seventh": "7",
    "major-seventh": "M7", "minor-seventh": "m7", "diminished-seventh": "dim7", "augmented-seventh": "aug7",
    "half-diminished-seventh": "m7b5", "minor-major-seventh": "mM7", "major-sixth": "6", "minor-sixth": "m6",
    "dominant-ninth": "9", "major-ninth": "M9", "minor-ninth": "m9", "dominant-11th": "11", "dominant-13th": "13",
    "suspended-second": "sus2", "suspended-fourth": "sus4", "suspended-fourth-seventh": "7sus4", "power": "5",
}  # fmt: skip


class TuneSkipped(MeloformerError):  # noqa: N818 - a tune left out, not a failure
    """A tune that is not arranged (no metre, a changing metre, no groove for it …): counted, not a failure."""


@dataclass(frozen=True)
class TuneRef:
    collection: str
    path: str
    index: int  # the tune's place in its file
    name: str  # its MIDI file's name in the collection's folder, without suffix
    chord_symbols: bool  # its text shows chord symbols

    @property
    def key(self) -> str:
        return f"{self.collection}/{self.name}"


@dataclass(frozen=True)
class Tune:
    title: str
    numerator: int
    denominator: int
    key_sharps: int
    minor: bool
    length: Fraction  # quarter notes, the pickup included
    pickup: Fraction  # length of an incomplete first bar; 0 when the tune starts on a bar line
    bars: int
    notes: tuple[tuple[Fraction, Fraction, int], ...]  # (offset, duration, MIDI pitch), offsets from the tune's start
    chords: tuple[tuple[Fraction, str], ...]  # chord changes: (offset, MMA chord name), the first at or after 0
    chord_source: str  # "symbols" or "labelled"

    def chord_at(self, offset: Fraction, tolerance: Fraction) -> str:
        """The chord sounding at ``offset``, counting a change up to ``tolerance`` early."""
        starts = [start for start, _ in self.chords]
        return self.chords[max(0, bisect.bisect_right(starts, offset + tolerance) - 1)][1]


def split_abc(text: str) -> tuple[str, list[str]]:
    """(the file's header, each tune's text from its ``X:`` line)."""
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("X:")]
    if not starts:
        return "", ["\n".join(lines)]
    bounds = [*starts, len(lines)]
    return "\n".join(lines[: starts[0]]), ["\n".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]


@functools.lru_cache(maxsize=4)
def _abc_file(path: str) -> tuple[str, tuple[str, ...]]:
    header, tunes = split_abc(Path(path).read_text(errors="replace"))
    return header, tuple(tunes)


def list_tunes(collections: tuple[str, ...]) -> list[TuneRef]:
    """Every tune of ``collections``, in file order."""
    from music21 import corpus

    root = Path(corpus.__file__).parent
    tunes = []
    for collection in collections:
        if collection not in FOLK_COLLECTIONS:
            raise MeloformerError(f"{collection!r} is not a folk collection of the training composers "
                                  f"({', '.join(FOLK_COLLECTIONS)})")  # fmt: skip
        paths = sorted(str(p) for p in corpus.getComposer(collection) if Path(str(p)).suffix.lower() in SUFFIXES)
        for path in paths:
            inside = Path(path).relative_to(root / collection) if Path(path).is_relative_to(root / collection) else None
            stem = (inside or Path(Path(path).name)).with_suffix("").as_posix()
            if path.lower().endswith(".abc"):
                _, texts = _abc_file(path)
                for index, text in enumerate(texts):
                    body = "\n".join(line for line in text.splitlines() if not re.match(r"[A-Za-z]:", line))
                    name = stem if len(texts) == 1 else f"{stem}_{index + 1:04d}"
                    tunes.append(TuneRef(collection, path, index, name, len(ABC_CHORD.findall(body)) >= 4))
            else:
                tunes.append(TuneRef(collection, path, 0, stem, _musicxml_has_harmony(path)))
    return tunes


def _musicxml_has_harmony(path: str) -> bool:
    try:
        if path.lower().endswith(".mxl"):
            with zipfile.ZipFile(path) as archive:
                return any(b"<harmony" in archive.read(name) for name in archive.namelist() if name.endswith("xml"))
        return "<harmony" in Path(path).read_text(errors="replace")
    except (OSError, zipfile.BadZipFile):
        return False


def _parse(ref: TuneRef):
    from music21 import converter, stream

    if ref.path.lower().endswith(".abc"):
        header, texts = _abc_file(ref.path)
        score = converter.parseData(f"{header}\n{texts[ref.index]}", format="abc")
    else:
        score = converter.parse(ref.path)
    if isinstance(score, stream.Opus):
        score = score.scores[0]
    return score


def _bar_count(score) -> int:
    from music21 import stream

    return len((score.parts[0] if score.parts else score).getElementsByClass(stream.Measure))


def close_repeats(score) -> int:
    """Give each end repeat without a start repeat the start that ABC means: just after the
    previous end repeat (music21 goes back to the tune's beginning, so an ``A :| B :|`` tune
    played A A B A B). Returns how many start repeats were added."""
    from music21 import bar, stream

    added = 0
    for part in score.parts or [score]:
        measures = list(part.getElementsByClass(stream.Measure))
        after_end, started = None, False
        for index, measure in enumerate(measures):
            if isinstance(measure.leftBarline, bar.Repeat) and measure.leftBarline.direction == "start":
                started = True
            if isinstance(measure.rightBarline, bar.Repeat) and measure.rightBarline.direction == "end":
                if not started and after_end is not None and after_end <= index:
                    measures[after_end].leftBarline = bar.Repeat(direction="start")
                    added += 1
                started, after_end = False, index + 1
    return added


def _expanded(score):
    """Repeats played out (first and second endings included); where music21 cannot unfold
    them, or unfolds them into more than `MAX_EXPANSION` times the bars (it loops on some
    "Sign" and "Fine" marks of O'Neill's and Aird's tunes: 52 bars became 1,128), the repeat
    signs are dropped and the music between them is kept once."""
    from training.corpus import _strip_repeats

    close_repeats(score)
    try:
        expanded = score.expandRepeats()
        if _bar_count(expanded) <= MAX_EXPANSION * max(1, _bar_count(score)):
            return expanded
    except Exception:  # music21 raises several types on repeats it cannot unfold
        pass
    _strip_repeats(score)
    return score


def _fraction(value: float | Fraction) -> Fraction:
    return Fraction(value).limit_denominator(RESOLUTION * 4)


def load_tune(ref: TuneRef) -> Tune:
    """Parse one tune: its first part is the melody. Raises `TuneSkipped` for a tune
    without one metre or with too few notes."""
    from music21 import harmony, key, meter, stream

    score = _expanded(_parse(ref))
    part = score.parts[0] if score.parts else score
    signatures = {(ts.numerator, ts.denominator) for ts in part.recurse().getElementsByClass(meter.TimeSignature)}
    if not signatures:
        raise TuneSkipped("no time signature")
    if len(signatures) > 1:
        raise TuneSkipped("changing time signature")
    numerator, denominator = signatures.pop()
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        raise TuneSkipped("no bars")
    bar = Fraction(4 * numerator, denominator)
    first = _fraction(measures[0].duration.quarterLength)
    pickup = first if 0 < first < bar else Fraction(0)
    if not regular_bars([_fraction(m.duration.quarterLength) for m in measures], bar, pickup):
        raise TuneSkipped("irregular bar lengths")
    flat = part.stripTies().flatten()
    notes = []
    for element in flat.notes:
        if isinstance(element, harmony.Harmony) or element.duration.isGrace or element.duration.quarterLength <= 0:
            continue
        offset, duration = _fraction(element.offset), _fraction(element.duration.quarterLength)
        notes += [(offset, duration, p.midi) for p in element.pitches if 0 <= p.midi <= 127]
    notes.sort()
    if len(notes) < MIN_NOTES:
        raise TuneSkipped(f"fewer than {MIN_NOTES} notes")
    signatures_of_key = list(part.recurse().getElementsByClass(key.KeySignature))
    sharps = signatures_of_key[0].sharps if signatures_of_key else 0
    minor = bool(signatures_of_key) and getattr(signatures_of_key[0], "mode", None) == "minor"
    flats = sharps < 0
    symbols = [cs for cs in flat.getElementsByClass(harmony.ChordSymbol) if not isinstance(cs, harmony.NoChord)]
    chords: list[tuple[Fraction, str]]
    if symbols and len(symbols) >= SYMBOLS_PER_BAR * len(measures):
        source, chords = "symbols", [(_fraction(cs.offset), _symbol_name(cs, flats)) for cs in symbols]
    else:
        bar_starts = [_fraction(m.offset) for m in measures]
        source, chords = "labelled", _labelled(notes, bar_starts, _fraction(part.highestTime), sharps)
    changes = []
    for offset, name in sorted(chords):
        if not changes or changes[-1][1] != name:
            changes.append((offset, name))
    title = score.metadata.title if score.metadata is not None and score.metadata.title else ""
    return Tune(title, numerator, denominator, sharps, minor, _fraction(part.highestTime), pickup, len(measures),
                tuple(notes), tuple(changes), source)  # fmt: skip


def regular_bars(lengths: list[Fraction], bar: Fraction, pickup: Fraction) -> bool:
    """Whether the measures after a pickup fill whole bars, so that the tune's bar lines fall
    on the band's: a bar split in two measures (at a repeat sign or an ending) counts as one;
    a tune with a wrong note length in its ABC (a missing dot) or with bars of other lengths
    than its time signature does not."""
    filled = Fraction(0)
    for length in lengths[1 if pickup else 0 :]:
        filled += length
        if filled == bar:
            filled = Fraction(0)
        elif filled > bar:
            return False
    return True


def chord_name(root: int, suffix: str, bass: int | None, flats: bool) -> str:
    names = FLAT_NAMES if flats else ROOT_NAMES
    return names[root % 12] + suffix + (f"/{names[bass % 12]}" if bass is not None and bass % 12 != root % 12 else "")


def _symbol_name(symbol, flats: bool) -> str:
    root = symbol.root().pitchClass
    suffix = KIND_SUFFIX.get(symbol.chordKind)
    if suffix is None:  # a kind MMA may not know: its triad
        suffix = "m" if any((p.pitchClass - root) % 12 == 3 for p in symbol.pitches) else ""
    bass = symbol.bass().pitchClass if symbol.bass() is not None else None
    return chord_name(root, suffix, bass, flats)


def _labelled(notes: list, bar_starts: list[Fraction], end: Fraction, sharps: int) -> list[tuple[Fraction, str]]:
    """One chord a bar from the melody (the project's labeller); a bar it cannot label keeps
    the chord before it, and bars before the first label take the first."""
    major_tonic = 7 * sharps % 12
    scale = {(major_tonic + step) % 12 for step in (0, 2, 4, 5, 7, 9, 11)}  # the key signature's notes
    ticks = np.array([round(start * RESOLUTION) for start in bar_starts], dtype=np.int64)
    bar_ends = np.append(ticks[1:], round(end * RESOLUTION))
    onset = np.array([round(offset * RESOLUTION) for offset, _, _ in notes], dtype=np.int64)
    duration = np.array([max(1, round(length * RESOLUTION)) for _, length, _ in notes], dtype=np.int64)
    pitch = np.array([p for _, _, p in notes], dtype=np.int64)
    bar = np.searchsorted(ticks, onset, side="right") - 1
    keep = bar >= 0
    labels = bar_chords(bar[keep], onset[keep], pitch[keep], duration[keep], bar_ends, len(ticks))
    heard = [set(pitch[keep][bar[keep] == index] % 12) for index in range(len(ticks))]
    chords = []
    for start, label, classes in zip(bar_starts, labels, heard, strict=True):
        if label != NO_CHORD:
            root_name, quality = label.split(":")
            root = ROOT_NAMES.index(root_name)
            suffix = LABEL_SUFFIX[quality]
            if suffix in (None, "", "m", "7") and not {(root + 3) % 12, (root + 4) % 12} & classes:
                # the melody leaves the third open: the key's third, so the band stays in the key
                suffix = "" if (root + 4) % 12 in scale or (root + 3) % 12 not in scale else "m"
            chords.append((start, chord_name(root, suffix or "", None, sharps < 0)))
    if not chords:
        raise TuneSkipped("no chord could be labelled")
    return [(Fraction(0), chords[0][1]), *chords[1:]] if chords[0][0] > 0 else chords
