"""`meloformer-corpus`: training composers of the music21 corpus → MIDI; reserved ones refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meloformer_core.midi_io import read_midi
from training.corpus import CorpusError, convert, corpus_files, main


def test_converts_works_to_readable_midi_and_counts_them(tmp_path: Path) -> None:
    summary = convert(tmp_path, ("leadSheet", "demos"), workers=2, limit=None, timeout=300, progress=False)
    files = sorted(tmp_path.rglob("*.mid"))
    assert summary["midi_files"] == len(files) >= 10
    assert json.loads((tmp_path / "corpus.json").read_text())["works"] == summary["works"]
    assert all(read_midi(path).note_count > 0 for path in files)
    again = convert(tmp_path, ("leadSheet", "demos"), workers=2, limit=None, timeout=300, progress=False)
    assert again["midi_files"] == summary["midi_files"]  # a rerun keeps what exists


def test_reserved_composers_are_never_converted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CorpusError, match="not a training composer"):
        corpus_files(("beethoven",))
    assert main(["--output", str(tmp_path), "--composers", "mozart", "--quiet"]) == 1
    assert "reserved for evaluation" in capsys.readouterr().err
