"""Export: the whole song, some tracks, or only the generated bars; one file or one per track."""

from __future__ import annotations

import re
from pathlib import Path

from meloformer_app.document.edits import keep_ranges
from meloformer_core.midi_io import write_midi
from meloformer_core.music import Song


def export_song(song: Song, path: Path, tracks: list[int] | None = None, ticks: tuple[int, int] | None = None,
                per_track: bool = False) -> list[Path]:  # fmt: skip
    """Write ``song`` (only ``tracks``, only notes starting in ``ticks``) to ``path``; with
    ``per_track``, one file per track named ``STEM-NN-TRACKNAME.mid`` beside ``path``.
    Returns the files written."""
    chosen = list(range(len(song.tracks))) if tracks is None else list(tracks)
    start, stop = ticks if ticks is not None else (None, None)
    if not per_track:
        write_midi(keep_ranges(song, chosen, start, stop), path)
        return [path]
    written = []
    for number, index in enumerate(chosen, start=1):
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", song.tracks[index].name).strip("_") or f"track{index + 1}"
        target = path.with_name(f"{path.stem}-{number:02d}-{name}{path.suffix or '.mid'}")
        write_midi(keep_ranges(song, [index], start, stop), target)
        written.append(target)
    return written
