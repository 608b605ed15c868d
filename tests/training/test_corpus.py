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
    assert summary["notes"] == sum(read_midi(path).note_count for path in files)
    again = convert(tmp_path, ("leadSheet", "demos"), workers=2, limit=None, timeout=300, progress=False)
    # a rerun keeps what exists and still counts it
    assert (again["midi_files"], again["notes"]) == (summary["midi_files"], summary["notes"])


def test_reserved_composers_are_never_converted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CorpusError, match="not a training composer"):
        corpus_files(("beethoven",))
    assert main(["--output", str(tmp_path), "--composers", "mozart", "--quiet"]) == 1
    assert "reserved for evaluation" in capsys.readouterr().err


def test_reserved_composers_convert_only_into_an_evaluation_corpus(tmp_path: Path) -> None:
    from training.corpus import reserved_composers
    from training.preprocess import Options, PreprocessError, preprocess

    reserved = reserved_composers()
    assert {"beethoven", "mozart", "haydn"} <= set(reserved) and not {"bach", "essenFolksong"} & set(reserved)
    with pytest.raises(CorpusError, match="not a reserved composer"):
        corpus_files(("bach",), reserved=True)
    # works in sub-folders with the same file name (opus18no1/movement1, opus18no2/movement1) stay apart
    quartets, _ = corpus_files(("beethoven",), reserved=True)
    assert len(quartets) > 20 and len({f.name for f in quartets}) == len(quartets)
    assert any("/" in f.name for f in quartets)
    # one work in two formats (bwv277.krn, bwv277.mxl) is converted once
    chorales, other_formats = corpus_files(("bach",))
    assert other_formats >= 1 and len({f.name for f in chorales}) == len(chorales)
    folder = tmp_path / "reserved"
    assert main(["--reserved", "--composers", "verdi", "--output", str(folder), "--quiet"]) == 0
    record = json.loads((folder / "corpus.json").read_text())
    assert record["purpose"] == "evaluation" and record["midi_files"] == len(list(folder.rglob("*.mid"))) >= 1
    # never trained on: preprocessing refuses it, as a folder or one of its composers
    for source in (folder, folder / "verdi"):
        with pytest.raises(PreprocessError, match="reserved evaluation corpus"):
            preprocess(source, tmp_path / "dataset", workers=1, limit=None, options=Options(), progress=False)
    # and a training corpus cannot be converted into it
    with pytest.raises(CorpusError, match="already holds a corpus for evaluation"):
        convert(folder, ("demos",), workers=1, limit=1, timeout=300, progress=False)
