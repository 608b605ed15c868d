from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from meloformer_core.midi_io import write_midi
from meloformer_core.music import Song, Track
from tests.conftest import FIXTURES
from tests.core.strategies import random_song


def make_corpus(root: Path) -> Path:
    """A small corpus: real fixtures, generated multi-track songs, duplicates, bad files."""
    root.mkdir(parents=True, exist_ok=True)
    for path in FIXTURES.glob("*.mid"):
        shutil.copy(path, root / path.name)
    rng = np.random.default_rng(0)
    sub = root / "generated"
    sub.mkdir()
    for index in range(14):
        write_midi(
            random_song(rng, bars=int(rng.integers(6, 20)), tracks=int(rng.integers(2, 6))),
            sub / f"song_{index:02d}.mid",
        )
    shutil.copy(sub / "song_00.mid", root / "copy_of_song_00.mid")  # duplicate content
    shutil.copy(FIXTURES / "jig_6_8.mid", sub / "jig_again.midi")  # duplicate, other name and suffix
    (root / "garbage.mid").write_bytes(b"this is not MIDI at all")
    (root / "truncated.mid").write_bytes((FIXTURES / "bach_chorale.mid").read_bytes()[:120])
    write_midi(Song(tracks=(Track("nearly silent", 0, False, [(0, 60, 480, 80)]),)), root / "too_few_notes.mid")
    write_midi(random_song(rng, bars=4, tracks=2), root / "hang_me.mid")
    write_midi(random_song(rng, bars=4, tracks=3), root / "crash_me.mid")
    (root / "notes.txt").write_text("not a MIDI file, ignored by suffix")
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "midi")


@pytest.fixture(scope="session")
def dataset(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus preprocessed into windows of at most 512 tokens, a quarter for validation."""
    from training.preprocess import Options, preprocess

    out = tmp_path_factory.mktemp("dataset") / "ds"
    options = Options(max_seq_len=512, valid_permille=250, chunk_size=8)
    preprocess(corpus, out, workers=2, limit=None, options=options, timeout=30, progress=False)
    return out
