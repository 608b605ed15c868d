"""Decoding takes one thread per idle core: read from /proc/stat, at least one, restored after."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from meloformer_core import threads


def test_threads_follow_the_idle_cores() -> None:
    assert threads.threads_for(2.0, cores=2) == 2  # an idle machine: every core
    assert threads.threads_for(1.1, cores=2) == 1  # one core busy (a DAW, a browser): one thread
    assert threads.threads_for(0.8, cores=2) == 1  # three-quarters idle counts as a core
    assert threads.threads_for(0.0, cores=2) == 1  # never none
    assert threads.threads_for(7.9, cores=8) == 8
    assert threads.threads_for(None, cores=2) is None  # unknown: torch's own choice


def test_idle_cores_come_from_proc_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    readings = iter([
        "cpu  100 0 100 800 0 0 0 0 0 0\n",  # idle 800 of 1000
        "cpu  150 0 150 1100 0 0 0 0 0 0\n",  # then 300 idle of the next 400: three-quarters
    ])  # fmt: skip
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    monkeypatch.setattr(threads.time, "sleep", lambda _s: stat.write_text(next(readings)))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    stat.write_text(next(readings))
    assert threads.idle_cores() == pytest.approx(1.5)
    monkeypatch.setattr(threads, "PROC_STAT", tmp_path / "missing")
    assert threads.idle_cores() is None  # not Linux: unknown


def test_the_service_decodes_on_the_chosen_threads_and_restores_torchs(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meloformer_core.generation.sampling import SamplingConfig
    from meloformer_core.midi_io import read_midi
    from meloformer_core.service import GenerationService
    from tests.conftest import FIXTURES

    seen: list[int] = []
    import meloformer_core.generation.generate as generate

    real = generate.continue_grid

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "continue_grid", spy)
    monkeypatch.setattr(threads, "idle_cores", lambda interval=threads.SAMPLE_S: 0.2)  # a busy machine
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the tests set it; a user's setting would be kept
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what torch would take on two cores
    try:
        service = GenerationService(device="cpu")
        service.load(bundle_dir)
        service.continue_song(read_midi(FIXTURES / "folk_song_3_4.mid"), 1, SamplingConfig(seed=1))
        assert seen == [1] and service.last_threads == 1  # one thread while a core is busy …
        assert torch.get_num_threads() == 2  # … and torch's count back after
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a count the user chose is kept
        service.continue_song(read_midi(FIXTURES / "folk_song_3_4.mid"), 1, SamplingConfig(seed=1))
        assert seen[-1] == 2 and service.last_threads == 2
    finally:
        torch.set_num_threads(before)
