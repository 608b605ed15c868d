"""MMA (Musical MIDI Accompaniment, Debian's `mma`): its groove library, and running it.

`meloformer-corpus --band` (training/band.py) writes one MMA song file per arrangement and
lets MMA render the band. This module is all it knows about MMA: where it is installed,
which grooves its standard library defines and for which metre, a plausible tempo for
each, the tracks and voices of a groove, and how to run it so that one input always gives
the same bytes (``RndSeed`` in the song, ``PYTHONHASHSEED=0`` for MMA's own Python).

MMA's ``Time N`` counts beats per bar, each 192 MIDI ticks, whatever note the beat stands
for: a 6/8 style may count six eighths (68swing), two dotted quarters (68march) or three
quarters (afro-cuban); 12/8 ballads count four dotted quarters (ballad68, ballad128); and
several 2/4 styles are written in four eighth-note beats, to be played at double tempo
("Time is set to 4, so if you have a 2/4 piece double the tempo", dixie.mma).
`Groove.beat_quarters` records which note a beat is, so a tune's bar can be matched with
the groove's (`Groove.fit`) and MMA's output rescaled to the tune's notation.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from meloformer_core.errors import MeloformerError

MMA_HOME = Path("/usr/share/mma")  # Debian's layout: lib/, includes/, MMA/ (its Python)
STDLIB = MMA_HOME / "lib" / "stdlib"
EXAMPLES = Path("/usr/share/doc/mma/examples")
TICKS_PER_BEAT = 192  # MMA writes every file with 192 ticks per beat
RUN_TIMEOUT = 120.0  # seconds for one MMA run
MAX_BARS = 4000

UNUSED_STYLES = frozenset({"metronome", "metronome3", "metronome6", "metronome68", "none"})
NOT_A_MAIN_GROOVE = re.compile(r"intro|end|fill|metronome|-44$", re.IGNORECASE)  # Ballad68-44: a 4/4 fill bar
# 4/4 styles written in four eighth-note beats to a 2/4 bar: their docs ask for double tempo
DOUBLE_TIME_STYLES = frozenset({
    "broadway", "bwmarch", "charleston", "dixie", "fastswing", "march", "merengue", "polka", "quickstep",
    "ragtime", "samba", "ska",
})  # fmt: skip
# compound-metre styles: which note one beat is, by `Time` (six eighths, three quarters, two or
# four dotted quarters); "128" styles are 12/8 written as 4/4 with triplets
COMPOUND_BEAT_QUARTERS = {6: Fraction(1, 2), 3: Fraction(1), 2: Fraction(3, 2), 4: Fraction(3, 2)}

# Tempo ranges in MMA beats per minute. Styles whose docs name a tempo, or whose beat is not
# a quarter note, are listed; the others take the range of the first keyword in their name.
STYLE_TEMPO = {
    "68march": (100, 124), "68swing": (240, 312), "blues68": (150, 210), "arpeggio68": (180, 240),
    "afro-cuban": (120, 168), "ballad68": (56, 80), "ballad128": (56, 80), "blues128": (56, 80),
    "rock-128": (60, 88), "bebop": (120, 150), "spiritual": (120, 170), "mellowjazz": (56, 72),
    "nitejazz": (52, 66), "vienesewaltz": (150, 190), "jazz-54": (120, 170), "broadway": (200, 280),
    "bwmarch": (200, 250), "charleston": (200, 280), "dixie": (180, 230), "fastswing": (200, 260),
    "march": (200, 240), "merengue": (200, 250), "polka": (200, 250), "quickstep": (190, 240),
    "ragtime": (180, 230), "samba": (180, 220), "ska": (200, 260),
}  # fmt: skip
KEYWORD_TEMPO = (
    ("fast", (168, 216)), ("slow", (56, 84)), ("ballad", (60, 88)), ("lullaby", (60, 84)), ("hymn", (70, 96)),
    ("waltz", (96, 150)), ("swing", (110, 168)), ("jazz", (110, 168)), ("jive", (120, 168)),
    ("bigband", (110, 168)), ("rock", (96, 136)), ("beat", (96, 136)), ("bossa", (110, 140)),
)  # fmt: skip
DEFAULT_TEMPO = (88, 128)


class MmaError(MeloformerError):
    """MMA is missing, or could not render a song."""


def mma_program() -> str:
    """The `mma` executable; one line naming the package where it is missing."""
    found = shutil.which("mma")
    if found is None or not STDLIB.is_dir():
        raise MmaError("mma (Musical MIDI Accompaniment) is not installed: apt-get install mma")
    return found


@dataclass(frozen=True)
class Groove:
    name: str  # as its DefGroove spells it
    style: str  # the library file's stem: "folk" for stdlib/folk.mma
    beats: int  # MMA's `Time` when it was defined
    beat_quarters: Fraction  # the note one beat stands for, in quarter notes
    compound: bool  # a 6/8 or 12/8 feel (beats divided in three)
    tempo: tuple[int, int]  # plausible MMA beats per minute
    intros: tuple[str, ...] = ()  # grooves of the same style and metre to start with
    endings: tuple[str, ...] = ()  # … and to end with

    def fit(self, numerator: int, denominator: int) -> Fraction | None:
        """Quarter notes of a tune in ``numerator/denominator`` per beat of this groove, when
        one groove bar is half, one or two bars of the tune and the feel (simple or compound)
        agrees; None when it does not fit. 2/2 is played as 4/4."""
        if (numerator, denominator) == (2, 2):
            numerator, denominator = 4, 4
        compound = numerator in (6, 9, 12)
        if compound != self.compound:
            return None
        tune_bar = Fraction(4 * numerator, denominator)
        # the tune's beat (a dotted note in compound metre) is the groove's beat, rescaled
        tune_beat = Fraction(12, denominator) if compound else Fraction(4, denominator)
        quarters = self.beat_quarters * tune_beat / (Fraction(3, 2) if compound else 1)
        return quarters if self.beats * quarters / tune_bar in (Fraction(1, 2), 1, 2) else None


def style_tempo(style: str) -> tuple[int, int]:
    if style in STYLE_TEMPO:
        return STYLE_TEMPO[style]
    return next((tempo for keyword, tempo in KEYWORD_TEMPO if keyword in style), DEFAULT_TEMPO)


def _logical_lines(text: str) -> list[str]:
    """MMA's lines: comments (//) removed, backslash continuations joined."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def read_style(path: Path) -> list[Groove]:
    """The main grooves a library file defines (intros, endings, fills and metronomes are
    attached to the main grooves of the same metre), with the `Time` and `TimeSig` in force
    at each ``DefGroove``."""
    style = path.stem.lower()
    beats, signature = 4, (4, 4)
    defined: list[tuple[str, int, tuple[int, int]]] = []
    in_doc = False
    for line in _logical_lines(path.read_text(errors="replace")):
        words = line.split()
        if not words:
            continue
        keyword = words[0].lower()
        if in_doc:
            in_doc = keyword != "end"
        elif keyword == "begin" and len(words) > 1 and words[1].lower() == "doc":
            in_doc = True
        elif keyword == "time" and len(words) > 1 and words[1].isdigit():
            beats = int(words[1])
        elif keyword == "timesig" and (found := re.match(r"timesig\s+(\d+)\s*/?\s*(\d+)", line.strip(), re.I)):
            signature = (int(found[1]), int(found[2]))  # "Timesig 6 8" or "Timesig 6/8"
        elif keyword == "defgroove" and len(words) > 1:
            defined.append((words[1], beats, signature))
    compound_style = "128" in style
    grooves = []
    for name, beats, signature in defined:
        if NOT_A_MAIN_GROOVE.search(name):
            continue
        compound = compound_style or (signature[0] in (6, 9, 12) and signature[1] == 8)
        if compound and beats not in COMPOUND_BEAT_QUARTERS:
            continue
        if compound:
            beat_quarters = COMPOUND_BEAT_QUARTERS[beats]
        else:
            beat_quarters = Fraction(1, 2) if style in DOUBLE_TIME_STYLES and beats == 4 else Fraction(1)
        same_metre = [other for other, *metre in defined if tuple(metre) == (beats, signature)]
        grooves.append(Groove(
            name, style, beats, beat_quarters, compound, style_tempo(style),
            intros=tuple(g for g in same_metre if re.search("intro", g, re.I) and not re.search("drum|mil", g, re.I)),
            endings=tuple(g for g in same_metre if re.search("end", g, re.I)),
        ))  # fmt: skip
    return grooves


