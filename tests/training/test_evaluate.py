"""`meloformer-eval`: likelihood against a bigram baseline and continuation statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from meloformer_core.encoding import DEFAULT_VOCAB
from meloformer_core.model.bundle import save_bundle
from meloformer_core.model.config import named_config
from meloformer_core.model.transformer import MeloFormer
from tests.conftest import FIXTURES
from training.continuation_metrics import FEATURES
from training.evaluate import SIDE_BY_SIDE, main, median_interval, seed_spread, student_t_quantile

KEYS = {"nll_per_token", "bigram_nll_per_token", "decodable_rate", "pitch_class_overlap", "note_density_ratio",
        "polyphony_ratio", "in_scale_rate", "velocity_difference", "empty_rate", "restated_bar_rate",
        "reference_restated_bar_rate", "phrase_nll_per_token", "baseline_pitch_class_overlap",
        "pitch_class_overlap_interval"}  # fmt: skip
NEW_KEYS = {"drum_in_kit_rate", "drum_new_key_rate", "track_density_ratio", "silent_track_rate", "exploding_track_rate",
            "register_distance", "bass_within_octave_rate", "distribution_overlap", "chord_change_rate"}  # fmt: skip
# every continuation measure of the model has the copy baseline's beside it
CONTINUATION = {metric for metric, _ in SIDE_BY_SIDE}
REAL = {"real_in_scale_rate", "real_empty_rate", "real_drum_in_kit_rate", "real_drum_new_key_rate",
        "reference_restated_bar_rate", "real_chord_change_rate"}  # fmt: skip


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
    assert first.keys() >= KEYS | NEW_KEYS | {f"copy_{key}" for key in CONTINUATION} | REAL
    assert first["bigram_fitted_on"] == "training split"
    assert first == report(capsys, *args)
    assert first["decodable_rate"] == 1.0
    # an untrained model is about as unsure as a uniform guess; the bigram knows better
    assert abs(first["nll_per_token"] - math.log(len(DEFAULT_VOCAB))) < 0.5
    assert first["bigram_nll_per_token"] < first["nll_per_token"]
    takes = report(capsys, *args, "--takes", "3")  # the most typical of three takes is scored
    assert takes["takes"] == 3 and takes["decodable_rate"] == 1.0 and takes["nll_per_token"] == first["nll_per_token"]
    assert takes == report(capsys, *args, "--takes", "3")
    # the copy baseline and the real bars do not depend on the model's sampling
    fixed = [key for key in first if key.startswith(("copy_", "real_", "reference_", "baseline_"))]
    assert {key: takes[key] for key in fixed} == {key: first[key] for key in fixed}


def test_eval_sets_the_model_beside_the_copy_and_the_real_bars(random_bundle: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Three prompt bars and two new ones: the drum groove (five bars) is scored too."""
    records = tmp_path / "records.jsonl"
    assert main(["--model", str(random_bundle), "--data", str(FIXTURES), "--bars-prompt", "3", "--bars-generate", "2",
                 "--quiet", "--records", str(records)]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["continuations"] == len(list(FIXTURES.glob("*.mid")))
    assert result["copy_restated_bar_rate"] == 1.0  # the copy restates every bar; the real bars seldom
    assert result["reference_restated_bar_rate"] < 0.5 and result["real_drum_in_kit_rate"] == 1.0
    assert result["copy_drum_in_kit_rate"] == 1.0 and result["copy_velocity_difference"] == 0.0
    assert 0.5 < result["copy_track_density_ratio"] < 2 and result["copy_silent_track_rate"] == 0.0
    for prefix in ("", "copy_"):
        overlap = result[f"{prefix}distribution_overlap_by_feature"]
        assert overlap.keys() == set(FEATURES) and all(0 <= value <= 1 for value in overlap.values())
        assert result[f"{prefix}distribution_overlap"] == pytest.approx(np.mean(list(overlap.values())), abs=1e-3)
    header = next(line for line in lines if line.split() == ["measure", "model", "copy", "real"])
    table = {line.split()[0]: line.split()[1:] for line in lines[lines.index(header) + 1 : -2]}
    assert table["restated_bar_rate"][1] == "1" and table["pitch_class_overlap"][2] == "(1)"
    assert table["drum_in_kit_rate"][1:] == ["1", "1"] and set(FEATURES) <= table.keys()
    assert 0 <= result["real_chord_change_rate"] <= 1 and 0 <= result["copy_chord_change_rate"] <= 1
    assert table["chord_change_rate"][2] == f"{result['real_chord_change_rate']:.4g}"
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [row["file"] for row in rows] == sorted(path.name for path in FIXTURES.glob("*.mid"))
    groove = next(row for row in rows if row["file"] == "drum_groove.mid")
    assert groove["real_drum_in_kit_rate"] == 1.0 and groove["copy_bass_within_octave_rate"] == 1.0
    assert groove["copy_drum_new_key_rate"] == 0.0  # the prompt's own bars play its own kit
    assert len(groove["track_density_ratios"]) == 4  # drums, bass and two organs play in the real bars


def test_more_seeds_report_the_distribution_measure_of_each_and_its_lead_over_the_copy(
        random_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``--seeds 2`` is the runs of both seeds in one: each seed's figure is the one its own run gives."""
    args = ("--model", str(random_bundle), "--data", str(FIXTURES), "--bars-prompt", "3", "--bars-generate", "2",
            "--quiet")  # fmt: skip
    records = tmp_path / "records.jsonl"
    both = report(capsys, *args, "--seed", "3", "--seeds", "2", "--records", str(records))
    first, second = report(capsys, *args, "--seed", "3"), report(capsys, *args, "--seed", "4")
    assert both["distribution_overlap_by_seed"] == [first["distribution_overlap"], second["distribution_overlap"]]
    assert first["distribution_overlap"] != second["distribution_overlap"]  # the seed moves the measure
    assert both["distribution_overlap"] == first["distribution_overlap"] and both["seed"] == 3
    assert both["distribution_overlap_seed_mean"] == pytest.approx(
        (first["distribution_overlap"] + second["distribution_overlap"]) / 2, abs=1e-4
    )
    low, high = both["distribution_overlap_lead_interval"]
    assert low < both["distribution_overlap_seed_mean"] - both["copy_distribution_overlap"] < high
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    files = len(list(FIXTURES.glob("*.mid")))
    assert [row["seed"] for row in rows] == [3] * files + [4] * files
    assert main([*args, "--seeds", "0"]) == 1 and "at least 1" in capsys.readouterr().err


def test_the_lead_over_the_copy_is_clear_only_when_the_seeds_agree() -> None:
    assert student_t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert student_t_quantile(0.975, 15) == pytest.approx(2.131, abs=1e-3)
    assert student_t_quantile(0.95, 1000) == pytest.approx(1.646, abs=1e-3)
    steady = seed_spread([0.978, 0.977, 0.979, 0.978], copy_overlap=0.975)
    assert steady["distribution_overlap_seed_mean"] == 0.978 and steady["seeds_behind_copy"] == 0
    low, high = steady["distribution_overlap_lead_interval"]
    assert 0 < low < 0.003 < high
    # as far ahead on average, but three seeds of five behind: the interval takes in 0
    shaky = seed_spread([0.990, 0.970, 0.985, 0.972, 0.973], copy_overlap=0.975)
    assert shaky["distribution_overlap_seed_mean"] == 0.978 and shaky["seeds_behind_copy"] == 3
    assert shaky["distribution_overlap_lead_interval"][0] < 0
    assert shaky["distribution_overlap_by_seed"] == [0.99, 0.97, 0.985, 0.972, 0.973]


def test_the_median_interval_brackets_the_median_and_narrows_with_more_files() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.uniform(0.5, 1.0, 20).tolist(), rng.uniform(0.5, 1.0, 500).tolist()
    low, high = median_interval(few, seed=1)
    assert low < np.median(few) < high and median_interval(few, seed=1) == [low, high]
    wide, narrow = high - low, np.subtract(*median_interval(many, seed=1)[::-1])
    assert 0 < narrow < wide / 2  # 25× the files: about a fifth of the width
    assert median_interval([0.7] * 5, seed=0) == [0.7, 0.7] and median_interval([], seed=0) == [0.0, 0.0]


def test_eval_errors(random_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", str(random_bundle), "--data", str(tmp_path)]) == 1
    assert "no MIDI files" in capsys.readouterr().err
    assert main(["--model", str(random_bundle), "--data", str(FIXTURES), "--bars-generate", "0"]) == 1
    assert "at least 1" in capsys.readouterr().err


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


def test_eval_arranges_drums_and_bass_under_the_lead_and_says_how_much_of_the_prompt_is_heard(
    random_bundle: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from meloformer_core.midi_io import read_midi
    from training.evaluate import lead_of

    song = read_midi(FIXTURES / "drum_groove.mid")
    lead = lead_of(song)
    assert lead is not None and not song.tracks[lead].is_drum and song.tracks[lead].program not in range(32, 40)
    args = ("--model", str(random_bundle), "--data", str(FIXTURES), "--bars-prompt", "2", "--bars-generate", "2",
            "--takes", "1", "--records", str(tmp_path / "records.jsonl"))  # fmt: skip
    plain = report(capsys, *args)
    assert "arrange_played_rate" not in plain
    assert 0 < plain["prompt_heard_rate"] <= 1 and 1 <= plain["prompt_bars_heard_min"] <= 2
    arranged = report(capsys, *args, "--arrange")
    assert arranged["arranged_files"] == 1  # only the fixture with drums
    assert arranged["arrange_played_rate"] == 1.0  # requested tracks play wherever the lead sounds
    assert 0 <= arranged["arrange_bass_below_lead_rate"] <= 1 and arranged["arrange_drum_density_ratio"] > 0
    free = report(capsys, *args, "--arrange-free")  # the untrained model, left to itself, leaves bars out
    assert free["arranged_files"] == 1 and free["arrange_played_rate"] <= 1.0
    bass_first = report(capsys, *args, "--arrange", "--arrange-bass-first")  # the drums and bass keep their roles
    assert bass_first["arrange_played_rate"] == 1.0 and bass_first["arrange_drum_in_kit_rate"] == 1.0
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    (groove,) = [r for r in records if r["file"] == "drum_groove.mid"]
    assert {"arrange_drums_played", "arrange_bass_played", "arrange_bass_below_lead"} <= groove.keys()
    has_bass = any(t.program in range(32, 40) and not t.is_drum for t in song.tracks)
    assert (groove["arrange_bass_register_distance"] is not None) == has_bass
    # the prompt fits the context whole, or the measure says which bars were left out
    assert all(1 <= r["prompt_bars_heard"] <= 2 for r in records if r["decodable"])


def test_split_halves_scores_other_songs_the_copy_and_the_model_from_records(tmp_path: Path) -> None:
    """`scripts/split_halves.py` on a records file: a copy equal to the real bars scores near 1,
    a model whose bars lie far from them scores low, an undecodable file is left out, and
    of several seeds only the first is read."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    rng = np.random.default_rng(3)

    def bars(shift: float) -> dict:
        histograms = rng.dirichlet(np.ones(12), 8)
        values = {name: (rng.uniform(0.5, 2, (8, 1)) + shift).tolist() for name in FEATURES}
        return {**values, "pitch_class_histogram": histograms.tolist()}

    rows = []
    for index in range(8):
        real = bars(0.0)
        rows.append({"file": f"{index}.mid", "decodable": True,
                     "bar_features": {"real": real, "copy": real, "model": bars(20.0)}})  # fmt: skip
    rows.insert(3, {"file": "broken.mid", "decodable": False})
    rows = [{**row, "seed": 5} for row in rows] + [{**row, "seed": 6} for row in rows]  # a `--seeds 2` run
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "split_halves.py"), str(records)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].startswith("4 and 4 files")
    scores = {line[:30].strip(): [float(v) for v in line[30:].split()] for line in lines[2:]}
    assert scores.keys() == {"real bars, second half", "copy, first half", "model, first half", "model, second half"}
    assert all(len(values) == len(FEATURES) + 1 for values in scores.values())
    assert scores["copy, first half"][-1] > 0.95
    assert scores["model, first half"][-1] < scores["real bars, second half"][-1] - 0.2
