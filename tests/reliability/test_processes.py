"""Worker processes never outlive `meloformer-preprocess`, however it ends (``kill -9`` too).

An orphaned worker waits forever on its pipe and keeps the parent's stdout and stderr
open, so ``meloformer-preprocess … | cat`` never ends. Linux only: the processes are
found in /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from meloformer_core.midi_io import write_midi
from tests.core.strategies import random_song
from training.preprocess import HANG_MARKER_ENV

ROOT = Path(__file__).resolve().parents[2]
HANG_FILE = "zz_hang_me.mid"  # sorted last: the last chunk holds only this file
DEADLINE = 60.0  # seconds; generous, for a busy machine

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

T = TypeVar("T")


def make_songs(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` random multi-track songs plus `HANG_FILE`, which hangs its reader when
    `HANG_MARKER_ENV` names it (and is an ordinary song otherwise)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        song = random_song(rng, bars=int(rng.integers(6, 20)), tracks=int(rng.integers(2, 6)))
        write_midi(song, root / f"song_{index:03d}.mid")
    write_midi(random_song(rng, bars=8, tracks=3), root / HANG_FILE)
    return root


def preprocess_command(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training.preprocess", "--input", str(corpus), "--output", str(out),
            "--workers", "2", "--chunk-size", "4", "--max-seq-len", "512", "--valid-permille", "250", "--quiet",
            *extra]  # fmt: skip


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, parent pid, …]; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.add(int(entry.name))
    return found


def wait_for(condition: Callable[[], T], what: str, deadline: float = DEADLINE) -> T:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``deadline`` s."""
    end = time.monotonic() + deadline
    while not (value := condition()):
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline:g} s: {what}")
        time.sleep(0.01)
    return value


def kill_survivors(pids: set[int]) -> None:
    """Clean up after a failure: the workers this test started and that outlived their parent."""
    for pid in pids:
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_songs(tmp_path_factory.mktemp("songs") / "midi", 8)


def test_sigkill_of_preprocess_ends_its_workers_and_its_pipeline(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    # meloformer-preprocess … 2>&1 | cat; one worker hangs on the last file, the other waits for work
    producer = subprocess.Popen(preprocess_command(corpus, out, "--timeout", "600"), cwd=ROOT,
                                env={**os.environ, HANG_MARKER_ENV: HANG_FILE},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    consumer = subprocess.Popen(["cat"], stdin=producer.stdout, stdout=subprocess.PIPE)
    producer.stdout.close()  # only the producer (and whatever it started) holds the write end now
    workers: set[int] = set()
    try:
        wait_for(lambda: len(children_of(producer.pid)) >= 2, "two workers start")
        wait_for(lambda: len(list((out / "chunks").glob("chunk-*.json"))) >= 2, "every file but the hanging one")
        workers = children_of(producer.pid)
        producer.kill()
        assert producer.wait(timeout=DEADLINE) == -signal.SIGKILL
        wait_for(lambda: not any(is_alive(pid) for pid in workers), f"workers {sorted(workers)} end")
        try:
            consumer.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`| cat` still runs {DEADLINE:g} s after the workers ended: something holds its pipe")
        assert consumer.returncode == 0
    finally:
        producer.kill()
        kill_survivors(workers)
        consumer.kill()
        producer.wait()
        consumer.wait()


def test_a_worker_ends_when_the_parent_closes_its_pipe() -> None:
    """Without a death signal (where there is none), EOF on its pipe is what ends a worker:
    a forked worker must not keep the parent's ends of its own or its siblings' pipes open."""
    import multiprocessing as mp

    from training.isolation import _Worker

    context = mp.get_context("fork")
    pool: list[_Worker] = []
    for _ in range(3):
        pool.append(_Worker(context, abs, pool))
    try:
        pool[1].connection.send((0, -5))
        assert pool[1].connection.recv() == (0, 5, None)
        for worker in pool:
            worker.connection.close()  # no goodbye message: only EOF can end them
        for worker in pool:
            worker.process.join(timeout=DEADLINE)
            assert worker.process.exitcode == 0, "a worker never saw EOF on its pipe"
    finally:
        for worker in pool:
            worker.process.kill()
            worker.process.join()
