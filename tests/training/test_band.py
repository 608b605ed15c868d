"""`meloformer-corpus --band`: tunes arranged by MMA, its examples and Planet Blupi's music."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from meloformer_core.midi_io import read_midi
from training import mma
from training.band import GM_DRUM_KEYS, PLANETBLUPI, Plan, Timeline, arrange, build, main, plan_arrangement
from training.band_tunes import Tune, TuneRef, close_repeats, list_tunes, load_tune, regular_bars, split_abc

needs_mma = pytest.mark.skipif(shutil.which("mma") is None or not mma.STDLIB.is_dir(),
                               reason="MMA is not installed (apt-get install mma)")  # fmt: skip
TINY = {"seed": 5, "workers": 1, "limit": 2, "timeout": 120, "sources": ("tunes",), "collections": ("miscFolk",)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Two miscFolk tunes arranged with one worker."""
    folder = tmp_path_factory.mktemp("band") / "corpus"
    return folder, build(folder, progress=False, **TINY)


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def _tune_notes(ref: TuneRef) -> list[tuple[Fraction, int]]:
    """The tune's notes as music21 reads them, repeats played out as ABC means: (offset, pitch)."""
    from music21 import converter, harmony

    header, texts = split_abc(Path(ref.path).read_text())
    score = converter.parseData(f"{header}\n{texts[ref.index]}", format="abc")
    close_repeats(score)
    notes = score.expandRepeats().parts[0].stripTies().flatten().notes
    return sorted((Fraction(n.offset).limit_denominator(1920), p.midi) for n in notes
                  if not isinstance(n, harmony.Harmony) and n.quarterLength > 0 for p in n.pitches)  # fmt: skip


@needs_mma
def test_tiny_render_reads_back_as_a_band_under_the_tune(tiny: tuple[Path, dict]) -> None:
    folder, summary = tiny
    records = [r for r in _records(folder) if "skipped" not in r]
    assert summary["files"] == {"arrangement": len(records)} and len(records) + sum(summary["skipped"].values()) == 2
    assert records and not summary["failures"]
    refs = {ref.key: ref for ref in list_tunes(("miscFolk",))}
    for record in records:
        song = read_midi(folder / record["path"])
        assert all(len(track.notes) for track in song.tracks)  # no empty track
        lead, band = song.tracks[0], song.tracks[1:]
        # the lead is the tune, note for note, from the first pass on
        expected = _tune_notes(refs[record["path"].removeprefix("arrangements/").removesuffix(".mid")])
        played = sorted((int(s), int(p)) for s, p in zip(lead.notes.starts, lead.notes.pitches, strict=True))
        first = played[: len(expected)]
        assert [p for _, p in first] == [p for _, p in expected]
        onsets = [Fraction(s - first[0][0], song.resolution) for s, _ in first]
        assert onsets == [offset - expected[0][0] for offset, _ in expected]
        # a bass part below the lead, drums where the groove has them, on GM kit keys
        grooved = mma.groove_tracks(record["style"])[record["groove"].upper()]
        bass = [t for t in band if t.name.upper().startswith(("BASS", "WALK")) and 32 <= t.program <= 39]
        if any(name.upper().startswith(("BASS", "WALK")) and 32 <= (program or 0) <= 39 for name, program in grooved):
            assert bass and max(np.median(t.notes.pitches) for t in bass) < np.median(lead.notes.pitches)
        drums = [t for t in band if t.is_drum]
        assert bool(drums) == any(name.upper().startswith("DRUM") for name, _ in grooved)
        for track in drums:
            assert GM_DRUM_KEYS[0] <= track.notes.pitches.min() and track.notes.pitches.max() <= GM_DRUM_KEYS[1]
        assert record["licence"].startswith("melody: public domain") and record["source"].startswith("music21 corpus")
    # corpus.json counts what is there
    files = sorted(folder.rglob("*.mid"))
    assert json.loads((folder / "corpus.json").read_text()) == summary
    assert summary["midi_files"] == len(files) == len(records)
    assert summary["notes"] == sum(read_midi(path).note_count for path in files)
    assert sum(summary["tracks_by_family"].values()) == summary["tracks"] == sum(len(r["tracks"]) for r in records)


