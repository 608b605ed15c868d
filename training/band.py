"""`meloformer-corpus --band`: multi-track band arrangements rendered with MMA, for training.

    meloformer-corpus --band --output DIR [--seed N] [--workers N] [--limit N]
                      [--sources tunes examples planetblupi layered] [--collections essenFolksong …]

Four sources, each in its own folder of DIR (docs/band-corpus.md); the first three by default:

- ``arrangements/<collection>/``: a folk tune of the music21 corpus (training composers
  only) played by a lead instrument over a band that MMA renders: a groove of MMA's
  standard library that fits the tune's metre, a tempo in the groove's range, varied
  voices, drum kit and drum tones, and the tune's own chords (training/band_tunes.py).
- ``mma-examples/``: MMA's example songs, rendered as they are.
- ``planetblupi/``: the MIDI files of Debian's planetblupi-music-midi, copied.
- ``layered/<collection>/``: the tunes arranged again with 2-4 tracks of other styles'
  grooves over the band (`choose_layers`), for bars of as many tracks as real bands play.

The melody is merged after rendering rather than written into the MMA file as a Solo
track: its notes stay exactly the tune's (MMA's note notation would round tuplets and
grace notes), and MMA's output, counted in its own beats, is rescaled to the tune's
notation (a 6/8 groove may count six eighth-note beats; `training.mma.Groove.fit`).

Everything about one file follows from ``--seed`` and the file's name, so a rerun
writes the same bytes whatever ``--workers``; a rerun skips what ``manifest.jsonl`` lists
as done. ``corpus.json`` counts the corpus and lists this run's failures; the manifest
records every file's source, licence and arrangement.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from meloformer_core.atomic import FolderKind, check_output_folder, json_marker, write_bytes_atomically
from meloformer_core.errors import MeloformerError
from meloformer_core.midi_io import read_midi, write_midi
from meloformer_core.music import KeySignature, NoteArray, Song, TempoChange, TimeSignature, Track
from training import mma
from training.band_tunes import FOLK_COLLECTIONS, RESOLUTION, Tune, TuneRef, TuneSkipped, list_tunes, load_tune
from training.isolation import run_isolated

SOURCES = ("tunes", "examples", "planetblupi", "layered")
DEFAULT_SOURCES = ("tunes", "examples", "planetblupi")
PLANETBLUPI = Path("/usr/share/planetblupi/music")
LICENCES = {
    "arrangement": "melody: public domain (traditional tunes; 19th- and early 20th-century songs), encoded in the "
    "music21 corpus (BSD-3-Clause); "
    "accompaniment: rendered by MMA from its standard library (GPL-2+, Bob van der Poel)",
    "mma-example": "GPL-2+ (Bob van der Poel; /usr/share/doc/mma/copyright)",
    "planetblupi": "GPL-3+ (Daniel Roux, EPSITEC SA & Denis Dumoulin; Mathieu Schroeter; "
    "/usr/share/doc/planetblupi-music-midi/copyright)",
}
LICENCES["layered"] = LICENCES["arrangement"]
BAND_KIND = FolderKind(
    "band corpus",
    frozenset({"corpus.json", "manifest.jsonl", "arrangements", "mma-examples", "planetblupi", "layered"}),
    json_marker("corpus.json", lambda record: isinstance(record, dict) and record.get("kind") == "band"),
)

MIN_BARS = 16  # a short tune is played again until the arrangement has at least this many bars
MAX_PASSES = 4
INTRO_CHANCE, ENDING_CHANCE, VOICE_CHANGE_CHANCE = 0.5, 0.7, 0.5
LAYERS = (2, 3, 4)  # tracks of other grooves a layered arrangement adds
LAYER_DRAWS = 24  # donor grooves tried before a layered arrangement settles for fewer layers
LEAD_PROGRAMS = (0, 4, 11, 12, 21, 22, 25, 26, 40, 56, 59, 60, 64, 65, 66, 68, 71, 73, 74, 75, 78, 80, 105, 110)
KITS = (0, 8, 16, 24, 25, 32, 40)  # Standard, Room, Power, Electronic, TR-808, Jazz, Brush
KIT_WEIGHTS = (4, 1, 1, 1, 1, 1, 1)
# Voices a groove's track may take instead of its own, by what the track plays.
VOICE_POOLS = {
    "bass": (32, 33, 34, 35, 36, 38),
    "comping": (0, 1, 2, 4, 5, 6, 11, 12, 16, 17, 18, 21, 24, 25, 26, 27, 45, 46, 105),
    "guitar": (24, 25, 26, 27, 105),
    "sustain": (19, 48, 49, 50, 52, 53, 89, 90, 94),
    "winds": (56, 57, 59, 60, 61, 64, 65, 66, 68, 71, 73, 74),
}
# MMA tones outside General MIDI's percussion keys 35-81, played by the nearest GM tone
GM_TONES = {
    "HighQ": "SideKick", "Slap": "HandClap", "ScratchPush": "HandClap", "ScratchPull": "HandClap",
    "Sticks": "SideKick", "SquareClick": "SideKick", "MetronomeClick": "SideKick", "MetronomeBell": "RideBell",
    "Shaker": "Maracas", "JingleBell": "Tambourine", "Castanets": "Claves", "MuteSurdo": "LowTom2",
    "OpenSurdo": "LowTom1",
}  # fmt: skip
TONE_SETS = {
    "as written": {},
    "ride cymbal": {"ClosedHiHat": "RideCymbal1"},
    "rim shots": {"SnareDrum1": "SideKick", "SnareDrum2": "SideKick"},
    "electric snare": {"SnareDrum1": "SnareDrum2"},
    "deep kick": {"KickDrum1": "KickDrum2"},
}
GM_DRUM_KEYS = (35, 81)
GM_FAMILIES = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed", "pipe",
    "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects",
)  # fmt: skip


class BandError(MeloformerError):
    """The band corpus cannot be built as asked."""


@dataclass(frozen=True)
class Plan:
    """How one tune is arranged: everything drawn from the file's random generator."""

    groove: mma.Groove
    beat: Fraction  # the tune's quarter notes per MMA beat
    tempo: int  # MMA beats per minute
    intro: str | None
    intro_bars: int  # groove bars
    ending: str | None
    passes: int
    lead_program: int
    lead_velocity: int
    kit: int
    tone_set: str
    voices: tuple[tuple[str, int], ...]  # (MMA track, General MIDI program) replacing the groove's voice
    mma_seed: int
    layers: tuple[tuple[str, str], ...] = ()  # (MMA track, the groove of another style it plays as)


