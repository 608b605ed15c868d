"""`meloformer-eval`: how well a model bundle predicts and continues real music.

    meloformer-eval [--model BUNDLE] --data DIR_OF_MIDI [--train-data DATASET] [--bars-prompt 8 --bars-generate 8]
                    [--seed 0] [--limit N]
    meloformer-eval [--model BUNDLE] --data DATASET [--split valid]
    sampling: [--temperature T --top-p P --guidance G --takes N] (default: the recommended settings)

``--data`` is a folder of MIDI files, or a `meloformer-preprocess` folder: then the source
files of its held-out split are evaluated and the bigram is fitted on its training split.
Without ``--model`` the default bundle is evaluated.

- ``nll_per_token``: the model's mean negative log-likelihood (nats) of every token of
  the files, cut into context windows of whole bars;
- ``bigram_nll_per_token``: the same for a bigram model with add-one smoothing, fitted on
  the training split of ``--train-data`` (a `meloformer-preprocess` folder; without it,
  fitted on the evaluation files themselves, which flatters the baseline);
- continuations: each file long enough is cut after ``--bars-prompt`` bars, continued by
  ``--bars-generate`` bars, and the new bars are compared with the real ones:
  ``decodable_rate`` (continuations that decode to a valid song), median
  ``pitch_class_overlap`` (intersection of the normalised pitch-class histograms of the
  notes, as in Yang & Lerch 2020; 1 = same) with ``pitch_class_overlap_interval``, a 95 %
  bootstrap interval of that median over the files, median ``note_density_ratio`` and
  ``polyphony_ratio`` (generated / real), ``in_scale_rate`` (generated melodic notes in
  the major or minor scale that best fits the prompt), median ``velocity_difference``
  (between the mean velocities of the generated and the real bars: does the model keep the
  dynamics?) and ``empty_rate`` (continuations without a single note). For scale,
  ``reference_pitch_class_overlap`` is the same overlap between the prompt itself and the
  real continuation: how alike two real passages of the same piece are, and
  ``baseline_pitch_class_overlap`` that of a baseline generator that knows the prompt's
  pitch-class histogram and draws as many notes as the real bars hold from it;
- form: ``restated_bar_rate`` is the mean share of generated bars that restate a bar of
  the prompt exactly (the same notes of every track at the same places in the bar; silent
  bars do not count), ``reference_restated_bar_rate`` the same for the real bars: how much
  a piece recalls its material, and whether the model does too;
- recall: ``phrase_nll_per_token`` is the model's NLL per token of the first 4 bars of
  each file played three times in a row, for each statement: a model that recalls what
  it has just heard finds the second and third far easier than the first.

Prints a table, then one JSON object as the last line. Same seed, same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from meloformer_core.encoding import encode
from meloformer_core.encoding.codec import slice_grid
from meloformer_core.encoding.quantize import GridSong, from_grid, to_grid
from meloformer_core.encoding.vocab import TokenType
from meloformer_core.encoding.windows import split_into_windows
from meloformer_core.errors import MeloformerError
from meloformer_core.midi_io import read_midi
from meloformer_core.model.sampling_config import AUTO_MAX_TAKES, RECOMMENDED, SamplingConfig, parse_takes
from meloformer_core.music import Song

MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)  # natural minor
HARMONIC_EXTRA = 11  # the raised seventh of harmonic minor also counts as in scale


def pitch_class_profile(song: Song, by_duration: bool = True) -> np.ndarray:
    """Melodic notes per pitch class, weighted by duration (for key finding) or counted."""
    profile = np.zeros(12)
    for track in song.tracks:
        if not track.is_drum and len(track.notes):
            weights = track.notes.durations.astype(float) if by_duration else 1.0
            np.add.at(profile, track.notes.pitches % 12, weights)
    return profile


def pitch_class_overlap(a: Song, b: Song) -> float:
    """Histogram intersection of the two songs' pitch-class histograms (note counts)."""
    first, second = pitch_class_profile(a, by_duration=False), pitch_class_profile(b, by_duration=False)
    return float(np.minimum(first / max(first.sum(), 1e-9), second / max(second.sum(), 1e-9)).sum())


def profile_baseline(profile: np.ndarray, real: Song, seed: int) -> float:
    """Overlap with ``real`` of notes drawn independently from ``profile`` (pitch-class counts),
    as many as ``real`` holds."""
    counts = pitch_class_profile(real, by_duration=False)
    total = int(counts.sum())
    if not total or not profile.sum():
        return 0.0
    drawn = np.random.default_rng(seed).multinomial(total, profile / profile.sum())
    return float(np.minimum(drawn / total, counts / total).sum())


