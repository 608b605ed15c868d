"""Output folders: a command writes only into a new, empty or own-kind folder, replaces one
atomically, and never deletes what the user put there."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meloformer_core.atomic import OutputFolderError, replace_directory
from meloformer_core.model.bundle import BUNDLE_KIND, load_bundle
from tests.reliability.limits import ROOT, error_line, run_limited, snapshot


@pytest.fixture
def thesis(tmp_path: Path) -> Path:
    """A folder of the user's: a file and a sub-folder."""
    folder = tmp_path / "documents"
    (folder / "chapters").mkdir(parents=True)
    (folder / "thesis.txt").write_text("four years of work")
    (folder / "chapters" / "one.txt").write_text("chapter one")
    return folder


@pytest.fixture(scope="module")
def run_folder(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training run's folder as meloformer-train leaves it (config, metrics, a checkpoint)."""
    import torch

    from meloformer_core.model.config import ModelConfig
    from meloformer_core.model.transformer import MeloFormer, state_for_saving
    from training.checkpoint import save_checkpoint

    run = tmp_path_factory.mktemp("runs") / "run"
    config = json.loads((bundle_dir / "config.json").read_text())
    model = MeloFormer(ModelConfig.from_dict(config["model"]))
    optimizer = torch.optim.AdamW(model.parameters())
    extra = {"vocab_hash": config["vocab_hash"], "model": config["model"], "train": {"recipe": "debug"}}
    save_checkpoint(run, 1, state_for_saving(model), optimizer.state_dict(), extra, keep=2)
    (run / "config.json").write_text(json.dumps({"train": {}, "model": config["model"]}))
    (run / "metrics.jsonl").write_text('{"step": 1, "kind": "train", "loss": 7.0}\n')
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out").write_bytes(b"events")
    return run


def test_export_refuses_a_folder_of_the_users(run_folder: Path, thesis: Path) -> None:
    before = snapshot(thesis)
    line = error_line(run_limited(run_folder, "--out", thesis, module="training.export"), thesis)
    assert "not empty and not a MeloFormer model bundle" in line and "thesis.txt" in line
    assert snapshot(thesis) == before


def test_export_into_its_own_run_deletes_nothing(run_folder: Path) -> None:
    before = snapshot(run_folder)
    error_line(run_limited(run_folder, "--out", run_folder, module="training.export"), run_folder)
    assert snapshot(run_folder) == before


def test_init_model_refuses_a_folder_of_the_users(thesis: Path) -> None:
    before = snapshot(thesis)
    error_line(run_limited("init-model", "--size", "debug", "-o", thesis), thesis)
    assert snapshot(thesis) == before


def test_export_to_a_file_is_one_line(run_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = error_line(run_limited(run_folder, "--out", target, module="training.export"), target)
    assert "not a folder" in line and target.read_text() == "mine"


def test_export_replaces_its_own_bundle_with_the_users_modes(run_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    first = run_limited(run_folder, "--out", out, "--name", "first", module="training.export")
    assert first.returncode == 0, first.stderr
    second = run_limited(run_folder, "--out", out, "--name", "second", module="training.export")
    assert second.returncode == 0, second.stderr
    assert load_bundle(out).name == "second"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"], "a staging folder was left behind"
    # meloformer-export runs with this process's umask (022 by default: others may read the bundle)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert {stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()} == {0o666 & ~mask}


def test_empty_and_missing_folders_are_written(bundle_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "new" / "deeper"):
        with replace_directory(target, BUNDLE_KIND) as staging:
            for name in BUNDLE_KIND.names:
                (staging / name).write_bytes((bundle_dir / name).read_bytes())
        assert load_bundle(target).path == target


def test_a_folder_that_changes_while_we_write_is_left_alone(bundle_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with pytest.raises(OutputFolderError, match=r"thesis\.txt"), replace_directory(target, BUNDLE_KIND) as staging:
        target.mkdir()
        (target / "thesis.txt").write_text("saved meanwhile")
        (staging / "config.json").write_text("{}")
    assert (target / "thesis.txt").read_text() == "saved meanwhile"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]


# A child that replaces a bundle and kills itself (SIGKILL) at the n-th step of the swap:
# before or after each rename, exchange or removal.
_KILL_AT_STEP = """
import os, shutil, signal, sys
from pathlib import Path
import meloformer_core.atomic as atomic
from meloformer_core.model.bundle import BUNDLE_KIND

target, source, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
steps = [0]

def step():
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def wrap(function):
    def wrapped(*args, **kwargs):
        step()
        result = function(*args, **kwargs)
        step()
        return result
    return wrapped

atomic._exchange = wrap(atomic._exchange) if sys.argv[4] == "exchange" else (lambda a, b: False)
atomic.os.replace = wrap(os.replace)
atomic.shutil.rmtree = wrap(shutil.rmtree)
with atomic.replace_directory(target, BUNDLE_KIND) as staging:
    for name in BUNDLE_KIND.names:
        step()
        data = (source / name).read_bytes()
        if name == "config.json":
            data = data.replace(b'"name": "', b'"name": "new ')
        (staging / name).write_bytes(data)
print("steps", steps[0])
"""


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_kill_at_any_step_leaves_the_old_bundle_or_the_new(bundle_dir: Path, tmp_path: Path, swap: str) -> None:
    import shutil

    script = tmp_path / "kill_at_step.py"
    script.write_text(_KILL_AT_STEP)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def replace(kill_at: int) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), str(target), str(bundle_dir), str(kill_at), swap]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    target = tmp_path / "bundle"
    shutil.copytree(bundle_dir, target)
    old_name = load_bundle(target).name
    total = int(replace(0).stdout.split()[-1])  # an uninterrupted replacement counts the steps
    assert load_bundle(target).name == f"new {old_name}"
    for kill_at in range(1, total + 1):
        for leftover in tmp_path.glob("*bundle*"):
            shutil.rmtree(leftover)
        shutil.copytree(bundle_dir, target)
        result = replace(kill_at)
        assert result.returncode == -signal.SIGKILL, result.stderr
        if swap == "exchange" or target.exists():
            assert load_bundle(target).name in (old_name, f"new {old_name}"), kill_at
        else:  # two renames (no renameat2) leave a moment with neither: the old one is hidden beside it
            hidden = [path for path in tmp_path.iterdir() if path.name.startswith(".bundle.meloformer-tmp-")]
            assert old_name in [load_bundle(path).name for path in hidden], kill_at


def test_train_and_preprocess_refuse_a_folder_of_the_users(thesis: Path, fixtures_dir: Path) -> None:
    before = snapshot(thesis)
    train = run_limited("--data", fixtures_dir, "--out", thesis, "--recipe", "debug", module="training.train")
    assert "not a MeloFormer training run" in error_line(train, thesis)
    preprocess = run_limited("--input", fixtures_dir, "--output", thesis, module="training.preprocess")
    assert "not a MeloFormer dataset" in error_line(preprocess, thesis)
    assert snapshot(thesis) == before


def test_export_killed_at_random_points_then_rerun_gives_the_same_bytes(run_folder: Path, tmp_path: Path) -> None:
    """SIGKILL of meloformer-export anywhere (reading, building, writing, swapping), then the
    same command again: the bundle is byte for byte the uninterrupted one's."""
    import random
    import time

    straight = tmp_path / "straight"
    assert run_limited(run_folder, "--out", straight, "--name", "b", module="training.export").returncode == 0
    command = [
        sys.executable,
        "-m",
        "training.export",
        str(run_folder),
        "--out",
        str(tmp_path / "killed"),
        "--name",
        "b",
    ]
    chance = random.Random(21)
    for _ in range(3):
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(chance.uniform(0.5, 4.0))  # the fault's random point, not a wait for a condition
        process.kill()
        process.wait()
    result = run_limited(run_folder, "--out", tmp_path / "killed", "--name", "b", module="training.export")
    assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path / "killed") == snapshot(straight)
