"""`meloformer-eval`: likelihood against a bigram baseline and continuation statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from meloformer_core.encoding import DEFAULT_VOCAB
from meloformer_core.midi_io import read_midi
from meloformer_core.model.bundle import save_bundle
from meloformer_core.model.config import named_config
from meloformer_core.model.transformer import MeloFormer
from tests.conftest import FIXTURES
from training.evaluate import (
    bar_contents,
    best_scale,
    main,
    mean_velocity,
    median_interval,
    phrase_thrice,
    pitch_class_profile,
    profile_baseline,
    restated_share,
)

KEYS = {"nll_per_token", "bigram_nll_per_token", "decodable_rate", "pitch_class_overlap", "note_density_ratio",
        "polyphony_ratio", "in_scale_rate", "velocity_difference", "empty_rate", "restated_bar_rate",
        "reference_restated_bar_rate", "phrase_nll_per_token", "baseline_pitch_class_overlap",
        "pitch_class_overlap_interval"}  # fmt: skip


@pytest.fixture(scope="module")
def random_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_bundle(MeloFormer(named_config("debug", len(DEFAULT_VOCAB))), DEFAULT_VOCAB,
                       tmp_path_factory.mktemp("eval") / "random")  # fmt: skip


def report(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_reports_every_metric_deterministically(random_bundle: Path, dataset: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    args = ("--model", str(random_bundle), "--data", str(FIXTURES), "--train-data", str(dataset),
            "--bars-prompt", "4", "--bars-generate", "2", "--seed", "3")  # fmt: skip
    first = report(capsys, *args)
    assert first.keys() >= KEYS and first["bigram_fitted_on"] == "training split"
    assert first == report(capsys, *args)
    assert first["decodable_rate"] == 1.0
    # an untrained model is about as unsure as a uniform guess; the bigram knows better
    assert abs(first["nll_per_token"] - math.log(len(DEFAULT_VOCAB))) < 0.5
    assert first["bigram_nll_per_token"] < first["nll_per_token"]
    takes = report(capsys, *args, "--takes", "3")  # the most typical of three takes is scored
    assert takes["takes"] == 3 and takes["decodable_rate"] == 1.0 and takes["nll_per_token"] == first["nll_per_token"]
    assert takes == report(capsys, *args, "--takes", "3")


def test_scale_and_profile_helpers() -> None:
    song = read_midi(FIXTURES / "bach_chorale.mid")  # A major / F-sharp minor
    scale = best_scale(pitch_class_profile(song))
    assert scale.sum() in (7, 8) and all(scale[[9, 11, 1, 2, 4, 6]])
    soft = song.replace(tracks=[t.with_notes(t.notes.array * [1, 1, 1, 0] + [0, 0, 0, 40]) for t in song.tracks])
    assert mean_velocity(song) == 90 and mean_velocity(soft) == 40 and mean_velocity(soft.replace(tracks=())) == 0


def test_restated_bars_are_the_same_notes_at_the_same_places_in_the_bar() -> None:
    import dataclasses

    import numpy as np

    from meloformer_core.encoding import encode, validate
    from meloformer_core.encoding.quantize import from_grid, to_grid

    grid = to_grid(read_midi(FIXTURES / "bach_chorale.mid"), DEFAULT_VOCAB)
    starts, notes = grid.bar_starts, grid.notes
    assert starts[8] - starts[4] == starts[4] - starts[0]  # 4/4 throughout
    said = set(bar_contents(grid, 0, 4))
    assert restated_share(grid, said, 0, 4) == 1.0 and restated_share(grid, said, 4, 8) == 0.0
    first = notes[notes[:, 1] < starts[4]]
    copy = first.copy()
    copy[:, 1] += starts[4] - starts[0]
    copy[:, 4] = 3  # another velocity: still the same notes
    rest = notes[notes[:, 1] >= starts[8]]
    again = dataclasses.replace(grid, notes=np.concatenate([first, copy, rest]))
    assert restated_share(again, said, 4, 8) == 1.0
    assert restated_share(again, said, 4, grid.bar_count + 2) < 1.0  # bars past the end restate nothing

    thrice = phrase_thrice(grid)  # the recall probe: the first 4 bars three times
    assert thrice.bar_count == 12 and len(thrice.notes) == 3 * len(first)
    assert restated_share(thrice, said, 4, 12) == 1.0
    validate(encode(from_grid(thrice)))  # a grammatical sequence (raises otherwise)
    assert phrase_thrice(grid, grid.bar_count + 1) is None


def test_the_median_interval_brackets_the_median_and_narrows_with_more_files() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.uniform(0.5, 1.0, 20).tolist(), rng.uniform(0.5, 1.0, 500).tolist()
    low, high = median_interval(few, seed=1)
    assert low < np.median(few) < high and median_interval(few, seed=1) == [low, high]
    wide, narrow = high - low, np.subtract(*median_interval(many, seed=1)[::-1])
    assert 0 < narrow < wide / 2  # 25× the files: about a fifth of the width
    assert median_interval([0.7] * 5, seed=0) == [0.7, 0.7] and median_interval([], seed=0) == [0.0, 0.0]


def test_the_profile_baseline_draws_from_the_prompts_pitch_classes() -> None:
    song = read_midi(FIXTURES / "bach_chorale.mid")
    profile = pitch_class_profile(song, by_duration=False)
    assert profile_baseline(profile, song, 0) == profile_baseline(profile, song, 0) > 0.8  # its own histogram
    only_c = np.zeros(12)
    only_c[0] = 1
    assert profile_baseline(only_c, song, 0) == pitch_class_profile(song, by_duration=False)[0] / song.note_count
    assert profile_baseline(profile, song.replace(tracks=()), 0) == 0.0


def test_eval_errors(random_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", str(random_bundle), "--data", str(tmp_path)]) == 1
    assert "no MIDI files" in capsys.readouterr().err


def test_eval_on_the_held_out_split_of_a_dataset(random_bundle: Path, dataset: Path, corpus: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A preprocessed folder as --data: its validation files are evaluated, the bigram fits its training split."""
    records = [r for chunk in sorted((dataset / "chunks").glob("*.json")) for r in json.loads(chunk.read_text())]
    held_out = {Path(r["path"]) for r in records if r["status"] == "kept" and r["valid"]}
    assert held_out and len(held_out) < sum(r["status"] == "kept" for r in records)
    args = ("--model", str(random_bundle), "--data", str(dataset), "--bars-prompt", "2", "--bars-generate", "1")
    result = report(capsys, *args)
    assert result["files"] == len(held_out) and result["bigram_fitted_on"] == "training split"
    assert report(capsys, *args, "--split", "train")["files"] > result["files"]
