"""`meloformer-train --data MIDI`: a folder of MIDI files preprocessed into a cache beside the run.

The cache (``OUT/data-cache`` unless ``--data-cache`` names another folder) is a dataset
of `meloformer-preprocess` whose ``settings.json`` records, instead of the corpus's
place, a fingerprint of its content (the files' SHA-256 hashes, sorted) beside the
options. A later run reuses it when both are unchanged, continues it when a run was
interrupted while preprocessing (`preprocess` is resumable), and makes it again when the
files or the options changed. Only a folder made this way is ever replaced: a dataset a
user made with `meloformer-preprocess` is never taken for a cache.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from meloformer_core.atomic import check_output_folder
from training.preprocess import (
    DATASET_KIND,
    MIDI_SUFFIXES,
    Options,
    PreprocessError,
    dataset_settings,
    files_fingerprint,
    hash_files,
    list_files,
    preprocess,
)

CACHE_NAME = "data-cache"


def is_midi_source(path: Path) -> bool:
    """Whether ``--data`` names MIDI files (a folder holding some, or a list of them) rather
    than a preprocessed dataset."""
    if path.is_file():
        return path.suffix.lower() not in MIDI_SUFFIXES and path.name != "manifest.json"
    if not path.is_dir() or (path / "manifest.json").exists() or DATASET_KIND.holds(path):
        return False
    return any(p.is_file() and p.suffix.lower() in MIDI_SUFFIXES for p in path.rglob("*"))


def is_cache(folder: Path) -> bool:
    """A dataset made by `prepare_cache` (its settings hold a content fingerprint)."""
    try:
        return "files" in json.loads((folder / "settings.json").read_text())
    except (OSError, ValueError):
        return False


def prepare_cache(
    source: Path, cache: Path, options: Options, *, workers: int, progress: bool, say: Callable[[str], None]
) -> Path:
    """The preprocessed dataset of the MIDI files under ``source``, made or reused in ``cache``."""
    files = list_files(source, None)
    hashes = hash_files(files, workers, progress)
    fingerprint = files_fingerprint(hashes)
    wanted = dataset_settings(source, None, options, fingerprint)
    if check_output_folder(cache, DATASET_KIND):  # absent, empty, or a dataset of ours
        if not is_cache(cache):
            raise PreprocessError(f"{cache}: a dataset made by meloformer-preprocess, not a training cache; give it "
                                  "as --data, or choose another --data-cache")  # fmt: skip
        found = json.loads((cache / "settings.json").read_text())
        if found == wanted and (cache / "manifest.json").is_file():
            say(f"reusing {cache}: the {len(files):,} MIDI files and the options are unchanged")
            return cache
        if found != wanted:
            what = "the MIDI files" if found.get("files") != fingerprint else "the options"
            say(f"{what} changed since {cache} was made: preprocessing again")
            shutil.rmtree(cache)
        else:
            say(f"continuing the interrupted preprocessing in {cache}")
    say(f"preprocessing {len(files):,} MIDI files from {source} into {cache} "
        f"(windows of at most {options.max_seq_len:,} tokens)")  # fmt: skip
    manifest = preprocess(source, cache, workers=workers, limit=None, options=options, progress=progress,
                          listed=(files, hashes), fingerprint=fingerprint)  # fmt: skip
    tokens = sum(manifest["tokens"].values())
    say(f"preprocessed: {manifest['files_kept']:,} files kept ({tokens:,} tokens), {manifest['files_filtered']:,} "
        f"filtered, {manifest['files_failed']:,} failed, {manifest['duplicates']:,} duplicates"
        + (f" (see {cache / 'failures.jsonl'})" if manifest["files_failed"] else ""))  # fmt: skip
    if not manifest["files_kept"]:
        raise PreprocessError(f"{source}: none of the {len(files):,} MIDI files could be used")
    return cache