def voice_pool(track: str, program: int) -> str | None:
    kind = track.split("-")[0].upper()
    if kind == "PLECTRUM":
        return "guitar"
    if 32 <= program <= 39 or (kind in ("BASS", "WALK") and program in (43, 58)):
        return "bass"
    if program < 32 or program in (45, 46) or 104 <= program <= 107:
        return "comping"
    if 40 <= program < 56 or 88 <= program < 96:
        return "sustain" if program not in (47, 55) else None
    return "winds" if 56 <= program < 80 else None


def changed_voice(track: str, program: int, rng: random.Random) -> tuple[str, int] | None:
    """One time in two, another voice of the track's kind (`voice_pool`): (track, program)."""
    pool = voice_pool(track, program)
    if pool and rng.random() < VOICE_CHANGE_CHANCE:
        return track, rng.choice(VOICE_POOLS[pool])
    return None


def plan_arrangement(tune: Tune, rng: random.Random, layered: bool = False) -> Plan:
    """Choose a style among those with a groove for the tune's metre, then one of its grooves;
    ``layered``: and 2-4 tracks of other styles' grooves to play over it (`choose_layers`)."""
    metre = (tune.numerator, tune.denominator)
    fits = [(groove, beat) for groove in mma.groove_catalogue() if (beat := groove.fit(*metre))]
    if not fits:
        raise TuneSkipped(f"no groove for {tune.numerator}/{tune.denominator}")
    style = rng.choice(sorted({groove.style for groove, _ in fits}))
    groove, beat = rng.choice([fit for fit in fits if fit[0].style == style])
    tempo = rng.randint(*groove.tempo)
    intro = rng.choice(groove.intros) if groove.intros and rng.random() < INTRO_CHANCE else None
    tune_bars_per_groove_bar = groove.beats * beat / Fraction(4 * tune.numerator, tune.denominator)
    intro_bars = int(rng.choice((2, 4)) / tune_bars_per_groove_bar) if intro else 0
    ending = rng.choice(groove.endings) if groove.endings and rng.random() < ENDING_CHANCE else None
    voices, seen, names = [], set(), set()  # names: every track, drums too, that layers must not take
    tracks = mma.groove_tracks(style)
    for name in (groove.name, intro, ending):
        for track, program in tracks.get((name or "").upper(), ()):
            names.add(track)
            if track in seen or program is None:
                continue
            seen.add(track)
            if voice := changed_voice(track, program, rng):
                voices.append(voice)
    plan = Plan(
        groove, beat, tempo, intro, intro_bars, ending,
        passes=min(MAX_PASSES, max(1, math.ceil(MIN_BARS / tune.bars))),
        lead_program=rng.choice(LEAD_PROGRAMS), lead_velocity=rng.randint(88, 106),
        kit=rng.choices(KITS, KIT_WEIGHTS)[0], tone_set=rng.choice(sorted(TONE_SETS)),
        voices=tuple(voices), mma_seed=rng.randrange(1, 2**31),
    )  # fmt: skip
    if not layered:
        return plan
    layers = choose_layers(groove, [fit[0] for fit in fits if fit[1] == beat], names, rng)
    if not layers:
        raise TuneSkipped("no other groove of this metre to layer")
    layer_voices = tuple(voice for track, _, program in layers if (voice := changed_voice(track, program, rng)))
    layer_pairs = tuple((track, donor.name) for track, donor, _ in layers)
    return dataclasses.replace(plan, voices=plan.voices + layer_voices, layers=layer_pairs)


