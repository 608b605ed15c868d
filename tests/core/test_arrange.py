"""Arranging: chosen tracks written under the kept ones, nothing else touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from meloformer_core.encoding import encode
from meloformer_core.encoding.codec import slice_grid
from meloformer_core.encoding.grammar import NO_POSITION
from meloformer_core.encoding.quantize import to_grid
from meloformer_core.encoding.vocab import TokenType
from meloformer_core.generation.sampling import SamplingConfig
from meloformer_core.generation.session import _END, GROOVE_SHARE, Session, _groove_next, _prompt_parts
from meloformer_core.midi_io import read_midi
from meloformer_core.music import Song
from meloformer_core.service import GenerationService, ServiceError, TrackRequest
from tests.conftest import FIXTURES


def bar_of(song, ticks: int) -> int:
    starts = song.bar_starts(until_tick=ticks)
    return len([s for s in starts if s <= ticks]) - 1


@pytest.mark.parametrize(("seed", "guidance"), [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (0, 2.0), (1, 2.0)])
def test_kept_tracks_are_identical_and_new_notes_stay_in_their_tracks_and_bars(
    service: GenerationService, seed: int, guidance: float
) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    result = service.arrange_song(song, [2, TrackRequest("Strings", 48), TrackRequest("Kit", is_drum=True)], (1, 3),
                                  SamplingConfig(seed=seed, prompt_guidance=guidance))  # fmt: skip
    out = result.song
    assert len(out.tracks) == len(song.tracks) + 2
    assert [out.tracks[i] for i in (0, 1, 3)] == [song.tracks[i] for i in (0, 1, 3)]  # note for note
    assert (out.tracks[4].program, out.tracks[5].is_drum) == (48, True)
    old_organ = {n for n in song.tracks[2].notes if bar_of(song, n.start) not in (1, 2)}
    new_organ = set(out.tracks[2].notes)
    assert old_organ <= new_organ  # outside bars 2-3 the organ is untouched
    for track in (out.tracks[2], out.tracks[4], out.tracks[5]):
        for note in set(track.notes) - old_organ:
            assert bar_of(song, note.start) in (1, 2)  # new notes only in the requested bars
    out.validate()
    assert len(encode(out)) > 0  # the result is a valid, encodable song


@pytest.mark.parametrize("seed", range(3))
def test_the_model_hears_the_kept_tracks_as_they_are(service: GenerationService, seed: int) -> None:
    """What the model heard while arranging holds the kept tracks' notes and no others: it
    never adds notes to a kept track's bar, which would be thrown away while the parts it
    writes answer them (the untrained test model drew on them in most bars)."""
    from meloformer_core.generation.generate import arrange_grid

    model, vocab = service.bundle.model, service.bundle.vocab
    grid = to_grid(read_midi(FIXTURES / "drum_groove.mid"), vocab)
    heard, _ = arrange_grid(model, vocab, grid, {1, 3}, 1, 3, SamplingConfig(seed=seed))
    kept = slice_grid(grid, 1, 3).notes
    for slot in (0, 2):
        assert np.array_equal(heard.notes[heard.notes[:, 0] == slot], kept[kept[:, 0] == slot])


def test_arranging_reproduces_with_a_seed_and_covers_the_whole_song_by_default(service: GenerationService) -> None:
    song = read_midi(FIXTURES / "bach_chorale.mid")
    first = service.arrange_song(song, [TrackRequest("Bass", 33)], None, SamplingConfig(seed=9))
    again = service.arrange_song(song, [TrackRequest("Bass", 33)], None, SamplingConfig(seed=9))
    assert first.song == again.song
    assert first.bars_generated == to_grid(song).bar_count and first.bars_added == 0  # written, none added
    assert first.tokens_fed > 0  # the kept tracks, fed and counted apart from the sampled tokens


def test_arrange_errors(service: GenerationService) -> None:
    song = read_midi(FIXTURES / "jig_6_8.mid")
    with pytest.raises(ServiceError, match="no track 5"):
        service.arrange_song(song, [4])
    with pytest.raises(ServiceError, match="outside the song"):
        service.arrange_song(song, [0], (40, 60))
    with pytest.raises(ServiceError, match="at least one track"):
        service.arrange_song(song, [])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meloformer_core.cli", *args], capture_output=True, text=True)


def test_arrange_command(bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "arranged.mid"
    result = run("arrange", str(FIXTURES / "drum_groove.mid"), "-o", str(out), "--tracks", "bass:33,drums,Organ",
                 "--bars", "2:3", "--model", str(bundle_dir), "--seed", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (
        report["bars_generated"] == 2
        and report["bars_added"] == 0
        and {"tokens_generated", "tokens_per_s", "first_bar_s"} <= report.keys()
    )
    song, arranged = read_midi(FIXTURES / "drum_groove.mid"), read_midi(out)
    names = [t.name for t in arranged.tracks]
    assert names[:4] == [t.name for t in song.tracks]  # kept tracks first, in order
    assert set(names[4:]) <= {"bass", "Drums"}  # a new track with no notes is not stored in a MIDI file
    for slot, name in ((5, "bass"), (6, "Drums")):  # … and it is never lost without a word
        said = f"track {slot} ({name}) got no notes in bars 2-3"
        assert (name in names[4:]) != (said in report.get("warnings", [])), (names, report)
        assert (said in result.stderr) == (said in report.get("warnings", []))
    bad = run("arrange", str(FIXTURES / "drum_groove.mid"), "-o", str(out), "--tracks", "bass:200",
              "--model", str(bundle_dir))  # fmt: skip
    assert bad.returncode == 1 and "GM number 0-127" in bad.stderr and "Traceback" not in bad.stderr


def test_a_requested_track_left_empty_is_reported(service: GenerationService, monkeypatch) -> None:
    """Arrange must never fail silently: a target the model wrote nothing for is named."""
    import dataclasses

    import meloformer_core.generation.generate as generate

    real = generate.arrange_grid

    def without_the_bass(model, vocab, grid, targets, first, stop, sampling, **options):
        new_bars, stats = real(model, vocab, grid, targets, first, stop, sampling, **options)
        return dataclasses.replace(new_bars, notes=new_bars.notes[new_bars.notes[:, 0] != max(targets)]), stats

    monkeypatch.setattr(generate, "arrange_grid", without_the_bass)
    song = read_midi(FIXTURES / "jig_6_8.mid")
    result = service.arrange_song(song, [TrackRequest("Bass", 33)], (0, 2), SamplingConfig(seed=1))
    assert result.warnings == (f"track {len(song.tracks) + 1} (Bass) got no notes in bars 1-2",)
    assert result.summary()["warnings"] == list(result.warnings)


def test_requested_tracks_play_in_every_bar_they_are_due(service: GenerationService) -> None:
    """A new track plays in every bar where the kept music sounds, a regenerated one in every
    bar where it played before; the untrained test model would mostly close bars at once."""
    song = read_midi(FIXTURES / "jig_6_8.mid")
    out = song
    for seed in range(3):
        result = service.arrange_song(song, [TrackRequest("Bass", 33)], (0, 4), SamplingConfig(seed=seed))
        out = result.song
        assert {bar_of(out, n.start) for n in out.tracks[-1].notes} == {0, 1, 2, 3}
        assert not result.warnings
    first = out.tracks[0]
    played = {bar_of(out, n.start) for n in first.notes if bar_of(out, n.start) < 4}
    result = service.infill_song(out, (0, 4), [0], SamplingConfig(seed=4))
    assert {bar_of(out, n.start) for n in result.song.tracks[0].notes if bar_of(out, n.start) < 4} >= played


def test_the_presence_plan_keeps_a_regenerated_track_s_rests_and_fills_new_tracks_under_kept_music() -> None:
    import numpy as np

    from meloformer_core.generation.generate import presence_plan

    old = np.array([[0, 0, 60, 4, 20], [0, 50, 62, 4, 20]])  # slot 0 played in bars 0 and 2
    plan = presence_plan(old, np.array([0, 2]), {0, 3}, [True, True, False, True])
    assert plan == [{0, 3}, {3}, {0}, {3}]  # slot 3, new, under kept music only


def test_written_notes_stay_in_their_instrument_s_range(service: GenerationService) -> None:
    """A bass writes bass notes and drums hit General MIDI kit keys, whatever the model
    would rather (the untrained test model spreads its pitches over all 128)."""
    from meloformer_core.gm import playable_range

    song = read_midi(FIXTURES / "jig_6_8.mid")
    requests = [TrackRequest("Bass", 33), TrackRequest("Kit", is_drum=True), TrackRequest("Flute", 73)]
    for seed in range(3):
        out = service.arrange_song(song, requests, (0, 4), SamplingConfig(seed=seed)).song
        for track in out.tracks[-3:]:
            low, high = playable_range(track.program, track.is_drum)
            assert len(track.notes) and all(low <= n.pitch <= high for n in track.notes), (track.name, seed)
    continued = service.continue_song(out, 2, SamplingConfig(seed=5)).song
    for track, before in zip(continued.tracks, out.tracks, strict=True):
        low, high = playable_range(track.program, track.is_drum)
        low, high = min([low, *before.notes.pitches]), max([high, *before.notes.pitches])  # and its own reach
        assert all(low <= n.pitch <= high for n in track.notes[len(before.notes) :])
    # a part the song plays beyond its instrument's range (a "bass" up at C6) keeps its reach
    high_bass = out.tracks[-3].with_notes(out.tracks[-3].notes.array + np.array([0, 84 - 67, 0, 0]))
    song = out.replace(tracks=[*out.tracks[:-3], high_bass])
    assert max(high_bass.notes.pitches) > 67
    for seed in range(3):
        bass = service.continue_song(song, 2, SamplingConfig(seed=seed)).song.tracks[-1]
        assert all(23 <= n.pitch <= max(high_bass.notes.pitches) for n in bass.notes)


def test_a_drum_groove_keeps_to_its_kit(service: GenerationService) -> None:
    """A drum track that has played for bars keeps to the kit pieces it played (the shipped
    model, left alone, swapped a groove's ride and maracas for cowbell, toms and congas);
    drums that have hit once are still free to choose (the untrained test model spreads its
    keys over the whole General MIDI kit)."""
    song = read_midi(FIXTURES / "drum_groove.mid")
    drums = song.tracks[0]
    assert drums.is_drum and set(drums.notes.pitches) == {36, 38, 42}
    written = []
    for seed in range(3):
        new = service.continue_song(song, 4, SamplingConfig(seed=seed)).song.tracks[0].notes[len(drums.notes) :]
        written += [n.pitch for n in new]
    assert written and set(written) <= {36, 38, 42}
    one_hit = song.replace(tracks=[drums.with_notes(drums.notes[:1]), *song.tracks[1:]])
    free = [n.pitch for seed in range(3)
            for n in service.continue_song(one_hit, 4, SamplingConfig(seed=seed)).song.tracks[0].notes[1:]]  # fmt: skip
    assert len(set(free)) > 3 and all(35 <= key <= 81 for key in free)


def groove_prompt() -> tuple[Song, set[int]]:
    """The 4/4 bars of `drum_groove.mid` (kick, snare, eighth hi-hats and a triplet ghost
    snare before the bar line), and the places in the bar where its drums hit."""
    song = read_midi(FIXTURES / "drum_groove.mid")
    bar = int(song.time_signature_at(0).bar_ticks(song.resolution))
    tracks = [t.with_notes([n for n in t.notes if n.start < 3 * bar]) for t in song.tracks]
    song = song.replace(time_signatures=song.time_signatures[:1], tracks=tracks)
    return song, {n.start % bar for n in song.tracks[0].notes}


def test_a_drum_groove_keeps_its_rhythm(service: GenerationService) -> None:
    """A drum track that has played for bars keeps hitting where its groove hits (the shipped
    model, left alone, let a groove's sixteenth and triplet ornaments drop within a bar or
    two): the untrained test model puts one of its hits in ten there."""
    song, groove = groove_prompt()
    bar = int(song.time_signature_at(0).bar_ticks(song.resolution))
    drums = song.tracks[0]
    onsets = [{n.start for n in service.continue_song(song, 4, SamplingConfig(seed=seed)).song.tracks[0].notes}
              - set(drums.notes.starts.tolist()) for seed in range(6)]  # fmt: skip
    on_groove = [start % bar in groove for starts in onsets for start in starts]
    assert len(on_groove) >= 20 and np.mean(on_groove) > 0.4


def test_the_groove_gives_its_share_to_what_the_drums_played_next(service: GenerationService) -> None:
    """After each hit the groove knows what the prompt's drums wrote next: another key of the
    same hit, the next hit's place, or the end of the bar; it takes `GROOVE_SHARE` of the
    chance for that and leaves the rest where the model put it."""
    song, _ = groove_prompt()
    model, vocab = service.bundle.model, service.bundle.vocab
    tokens = encode(song)
    grooves = _prompt_parts(tokens, vocab)[1]
    assert list(grooves) == [0]  # the drums only
    step = vocab.config.steps_per_quarter
    position, drum = vocab.offset[TokenType.POSITION], vocab.offset[TokenType.DRUM]
    assert _groove_next(grooves[0], NO_POSITION, -1, vocab) == {position: 1.0}  # the bar opens on beat 1
    assert _groove_next(grooves[0], 0, -1, vocab) == {drum + 36: 1.0}  # with a kick
    assert _groove_next(grooves[0], 0, 36, vocab) == {drum + 42: 1.0}  # and a hi-hat
    assert _groove_next(grooves[0], 0, 42, vocab) == {position + step // 2: 1.0}  # then the next eighth
    ghost = 11 * step // 3  # the triplet ghost snare before the bar line, in every bar
    assert _groove_next(grooves[0], 7 * step // 2, 42, vocab) == {position + ghost: 1.0}
    assert _groove_next(grooves[0], ghost, 38, vocab) == {_END: 1.0}
    assert _groove_next(grooves[0], 7 * step // 2 + 1, -1, vocab) == {}  # a place the groove never hits
    session = Session(model, vocab, tokens, SamplingConfig(seed=0), None, "dense", False)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = torch.randn(len(vocab), generator=generator)
        allowed = torch.rand(len(vocab), generator=generator) < 0.5
        allowed[[position + step, drum + 38]] = True
        before = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1)
        mixed = torch.exp(session._keep_groove(logits, allowed, {position + step: 0.75, drum + 38: 0.25}))
        assert mixed[allowed].sum() == pytest.approx(1.0, abs=1e-5) and not mixed[~allowed].any()
        assert (mixed[allowed] >= (1 - GROOVE_SHARE) * before[allowed] - 1e-6).all()
        assert mixed[position + step] >= GROOVE_SHARE * 0.75 and mixed[drum + 38] >= GROOVE_SHARE * 0.25


def test_playable_ranges_hold_what_each_instrument_plays() -> None:
    from meloformer_core.gm import playable_range

    assert playable_range(33, False) == (23, 67)  # a bass: low B of a 5-string to G4
    assert playable_range(0, True) == (35, 81)  # the GM kit, whatever the program
    assert playable_range(0, False) == (21, 108)  # a piano's 88 keys
    assert playable_range(40, False)[0] == 55 and playable_range(42, False)[0] == 36  # violin G3, cello C2
    assert all(0 <= low < high <= 127 for low, high in (playable_range(p, False) for p in range(128)))
