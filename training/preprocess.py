"""`meloformer-preprocess`: a MIDI corpus → memory-mappable Arrow shards + manifest.

    meloformer-preprocess --input DIR|LIST --output DIR [--workers N] [--limit N] [--max-seq-len L]
    meloformer-preprocess --show DIR [--index N] [--file NAME] [-o WINDOW.mid]   (training/dataset_tools.py)

1. List the files (``.mid``, ``.midi``, ``.kar`` under DIR, or one path per line of LIST),
   sorted; ``--limit`` keeps the first N.
2. Hash every file (SHA-256 of its bytes). A file whose content was seen earlier in that
   order is a duplicate and is skipped.
3. Read, filter, encode and cut each remaining file into windows of whole bars of at most
   ``--max-seq-len`` tokens, in worker processes: a file that raises is recorded, one that
   hangs is killed after ``--timeout`` seconds, one that crashes its worker is recorded,
   and the run goes on.
4. Files are processed in chunks of ``--chunk-size``; each finished chunk is written as an
   Arrow IPC shard plus a small JSON record, both atomically. A run that is killed and
   started again skips finished chunks and ends with the same dataset as an
   uninterrupted run.
5. ``manifest.json`` (vocabulary hash, counts, tokens, length histogram, shards) and
   ``failures.jsonl`` (path, reason) are written at the end.

Filters (documented in the manifest): fewer than ``--min-notes`` notes; more tracks than
the encoding holds; songs the encoding refuses (longer than its bar limit). The split is
by content hash: a file goes to validation when its hash, read as a number, falls in the
lowest ``--valid-permille`` of the range, so it never depends on the order of the run.
A band corpus's layered arrangement (``…/layered/X.mid``, `training.band`) takes the split
of the same tune's plain arrangement (``…/arrangements/X.mid``) when the run has it: a
tune's melody and chords are never on both sides.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from meloformer_core.atomic import FolderKind, check_output_folder, json_marker, write_bytes_atomically
from meloformer_core.encoding.quantize import to_grid
from meloformer_core.encoding.vocab import DEFAULT_VOCAB
from meloformer_core.encoding.windows import split_into_windows
from meloformer_core.errors import MeloformerError
from meloformer_core.midi_io import read_midi
from training.isolation import run_isolated

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
FORMAT = "meloformer-dataset"
VERSION = 1
HISTOGRAM_EDGES = [0, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 1 << 30]
# Fault injection for the tests: a file whose name contains this text makes the worker
# sleep (a reader that hangs) or die (a reader that crashes). Never set in normal use.
HANG_MARKER_ENV = "MELOFORMER_TEST_HANG_MARKER"
CRASH_MARKER_ENV = "MELOFORMER_TEST_CRASH_MARKER"


class PreprocessError(MeloformerError):
    """The corpus or the output directory cannot be used."""


DATASET_KIND = FolderKind(
    "MeloFormer dataset",
    frozenset({"settings.json", "manifest.json", "failures.jsonl", "shards", "chunks"}),
    json_marker("settings.json", lambda data: isinstance(data, dict) and "vocab_hash" in data),
)


@dataclass(frozen=True)
class Options:
    """What defines the dataset (a resumed run must use the same)."""

    max_seq_len: int = 2048
    min_notes: int = 16
    valid_permille: int = 20
    chunk_size: int = 256


DEFAULT_TIMEOUT = 30.0  # seconds per file before its worker is killed


def list_files(source: Path, limit: int | None) -> list[Path]:
    if not source.exists():
        raise PreprocessError(f"{source}: no such file or directory")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
    else:
        base = source.parent
        lines = [line.strip() for line in source.read_text().splitlines()]
        files = sorted((Path(line) if Path(line).is_absolute() else base / line) for line in lines if line)
    if not files:
        raise PreprocessError(f"{source}: no MIDI files found ({', '.join(MIDI_SUFFIXES)})")
    return files[:limit] if limit else files


def content_hash(path: Path) -> tuple[str, str | None]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest(), None
    except OSError as error:
        return "", f"cannot read file ({error.strerror or error})"


def is_valid_split(file_hash: str, permille: int) -> bool:
    return int(file_hash[:8], 16) % 1000 < permille


def split_hashes(files: list[Path], hashes: list[tuple[str, str | None]]) -> list[str]:
    """The hash that decides each file's split: its own, or for a layered band arrangement
    the hash of the same tune's plain arrangement where that is among ``files``."""
    by_path = {path: file_hash for path, (file_hash, error) in zip(files, hashes, strict=True) if not error}
    result = []
    for path, (file_hash, _) in zip(files, hashes, strict=True):
        parts = path.parts
        if "layered" in parts:
            at = len(parts) - 1 - parts[::-1].index("layered")
            file_hash = by_path.get(Path(*parts[:at], "arrangements", *parts[at + 1 :]), file_hash)
        result.append(file_hash)
    return result