@needs_mma
def test_the_same_seed_writes_the_same_bytes_and_a_rerun_resumes(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    folder, summary = tiny
    again = tmp_path / "again"
    assert build(again, progress=False, **{**TINY, "workers": 2}) == summary
    names = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((folder / name).read_bytes() == (again / name).read_bytes() for name in names)
    # a rerun renders nothing again; a lost file is rendered again, the same
    written = {p: p.stat().st_mtime_ns for p in again.rglob("*.mid")}
    lost = sorted(written)[0]
    lost.unlink()
    assert build(again, progress=False, **TINY) == summary
    assert lost.read_bytes() == (folder / lost.relative_to(again)).read_bytes()
    assert all(p.stat().st_mtime_ns == when for p, when in written.items() if p != lost)
    # another seed: another arrangement, refused in this folder
    assert main(["--output", str(again), "--seed", "6", "--sources", "tunes", "--quiet"]) == 1


@needs_mma
def test_layered_arrangements_add_tracks_of_other_grooves_and_leave_the_plain_ones_alone(
    tiny: tuple[Path, dict], tmp_path: Path
) -> None:
    folder, _ = tiny
    build(tmp_path, progress=False, **TINY)
    summary = build(tmp_path, progress=False, **{**TINY, "sources": ("layered",)})  # added to the folder
    assert not summary["failures"] and summary["files"]["layered"] >= 1
    assert summary["files"]["arrangement"] == tiny[1]["files"]["arrangement"]  # corpus.json counts both
    for plain in folder.rglob("*.mid"):  # the plain arrangements are the same bytes with or without layers
        assert (tmp_path / plain.relative_to(folder)).read_bytes() == plain.read_bytes()
    layered = [r for r in _records(tmp_path) if r["kind"] == "layered" and "skipped" not in r]
    for record in layered:
        plain = next(r for r in _records(folder) if r["path"] == record["path"].replace("layered/", "arrangements/"))
        song = read_midi(tmp_path / record["path"])
        names = [track.name.upper() for track in song.tracks]
        assert len(names) == len(set(names))  # every track its own
        groove_names = {name.upper() for name, _ in mma.groove_tracks(record["style"])[record["groove"].upper()]}
        assert 1 <= len(record["layers"]) <= 4
        for track, donor in record["layers"].items():
            assert track.upper() not in groove_names  # a track the groove does not have …
            donor_style = next(g.style for g in mma.groove_catalogue() if g.name.upper() == donor.upper())
            assert donor_style != record["style"]  # … from another style's groove
            played = song.tracks[names.index(track.upper())]
            assert len(played.notes) and not played.is_drum and not 32 <= played.program <= 39  # never a drum or bass
        # the lead is still the tune, the layers follow its metre
        assert song.tracks[0].name == "Lead" and record["metre"] == plain["metre"]
        assert record["licence"] == plain["licence"]


def test_missing_mma_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from training.corpus import main as corpus_main

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert corpus_main(["--band", "--output", str(tmp_path / "out"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "mma" in error and "apt-get install mma" in error
    assert not (tmp_path / "out").exists()


@needs_mma
@pytest.mark.skipif(not PLANETBLUPI.is_dir(), reason="planetblupi-music-midi is not installed")
def test_examples_are_rendered_and_planet_blupi_copied_with_their_licences(tmp_path: Path) -> None:
    summary = build(tmp_path, seed=0, workers=1, limit=2, timeout=120, sources=("examples", "planetblupi"),
                    progress=False)  # fmt: skip
    assert summary["files"] == {"mma-example": 2, "planetblupi": 2} and not summary["failures"]
    for record in _records(tmp_path):
        song = read_midi(tmp_path / record["path"])
        assert song.note_count == record["notes"] > 0
        assert ("GPL-2+" if record["kind"] == "mma-example" else "GPL-3+") in record["licence"]
    # music001.mid plays one piece of 88 bars ten times: one pass is kept
    looped = next(r for r in _records(tmp_path) if r["path"] == "planetblupi/music001.mid")
    assert looped["loop"].startswith("88 of 877 bars")
    assert len(read_midi(tmp_path / looped["path"]).bar_lines()) - 1 <= 88


@pytest.mark.skipif(not mma.STDLIB.is_dir(), reason="MMA's library is not installed")
def test_grooves_fit_the_tunes_metre() -> None:
    catalogue = {groove.name: groove for groove in mma.groove_catalogue()}
    assert len(catalogue) > 500 and all(low < high for low, high in (g.tempo for g in catalogue.values()))
    assert not any("Intro" in name or "End" in name for name in catalogue)
    assert catalogue["Folk"].fit(4, 4) == 1 and catalogue["Folk"].fit(2, 4) == 1  # a 2/4 tune: two bars a groove bar
    assert catalogue["Folk"].fit(3, 4) is None and catalogue["Folk"].fit(6, 8) is None
    assert catalogue["Polka"].fit(2, 4) == Fraction(1, 2)  # written in four eighth-note beats
    assert catalogue["Waltz"].fit(3, 4) == 1 and catalogue["Waltz"].fit(3, 8) == Fraction(1, 2)
    assert catalogue["68Swing"].fit(6, 8) == Fraction(1, 2) and catalogue["68March"].fit(6, 8) == Fraction(3, 2)
    assert catalogue["Ballad68"].fit(12, 8) == Fraction(3, 2)
    assert not [g for g in catalogue.values() if g.fit(9, 8)]


def test_an_end_repeat_without_a_start_goes_back_to_the_previous_end() -> None:
    # X:72 of the Northumbrian Minstrelsy: "d|B>AGg …|c>edc BGG:| d|BGdG …|c>edc BGG:|" is A A B B
    refs = {ref.name: ref for ref in list_tunes(("miscFolk",))}
    tune = load_tune(refs["northumbrianminstrelsyopus_0072"])
    assert tune.length == 2 * 2 * 4 * 4  # two parts of four bars, each twice (music21 alone: A A B A B)
    parts = [[(offset - start, pitch) for offset, _, pitch in tune.notes if start <= offset < start + 16]
                for start in (0, 16, 32, 48)]  # fmt: skip
    assert parts[0] == parts[1] != parts[2] == parts[3]


def test_a_tune_is_arranged_only_when_its_bars_fall_on_the_bands() -> None:
    bar = Fraction(3)
    assert regular_bars([Fraction(1), bar, bar, Fraction(2)], bar, Fraction(1))  # a pickup and the bar completing it
    assert regular_bars([bar, Fraction(5, 2), Fraction(1, 2), bar], bar, Fraction(0))  # a bar split at a repeat sign
    assert not regular_bars([bar, Fraction(2), Fraction(2), Fraction(2)], bar, Fraction(0))  # 2/4 bars under 3/4
    assert not regular_bars([Fraction(1, 2), Fraction(11, 4), bar], bar, Fraction(1, 2))  # a dot missing in the ABC


def _tune(numerator: int, denominator: int, pickup: Fraction, bars: int) -> Tune:
    bar = Fraction(4 * numerator, denominator)
    length = bar * (bars - 1) if pickup else bar * bars  # a pickup's last bar completes it
    notes = tuple((Fraction(k), Fraction(1), 60 + k % 12) for k in range(int(length)))
    return Tune("test", numerator, denominator, 0, False, length, pickup, bars, notes, ((Fraction(0), "C"),), "test")


def test_a_pickup_ends_the_bar_before_the_first_full_bar() -> None:
    tune = _tune(3, 4, Fraction(1), 9)
    waltz = next(g for g in mma.groove_catalogue() if g.name == "Waltz") if mma.STDLIB.is_dir() else None
    groove = waltz or mma.Groove("Waltz", "waltz", 3, Fraction(1), False, (96, 150))
    plan = Plan(groove, Fraction(1), 120, "WaltzIntro", 2, None, 2, 0, 100, 0, "as written", (), 1)
    timeline = Timeline.of(tune, plan)
    # two intro bars, then the pickup on the third bar's last beat; the second pass follows on
    assert timeline.pass_starts == (Fraction(8), Fraction(8) + tune.length)
    assert (timeline.pass_starts[0] + tune.pickup) % 3 == 0 and timeline.end % 3 == 2
    assert timeline.groove_bars == 19


@needs_mma
def test_chord_symbols_are_the_tunes_own_and_a_groove_can_be_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reel = next(ref for ref in list_tunes(("nottingham-dataset",)) if ref.index == 0)
    tune = load_tune(reel)
    assert tune.chord_source == "symbols" and tune.chords[:3] == ((1, "D"), (5, "Em"), (7, "A"))  # "D"A/2d/2… after A|
    # the Folk groove: drums on GM kit keys, bass in a bass register under the lead
    plan = dataclasses.replace(plan_arrangement(tune, random.Random(0)),
                               groove=next(g for g in mma.groove_catalogue() if g.name == "Folk"),
                               beat=Fraction(1), intro=None, intro_bars=0, ending=None, voices=())  # fmt: skip
    monkeypatch.setattr("training.band.plan_arrangement", lambda tune, rng, layered=False: plan)
    record = arrange(reel, 0, tmp_path / "reel.mid")
    song = read_midi(tmp_path / "reel.mid")
    drums = next(t for t in song.tracks if t.is_drum)
    bass = next(t for t in song.tracks if t.name == "Bass")
    assert record["groove"] == "Folk" and set(drums.notes.pitches.tolist()) <= set(range(35, 82))
    assert 28 <= np.median(bass.notes.pitches) <= 52 < np.median(song.tracks[0].notes.pitches)
