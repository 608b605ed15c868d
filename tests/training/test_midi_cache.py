"""The cache of MIDI --data: reused while the files (by content) and the options are unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meloformer_core.atomic import OutputFolderError
from tests.conftest import FIXTURES
from training.midi_cache import is_midi_source, prepare_cache
from training.preprocess import Options, PreprocessError, preprocess
from training.train import RUN_KIND


def build(source: Path, cache: Path, options: Options) -> list[str]:
    said: list[str] = []
    prepare_cache(source, cache, options, workers=1, progress=False, say=said.append)
    return said


def test_made_once_reused_and_made_again_when_files_or_options_change(tmp_path: Path) -> None:
    midi = tmp_path / "midi"
    midi.mkdir()
    for name in ("folk_song_3_4.mid", "jig_6_8.mid", "drum_groove.mid"):
        shutil.copy(FIXTURES / name, midi / name)
    cache = tmp_path / "run" / "data-cache"
    assert is_midi_source(midi) and not is_midi_source(tmp_path / "nowhere")
    said = build(midi, cache, Options(max_seq_len=512))
    assert any(line.startswith("preprocessing 3 MIDI files") for line in said)
    assert not is_midi_source(cache)  # a dataset is a dataset, never MIDI to preprocess
    manifest = (cache / "manifest.json").read_bytes()
    # renamed and moved: the same content, the same cache
    moved = tmp_path / "moved"
    midi.rename(moved)
    (moved / "jig_6_8.mid").rename(moved / "renamed.mid")
    assert build(moved, cache, Options(max_seq_len=512)) == [
        f"reusing {cache}: the 3 MIDI files and the options are unchanged"
    ]
    assert (cache / "manifest.json").read_bytes() == manifest
    said = build(moved, cache, Options(max_seq_len=256))
    assert (
        said[0].startswith("the options changed")
        and json.loads((cache / "settings.json").read_text())["max_seq_len"] == 256
    )
    shutil.copy(FIXTURES / "slip_jig_9_8.mid", moved / "new.mid")
    said = build(moved, cache, Options(max_seq_len=256))
    assert said[0].startswith("the MIDI files changed") and any("4 MIDI files" in line for line in said)
    assert json.loads((cache / "manifest.json").read_text())["files_kept"] == 4


def test_never_replaces_a_folder_that_is_not_its_own(tmp_path: Path) -> None:
    midi = tmp_path / "midi"
    midi.mkdir()
    shutil.copy(FIXTURES / "folk_song_3_4.mid", midi / "a.mid")
    users = tmp_path / "users-dataset"  # made by meloformer-preprocess: the user's, not a cache
    preprocess(midi, users, workers=1, limit=None, options=Options(max_seq_len=256), progress=False)
    with pytest.raises(PreprocessError, match="not a training cache"):
        build(midi, users, Options(max_seq_len=512))
    assert (users / "manifest.json").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="not a MeloFormer dataset"):
        build(midi, other, Options(max_seq_len=512))


def test_a_run_stopped_while_preprocessing_is_still_a_run(tmp_path: Path) -> None:
    midi = tmp_path / "midi"
    midi.mkdir()
    shutil.copy(FIXTURES / "folk_song_3_4.mid", midi / "a.mid")
    out = tmp_path / "run"
    build(midi, out / "data-cache", Options(max_seq_len=512))
    assert RUN_KIND.holds(out)  # `meloformer-train` may write into it again
