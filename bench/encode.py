"""Read + encode throughput, files per second on one core, for each candidate MIDI reader.

    .venv/bin/python bench/encode.py [--files 200] [--seed 0]

Corpora: a generated multi-track corpus (4-16 tracks, 32-96 bars, drums, metre and tempo
changes) and real files (the committed fixtures and the MIDI files that ship with
music21). Each reader is run on the same files in one process; the table gives files/s,
notes/s and the speed-up of symusic over the others. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from meloformer_core.encoding import encode
from meloformer_core.midi_io import read_midi, write_midi
from meloformer_core.music import Note, NoteArray, Song, TempoChange, TimeSignature, Track

ROOT = Path(__file__).resolve().parent.parent


def generated_corpus(directory: Path, count: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        resolution = int(rng.choice([96, 384, 480]))
        bars = int(rng.integers(32, 97))
        metre = [(4, 4), (3, 4), (6, 8), (4, 4)][index % 4]
        bar_ticks = metre[0] * 4 * resolution // metre[1]
        tempos = [TempoChange(0, int(rng.integers(300_000, 900_000)))]
        tempos += [TempoChange(int(rng.integers(1, bars)) * bar_ticks, int(rng.integers(300_000, 900_000)))]
        signatures = [TimeSignature(0, *metre)]
        if index % 5 == 0:
            signatures.append(TimeSignature(bars // 2 * bar_ticks, 7, 8))
        tracks = []
        for slot in range(int(rng.integers(4, 17))):
            is_drum = slot == 0
            per_bar = int(rng.integers(3, 16))
            count_notes = bars * per_bar
            step = resolution // 4
            starts = np.sort(rng.integers(0, bars * bar_ticks // step, count_notes)) * step
            starts += rng.integers(-3, 4, count_notes).clip(-starts)  # human timing
            pitches = rng.integers(35, 82, count_notes) if is_drum else rng.integers(36, 90, count_notes)
            durations = rng.integers(1, 8, count_notes) * step
            velocities = rng.integers(30, 128, count_notes)
            notes = NoteArray.from_columns(starts, pitches, durations, velocities)
            tracks.append(Track(f"t{slot}", int(rng.integers(0, 128)), is_drum, notes))
        path = directory / f"generated_{index:04d}.mid"
        write_midi(Song(resolution, tuple(tempos), tuple(signatures), (), tuple(tracks)), path)
        paths.append(path)
    return paths


def real_files() -> list[Path]:
    import music21

    shipped = sorted(Path(music21.__file__).parent.rglob("*.mid"))
    return sorted((ROOT / "tests" / "fixtures").glob("*.mid")) + shipped


def read_pretty_midi(path: Path) -> Song:
    """pretty_midi as a reader candidate: parse, then convert to a Song."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(path))
    resolution = midi.resolution
    tracks = []
    for instrument in midi.instruments:
        rows = [(midi.time_to_tick(n.start), n.pitch, max(1, midi.time_to_tick(n.end) - midi.time_to_tick(n.start)),
                 n.velocity) for n in instrument.notes]  # fmt: skip
        tracks.append(Track(instrument.name, instrument.program, instrument.is_drum, [Note(*row) for row in rows]))
    tempo_times, tempi = midi.get_tempo_changes()
    tempos = [TempoChange(midi.time_to_tick(t), round(60e6 / q)) for t, q in zip(tempo_times, tempi, strict=True)]
    signatures = [TimeSignature(midi.time_to_tick(ts.time), ts.numerator, ts.denominator)
                  for ts in midi.time_signature_changes]  # fmt: skip
    return Song(resolution, tuple(tempos), tuple(signatures), (), tuple(tracks))


READERS = {
    "symusic": lambda path: read_midi(path),
    "mido": lambda path: read_midi(path, backend="mido"),
    "pretty_midi": read_pretty_midi,
}


def measure(paths: list[Path], reader, budget_s: float) -> dict:
    """Read + encode every file (or as many as fit in the time budget), on this core."""
    done = notes = tokens = 0
    read_s = encode_s = 0.0
    for path in paths:
        t0 = time.perf_counter()
        song = reader(path)
        t1 = time.perf_counter()
        tokens += len(encode(song))
        t2 = time.perf_counter()
        read_s += t1 - t0
        encode_s += t2 - t1
        notes += song.note_count
        done += 1
        if read_s + encode_s > budget_s:
            break
    total = read_s + encode_s
    return {
        "files": done,
        "files_per_s": done / total,
        "notes_per_file": notes / done,
        "notes_per_s": notes / total,
        "tokens_per_s": tokens / total,
        "read_ms_per_file": 1000 * read_s / done,
        "encode_ms_per_file": 1000 * encode_s / done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="generated files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per slow reader and corpus")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, honestly

    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as directory:
        corpora = {"generated": generated_corpus(Path(directory), args.files, args.seed), "real": real_files()}
        for corpus, paths in corpora.items():
            for path in paths[:3]:  # warm up imports and caches
                for reader in READERS.values():
                    encode(reader(path))
            for name, reader in READERS.items():
                budget = 1e9 if name == "symusic" else args.budget
                results.setdefault(corpus, {})[name] = measure(paths, reader, budget)

    header = f"{'corpus':<10} {'reader':<12} {'files':>6} {'notes/file':>11} {'files/s':>9} {'read ms':>8} " \
             f"{'encode ms':>10} {'symusic ×':>10}"  # fmt: skip
    print(header)
    print("-" * len(header))
    for corpus, by_reader in results.items():
        for name, r in by_reader.items():
            speedup = by_reader["symusic"]["files_per_s"] / r["files_per_s"]
            print(f"{corpus:<10} {name:<12} {r['files']:>6} {r['notes_per_file']:>11.0f} {r['files_per_s']:>9.1f} "
                  f"{r['read_ms_per_file']:>8.2f} {r['encode_ms_per_file']:>10.2f} {speedup:>10.1f}")  # fmt: skip
    summary = {
        "benchmark": "encode",
        "cores": 1,
        **{
            f"{corpus}_{name}_files_per_s": round(r["files_per_s"], 1)
            for corpus, by_reader in results.items()
            for name, r in by_reader.items()
        },
        "generated_notes_per_file": round(results["generated"]["symusic"]["notes_per_file"]),
        "target_files_per_s": 200,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
