"""Where a model's note lengths and onsets differ from the real bars, instrument family by family.

Continues ``FILES`` files spread evenly over a split (8 bars of prompt, 8 generated, the
recommended sampling unless told otherwise, as `meloformer-eval` does) and prints, per
General MIDI family, the durations of the notes (quarter notes: quartiles, 90th percentile,
mean, shares by length) and the share of onsets off the eighth, for the real bars 9-16 and
for the model's. docs/model-history.md ("Where the band model's notes are short") quotes it.

    python scripts/note_lengths.py --data DATASET [--files 24] [--temperature 0.7] [--top-p 0.95] [--model DIR]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from meloformer_core.encoding.codec import slice_grid
from meloformer_core.encoding.quantize import from_grid, to_grid
from meloformer_core.midi_io import read_midi
from meloformer_core.music import Song
from meloformer_core.sampling_settings import RECOMMENDED
from meloformer_core.service import GenerationService
from training.band import GM_FAMILIES
from training.evaluate import evaluation_files

EDGES = (0, 0.5, 1, 1.5, 2.01, 3.01, 4.01, 8.01, np.inf)  # quarter notes
EDGE_NAMES = ("<0.5", "<1", "<1.5", "≤2", "≤3", "≤4", "≤8", ">8")


def collect(song: Song, into: dict) -> None:
    for track in song.tracks:
        notes = track.notes.array
        if not len(notes):
            continue
        name = "drums" if track.is_drum else GM_FAMILIES[track.program // 8]
        family = into.setdefault(name, {"durations": [], "beats": []})
        family["durations"] += list(notes[:, 2] / song.resolution)
        family["beats"] += list(notes[:, 0] % song.resolution / song.resolution)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a meloformer-preprocess folder (its valid split)")
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=RECOMMENDED.temperature)
    parser.add_argument("--top-p", type=float, default=RECOMMENDED.top_p)
    parser.add_argument("--model", type=Path, default=None, help="a bundle (default: the shipped one)")
    args = parser.parse_args()
    files, _ = evaluation_files(args.data)
    service = GenerationService(device="cpu", half_weights=False)
    service.load(args.model)
    vocab = service.bundle.vocab
    sampling = replace(RECOMMENDED, temperature=args.temperature, top_p=args.top_p)
    found: dict[str, dict] = {"real": {}, "model": {}}
    continued = 0
    for index, path in enumerate(files[:: max(1, len(files) // args.files)][: args.files]):
        grid = to_grid(read_midi(path), vocab)
        if grid.bar_count < 16:
            continue
        result = service.continue_song(from_grid(slice_grid(grid, 0, 8)), 8, replace(sampling, seed=index * 8))
        collect(from_grid(slice_grid(grid, 8, 16)), found["real"])
        collect(from_grid(slice_grid(to_grid(result.song, vocab), 8, 16)), found["model"])
        continued += 1
    print(f"{continued} files continued; {sampling}")
    print(f"{'family':21s}set    notes  quartiles and 90th percentile (quarters)  mean   off the eighth  shares",
          " ".join(EDGE_NAMES))  # fmt: skip
    for family in sorted(found["real"].keys() | found["model"].keys()):
        for variant in ("real", "model"):
            if family not in found[variant]:
                print(f"{family:21s}{variant:6s} no notes")
                continue
            durations, beats = (np.array(found[variant][family][key]) for key in ("durations", "beats"))
            off_eighth = np.mean(~np.isclose(beats * 2, np.round(beats * 2)))
            shares = np.histogram(durations, EDGES)[0] / len(durations)
            quantiles = np.round(np.percentile(durations, [25, 50, 75, 90]), 2)
            print(f"{family:21s}{variant:6s}{len(durations):6d}  {quantiles}  {durations.mean():5.2f}"
                  f"  {off_eighth:5.2f}  {np.round(shares, 3)}")  # fmt: skip


if __name__ == "__main__":
    main()