def best_scale(profile: np.ndarray) -> np.ndarray:
    """The major or (harmonic-aware) minor scale, in any key, that holds most of ``profile``."""
    best, best_share = MAJOR, -1.0
    for tonic in range(12):
        for scale, extra in ((MAJOR, None), (MINOR, HARMONIC_EXTRA)):
            mask = np.roll(scale, tonic).copy()
            if extra is not None:
                mask[(tonic + extra) % 12] = True
            share = profile[mask].sum()
            if share > best_share:
                best, best_share = mask, share
    return best


def median_interval(values: list[float], seed: int, resamples: int = 2000) -> list[float]:
    """95 % percentile-bootstrap interval of the median of ``values`` (files resampled with
    replacement): how far the median could move with another draw of files of the same kind."""
    if not values:
        return [0.0, 0.0]
    data = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).choice(data, size=(resamples, len(data)))
    low, high = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def mean_velocity(song: Song) -> float:
    velocities = [track.notes.velocities for track in song.tracks if len(track.notes)]
    return float(np.concatenate(velocities).mean()) if velocities else 0.0


def polyphony(song: Song) -> float:
    """Mean number of melodic notes sounding at each onset."""
    starts, ends = [], []
    for track in song.tracks:
        if not track.is_drum and len(track.notes):
            starts.append(track.notes.starts)
            ends.append(track.notes.starts + track.notes.durations)
    if not starts:
        return 0.0
    start, end = np.concatenate(starts), np.concatenate(ends)
    onsets = np.unique(start)
    sounding = (start[None, :] <= onsets[:, None]) & (end[None, :] > onsets[:, None])
    return float(sounding.sum(axis=1).mean())


def bar_contents(grid: GridSong, first: int, stop: int) -> list[bytes]:
    """What each bar of ``[first, stop)`` plays (slot, onset within the bar, pitch, duration),
    comparable between bars; empty for a silent bar or one past the end."""
    notes, starts = grid.notes, grid.bar_starts
    result = []
    for bar in range(first, stop):
        if bar >= grid.bar_count:
            result.append(b"")
            continue
        inside = notes[(notes[:, 1] >= starts[bar]) & (notes[:, 1] < starts[bar + 1])][:, :4].copy()
        inside[:, 1] -= starts[bar]
        result.append(inside.tobytes())
    return result


def restated_share(grid: GridSong, prompt_bars: set[bytes], first: int, stop: int) -> float:
    """Share of the bars ``[first, stop)`` of ``grid`` that play exactly a bar of the prompt."""
    bars = bar_contents(grid, first, stop)
    return sum(1 for bar in bars if bar and bar in prompt_bars) / max(len(bars), 1)


RECALL_PHRASE_BARS = 4  # the recall probe plays the first 4 bars three times


def phrase_thrice(grid: GridSong, bars: int = RECALL_PHRASE_BARS) -> GridSong | None:
    """The first ``bars`` bars played three times in a row (None when the song is shorter or
    the phrase changes tempo, metre or key: its repeats would restate them)."""
    if grid.bar_count < bars:
        return None
    phrase = slice_grid(grid, 0, bars)
    if len(phrase.tempos) > 1 or len(phrase.time_signatures) > 1 or len(phrase.keys) > 1:
        return None
    length = int(phrase.bar_starts[-1])
    shift = np.array([0, length, 0, 0, 0])
    notes = np.concatenate([phrase.notes + k * shift for k in range(3)])
    notes = notes[np.lexsort((notes[:, 2], notes[:, 1], notes[:, 0]))]
    starts = np.concatenate([phrase.bar_starts[:-1] + k * length for k in range(3)] + [[3 * length]])
    return replace(phrase, bar_starts=starts, notes=notes)


class Bigram:
    def __init__(self, size: int) -> None:
        self.counts = np.ones((size, size))  # add-one smoothing

    def fit(self, sequence: np.ndarray) -> None:
        np.add.at(self.counts, (sequence[:-1], sequence[1:]), 1)

    def nll(self, sequence: np.ndarray) -> tuple[float, int]:
        probs = self.counts[sequence[:-1], sequence[1:]] / self.counts[sequence[:-1]].sum(axis=1)
        return float(-np.log(probs).sum()), len(sequence) - 1


