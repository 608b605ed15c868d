"""Round-trip fidelity on a folder of real MIDI files: what survives encode → decode.

    .venv/bin/python bench/roundtrip.py DIR [DIR …]

A file passes when note_recall ≥ 0.995 and the track count, programs, drum flags, tempo
changes and time signatures are preserved. Prints one row per failing or unreadable
file, a summary table, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from meloformer_core.encoding import decode, encode
from meloformer_core.errors import MeloformerError
from meloformer_core.metrics import compare
from meloformer_core.midi_io import read_midi


def passes(report: dict) -> bool:
    return (
        report["note_recall"] >= 0.995
        and report["tracks_in"] == report["tracks_out"]
        and report["programs_preserved"]
        and report["drums_preserved"]
        and report["tempo_changes_in"] == report["tempo_changes_out"]
        and report["time_signatures_in"] == report["time_signatures_out"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    files = sorted(
        p for folder in args.folders for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar")
    )
    reports, unreadable = [], []
    for path in files:
        try:
            song = read_midi(path)
            if not song.note_count:
                continue
            tokens = encode(song)
            report = compare(song, decode(tokens), len(tokens)).to_dict()
        except MeloformerError as error:
            unreadable.append(str(error))
            print(f"unreadable  {error}")
            continue
        report["file"] = str(path)
        reports.append(report)
        if not passes(report):
            print(f"FAIL  {path}  {json.dumps({k: v for k, v in report.items() if k != 'file'})}")
    recall = np.array([r["note_recall"] for r in reports])
    strict = np.array([r["note_recall_one_to_one"] for r in reports])
    onset = np.array([r["onset_error_ms_mean"] for r in reports])
    passing = sum(passes(r) for r in reports)
    print(f"{'files':>6} {'passing':>8} {'min recall':>11} {'min 1:1 recall':>15} {'mean onset ms':>14} {'tracks':>7}")
    print(f"{len(reports):>6} {passing:>8} {recall.min():>11.4f} {strict.min():>15.4f} {onset.mean():>14.2f} "
          f"{sum(r['tracks_in'] for r in reports):>7}")  # fmt: skip
    print(json.dumps({
        "benchmark": "roundtrip", "files": len(reports), "passing": passing, "unreadable": len(unreadable),
        "min_note_recall": float(recall.min()), "min_note_recall_one_to_one": float(strict.min()),
        "mean_onset_error_ms": round(float(onset.mean()), 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
