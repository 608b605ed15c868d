"""`meloformer-preprocess`: isolation of bad files, dedupe, manifest, exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from meloformer_core.encoding import DEFAULT_VOCAB, decode, validate
from training.preprocess import CRASH_MARKER_ENV, HANG_MARKER_ENV, main


def run(corpus: Path, out: Path, *extra: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "training.preprocess", "--input", str(corpus), "--output", str(out),
               "--workers", "2", "--chunk-size", "4", "--max-seq-len", "512", "--valid-permille", "250", "--quiet",
               *extra]  # fmt: skip
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)  # fmt: skip


def rows(out: Path) -> list[tuple]:
    manifest = json.loads((out / "manifest.json").read_text())
    result = []
    for shard in manifest["shards"]:
        with pa.memory_map(str(out / shard["file"])) as source:
            table = pa.ipc.open_file(source).read_all()
        result += list(
            zip(*(table.column(c).to_pylist() for c in ("file_hash", "window", "valid", "tokens")), strict=True)
        )
    return result


@pytest.fixture(scope="module")
def dataset(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "ds"
    process = run(corpus, out, "--timeout", "3", env={HANG_MARKER_ENV: "hang_me", CRASH_MARKER_ENV: "crash_me"})
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["files_kept"] > 0
    return out


def test_bad_files_are_isolated_and_reported(dataset: Path) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())
    failures = {
        Path(f["path"]).name: f["reason"]
        for f in map(json.loads, (dataset / "failures.jsonl").read_text().splitlines())
    }
    assert set(failures) == {"garbage.mid", "truncated.mid", "hang_me.mid", "crash_me.mid"}
    assert "not a MIDI file" in failures["garbage.mid"]
    assert "timed out" in failures["hang_me.mid"] and "crashed" in failures["crash_me.mid"]
    assert manifest["files_seen"] == 27 and manifest["duplicates"] == 2
    assert manifest["files_failed"] == 4 and manifest["files_filtered"] == 1
    assert manifest["files_kept"] == 27 - 2 - 4 - 1
    assert manifest["vocab_hash"] == DEFAULT_VOCAB.hash
    assert sum(manifest["length_histogram"]["counts"]) == sum(manifest["windows"].values())
    assert manifest["tokens"]["valid"] > 0 and manifest["tokens"]["train"] > manifest["tokens"]["valid"]


def test_every_window_is_grammatical_fits_and_decodes(dataset: Path) -> None:
    stored = rows(dataset)
    assert stored
    for _, _, _, tokens in stored:
        assert len(tokens) <= 512
        validate(tokens)  # windows start with a header and a restated first bar
        decode(tokens).validate()
    by_file: dict[str, set[bool]] = {}
    for file_hash, _, valid, _ in stored:
        by_file.setdefault(file_hash, set()).add(valid)
    assert all(len(splits) == 1 for splits in by_file.values())  # a file never straddles the split


def test_sigkill_then_resume_gives_the_same_dataset(corpus: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    # the hanging file keeps the first run busy while some chunks finish; then kill it hard
    slow = run(corpus, out, "--timeout", "600", env={HANG_MARKER_ENV: "hang_me", CRASH_MARKER_ENV: "crash_me"},
               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list((out / "chunks").glob("chunk-*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(slow.pid, signal.SIGKILL)
    slow.wait()
    assert not (out / "manifest.json").exists()
    finished = len(list((out / "chunks").glob("chunk-*.json")))
    assert 2 <= finished < 7
    again = run(corpus, out, "--timeout", "3", env={HANG_MARKER_ENV: "hang_me", CRASH_MARKER_ENV: "crash_me"})
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert rows(out) == rows(dataset)
    assert json.loads((out / "manifest.json").read_text()) == json.loads((dataset / "manifest.json").read_text())


def test_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"), "--quiet"]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"), "--quiet"]) == 1
    assert "no MIDI files found" in capsys.readouterr().err


def test_show_writes_a_stored_window_back_as_the_source_bars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--show decodes a stored window: note for note the quantised source's bars it holds."""
    from meloformer_core.encoding import quantize
    from meloformer_core.encoding.codec import slice_grid
    from meloformer_core.encoding.quantize import from_grid, to_grid
    from meloformer_core.encoding.windows import split_into_windows
    from meloformer_core.midi_io import read_midi
    from tests.conftest import FIXTURES

    data = tmp_path / "ds"
    assert main(["--input", str(FIXTURES), "-o", str(data), "--max-seq-len", "400", "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    source = FIXTURES / "bach_chorale_tempo.mid"
    written = tmp_path / "window.mid"
    assert main(["--show", str(data), "--file", source.name, "--index", "1", "-o", str(written)]) == 0
    printed = capsys.readouterr().out
    record = json.loads(printed.strip().splitlines()[-1])
    grid = to_grid(read_midi(source))
    windows, _ = split_into_windows(grid, DEFAULT_VOCAB, 400)
    first = DEFAULT_VOCAB.names(windows[0]).count("BAR")
    count = DEFAULT_VOCAB.names(windows[1]).count("BAR")
    expected = from_grid(slice_grid(grid, first, first + count))  # the quantised song's bars of window 1
    got = quantize(read_midi(written))
    assert [t.notes for t in got.tracks] == [t.notes for t in expected.tracks] and got.note_count > 0
    assert got.tempos == expected.tempos and got.time_signatures == expected.time_signatures
    assert record["file"].endswith(source.name) and record["file_window"] == 1
    assert len(record["bars"]) == count and record["tokens"] == len(windows[1])
    assert sum(map(sum, record["bars"])) + record["header_tokens"] == len(windows[1])  # no EOS: the song goes on
    assert f"its window 1 (of 0 to {len(windows) - 1})" in printed
    # one line for what is not there
    assert main(["--show", str(data), "--index", "999"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "window 999 is out of range" in error
    assert main(["--show", str(data), "--file", "no_such.mid"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no file 'no_such.mid'" in error


def test_a_layered_band_arrangement_takes_the_split_of_its_tunes_plain_arrangement(tmp_path: Path) -> None:
    """A tune's melody and chords are never on both sides of the split."""
    import numpy as np

    from meloformer_core.midi_io import write_midi
    from tests.core.strategies import random_song
    from training.preprocess import Options, is_valid_split, preprocess

    band = tmp_path / "band"
    rng = np.random.default_rng(3)
    for source in ("arrangements", "layered"):
        (band / source / "folk").mkdir(parents=True)
        for index in range(12):
            write_midi(random_song(rng, bars=6, tracks=3), band / source / "folk" / f"tune_{index}.mid")
    options = Options(max_seq_len=512, valid_permille=500, chunk_size=8)
    preprocess(band, tmp_path / "ds", workers=1, limit=None, options=options, progress=False)
    entries = {
        Path(e["path"]).relative_to(band).as_posix(): e
        for chunk in sorted((tmp_path / "ds" / "chunks").glob("*.json"))
        for e in json.loads(chunk.read_text())
        if e["status"] == "kept"
    }
    pairs = [(entries[f"arrangements/folk/tune_{i}.mid"], entries[f"layered/folk/tune_{i}.mid"]) for i in range(12)]
    assert {plain["valid"] for plain, _ in pairs} == {True, False}  # both splits hold tunes
    assert all(layered["valid"] == plain["valid"] for plain, layered in pairs)
    # by their own content, some layered files would have gone to the other side
    assert any(is_valid_split(layered["hash"], 500) != plain["valid"] for plain, layered in pairs)
