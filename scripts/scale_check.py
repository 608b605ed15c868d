"""How often continuations of pentatonic tunes leave their scale, for several `SCALE_SHARE`s.

Takes the files of a preprocessed dataset's split whose first 8 bars keep to one pentatonic
scale (the prompts whose scale the sampling keeps: `session._scale_bias`), continues each by
8 bars with the recommended sampling and the default model, once per seed and share, and
prints per share: the share of new notes (drums aside) off the prompt's scale, the model's
and the real bars 9-16's, and the mean pitch-class overlap with the real bars; for the
Chinese tunes (Essen `han*`) and the others apart. docs/model-history.md ("Keeping a
pentatonic tune's scale") quotes it.

    python scripts/scale_check.py DATASET [--split train|valid] [--limit N] [--shares 1,0.3] [--seeds N]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from meloformer_core.encoding.codec import encode_grid, slice_grid
from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.quantize import from_grid, to_grid
from meloformer_core.errors import MeloformerError
from meloformer_core.generation import session
from meloformer_core.metrics import histogram_overlap, pitch_class_shares
from meloformer_core.midi_io import read_midi
from meloformer_core.sampling_settings import RECOMMENDED
from meloformer_core.service import GenerationService
from training.evaluate import evaluation_files


def melodic(grid: GridSong, first: int, stop: int) -> np.ndarray:
    """The pitches of bars ``[first, stop)``, drums aside."""
    drums = [slot for slot, (_, is_drum) in enumerate(grid.instruments) if is_drum]
    notes = grid.notes[~np.isin(grid.notes[:, 0], drums)]
    bars = np.searchsorted(grid.bar_starts, notes[:, 1], side="right") - 1
    return notes[(bars >= first) & (bars < stop), 2]


def pentatonic_prompts(data: Path, split: str, limit: int, vocab) -> list[tuple[Path, GridSong]]:
    """The first ``limit`` files of the split (in a fixed shuffled order) whose first 8
    bars are a pentatonic prompt and that have 16 bars."""
    files, _ = evaluation_files(data, split)
    np.random.default_rng(1).shuffle(files)
    picked = []
    for path in files:
        try:
            grid = to_grid(read_midi(path), vocab)
        except MeloformerError:
            continue
        if grid.bar_count < 16:
            continue
        scale = session._prompt_parts(encode_grid(slice_grid(grid, 0, 8), vocab), vocab)[2]
        if scale is not None and len(scale) == len(session._PENTATONIC):  # not a major scale's seven
            picked.append((path, grid))
            if len(picked) == limit:
                break
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="train", choices=("train", "valid"))
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--shares", default=f"1,{session.SCALE_SHARE}")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    service = GenerationService(device="cpu", half_weights=False)
    service.load(None)
    vocab = service.bundle.vocab
    picked = pentatonic_prompts(args.data, args.split, args.limit, vocab)
    chinese = np.repeat([path.name.startswith("han") for path, _ in picked], args.seeds)
    print(f"{len(picked)} files, {int(chinese.sum()) // args.seeds} Chinese; {args.seeds} seed(s) each")
    for share in (float(value) for value in args.shares.split(",")):
        session.SCALE_SHARE = share
        rows = []  # (real off the scale, model off the scale, pitch-class overlap)
        for index, (_, grid) in enumerate(picked):
            scale = np.unique(melodic(grid, 0, 8) % 12)
            real = melodic(grid, 8, 16)
            for seed in range(args.seeds):
                sampling = replace(RECOMMENDED, seed=(1000 + 8 * index) * (1 + seed))
                out = to_grid(service.continue_song(from_grid(slice_grid(grid, 0, 8)), 8, sampling).song, vocab)
                new = melodic(out, 8, 16)
                overlap = histogram_overlap(pitch_class_shares(new), pitch_class_shares(real)) if len(new) else 0
                off = np.mean(~np.isin(new % 12, scale)) if len(new) else 1
                rows.append((np.mean(~np.isin(real % 12, scale)), off, overlap))
        table = np.array(rows, dtype=float)
        for label, rows_of in (("all", np.ones(len(table), bool)), ("Chinese", chinese), ("others", ~chinese)):
            if rows_of.any():
                real_off, model_off, overlap = table[rows_of].mean(axis=0)
                print(f"share {share:g} {label:8s}: off the scale {100 * model_off:.1f} %"
                      f" (real {100 * real_off:.1f} %), pitch-class overlap {overlap:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
