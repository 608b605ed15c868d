"""`meloformer-train` and `meloformer-export`: exact resume, torchrun, clear failures, export → continue."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from meloformer_core.generation.sampling import SamplingConfig
from meloformer_core.midi_io import read_midi
from meloformer_core.model.bundle import load_bundle
from meloformer_core.model.transformer import bf16_native
from meloformer_core.service import GenerationService, TrackRequest
from tests.conftest import FIXTURES
from training.train import KILL_AFTER_STEP_ENV, NAN_AT_STEP_ENV

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["--set", "max_steps=6", "--set", "checkpoint_every=3", "--set", "eval_every=3", "--set", "warmup_steps=2"]


@pytest.fixture(scope="module")
def data(dataset: Path) -> Path:
    return dataset


def train(data: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "training.train", "--data", str(data), "--out", str(out), "--recipe", "debug",
               *STEPS, *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def losses(out: Path) -> dict[int, float]:
    """Per-step training loss; a step logged twice (before a kill, after resume) keeps the last."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


@pytest.fixture(scope="module")
def uninterrupted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = train(data, out)
    assert result.returncode == 0, result.stderr
    return out


def test_training_logs_validates_and_checkpoints(uninterrupted: Path) -> None:
    records = [json.loads(line) for line in (uninterrupted / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= train_records[0].keys()
    assert train_records[-1]["loss"] < train_records[0]["loss"]
    assert [r["step"] for r in records if r["kind"] == "valid"] == [3, 6]
    assert sorted(p.name for p in (uninterrupted / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]
    assert any((uninterrupted / "tensorboard").iterdir())


def test_killed_and_resumed_run_has_the_same_losses(data: Path, uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    killed = train(data, out, env={KILL_AFTER_STEP_ENV: "4"})
    assert killed.returncode != 0  # SIGKILL after step 4, checkpoint at 3
    refused = train(data, out)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = train(data, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "step 3" in resumed.stderr
    assert losses(out) == losses(uninterrupted)


def test_bf16_where_the_cpu_has_it_and_float32_on_request(data: Path, tmp_path: Path) -> None:
    import torch

    default = train(data, tmp_path / "default", "--set", "max_steps=1")
    assert default.returncode == 0, default.stderr
    expected = "bf16 autocast" if bf16_native(torch.device("cpu")) else "float32"
    assert f"attention dense, {expected}," in default.stderr
    off = train(data, tmp_path / "off", "--set", "max_steps=1", "--set", "bf16=false")
    assert off.returncode == 0 and "attention dense, float32," in off.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_torchrun_two_processes_gloo(data: Path, tmp_path: Path, sharding: str) -> None:
    out = tmp_path / sharding
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "training.train",
               "--data", str(data), "--out", str(out), "--recipe", "debug", "--set", "max_steps=4",
               "--set", "checkpoint_every=2", "--set", "eval_every=2",
               "--set", f"fsdp={sharding == 'fsdp'}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads((out / "checkpoints" / "step-0000004" / "state.json").read_text())
    assert set(state["loader"]) == {"0", "1"}  # both ranks' data positions are saved
    assert len(losses(out)) == 4


def test_clear_failures(data: Path, tmp_path: Path) -> None:
    missing = train(tmp_path / "no-data", tmp_path / "o1")
    assert missing.returncode == 1 and "no such dataset directory" in missing.stderr.strip().splitlines()[-1]
    other = tmp_path / "other-vocab"
    shutil.copytree(data, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "vocab_hash": "0123456789abcdef"}))
    mismatch = train(other, tmp_path / "o2")
    assert mismatch.returncode == 1 and "0123456789abcdef" in mismatch.stderr
    nan = train(data, tmp_path / "o3", env={NAN_AT_STEP_ENV: "5"})
    last = nan.stderr.strip().splitlines()[-1]
    assert nan.returncode == 1 and "nan at step 4" in last and "step-0000003" in last
    bad_set = train(data, tmp_path / "o4", "--set", "max_steps=lots")
    assert bad_set.returncode == 1 and "not a valid int" in bad_set.stderr


def test_export_load_and_continue(uninterrupted: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    result = subprocess.run([sys.executable, "-m", "training.export", str(uninterrupted), "--out", str(bundle)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    card = load_bundle(bundle).card
    assert card["training step"] == 6
    assert card["checkpoint"] == f"{uninterrupted.name}/checkpoints/step-0000006"  # not where this machine keeps it
    service = GenerationService(device="cpu")
    service.load(bundle)
    song = read_midi(FIXTURES / "drum_groove.mid")
    continued = service.continue_song(song, 2, SamplingConfig(seed=0))
    assert continued.bars_added == 2 and continued.song.note_count >= song.note_count
    arranged = service.arrange_song(song, [1, TrackRequest("Strings", 48)], (1, 3), SamplingConfig(seed=0))
    assert [arranged.song.tracks[i] for i in (0, 2, 3)] == [song.tracks[i] for i in (0, 2, 3)]
    infilled = service.infill_song(song, (1, 3), None, SamplingConfig(seed=0))
    assert infilled.bars_generated == 2 and infilled.song.tracks[0].notes[:3] == song.tracks[0].notes[:3]
    # the commands, end to end, on real multi-track files
    for command, source, extra in (
        ("arrange", "drum_groove.mid", ["--tracks", "bass:33,drums", "--bars", "1:3"]),
        ("infill", "bach_chorale_tempo.mid", ["--bars", "4:6"]),
        ("infill", "drum_groove.mid", ["--bars", "2:3", "--tracks", "Bass"]),
    ):
        out = tmp_path / f"{command}-{source}"
        cli = [sys.executable, "-m", "meloformer_core.cli", command, str(FIXTURES / source), "-o", str(out)]
        run = subprocess.run([*cli, "--model", str(bundle), *extra], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert read_midi(out).note_count > 0


def test_fine_tune_from_a_bundle_or_checkpoint(data: Path, uninterrupted: Path, tmp_path: Path) -> None:
    """--init starts a new run (step 0, fresh schedule) from trained weights, which it checks first."""
    from safetensors.torch import load_file

    trained = load_file(uninterrupted / "checkpoints" / "step-0000006" / "model.safetensors")
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "training.export", str(uninterrupted), "--out", str(bundle)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    for source in (bundle, uninterrupted):
        out = tmp_path / f"tuned-from-{source.name}"
        result = train(data, out, "--init", str(source), "--set", "max_steps=1", "--set", "lr=1e-9")
        assert result.returncode == 0, result.stderr
        first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        assert first["step"] == 1
        assert first["loss"] < losses(uninterrupted)[1]  # starts where the trained model left off
        tuned = load_file(out / "checkpoints" / "step-0000001" / "model.safetensors")
        assert all((tuned[k] - trained[k]).abs().max() < 1e-4 for k in trained)  # lr 1e-9 barely moves them
    wrong = train(data, tmp_path / "wrong", "--init", str(bundle), "--set", "size=default", "--set", "max_steps=1")
    assert wrong.returncode == 1 and "a different model" in wrong.stderr.strip().splitlines()[-1]
    both = train(data, tmp_path / "both", "--init", str(bundle), "--resume")
    assert both.returncode == 2 and "give one of them" in both.stderr


def test_flex_batches_have_one_shape(data: Path, tmp_path: Path) -> None:
    """Compiled FlexAttention recompiles for every new shape (and then falls back to eager):
    with the flex back end every batch's token and summary streams have fixed lengths."""
    from training.recipes import recipe
    from training.train import Trainer

    trainer = Trainer(data, tmp_path / "run", recipe("debug", ["attention=flex"]), resume=False)
    shapes = set()
    for _ in range(6):
        layout = trainer.layout(trainer.loader.next_batch())
        shapes.add((tuple(layout.tokens.shape), tuple(layout.seg_valid.shape)))
        assert layout.seg_valid.sum(dim=1).max() <= trainer.config.max_seq_len // 2
    trainer.close()
    assert shapes == {((2, 512), (2, 256))}


def test_train_from_midi_files_reuses_the_cache_then_exports_and_continues(tmp_path: Path) -> None:
    """--data may be a folder of MIDI files: preprocessed once into OUT/data-cache, reused after."""
    midi = tmp_path / "midi"
    midi.mkdir()
    for path in FIXTURES.glob("*.mid"):
        shutil.copy(path, midi / path.name)
    out = tmp_path / "run"
    first = train(midi, out, "--set", "max_steps=2", "--workers", "1")
    assert first.returncode == 0, first.stderr
    assert "preprocessing 6 MIDI files" in first.stderr and "6 files kept" in first.stderr
    manifest = out / "data-cache" / "manifest.json"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    again = train(midi, out, "--resume", "--set", "max_steps=3", "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert "reusing" in again.stderr and "preprocessing" not in again.stderr
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    assert losses(out).keys() == {1, 2, 3}
    bundle = tmp_path / "bundle"
    export = subprocess.run([sys.executable, "-m", "training.export", str(out), "--out", str(bundle)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert export.returncode == 0, export.stderr
    longer = tmp_path / "longer.mid"
    cli = [sys.executable, "-m", "meloformer_core.cli", "continue", str(FIXTURES / "folk_song_3_4.mid"),
           "-o", str(longer), "--bars", "2", "--model", str(bundle), "--takes", "1"]  # fmt: skip
    continued = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert continued.returncode == 0, continued.stderr
    assert read_midi(longer).note_count >= read_midi(FIXTURES / "folk_song_3_4.mid").note_count


def test_data_preprocessed_with_the_defaults_trains_a_shorter_recipe(tmp_path: Path) -> None:
    """`meloformer-preprocess` defaults (2,048 tokens a window), then the debug recipe (512)."""
    from training.preprocess import main as preprocess_main

    data = tmp_path / "ds"
    assert preprocess_main(["--input", str(FIXTURES), "--output", str(data), "--workers", "1", "--quiet"]) == 0
    result = train(data, tmp_path / "run", "--set", "max_steps=2")
    assert result.returncode == 0, result.stderr
    assert "windows longer than the context of 512 tokens cut at bar lines into" in result.stderr
    assert result.stderr.count("cut at bar lines") == 1


@pytest.mark.slow
def test_torchrun_from_midi_files_preprocesses_once(tmp_path: Path) -> None:
    midi = tmp_path / "midi"
    midi.mkdir()
    for path in FIXTURES.glob("*.mid"):
        shutil.copy(path, midi / path.name)
    out = tmp_path / "run"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "training.train",
               "--data", str(midi), "--out", str(out), "--recipe", "debug", "--set", "max_steps=2",
               "--set", "rows_per_batch=1", "--workers", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("preprocessing 6 MIDI files") == 1
    assert len(losses(out)) == 2


def test_two_corpora_mixed_at_chosen_rates_each_validated(data: Path, tmp_path: Path) -> None:
    """Several --data (a dataset and MIDI files), drawn at --mix rates; validation reports each."""
    midi = tmp_path / "folk"
    midi.mkdir()
    for path in FIXTURES.glob("*.mid"):
        shutil.copy(path, midi / path.name)
    out = tmp_path / "run"
    result = train(data, out, "--data", str(midi), "--mix", "1,2", "--workers", "1",
                   "--set", "max_steps=3", "--set", "eval_every=3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    mix = next(line for line in result.stderr.splitlines() if "mix:" in line)
    assert f"{data.name} " in mix and "folk " in mix and "× 2 (" in mix
    assert (out / "data-cache" / "2-folk" / "manifest.json").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (valid,) = [r for r in records if r["kind"] == "valid"]
    assert {f"loss_{data.name}", "loss"} <= valid.keys()
    bad = train(data, tmp_path / "bad", "--data", str(midi), "--mix", "1")
    assert bad.returncode == 1 and "--mix gives 1 rates for 2 --data sources" in bad.stderr


def _split_fused(weights: dict) -> None:
    """Each block's `qkv` in ``weights`` as the four matrices it fused, under their old names."""
    from meloformer_core.model.transformer import FUSED, UNFUSED, UNFUSED_ROWS

    width = weights["embed.weight"].shape[1]
    for name in [n for n in weights if n.endswith(FUSED)]:
        parts = weights.pop(name).split([rows * width for rows in UNFUSED_ROWS])
        weights.update(
            {name.replace(FUSED, part): value.contiguous() for part, value in zip(UNFUSED, parts, strict=True)}
        )


def _unfuse(checkpoint: Path) -> None:
    """Rewrite ``checkpoint`` as a checkpoint written before the blocks fused their projections
    (MeloFormer 0.1.0): each block's `qkv` as four matrices under their old names, and the optimizer's
    moments split and numbered in the old parameter order."""
    import torch
    from safetensors.torch import load_file, save_file

    from meloformer_core.model.config import ModelConfig
    from meloformer_core.model.transformer import FUSED, UNFUSED, UNFUSED_ROWS, MeloFormer
    from training.checkpoint import MODEL, OPTIMIZER, STATE

    model = load_file(checkpoint / MODEL)
    width = model["embed.weight"].shape[1]
    rows = [rows * width for rows in UNFUSED_ROWS]
    state = json.loads((checkpoint / STATE).read_text())
    with torch.device("meta"):  # the parameters in the optimizer's order
        named = list(MeloFormer(ModelConfig.from_dict(state["model"])).named_parameters())
    names = [n for n, p in named if p.dim() >= 2] + [n for n, p in named if p.dim() < 2]
    assert len(names) == sum(len(group["params"]) for group in state["optimizer"]["param_groups"])
    old_order: list[str] = []
    for name in names:  # the fused matrix listed as its first two parts; the other two after the summarise output
        if name.endswith(FUSED):
            old_order += [name.replace(FUSED, part) for part in UNFUSED[:2]]
        else:
            old_order.append(name)
            if name.endswith("summarise.out_proj.weight"):
                old_order += [name.replace("summarise.out_proj.weight", part) for part in UNFUSED[2:]]
    moments = load_file(checkpoint / OPTIMIZER)
    old_moments, scalars = {}, {}
    for index, name in enumerate(names):
        parts = UNFUSED if name.endswith(FUSED) else [None]
        for part_index, part in enumerate(parts):
            old_name = name if part is None else name.replace(FUSED, part)
            new_index = old_order.index(old_name)
            for field in ("exp_avg", "exp_avg_sq", "step"):
                value = moments.get(f"{index}/{field}")
                if value is None:
                    continue
                if part is not None and value.dim():
                    value = value.split(rows)[part_index]
                old_moments[f"{new_index}/{field}"] = value.clone()
            if str(index) in state["optimizer"]["scalars"]:
                scalars[str(new_index)] = state["optimizer"]["scalars"][str(index)]
    _split_fused(model)
    decay = [n for n in old_order if model[n].dim() >= 2]
    state["optimizer"]["param_groups"][0]["params"] = list(range(len(decay)))
    state["optimizer"]["param_groups"][1]["params"] = list(range(len(decay), len(old_order)))
    state["optimizer"]["scalars"] = scalars
    save_file(model, checkpoint / MODEL)
    save_file(old_moments, checkpoint / OPTIMIZER)
    (checkpoint / STATE).write_text(json.dumps(state, indent=1))


def test_checkpoints_and_bundles_written_before_the_fused_projections_resume_export_and_load(
    data: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    """A run in progress when the projections were fused resumes to the same losses, and its
    export gives the same bundle; a bundle in the old names loads to the same logits."""
    import torch
    from safetensors.torch import load_file, save_file

    from meloformer_core.encoding import DEFAULT_VOCAB, encode
    from meloformer_core.model.masks import build_layout

    out = tmp_path / "old-run"
    shutil.copytree(uninterrupted, out)
    shutil.rmtree(out / "checkpoints" / "step-0000006")
    _unfuse(out / "checkpoints" / "step-0000003")
    command = [sys.executable, "-m", "training.export", str(out / "checkpoints" / "step-0000003"),
               "--out", str(tmp_path / "old-bundle")]  # fmt: skip
    export = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    resumed = train(data, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert losses(out) == losses(uninterrupted)  # the same moments, in the same places

    bundle = tmp_path / "legacy-bundle"  # the shipped default's names: the four parts apart
    shutil.copytree(tmp_path / "old-bundle", bundle)
    weights = load_file(bundle / "model.safetensors")
    _split_fused(weights)
    save_file(weights, bundle / "model.safetensors")
    tokens = encode(read_midi(FIXTURES / "bach_chorale.mid"))[:200]
    layout = build_layout([tokens], DEFAULT_VOCAB)
    with torch.no_grad():
        old, new = (load_bundle(path).model(layout) for path in (bundle, tmp_path / "old-bundle"))
    assert torch.equal(old, new)