def choose_layers(groove: mma.Groove, fits: list[mma.Groove], taken: set[str],
                  rng: random.Random) -> list[tuple[str, mma.Groove, int]]:  # fmt: skip
    """Tracks of other styles' grooves in the same metre to play over ``groove``, as a band adds
    a pad, an arpeggio, a second guitar or a horn line: (MMA track, its groove, its program).
    Never a drum or a second bass, never a track name the arrangement already has."""
    wanted = rng.choice(LAYERS)
    donors = [other for other in fits if other.style != groove.style and other.beats == groove.beats]
    layers: list[tuple[str, mma.Groove, int]] = []
    names = {name.upper() for name in taken}
    for _ in range(LAYER_DRAWS):
        if len(layers) == wanted or not donors:
            break
        donor = rng.choice(donors)
        playable = [
            (track, program) for track, program in mma.groove_tracks(donor.style).get(donor.name.upper(), ())
            if program is not None and track.upper() not in names
            and voice_pool(track, program) != "bass"  # a bass voice …
            and track.split("-")[0].upper() not in ("BASS", "WALK")  # … or a bass line on another voice
        ]  # fmt: skip
        if playable:
            track, program = rng.choice(playable)
            names.add(track.upper())
            layers.append((track, donor, program))
    return layers


@dataclass(frozen=True)
class Timeline:
    """Where the tune's passes start in the arrangement, in the tune's quarter notes."""

    tune_bar: Fraction
    groove_bar: Fraction
    pass_starts: tuple[Fraction, ...]
    end: Fraction
    groove_bars: int

    @classmethod
    def of(cls, tune: Tune, plan: Plan) -> Timeline:
        tune_bar = Fraction(4 * tune.numerator, tune.denominator)
        groove_bar = plan.groove.beats * plan.beat
        # a pickup ends its bar: the tune's first full bar starts on a bar line of the band
        first = plan.intro_bars * groove_bar + (tune_bar - tune.pickup) % tune_bar
        starts = [first]
        for _ in range(plan.passes - 1):
            after = starts[-1] + tune.length
            starts.append(after + (first - after) % tune_bar)
        end = starts[-1] + tune.length
        return cls(tune_bar, groove_bar, tuple(starts), end, math.ceil(end / groove_bar))

    def tune_offset(self, time: Fraction, length: Fraction) -> Fraction:
        """The tune's offset heard at ``time``: before the first pass, the tune's last bars (an
        intro plays the turnaround); after a pass, its last chord."""
        if time < self.pass_starts[0]:
            return (time - self.pass_starts[0]) % length
        start = max(s for s in self.pass_starts if s <= time)
        return min(time - start, length - Fraction(1, RESOLUTION))


