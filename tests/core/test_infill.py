"""Infilling: a bar range regenerated between the music before and after it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meloformer_core.encoding import DEFAULT_VOCAB, decode, encode, validate
from meloformer_core.encoding.codec import encode_grid, slice_grid
from meloformer_core.encoding.quantize import to_grid
from meloformer_core.generation.sampling import SamplingConfig
from meloformer_core.midi_io import read_midi
from meloformer_core.service import GenerationService
from tests.conftest import FIXTURES
from tests.core.strategies import songs
from training.data import fill_in_the_middle

VOCAB = DEFAULT_VOCAB


def bar_of(song, ticks: int) -> int:
    return len([s for s in song.bar_starts(until_tick=ticks) if s <= ticks]) - 1


@pytest.mark.parametrize(("seed", "guidance"), [(0, 1.0), (1, 1.0), (2, 1.0), (0, 2.0), (1, 3.0)])
def test_infilled_bars_change_only_the_range_and_join_the_bars_after(
    service: GenerationService, seed: int, guidance: float
) -> None:
    song = read_midi(FIXTURES / "bach_chorale_tempo.mid")
    result = service.infill_song(song, (2, 5), None, SamplingConfig(seed=seed, prompt_guidance=guidance))
    out = result.song
    range_end = song.bar_starts(until_tick=10**9)[5]
    assert result.bars_generated == 3 and result.bars_added == 0
    # the song's metre, key and tempo are never rewritten (a sampled 20/8 bar used to move every bar after it)
    assert (out.time_signatures, out.key_signatures, out.tempos) == (
        song.time_signatures, song.key_signatures, song.tempos)  # fmt: skip
    for before, after in zip(song.tracks, out.tracks, strict=True):
        outside_before = {n for n in before.notes if bar_of(song, n.start) not in (2, 3, 4)}
        outside_after = {n for n in after.notes if bar_of(song, n.start) not in (2, 3, 4)}
        assert outside_before == outside_after  # everything outside bars 3-5 is untouched
        new = set(after.notes) - set(before.notes)
        assert all(bar_of(song, n.start) in (2, 3, 4) for n in new)
        assert all(n.end <= range_end for n in new)  # nothing hangs into the bars after
        # no overlap of one pitch across the join
        for note in new:
            following = [m for m in outside_after if m.pitch == note.pitch and m.start >= range_end]
            assert all(note.end <= m.start for m in following)
    out.validate()
    encode(out)


def test_infill_of_chosen_tracks_keeps_the_others_and_reproduces(service: GenerationService) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    first = service.infill_song(song, (1, 3), [0, 1], SamplingConfig(seed=5)).song
    again = service.infill_song(song, (1, 3), [0, 1], SamplingConfig(seed=5)).song
    assert first == again
    assert first.tracks[2:] == song.tracks[2:]


@settings(max_examples=40)
@given(songs(max_tracks=3, max_quarters=64, max_notes=40), st.integers(0, 2**32 - 1))
def test_fill_in_the_middle_examples_are_grammatical_and_hold_the_same_music(song, seed: int) -> None:
    tokens = encode(song)
    example = fill_in_the_middle(tokens, VOCAB, np.random.default_rng(seed), max_gap=4, max_suffix=4)
    assert len(example) <= len(tokens)
    validate(example)
    if np.array_equal(example, tokens):
        return
    bars = VOCAB.names(example).count("BAR")
    expected = decode(encode_grid(slice_grid(to_grid(song), 0, bars), VOCAB))
    assert [t.notes for t in decode(example).tracks] == [t.notes for t in expected.tracks]


def test_infill_command(bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "infilled.mid"
    start = [sys.executable, "-m", "meloformer_core.cli", "infill", str(FIXTURES / "bach_chorale.mid"), "-o", str(out)]
    command = [*start, "--bars", "2:3", "--model", str(bundle_dir), "--seed", "1"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["bars_generated"] == 2
    assert read_midi(out).note_count > 0
    bad = subprocess.run([*start, "--bars", "3:2", "--model", str(bundle_dir)], capture_output=True, text=True)
    assert bad.returncode == 1 and "A ≤ B" in bad.stderr