def evaluation_files(data: Path, split: str = "valid") -> tuple[list[Path], Path | None]:
    """The MIDI files to evaluate, and the dataset to fit the bigram on when ``data`` is one."""
    if not (data / "manifest.json").is_file():
        return sorted(p for p in data.rglob("*") if p.suffix.lower() in (".mid", ".midi")), None
    files = []
    for chunk in sorted((data / "chunks").glob("chunk-*.json")):
        try:
            records = json.loads(chunk.read_text())
        except (OSError, ValueError) as error:
            raise MeloformerError(f"{chunk}: unreadable chunk record ({error})") from None
        wanted = split == "valid"
        files += [Path(r["path"]) for r in records if r.get("status") == "kept" and r.get("valid") == wanted]
    missing = [path for path in files if not path.is_file()]
    if missing:
        raise MeloformerError(f"{data}: {len(missing)} source files of the {split} split are gone, e.g. {missing[0]}")
    return sorted(files), data


def evaluate(model_dir: Path | None, data: Path, train_data: Path | None, bars_prompt: int, bars_generate: int,
             seed: int, limit: int | None, progress: bool = False, split: str = "valid",
             sampling: SamplingConfig | None = None) -> dict:  # fmt: skip
    import torch

    from meloformer_core.model.masks import build_layout
    from meloformer_core.service import GenerationService
    from training.train import document_loss

    sampling = sampling or RECOMMENDED
    files, dataset = evaluation_files(data, split)
    files = files[:limit]
    train_data = train_data or dataset
    if not files:
        raise MeloformerError(f"{data}: no MIDI files to evaluate")
    service = GenerationService(device="cpu", half_weights=False)
    info = service.load(model_dir)
    model, vocab = service.bundle.model, service.bundle.vocab
    pieces, windows = [], []  # (path, the song on the grid)
    for path in files:
        try:
            song = read_midi(path)
        except MeloformerError as error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        grid = to_grid(song, vocab)
        pieces.append((path, grid))
        windows += split_into_windows(grid, vocab, model.config.max_seq_len)[0]

    from tqdm import tqdm

    total, count = 0.0, 0
    with torch.no_grad():
        for window in tqdm(windows, desc="likelihood", unit="window", disable=not progress):
            layout = build_layout([window], vocab)
            loss, tokens = document_loss(model(layout), layout)
            total, count = total + float(loss) * tokens, count + tokens
        statements = np.zeros((3, 2))  # NLL and tokens of each statement of the phrases
        for _, grid in pieces:
            thrice = phrase_thrice(grid)
            if thrice is None:
                continue
            tokens = encode(from_grid(thrice))
            if len(tokens) > model.config.max_seq_len:
                continue
            logits = model(build_layout([tokens], vocab))[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, torch.as_tensor(tokens[1:]).long(), reduction="none")
            bars = np.flatnonzero(vocab.type_of[tokens] == TokenType.BAR)
            bounds = [*bars[::RECALL_PHRASE_BARS][:3], len(tokens)]  # statements start at bars 0, 4, 8
            for k in range(3):
                statements[k] += float(nll[bounds[k] : bounds[k + 1] - 1].sum()), bounds[k + 1] - 1 - bounds[k]
    bigram = Bigram(len(vocab))
    if train_data is not None:
        from training.data import TokenDataset

        train = TokenDataset(train_data, "train", vocab)
        for index in range(len(train)):
            bigram.fit(train.tokens(index))
    else:
        for window in windows:
            bigram.fit(window)
    bigram_total = sum(bigram.nll(w)[0] for w in windows)
    bigram_count = sum(bigram.nll(w)[1] for w in windows)

    rows = []
    for index, (path, grid) in enumerate(tqdm(pieces, desc="continuations", unit="file", disable=not progress)):
        if grid.bar_count < bars_prompt + bars_generate:
            continue
        prompt = from_grid(slice_grid(grid, 0, bars_prompt))
        real = from_grid(slice_grid(grid, bars_prompt, bars_prompt + bars_generate))
        try:
            # the takes of different files never share a seed
            takes_seed = (seed + index) * (sampling.takes or AUTO_MAX_TAKES)
            result = service.continue_song(prompt, bars_generate, replace(sampling, seed=takes_seed))
            continued = to_grid(result.song, vocab)
            generated_grid = slice_grid(continued, bars_prompt, bars_prompt + bars_generate)
            generated = from_grid(generated_grid)
            generated.validate()
            encode(generated)
            decodable = True
        except MeloformerError:
            rows.append({"file": path.name, "decodable": False})
            continue
        scale = best_scale(pitch_class_profile(prompt))
        melodic = np.concatenate([t.notes.pitches for t in generated.tracks if not t.is_drum] or [np.zeros(0, int)])
        said = set(bar_contents(grid, 0, bars_prompt)) - {b""}
        baseline = profile_baseline(pitch_class_profile(prompt, by_duration=False), real, seed + index)
        stop = bars_prompt + bars_generate
        rows.append({
            "file": path.name, "decodable": decodable, "pitch_class_overlap": pitch_class_overlap(generated, real),
            "reference_pitch_class_overlap": pitch_class_overlap(prompt, real),
            "baseline_pitch_class_overlap": baseline,
            "note_density_ratio": generated.note_count / max(real.note_count, 1),
            "polyphony_ratio": polyphony(generated) / max(polyphony(real), 1e-9),
            "in_scale_rate": float(scale[melodic % 12].mean()) if len(melodic) else 0.0,
            "velocity_difference": abs(mean_velocity(generated) - mean_velocity(real)),
            "restated_bar_rate": restated_share(continued, said, bars_prompt, stop),
            "reference_restated_bar_rate": restated_share(grid, said, bars_prompt, stop),
            "empty": generated.note_count == 0, "tokens_per_s": result.tokens_per_s, "takes": len(result.takes),
        })  # fmt: skip
    scored = [r for r in rows if r["decodable"]]

    def median(key: str) -> float:
        return round(float(np.median([r[key] for r in scored])), 4) if scored else 0.0

    def mean(key: str) -> float:
        return round(float(np.mean([r[key] for r in scored])), 4) if scored else 0.0

    return {
        "model": info["name"],
        "files": len(pieces),
        "tokens": count,
        "nll_per_token": round(total / max(count, 1), 4),
        "bigram_nll_per_token": round(bigram_total / max(bigram_count, 1), 4),
        "bigram_fitted_on": "training split" if train_data is not None else "evaluation files",
        "phrase_nll_per_token": [round(float(nll / max(n, 1)), 4) for nll, n in statements],
        "continuations": len(rows),
        "decodable_rate": round(len(scored) / len(rows), 4) if rows else 0.0,
        "pitch_class_overlap": median("pitch_class_overlap"),
        "pitch_class_overlap_interval": median_interval([r["pitch_class_overlap"] for r in scored], seed),
        "reference_pitch_class_overlap": median("reference_pitch_class_overlap"),
        "baseline_pitch_class_overlap": median("baseline_pitch_class_overlap"),
        "note_density_ratio": median("note_density_ratio"),
        "polyphony_ratio": median("polyphony_ratio"),
        "in_scale_rate": median("in_scale_rate"),
        "velocity_difference": median("velocity_difference"),
        "restated_bar_rate": mean("restated_bar_rate"),
        "reference_restated_bar_rate": mean("reference_restated_bar_rate"),
        "empty_rate": round(sum(r["empty"] for r in scored) / len(scored), 4) if scored else 0.0,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "prompt_guidance": sampling.prompt_guidance,
        "takes": sampling.takes or "auto",
        "takes_decoded": mean("takes"),
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meloformer-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a model bundle directory (default: the bundled one)")
    data_help = "a folder of MIDI files, or a meloformer-preprocess folder (its --split is evaluated)"
    parser.add_argument("--data", type=Path, required=True, help=data_help)
    parser.add_argument("--split", choices=("valid", "train"), default="valid", help="with a preprocessed --data")
    parser.add_argument("--train-data", type=Path, default=None, help="the preprocessed training data (bigram fit)")
    parser.add_argument("--bars-prompt", type=int, default=8)
    parser.add_argument("--bars-generate", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=RECOMMENDED.temperature)
    parser.add_argument("--top-p", type=float, default=RECOMMENDED.top_p)
    parser.add_argument("--guidance", type=float, default=RECOMMENDED.prompt_guidance, help="prompt guidance")
    parser.add_argument("--takes", default=RECOMMENDED.takes_label, metavar="N|auto",
                        help="continuations sampled per prompt, or auto (as `meloformer continue`); the most typical "
                             f"is scored (default {RECOMMENDED.takes_label})")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        report = evaluate(
            args.model, args.data, args.train_data, args.bars_prompt, args.bars_generate, args.seed, args.limit,
            progress=not args.quiet, split=args.split,
            sampling=SamplingConfig(temperature=args.temperature, top_p=args.top_p, prompt_guidance=args.guidance,
                                    takes=parse_takes(args.takes)),
        )  # fmt: skip
    except MeloformerError as error:
        print(f"meloformer-eval: error: {error}", file=sys.stderr)
        return 1
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