def mma_song(tune: Tune, plan: Plan, timeline: Timeline, title: str) -> str:
    """The MMA file: settings, then one line of chords a bar (a chord or "/" a beat)."""
    tones = {**GM_TONES, **TONE_SETS[plan.tone_set]}
    lines = [
        f"// {title}",
        f"RndSeed {plan.mma_seed}",
        "ToneTr " + " ".join(f"{old}={new}" for old, new in tones.items()),
        # a track plays as another style's groove only once that groove is loaded
        *dict.fromkeys(f"Groove {donor}" for _, donor in plan.layers),
        f"Tempo {plan.tempo}",
    ]
    tracks = mma.groove_tracks(plan.groove.style)
    grooves = {0: plan.intro or plan.groove.name, plan.intro_bars: plan.groove.name}
    if plan.ending and timeline.groove_bars - 1 > plan.intro_bars:
        grooves[timeline.groove_bars - 1] = plan.ending
    beats = plan.groove.beats
    for bar in range(timeline.groove_bars):
        if bar in grooves:
            in_groove = {track for track, _ in tracks.get(grooves[bar].upper(), ())} | {t for t, _ in plan.layers}
            lines.append(f"Groove {grooves[bar]}")
            lines += [f"{track} Groove {donor}" for track, donor in plan.layers]
            lines += [f"{track} Voice {program}" for track, program in plan.voices if track in in_groove]
            lines.append(f"AllTracks Drum Voice {plan.kit}")
        chords = []
        for beat in range(beats):
            time = (bar * beats + beat) * plan.beat
            chords.append(tune.chord_at(timeline.tune_offset(time, tune.length), plan.beat / 2))
        shown = [chords[0], *("/" if chord == before else chord for before, chord in itertools.pairwise(chords))]
        lines.append(f"{bar + 1} {' '.join(shown)}")
    return "\n".join(lines) + "\n"


def _rescale(values: np.ndarray, factor: Fraction) -> np.ndarray:
    """Round values × factor to whole ticks (half up), exactly."""
    return (values * factor.numerator * 2 + factor.denominator) // (factor.denominator * 2)