@functools.cache
def groove_catalogue(library: Path = STDLIB) -> tuple[Groove, ...]:
    """Every main groove of MMA's standard library, sorted by style and name."""
    files = sorted(p for p in library.glob("*.mma") if p.stem.lower() not in UNUSED_STYLES)
    return tuple(groove for path in files for groove in read_style(path))


@functools.cache
def voice_programs() -> dict[str, int]:
    """MMA's voice names (upper case) → General MIDI program, from MMA's own table."""
    text = (MMA_HOME / "MMA" / "miditables.py").read_text()
    block = text[text.index("voiceNames = {") : text.index("voiceInx")]
    return {name.upper(): int(number) for number, name in re.findall(r"(\d+): '([^']+)'", block)}


@functools.cache
def groove_tracks(style: str) -> dict[str, tuple[tuple[str, int | None], ...]]:
    """Each groove of a library style (upper-case name) → its tracks: (MMA track name, the
    General MIDI program of its first voice; None for drum tracks and unknown voices).
    Asked of MMA itself (``mma -Djs``), which knows what every groove inherits."""
    output = _run([mma_program(), "-Djs", str(STDLIB / f"{style}.mma")], cwd=None, timeout=RUN_TIMEOUT)
    start = output.find("\n[")
    if start < 0:
        raise MmaError(f"mma -Djs {style}.mma: no groove list in its output")
    tracks = {}
    for groove in json.loads(output[start + 1 :]):
        tracks[groove["groove"].upper()] = tuple(
            (track["track"], None if track["track"].upper().startswith("DRUM") else _program(track["voice"][0]))
            for track in groove["tracks"]
        )
    return tracks


