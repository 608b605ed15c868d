"""`meloformer-preprocess --show DATA`: a stored window written back as MIDI, with its token counts.

    meloformer-preprocess --show DATA [--index N] [--file NAME] [-o WINDOW.mid]

``--index N`` is the N-th window of the whole dataset (shards in the manifest's order);
with ``--file NAME`` (a file name, or the end of its path) it is the N-th window of that
file. The tokens are decoded as they are (`meloformer_core.encoding.decode`), so the
MIDI file is what the model is trained on: the quantised music of those bars, the
metre, key and tempo in force restated at the first one. The counts (per bar, per track,
and the conductor segment of each bar) show where a window's tokens go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meloformer_core.encoding import DEFAULT_VOCAB, decode
from meloformer_core.encoding.grammar import token_metadata
from meloformer_core.encoding.vocab import TokenType
from meloformer_core.midi_io import write_midi
from training.data import DataError, TokenDataset


@dataclass(frozen=True)
class StoredWindow:
    tokens: np.ndarray
    index: int  # among every stored window of the dataset
    total: int  # windows the dataset stores
    path: str | None  # the source file, as preprocessing listed it
    file_window: int  # this window's number among its file's
    file_windows: int
    valid: bool


def _rows(data: Path) -> list[tuple[int, int, str, int, bool]]:
    """(shard, row, file hash prefix, window, valid) of every stored window, in order."""
    import pyarrow as pa

    manifest = json.loads((data / "manifest.json").read_text())
    rows = []
    for shard_index, shard in enumerate(manifest["shards"]):
        with pa.memory_map(str(data / shard["file"])) as source:
            table = pa.ipc.open_file(source).read_all()
        hashes, windows, valid = (table.column(c).to_pylist() for c in ("file_hash", "window", "valid"))
        rows += [(shard_index, row, hashes[row], windows[row], valid[row]) for row in range(table.num_rows)]
    return rows


def _records(data: Path) -> list[dict]:
    """Every preprocessed file's record (path, hash, status, …), from the chunk records."""
    return [
        entry for chunk in sorted((data / "chunks").glob("chunk-*.json")) for entry in json.loads(chunk.read_text())
    ]


def _tokens(data: Path, shard: int, row: int) -> np.ndarray:
    import pyarrow as pa

    manifest = json.loads((data / "manifest.json").read_text())
    with pa.memory_map(str(data / manifest["shards"][shard]["file"])) as source:
        table = pa.ipc.open_file(source).read_all()
    return np.asarray(table.column("tokens")[row].as_py(), dtype=np.int64)


def find_window(data: Path, index: int = 0, file: str | None = None) -> StoredWindow:
    """The stored window asked for; `DataError` (one line) for an unknown file or a bad index."""
    for split in ("train", "valid"):
        try:
            TokenDataset(data, split)  # a finished dataset of this vocabulary (errors say what is wrong)
            break
        except DataError as error:
            if "split is empty" not in str(error):
                raise
    rows = _rows(data)
    records = _records(data)
    path_of = {entry["hash"][:16]: entry["path"] for entry in records if entry["status"] == "kept"}
    chosen = list(range(len(rows)))
    if file is not None:
        matches = [e for e in records if e["path"] == file or e["path"].endswith("/" + file.lstrip("/"))]
        if not matches:
            raise DataError(f"{data}: no file {file!r} among its {len(records):,} preprocessed files "
                            "(a duplicate of an earlier file is not stored)")  # fmt: skip
        if len(matches) > 1:
            shown = ", ".join(e["path"] for e in matches[:3])
            raise DataError(f"{data}: {file!r} names {len(matches)} files ({shown}); give more of its path")
        entry = matches[0]
        if entry["status"] != "kept":
            raise DataError(f"{data}: {entry['path']} is not stored ({entry['status']}: {entry.get('reason', '')})")
        chosen = [k for k, r in enumerate(rows) if r[2] == entry["hash"][:16]]
    if not 0 <= index < len(chosen):
        where = f"{file!r} has" if file is not None else f"{data} holds"
        raise DataError(f"window {index} is out of range: {where} {len(chosen):,} windows (0 to {len(chosen) - 1})")
    shard, row, file_hash, window, valid = rows[chosen[index]]
    siblings = sum(1 for r in rows if r[2] == file_hash)
    return StoredWindow(_tokens(data, shard, row), chosen[index], len(rows), path_of.get(file_hash), window, siblings,
                        valid)  # fmt: skip


def token_counts(tokens: np.ndarray) -> tuple[int, np.ndarray]:
    """(header tokens, a (bars, 1 + tracks) table: each bar's conductor segment, then each track)."""
    meta = token_metadata(tokens, DEFAULT_VOCAB)
    kinds = DEFAULT_VOCAB.type_of[tokens]
    tracks = int((kinds == TokenType.INSTRUMENT).sum())
    in_bars = (meta["bar"] >= 0) & (kinds != TokenType.EOS)
    bars = int(meta["bar"][in_bars].max()) + 1 if in_bars.any() else 0
    table = np.zeros((bars, 1 + tracks), dtype=np.int64)
    np.add.at(table, (meta["bar"][in_bars], meta["slot"][in_bars]), 1)
    return int((meta["bar"] < 0).sum()), table


def show(data: Path, index: int, file: str | None, output: Path | None) -> dict:
    """Print the window's counts (and write it as MIDI to ``output``); returns the JSON record."""
    found = find_window(data, index, file)
    song = decode(found.tokens)
    header, table = token_counts(found.tokens)
    names = [track.name for track in song.tracks]
    split = "validation" if found.valid else "training"
    ends = "the song ends here" if found.tokens[-1] == DEFAULT_VOCAB.eos_id else "the song goes on"
    print(f"window {found.index} (of 0 to {found.total - 1}, {split} split): {found.path or 'an unknown file'}, "
          f"its window {found.file_window} (of 0 to {found.file_windows - 1}); {len(found.tokens)} tokens: "
          f"{header} of header, {len(table)} bars of {len(names)} tracks, {song.note_count} notes; {ends}")  # fmt: skip
    columns = ["bar", "tokens", "conductor"] + [f"{slot} {name[:14].strip()}" for slot, name in enumerate(names, 1)]
    widths = [max(6, len(c)) for c in columns]
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for bar, counts in enumerate(table.tolist(), 1):
        values = [bar, sum(counts), *counts]
        print(" ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True)))
    totals = ["total", int(table.sum()), *table.sum(axis=0).tolist()]
    print(" ".join(f"{v:>{w}}" for v, w in zip(totals, widths, strict=True)))
    if output is not None:
        write_midi(song, output)
        print(f"wrote {output}")
    record = {"window": found.index, "windows": found.total, "file": found.path, "file_window": found.file_window,
              "file_windows": found.file_windows, "split": "valid" if found.valid else "train",
              "tokens": len(found.tokens), "header_tokens": header, "tracks": names,
              "bars": table.tolist(), "notes": song.note_count,
              "output": str(output) if output is not None else None}  # fmt: skip
    print(json.dumps(record))
    return record
