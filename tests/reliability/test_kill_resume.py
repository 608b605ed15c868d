"""``kill -9`` at a random (seeded) point, then the same command again: preprocessing and
training end exactly where an uninterrupted run does — the same dataset files byte for
byte, the same logged losses, the same final checkpoint byte for byte.

tests/training covers a kill at a fixed point (a chunk count; a step the trainer kills
itself after); here an outside SIGKILL lands wherever the run happens to be — writing a
shard, a checkpoint or a log line — and only the parent is killed, so its workers must
end by themselves. Linux only: the workers are found in /proc.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.test_processes import (
    DEADLINE,
    HANG_FILE,
    ROOT,
    children_of,
    is_alive,
    kill_survivors,
    make_songs,
    preprocess_command,
    wait_for,
)
from training.preprocess import HANG_MARKER_ENV

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

TRAIN_STEPS = 12  # checkpoints at 3, 6, 9 and 12


def chunks_done(out: Path) -> int:
    return len(list((out / "chunks").glob("chunk-*.json")))


def dataset_files(out: Path) -> dict[str, bytes]:
    """Every file of a dataset by relative path; hidden ones (a write a kill cut short) left out."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(out).parts)
    }


def assert_same_files(got: dict[str, bytes], expected: dict[str, bytes]) -> None:
    assert sorted(got) == sorted(expected)
    assert [name for name in expected if got[name] != expected[name]] == [], "files that differ"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 40 songs in chunks of 4, then the hanging file alone in chunk 10
    return make_songs(tmp_path_factory.mktemp("songs") / "midi", 40)


@pytest.fixture(scope="module")
def dataset(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted `meloformer-preprocess` run."""
    out = tmp_path_factory.mktemp("data") / "ds"
    result = subprocess.run(preprocess_command(corpus, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_preprocess_killed_at_a_random_point_resumes_to_the_same_files(
    corpus: Path, dataset: Path, tmp_path: Path, seed: int
) -> None:
    finished = random.Random(seed).randrange(chunks_done(dataset))  # chunks written before the kill: 0 … 10
    out = tmp_path / "ds"
    # the hanging file, last and alone in its chunk, keeps the run from ending before the kill
    killed = subprocess.Popen(preprocess_command(corpus, out, "--timeout", "600"), cwd=ROOT,
                              env={**os.environ, HANG_MARKER_ENV: HANG_FILE},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    workers: set[int] = set()
    try:
        wait_for(lambda: chunks_done(out) >= finished, f"{finished} chunks written")
        workers = children_of(killed.pid)
        killed.kill()  # the parent alone: its workers must end by themselves
        assert killed.wait(timeout=DEADLINE) == -signal.SIGKILL
        wait_for(lambda: not any(is_alive(pid) for pid in workers), f"workers {sorted(workers)} end")
    finally:
        killed.kill()
        kill_survivors(workers)
        killed.wait()
    assert not (out / "manifest.json").exists()
    again = subprocess.run(preprocess_command(corpus, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert_same_files(dataset_files(out), dataset_files(dataset))


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training.train", "--data", str(data), "--out", str(out), "--recipe", "debug",
            "--set", f"max_steps={TRAIN_STEPS}", "--set", "checkpoint_every=3", "--set", "eval_every=3",
            "--set", "warmup_steps=2", *extra]  # fmt: skip


def logged(out: Path) -> dict[tuple[str, int], dict]:
    """Every training and validation record by (kind, step), without its timings; a step
    logged twice (before the kill, after the resume) keeps the last."""
    path = out / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    timings = ("tokens_per_s", "memory_gb")
    return {(r["kind"], r["step"]): {k: v for k, v in r.items() if k not in timings} for r in records}


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted `meloformer-train` run."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = subprocess.run(train_command(dataset, out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_training_killed_at_a_random_point_resumes_to_the_same_weights(
    dataset: Path, trained: Path, tmp_path: Path, seed: int
) -> None:
    # after the first checkpoint, and early enough that the run is still going when the kill lands
    kill_after = random.Random(seed).randint(3, TRAIN_STEPS - 5)
    out = tmp_path / "run"
    killed = subprocess.Popen(train_command(dataset, out), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: (out / "checkpoints" / "step-0000003" / "state.json").exists(), "the first checkpoint")
        wait_for(lambda: ("train", kill_after) in logged(out), f"step {kill_after} logged")
        killed.kill()
        assert killed.wait(timeout=DEADLINE) == -signal.SIGKILL, "the run ended before the kill"
    finally:
        killed.kill()
        killed.wait()
    resumed = subprocess.run(train_command(dataset, out, "--resume"), cwd=ROOT, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert logged(out) == logged(trained)
    final = Path("checkpoints") / f"step-{TRAIN_STEPS:07d}"  # weights, optimizer, RNG and state.json
    assert_same_files(dataset_files(out / final), dataset_files(trained / final))