def process_file(job: tuple[str, Options]) -> dict:
    """Read, filter, encode and window one file (runs in a worker process)."""
    path, options = job
    for variable, action in ((HANG_MARKER_ENV, "hang"), (CRASH_MARKER_ENV, "crash")):
        marker = os.environ.get(variable)
        if marker and marker in Path(path).name:
            if action == "hang":
                time.sleep(3600)
            os._exit(70)
    try:
        song = read_midi(path)
    except MeloformerError as error:
        return {"status": "failed", "reason": str(error)}
    notes = song.note_count
    if notes < options.min_notes:
        return {"status": "filtered", "reason": f"fewer than {options.min_notes} notes ({notes})"}
    if len(song.tracks) > DEFAULT_VOCAB.config.max_tracks:
        return {
            "status": "filtered",
            "reason": f"more than {DEFAULT_VOCAB.config.max_tracks} tracks ({len(song.tracks)})",
        }
    try:
        windows, dropped = split_into_windows(to_grid(song), DEFAULT_VOCAB, options.max_seq_len)
    except MeloformerError as error:
        return {"status": "filtered", "reason": str(error)}
    if not windows:
        return {"status": "filtered", "reason": "no bar fits in a window"}
    return {
        "status": "kept",
        "windows": [w.astype(np.int16) for w in windows],
        "notes": notes,
        "bars_dropped": dropped,
    }