def band_song(rendered: bytes, tune: Tune, plan: Plan, timeline: Timeline) -> Song:
    """MMA's tracks in the tune's notation (480 ticks a quarter), the melody on top as the lead."""
    band = read_midi(rendered, name="MMA's output")
    factor = Fraction(RESOLUTION) * plan.beat / band.resolution
    tracks = []
    lead = []
    for start in timeline.pass_starts:
        for offset, duration, pitch in tune.notes:
            onset = start + offset
            accent = 10 if onset % timeline.tune_bar == 0 else 0
            tick = round(onset * RESOLUTION)
            lead.append((tick, pitch, max(1, round(duration * RESOLUTION)), min(127, plan.lead_velocity + accent)))
    tracks.append(Track("Lead", plan.lead_program, False, NoteArray(lead)))
    lead_median = float(np.median([pitch for _, pitch, _, _ in lead]))
    for track in band.tracks:
        data = track.notes.array
        if track.is_drum:
            data = data[(data[:, 1] >= GM_DRUM_KEYS[0]) & (data[:, 1] <= GM_DRUM_KEYS[1])]
        if not len(data):
            continue
        starts = _rescale(data[:, 0], factor)
        durations = np.maximum(1, _rescale(data[:, 0] + data[:, 2], factor) - starts)
        pitches = data[:, 1]
        if not track.is_drum:  # the melody on top: a part above it (arpeggios, obbligatos) goes down by octaves
            octaves = max(0, math.ceil((float(np.median(pitches)) - lead_median) / 12))
            octaves = min(octaves, int(pitches.min()) // 12)
            pitches = pitches - 12 * octaves
        notes = NoteArray.from_columns(starts, pitches, durations, data[:, 3])
        tracks.append(Track(track.name, track.program, track.is_drum, notes))
    tempos = tuple(
        TempoChange(int(_rescale(np.array([t.tick]), factor)[0]), round(t.us_per_quarter / plan.beat))
        for t in band.tempos
    )  # fmt: skip
    sharps = max(-7, min(7, tune.key_sharps))
    return Song(RESOLUTION, tempos, (TimeSignature(0, tune.numerator, tune.denominator),),
                (KeySignature(0, sharps, tune.minor),), tuple(tracks)).validate("arrangement")  # fmt: skip


def describe(song: Song) -> dict:
    """What the counts need of a written file."""
    end = max(1, song.end_tick)
    return {
        "notes": song.note_count,
        "bars": len(song.bar_starts(end - 1)),
        "seconds": round(float(song.seconds_at([end])[0]), 1),
        "tracks": [[t.name, t.program, t.is_drum, len(t.notes)] for t in song.tracks],
    }


def arrange(ref: TuneRef, seed: int, target: Path, layered: bool = False) -> dict:
    """Arrange one tune into ``target``; the record the manifest keeps. A layered arrangement
    draws from its own random generator, so it differs from the tune's plain one."""
    tune = load_tune(ref)
    rng = random.Random(f"{seed}/layered/{ref.key}" if layered else f"{seed}/{ref.key}")
    plan = plan_arrangement(tune, rng, layered)
    timeline = Timeline.of(tune, plan)
    with tempfile.TemporaryDirectory(prefix="meloformer-band-") as folder:
        title = f"{ref.key}: {tune.title}".encode("ascii", "replace").decode()  # MMA files are plain ASCII
        text = mma_song(tune, plan, timeline, title)
        (Path(folder) / "song.mma").write_text(text, encoding="ascii")
        song = band_song(mma.render(Path(folder), "song.mma"), tune, plan, timeline)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_midi(song, target)
    return {
        "title": tune.title, "collection": ref.collection, "metre": f"{tune.numerator}/{tune.denominator}",
        "chords": tune.chord_source, "style": plan.groove.style, "groove": plan.groove.name, "intro": plan.intro,
        "ending": plan.ending, "mma_tempo": plan.tempo, "qpm": round(float(plan.tempo * plan.beat), 1),
        "passes": plan.passes, "lead": plan.lead_program, "kit": plan.kit, "tone_set": plan.tone_set,
        "voices": dict(plan.voices), **({"layers": dict(plan.layers)} if layered else {}),
        **describe(read_midi(target)),  # as written: unisons on one track merge
    }  # fmt: skip


def render_example(source: Path, seed: int, target: Path) -> dict:
    """Render one MMA example in a copy of its folder (its includes and MIDI files beside it),
    with a random seed set first so that its random timing is the same every run."""
    with tempfile.TemporaryDirectory(prefix="meloformer-mma-") as folder:
        copy = Path(folder) / "example"
        shutil.copytree(source.parent, copy)
        seeded = f"RndSeed {random.Random(f'{seed}/{source.name}').randrange(1, 2**31)}\n".encode()
        (copy / source.name).write_bytes(seeded + source.read_bytes())  # bytes: some examples are not UTF-8
        try:
            data = mma.render(copy, source.name)
        except mma.MmaError as error:
            if "No data created" in str(error):
                raise TuneSkipped("an example that makes no music") from None
            raise
    song = read_midi(data, name=str(source))
    if not song.note_count:
        raise TuneSkipped("an example that makes no music")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(target, data)
    return describe(song)


def loop_length(song: Song) -> int | None:
    """The bars after which a song repeats itself note for note to its end (a game's music
    loops: four of Planet Blupi's files play one piece ten times), or None."""
    starts = song.bar_lines()
    fingerprints = []
    for first, after in itertools.pairwise(starts):
        bar = []
        for index, track in enumerate(song.tracks):
            data = track.notes.array
            inside = data[(data[:, 0] >= first) & (data[:, 0] < after)]
            bar += [(index, start - first, pitch, duration) for start, pitch, duration, _ in inside.tolist()]
        fingerprints.append(hash(tuple(bar)))
    count = len(fingerprints) - 1  # the last bar may be cut short, the first may open with a crash
    for period in range(4, count // 2 + 1):
        if fingerprints[period + 1 : count] == fingerprints[1 : count - period]:
            return period
    return None


def first_bars(song: Song, bars: int) -> Song:
    end = song.bar_lines()[bars]
    tracks = []
    for track in song.tracks:
        data = track.notes.array[track.notes.starts < end].copy()
        data[:, 2] = np.minimum(data[:, 2], end - data[:, 0])
        tracks.append(track.with_notes(NoteArray(data)))

    def before(events: tuple) -> tuple:
        return tuple(event for event in events if event.tick < end)

    return song.replace(tracks=tuple(tracks), tempos=before(song.tempos), time_signatures=before(song.time_signatures),
                        key_signatures=before(song.key_signatures), texts=before(song.texts))  # fmt: skip


def copy_midi(source: Path, target: Path) -> dict:
    """Copy a MIDI file; one that loops is cut to one pass (written through midi_io)."""
    data = source.read_bytes()
    song = read_midi(data, name=str(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    loop = loop_length(song)
    if loop is None:
        write_bytes_atomically(target, data)
        return describe(song)
    whole = len(song.bar_lines()) - 1
    write_midi(first_bars(song, loop), target)
    return {**describe(read_midi(target)), "loop": f"{loop} of {whole} bars kept (the rest repeats them)"}


def render_item(job: tuple[str, str, object, str, int]) -> dict:
    """One corpus file (runs in a worker): its manifest record, or why it was skipped."""
    kind, path, source, output, seed = job
    target = Path(output) / path
    try:
        if kind in ("arrangement", "layered"):
            ref: TuneRef = source  # type: ignore[assignment]
            record = arrange(ref, seed, target, layered=kind == "layered")
            origin = f"music21 corpus: {ref.collection}/{Path(ref.path).name}, tune {ref.index + 1}"
        elif kind == "mma-example":
            record, origin = render_example(Path(str(source)), seed, target), str(source)
        else:
            record, origin = copy_midi(Path(str(source)), target), str(source)
    except TuneSkipped as skipped:
        return {"path": path, "kind": kind, "skipped": str(skipped)}
    return {"path": path, "kind": kind, "source": origin, "licence": LICENCES[kind], **record}


def plan_jobs(output: Path, seed: int, limit: int | None, sources: tuple[str, ...],
              collections: tuple[str, ...]) -> list[tuple[str, str, object, str, int]]:  # fmt: skip
    """Every file the corpus should hold: the first ``limit`` of each source. Tunes with chord
    symbols come first, the others in an order drawn from ``seed``."""
    jobs: list[tuple[str, str, object, str, int]] = []
    if "planetblupi" in sources:
        if not PLANETBLUPI.is_dir():
            raise BandError("planetblupi-music-midi is not installed (apt-get install planetblupi-music-midi); "
                            "or leave it out: --sources tunes examples")  # fmt: skip
        files = sorted(PLANETBLUPI.glob("*.mid"))[:limit]
        jobs += [("planetblupi", f"planetblupi/{p.name}", str(p), str(output), seed) for p in files]
    if "examples" in sources:
        examples = sorted(mma.EXAMPLES.rglob("*.mma"))[:limit]
        jobs += [("mma-example", f"mma-examples/{p.relative_to(mma.EXAMPLES).with_suffix('.mid').as_posix()}",
                  str(p), str(output), seed) for p in examples]  # fmt: skip
    if "tunes" in sources or "layered" in sources:
        tunes = list_tunes(collections)
        random.Random(seed).shuffle(tunes)
        tunes.sort(key=lambda ref: not ref.chord_symbols)  # stable: the shuffled order within each group
        if "tunes" in sources:
            jobs += [("arrangement", f"arrangements/{ref.key}.mid", ref, str(output), seed) for ref in tunes[:limit]]
        if "layered" in sources:
            jobs += [("layered", f"layered/{ref.key}.mid", ref, str(output), seed) for ref in tunes[:limit]]
    return jobs


def _read_manifest(path: Path) -> dict[str, dict]:
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # the last line of a run that was killed
                continue
            records[record["path"]] = record
    return records


def summarise(records: list[dict], seed: int, failures: list[dict]) -> dict:
    written = [r for r in records if "skipped" not in r]
    arrangements = [r for r in written if r["kind"] in ("arrangement", "layered")]
    families: Counter = Counter()
    for record in written:
        for _name, program, is_drum, _notes in record["tracks"]:
            families["drums" if is_drum else GM_FAMILIES[program // 8]] += 1

    def count(field: str) -> dict:
        return dict(sorted(Counter(str(r[field]) for r in arrangements).items()))

    return {
        "purpose": "training", "kind": "band", "seed": seed,
        "midi_files": len(written),
        "files": dict(sorted(Counter(r["kind"] for r in written).items())),
        "notes": sum(r["notes"] for r in written), "bars": sum(r["bars"] for r in written),
        "hours": round(sum(r["seconds"] for r in written) / 3600, 2),
        "tracks": sum(len(r["tracks"]) for r in written), "tracks_by_family": dict(families.most_common()),
        "arrangements": {
            "collections": count("collection"), "metres": count("metre"), "chords": count("chords"),
            "styles": count("style"), "grooves": len({r["groove"] for r in arrangements}),
            "with_intro": sum(r["intro"] is not None for r in arrangements),
            "with_ending": sum(r["ending"] is not None for r in arrangements),
            "kits": count("kit"), "tone_sets": count("tone_set"), "passes": count("passes"),
            "bars": _spread([r["bars"] for r in arrangements]), "qpm": _spread([r["qpm"] for r in arrangements]),
        },
        "licences": LICENCES,
        "skipped": dict(sorted(Counter(r["skipped"] for r in records if "skipped" in r).items())),
        "failures": sorted(failures, key=lambda f: f["path"]),
    }  # fmt: skip


def _spread(values: list) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def build(output: Path, *, seed: int, workers: int, limit: int | None, timeout: float,
          sources: tuple[str, ...] = SOURCES, collections: tuple[str, ...] = FOLK_COLLECTIONS,
          progress: bool = True) -> dict:  # fmt: skip
    """Build (or continue) the band corpus in ``output``; returns what corpus.json holds."""
    from tqdm import tqdm

    if {"tunes", "examples", "layered"} & set(sources):
        mma.mma_program()
    check_output_folder(output, BAND_KIND)
    record_path = output / "corpus.json"
    if record_path.exists():
        earlier = json.loads(record_path.read_text()).get("seed")
        if earlier != seed:
            raise BandError(f"{output} was built with --seed {earlier}: continue it with that seed, or build "
                            "into another folder")  # fmt: skip
    else:
        output.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(record_path, json.dumps({"purpose": "training", "kind": "band", "seed": seed}).encode())
    jobs = plan_jobs(output, seed, limit, sources, collections)
    manifest_path = output / "manifest.jsonl"
    done = _read_manifest(manifest_path)
    wanted = {job[1] for job in jobs}

    def finished(path: str) -> bool:
        return path in done and ("skipped" in done[path] or (output / path).exists())

    todo = [job for job in jobs if not finished(job[1])]
    if "tunes" in sources or "layered" in sources:
        mma.groove_catalogue()  # read once here: the forked workers inherit it
    failures = []
    bar = tqdm(total=len(todo), desc="band corpus", unit="file", disable=not progress)
    with manifest_path.open("a") as manifest:
        for outcome in run_isolated(render_item, enumerate(todo), workers=workers, timeout=timeout):
            path = todo[outcome.index][1]
            if outcome.error is not None:
                failures.append({"path": path, "reason": outcome.error})
            else:
                done[path] = outcome.value
                manifest.write(json.dumps(outcome.value) + "\n")
                manifest.flush()
            bar.update(1)
    bar.close()
    # the whole folder is counted: a run of one source (--sources layered) adds to the others
    records = [done[path] for path in sorted(done) if path in wanted or (output / path).exists()]
    lines = "".join(json.dumps(done[path]) + "\n" for path in sorted(done))
    write_bytes_atomically(manifest_path, lines.encode())
    summary = summarise(records, seed, failures)
    write_bytes_atomically(record_path, json.dumps(summary, indent=1).encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meloformer-corpus --band", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N files of each source")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per file")
    parser.add_argument(
        "--sources",
        nargs="+",
        choices=SOURCES,
        default=list(DEFAULT_SOURCES),
        help="layered: the tunes arranged again, with 2-4 tracks of other grooves over the band",
    )
    parser.add_argument("--collections", nargs="+", default=list(FOLK_COLLECTIONS), help="folk collections to arrange")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        options = {"sources": tuple(args.sources), "collections": tuple(args.collections), "progress": not args.quiet}
        summary = build(args.output, seed=args.seed, workers=args.workers, limit=args.limit, timeout=args.timeout,
                        **options)  # fmt: skip
    except MeloformerError as error:
        print(f"meloformer-corpus: error: {error}", file=sys.stderr)
        return 1
    seconds = round(time.perf_counter() - started, 1)
    counts = {"midi_files": summary["midi_files"], **summary["files"], "notes": summary["notes"],
              "skipped": sum(summary["skipped"].values()), "failures": len(summary["failures"])}  # fmt: skip
    print(json.dumps({**counts, "seconds": seconds}))
    return 0