def _program(voice: str) -> int | None:
    if voice.isdigit():
        return int(voice) if int(voice) < 128 else None
    return voice_programs().get(voice.upper())


def _environment() -> dict[str, str]:
    # MMA is a Python program: a fixed hash seed keeps its set and dict orders, and so its
    # output, the same from run to run (its random choices are fixed by RndSeed). It reads
    # song files as cp1252: the files written here are plain ASCII, examples are copied as bytes.
    return {**os.environ, "PYTHONHASHSEED": "0"}


def _run(command: list[str], cwd: Path | None, timeout: float) -> str:
    try:
        process = subprocess.run(command, cwd=cwd, env=_environment(), capture_output=True, text=True,
                                 errors="replace", timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise MmaError(f"mma ran longer than {timeout:g} s") from None
    output = process.stdout + process.stderr
    if process.returncode != 0:
        raise MmaError(f"mma failed: {_mma_complaint(output)}")
    return output


def _mma_complaint(output: str) -> str:
    """MMA's error in one line (its messages span several lines)."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and "PLUGIN" not in line]
    for index, line in enumerate(lines):
        if line.startswith("Error"):
            return " ".join(lines[index : index + 3])[:300]
    return (lines[-1] if lines else "no message")[:300]


def render(folder: Path, song_file: str, timeout: float = RUN_TIMEOUT) -> bytes:
    """Run MMA on ``folder/song_file`` (in ``folder``, where its includes are) → MIDI bytes."""
    target = folder / ".meloformer-render.mid"
    target.unlink(missing_ok=True)
    # -m: MMA refuses songs over 500 bars unless told; a long tune with a groove bar of half a bar may reach it
    command = [mma_program(), "-w", "-xNOCREDIT", "-m", str(MAX_BARS), "-f", str(target), song_file]
    _run(command, cwd=folder, timeout=timeout)
    if not target.is_file():
        raise MmaError("mma wrote no MIDI file")
    return target.read_bytes()