def write_shard(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa

    lengths = np.array([len(row["tokens"]) for row in rows], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate([row["tokens"] for row in rows]).astype(np.int16)
    table = pa.table(
        {
            "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
            "length": pa.array(lengths),
            "file_hash": pa.array([row["file_hash"] for row in rows], type=pa.string()),
            "window": pa.array([row["window"] for row in rows], type=pa.int32()),
            "valid": pa.array([row["valid"] for row in rows], type=pa.bool_()),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    write_bytes_atomically(path, sink.getvalue().to_pybytes())


def evaluation_corpus_of(files: list[Path]) -> Path | None:
    """The first folder holding any of ``files`` that is a reserved evaluation corpus."""
    from training.corpus import corpus_purpose

    purposes: dict[Path, str | None] = {}
    for directory in sorted({folder.resolve() for folder in {path.parent for path in files}}):
        for folder in (directory, *directory.parents):
            if folder not in purposes:
                purposes[folder] = corpus_purpose(folder)
            if purposes[folder] == "evaluation":
                return folder
    return None


def hash_files(files: list[Path], workers: int, progress: bool) -> list[tuple[str, str | None]]:
    """(SHA-256, None) or ("", why it cannot be read) for every file, in order."""
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=max(4, workers)) as threads:
        return list(
            tqdm(threads.map(content_hash, files), total=len(files), desc="hashing", disable=not progress, unit="file")
        )


def files_fingerprint(hashes: list[tuple[str, str | None]]) -> str:
    """One hash for a corpus's content: its files' hashes, sorted (names and places do not count)."""
    return hashlib.sha256("\n".join(sorted(h or f"unreadable: {e}" for h, e in hashes)).encode()).hexdigest()


def dataset_settings(source: Path, limit: int | None, options: Options, fingerprint: str | None = None) -> dict:
    """What ``settings.json`` holds: a resumed run must match it. A dataset made as a cache of
    a corpus (``fingerprint``, `training.midi_cache`) is keyed by content, not by place."""
    where = {"files": fingerprint} if fingerprint is not None else {"source": str(source)}
    return {"vocab_hash": DEFAULT_VOCAB.hash, **where, "limit": limit, **asdict(options)}


def preprocess(
    source: Path,
    output: Path,
    *,
    workers: int,
    limit: int | None,
    options: Options,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    listed: tuple[list[Path], list[tuple[str, str | None]]] | None = None,
    fingerprint: str | None = None,
) -> dict:
    """``listed``: the files and their hashes when the caller has them (`training.midi_cache`);
    ``fingerprint``: their `files_fingerprint`, recorded in the settings instead of ``source``."""
    # Long on purpose (64 lines): the pipeline in its order: list, resume, convert in workers, write shards, manifest.
    from tqdm import tqdm

    files = list_files(source, limit) if listed is None else listed[0]
    reserved = evaluation_corpus_of(files)
    if reserved is not None:
        raise PreprocessError(f"{reserved}: the reserved evaluation corpus (meloformer-corpus --reserved) is never "
                              "trained on; evaluate on it with meloformer-eval --data")  # fmt: skip
    check_output_folder(output, DATASET_KIND)  # new, empty, or a dataset of ours (resumed)
    output.mkdir(parents=True, exist_ok=True)
    (output / "shards").mkdir(exist_ok=True)
    (output / "chunks").mkdir(exist_ok=True)
    settings = dataset_settings(source, limit, options, fingerprint)
    settings_path = output / "settings.json"
    if settings_path.exists() and json.loads(settings_path.read_text()) != settings:
        raise PreprocessError(f"{output}: holds a run with other settings; choose another output directory")
    write_bytes_atomically(settings_path, json.dumps(settings, indent=1).encode())

    # 1-2. hashes and duplicates, deterministic in sorted order
    hashes = hash_files(files, workers, progress) if listed is None else listed[1]
    seen: dict[str, int] = {}
    unique: list[tuple[Path, str, str]] = []
    failures: list[dict] = []
    duplicates = 0
    for path, (file_hash, error), split_hash in zip(files, hashes, split_hashes(files, hashes), strict=True):
        if error:
            failures.append({"path": str(path), "reason": error})
        elif file_hash in seen:
            duplicates += 1
        else:
            seen[file_hash] = len(unique)
            unique.append((path, file_hash, split_hash))

    # 3-4. chunks of unique files, skipping finished ones
    chunks = [unique[i : i + options.chunk_size] for i in range(0, len(unique), options.chunk_size)]
    todo = [k for k in range(len(chunks)) if not (output / "chunks" / f"chunk-{k:06d}.json").exists()]
    jobs = [(k * options.chunk_size + i, (str(path), options)) for k in todo for i, (path, *_) in enumerate(chunks[k])]
    results: dict[int, dict] = {}
    remaining = {k: len(chunks[k]) for k in todo}
    bar = tqdm(total=len(unique), initial=len(unique) - len(jobs), desc="encoding", disable=not progress, unit="file")
    for outcome in run_isolated(process_file, jobs, workers=workers, timeout=timeout):
        results[outcome.index] = (
            outcome.value if outcome.error is None else {"status": "failed", "reason": outcome.error}
        )
        bar.update(1)
        k = outcome.index // options.chunk_size
        remaining[k] -= 1
        if remaining[k] == 0:
            _finish_chunk(output, k, chunks[k], results, options)
    bar.close()
    return _write_manifest(output, files, chunks, failures, duplicates, options)


def _finish_chunk(
    output: Path, k: int, chunk: list[tuple[Path, str, str]], results: dict[int, dict], options: Options
) -> None:
    rows, record = [], []
    for i, (path, file_hash, split_hash) in enumerate(chunk):
        result = results.pop(k * options.chunk_size + i)
        entry = {"path": str(path), "hash": file_hash, "status": result["status"]}
        if result["status"] == "kept":
            valid = is_valid_split(split_hash, options.valid_permille)
            for w, tokens in enumerate(result["windows"]):
                rows.append({"tokens": tokens, "file_hash": file_hash[:16], "window": w, "valid": valid})
            entry.update(windows=len(result["windows"]), tokens=int(sum(len(t) for t in result["windows"])),
                         notes=result["notes"], bars_dropped=result["bars_dropped"], valid=valid)  # fmt: skip
        else:
            entry["reason"] = result["reason"]
        record.append(entry)
    shard = output / "shards" / f"shard-{k:06d}.arrow"
    if rows:
        write_shard(shard, rows)
    write_bytes_atomically(output / "chunks" / f"chunk-{k:06d}.json", json.dumps(record).encode())


def _write_manifest(
    output: Path, files: list[Path], chunks: list, failures: list[dict], duplicates: int, options: Options
) -> dict:
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    lengths: list[int] = []
    tokens = {"train": 0, "valid": 0}
    windows = {"train": 0, "valid": 0}
    notes = bars_dropped = 0
    shards = []
    for k in range(len(chunks)):
        record = json.loads((output / "chunks" / f"chunk-{k:06d}.json").read_text())
        for entry in record:
            counts[entry["status"]] += 1
            if entry["status"] == "kept":
                split = "valid" if entry["valid"] else "train"
                tokens[split] += entry["tokens"]
                windows[split] += entry["windows"]
                notes += entry["notes"]
                bars_dropped += entry["bars_dropped"]
            elif entry["status"] == "failed":
                failures.append({"path": entry["path"], "reason": entry["reason"]})
            else:
                reasons[entry["reason"].split(" (")[0]] += 1
        shard = output / "shards" / f"shard-{k:06d}.arrow"
        if shard.exists():
            import pyarrow as pa

            with pa.memory_map(str(shard)) as source:
                table = pa.ipc.open_file(source).read_all()
            lengths += table.column("length").to_pylist()
            shards.append({"file": f"shards/{shard.name}", "rows": table.num_rows})
    histogram = np.histogram(lengths, bins=HISTOGRAM_EDGES)[0].tolist() if lengths else [0] * (len(HISTOGRAM_EDGES) - 1)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "vocab_hash": DEFAULT_VOCAB.hash,
        "options": asdict(options),
        "files_seen": len(files),
        "duplicates": duplicates,
        "files_kept": counts["kept"],
        "files_failed": len(failures),
        "files_filtered": counts["filtered"],
        "filtered_by_reason": dict(reasons),
        "notes": notes,
        "bars_dropped_too_long": bars_dropped,
        "tokens": tokens,
        "windows": windows,
        "length_histogram": {"edges": HISTOGRAM_EDGES[:-1], "counts": histogram},
        "shards": shards,
    }
    write_bytes_atomically(output / "manifest.json", json.dumps(manifest, indent=1).encode())
    write_bytes_atomically(output / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures).encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meloformer-preprocess", description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="a folder of MIDI files, or a text file listing them")
    parser.add_argument("-o", "--output", type=Path,
                        help="the dataset folder (created; resumable); with --show, a MIDI file")  # fmt: skip
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N files (sorted)")
    parser.add_argument("--max-seq-len", type=int, default=Options.max_seq_len, help="tokens per window")
    parser.add_argument("--min-notes", type=int, default=Options.min_notes)
    parser.add_argument("--valid-permille", type=int, default=Options.valid_permille, help="validation share in ‰")
    parser.add_argument("--chunk-size", type=int, default=Options.chunk_size, help="files per shard")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds before a file's worker is killed"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    shown = parser.add_argument_group("looking at a dataset (training/dataset_tools.py)")
    shown.add_argument("--show", type=Path, metavar="DATA",
                       help="print a stored window's token counts per bar and track; -o writes it as MIDI")  # fmt: skip
    shown.add_argument("--index", type=int, default=0, help="which window (with --file: which of that file's)")
    shown.add_argument("--file", default=None, metavar="NAME", help="a window of this source file (its name or path)")
    args = parser.parse_args(argv)
    if args.show is not None:
        from training.dataset_tools import show

        try:
            show(args.show, args.index, args.file, args.output)
        except MeloformerError as error:
            print(f"meloformer-preprocess: error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.input is None or args.output is None:
        parser.error("--input and --output are required (or --show DATA to look at a dataset)")
    options = Options(args.max_seq_len, args.min_notes, args.valid_permille, args.chunk_size)
    started = time.perf_counter()
    try:
        manifest = preprocess(args.input, args.output, workers=args.workers, limit=args.limit, options=options,
                              timeout=args.timeout, progress=not args.quiet)  # fmt: skip
    except MeloformerError as error:
        print(f"meloformer-preprocess: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("meloformer-preprocess: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - started
    summary = {
        key: manifest[key]
        for key in ("files_seen", "duplicates", "files_kept", "files_failed", "files_filtered", "tokens")
    }
    print(json.dumps({**summary, "seconds": round(elapsed, 2), "output": str(args.output)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
