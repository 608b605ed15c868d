"""`meloformer-eval`: how well a model bundle predicts and continues real music.

    meloformer-eval [--model BUNDLE] --data DIR_OF_MIDI [--train-data DATASET] [--bars-prompt 8 --bars-generate 8]
                    [--seed 0] [--seeds 1] [--limit N] [--records FILE]
    meloformer-eval [--model BUNDLE] --data DATASET [--split valid] [--arrange | --arrange-free]
    sampling: [--temperature T --guidance G --top-k K --top-p P --min-p M --repetition-penalty R --takes N]
    (default: the recommended settings)

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
- harmony: ``chord_change_rate``, the mean over files of the share of bar lines where the
  chord changes (each bar labelled as the encoder labels it), with ``real_chord_change_rate``:
  a continuation that sits on one chord scores near 0 where the real bars keep moving;
- recall: ``phrase_nll_per_token`` is the model's NLL per token of the first 4 bars of
  each file played three times in a row, for each statement: a model that recalls what
  it has just heard finds the second and third far easier than the first;
- drums and tracks (over every file's tracks together): ``drum_in_kit_rate``, the share of
  the notes of drum tracks on General MIDI percussion keys 35–81 (null without drum notes),
  and ``drum_new_key_rate``, the share on keys their track did not play in the prompt;
  ``track_density_ratio``, the median over the tracks that play in the real bars of their
  generated / real notes, with ``silent_track_rate`` (under 0.25×) and
  ``exploding_track_rate`` (over 4×); ``register_distance``, the median over melodic tracks
  of |median generated pitch − median real pitch| in semitones, and
  ``bass_within_octave_rate``, the share of bass tracks (GM programs 32–39) within an octave;
- distributions: ``distribution_overlap``, the mean over five per-bar features (pitch
  range, pitch-class histogram, inter-onset interval, note length, polyphony) of Yang &
  Lerch's overlapping area of the real bars' intra-set distances with the generated bars'
  distances to them, over every bar (1 = spread like the real bars), each in ``distribution_overlap_by_feature``
  (definitions in `training.continuation_metrics`);
- context: ``prompt_heard_rate``, the share of prompts whose every bar fits the part of the
  model's context a continuation gives the prompt, and ``prompt_bars_heard_min``;
- with ``--arrange``, for each file with drums: its lead (the melodic, non-bass track with
  the highest median pitch among those playing at least a quarter as many notes as the
  busiest) alone over the prompt's bars, then a drum track and a bass (the file's bass
  program, or 33) arranged under it: ``arrange_played_rate``, the share of the requested
  tracks that got notes, ``arrange_bass_below_lead_rate``, the share of basses whose median
  pitch lies below the lead's, and ``arrange_drum_in_kit_rate``; against the file's own
  drums and bass in those bars, the median density ratios (``arrange_drum_density_ratio``,
  ``arrange_bass_density_ratio``: notes written / real notes), the median register distance
  of the bass (``arrange_bass_register_distance``, semitones, written − real) and the share
  of basses within an octave of the real one (``arrange_bass_within_octave_rate``). Arrange
  makes a requested track play in every bar the lead sounds, so ``arrange_played_rate``
  only shows that; how much and where they play is in the ratios. ``--arrange-free``
  arranges without that presence plan: then ``arrange_played_rate`` is the model's own
  choice to write each requested track. ``--arrange-bass-first`` requests the bass before
  the drums (the order of the new tracks is the order the model writes them in).

A number that copying wins is not measuring music, so every continuation measure is also
given for a ``copy`` baseline (``copy_`` + its name), the prompt's last ``--bars-generate`` bars
played again (the whole prompt repeated when it is shorter), and, where the real bars' own
value is not trivially ideal, for the real bars (``real_in_scale_rate``,
``real_empty_rate``, ``real_drum_in_kit_rate``, ``real_drum_new_key_rate``;
``reference_restated_bar_rate``).

Prints the scalars, then the continuation measures as a table of model | copy | real, then
one JSON object as the last line; ``--records`` also writes each file's measures (one JSON
object a line, with the per-track values and the ``bar_features`` of model, copy and real, from
which the distribution measure can be computed again). Same seed, same numbers.

The distribution measure draws nothing, so the copy's figure is one number, but the
model's moves with the sampling seed (by about 0.002 on the classical validation split):
one seed cannot say whether a model beats the copy by less than that. ``--seeds N``
continues every file again with seeds ``--seed`` … ``--seed`` + N − 1 and adds
``distribution_overlap_by_seed``, their mean (``distribution_overlap_seed_mean``) and its
standard error, ``distribution_overlap_lead_interval`` (a 95 % Student-t interval of the
mean's lead over the copy: above 0, the model beats the copy whatever the seed's luck) and
``seeds_behind_copy``; every other measure is the first seed's, and ``--records`` holds
every seed's files (each with its ``seed``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from meloformer_core.encoding import encode
from meloformer_core.encoding.codec import slice_grid
from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.quantize import from_grid, to_grid
from meloformer_core.encoding.vocab import TokenType
from meloformer_core.encoding.windows import split_into_windows, window_start
from meloformer_core.errors import MeloformerError
from meloformer_core.generation.generate import PROMPT_SHARE
from meloformer_core.midi_io import read_midi
from meloformer_core.music import Song
from meloformer_core.sampling_settings import (
    AUTO_MAX_TAKES,
    RECOMMENDED,
    SamplingConfig,
    add_sampling_options,
    parse_takes,
    sampling_from_options,
)
from training.continuation_metrics import (
    FEATURES,
    bar_contents,
    bar_features,
    chord_change_rate,
    continuation_scores,
    copy_continuation,
    distribution_overlap,
    pitch_class_overlap,
    pitch_class_profile,
    pooled_track_measures,
    profile_baseline,
    restated_share,
)

# The continuation measures reported for the model, the copy baseline (``copy_``) and, where
# the real bars' own value is not trivially ideal, the real bars (``real_``): in the JSON and
# side by side in the printed table. Each metric has the real bars' key, or the value the
# real bars score against themselves (the ideal).
SIDE_BY_SIDE: tuple[tuple[str, str | float], ...] = (
    ("pitch_class_overlap", 1.0),
    ("note_density_ratio", 1.0),
    ("polyphony_ratio", 1.0),
    ("in_scale_rate", "real_in_scale_rate"),
    ("velocity_difference", 0.0),
    ("empty_rate", "real_empty_rate"),
    ("restated_bar_rate", "reference_restated_bar_rate"),
    ("chord_change_rate", "real_chord_change_rate"),
    ("drum_in_kit_rate", "real_drum_in_kit_rate"),
    ("drum_new_key_rate", "real_drum_new_key_rate"),
    ("track_density_ratio", 1.0),
    ("silent_track_rate", 0.0),
    ("exploding_track_rate", 0.0),
    ("register_distance", 0.0),
    ("bass_within_octave_rate", 1.0),
    ("distribution_overlap", 1.0),
)
FILE_MEDIANS = ("pitch_class_overlap", "note_density_ratio", "polyphony_ratio", "in_scale_rate", "velocity_difference")
BASS_PROGRAMS = range(32, 40)
DEFAULT_BASS = 33  # Electric Bass (finger), when the file's bass is not a bass program


def lead_of(song: Song) -> int | None:
    """The lead: of the melodic, non-bass tracks that play at least a quarter as many notes
    as the busiest of them, the one with the highest median pitch (None without any)."""
    from training.data import pick_lead

    return pick_lead({k: t.notes.pitches for k, t in enumerate(song.tracks)
                      if not t.is_drum and t.program not in BASS_PROGRAMS})  # fmt: skip


def arrange_under_lead(service, prompt: Song, sampling: SamplingConfig, presence: bool = True,
                       bass_first: bool = False) -> dict | None:  # fmt: skip
    """A drum track and a bass arranged under the prompt's lead alone (see the module's
    ``--arrange``; ``bass_first``: the bass requested before the drums, its slot first);
    None for a file without drums or a lead."""
    from meloformer_core.service import TrackRequest

    lead = lead_of(prompt)
    if lead is None or not any(t.is_drum and len(t.notes) for t in prompt.tracks):
        return None
    basses = [t.program for t in prompt.tracks if not t.is_drum and t.program in BASS_PROGRAMS]
    melody = prompt.replace(tracks=[prompt.tracks[lead]])
    requests = [TrackRequest("Drums", 0, True), TrackRequest("Bass", basses[0] if basses else DEFAULT_BASS)]
    # every bar the lead's song has: a lead that rests at the end makes fewer than the prompt's
    result = service.arrange_song(melody, requests[::-1] if bass_first else requests, None,
                                  replace(sampling, takes=1), presence=presence)  # fmt: skip
    lead_track, drums, bass = (result.song.tracks[i] for i in ((0, 2, 1) if bass_first else (0, 1, 2)))
    real_drums = sum(len(t.notes) for t in prompt.tracks if t.is_drum)
    real_bass = [t for t in prompt.tracks if not t.is_drum and t.program in BASS_PROGRAMS and len(t.notes)]
    return {
        "arrange_drums_played": bool(len(drums.notes)),
        "arrange_bass_played": bool(len(bass.notes)),
        "arrange_bass_below_lead": bool(len(bass.notes))
        and float(np.median(bass.notes.pitches)) < float(np.median(lead_track.notes.pitches)),
        "arrange_drum_notes": len(drums.notes),
        "arrange_drum_in_kit": int(((drums.notes.pitches >= 35) & (drums.notes.pitches <= 81)).sum()),
        # against the file's own drums and bass in the same bars
        "arrange_drum_density_ratio": len(drums.notes) / real_drums,
        "arrange_bass_density_ratio": len(bass.notes) / len(real_bass[0].notes) if real_bass else None,
        "arrange_bass_register_distance": float(np.median(bass.notes.pitches) - np.median(real_bass[0].notes.pitches))
        if real_bass and len(bass.notes)
        else None,
    }


def median_interval(values: list[float], seed: int, resamples: int = 2000) -> list[float]:
    """95 % percentile-bootstrap interval of the median of ``values`` (files resampled with
    replacement): how far the median could move with another draw of files of the same kind."""
    if not values:
        return [0.0, 0.0]
    data = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).choice(data, size=(resamples, len(data)))
    low, high = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


RECALL_PHRASE_BARS = 4  # the recall probe plays the first 4 bars three times


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 ≤ p < 0.9995) of Student's t distribution with ``df`` degrees of
    freedom, by integrating its density (to about 1e-4)."""
    x = np.linspace(0.0, 40.0, 400_001)
    density = np.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    density = density * (1 + x * x / df) ** (-(df + 1) / 2)
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    return float(np.interp(p, cdf, x))


def seed_spread(overlaps: list[float], copy_overlap: float) -> dict:
    """The distribution measure of the model under several sampling seeds, against the
    copy's (which draws nothing): each seed's, their mean with its standard error, a 95 %
    Student-t interval of the mean's lead over the copy, and how many seeds fall behind it."""
    values = np.asarray(overlaps, dtype=float)
    mean, stderr = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
    lead, half = mean - copy_overlap, student_t_quantile(0.975, len(values) - 1) * stderr
    return {
        "distribution_overlap_by_seed": [rounded(value) for value in values],
        "distribution_overlap_seed_mean": rounded(mean),
        "distribution_overlap_seed_stderr": rounded(stderr),
        "distribution_overlap_lead_interval": [rounded(lead - half), rounded(lead + half)],
        "seeds_behind_copy": int((values < copy_overlap).sum()),
    }


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
             sampling: SamplingConfig | None = None, arrange: dict | None = None,
             seeds: int = 1) -> tuple[dict, list[dict]]:  # fmt: skip
    """The report (one dict) and each file's record: likelihood against a bigram, then 8-bar
    continuations (and ``arrange``) scored beside a copy of the prompt and the real bars;
    with ``seeds`` > 1 the continuations again with the next seeds (`seed_spread`)."""
    from meloformer_core.service import GenerationService

    sampling = sampling or RECOMMENDED
    if bars_prompt < 1 or bars_generate < 1:
        raise MeloformerError(f"bars to prompt and to generate must be at least 1, not {bars_prompt}, {bars_generate}")
    if seeds < 1:
        raise MeloformerError(f"--seeds must be at least 1, not {seeds}")
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
    total, count, statements = likelihood(model, vocab, windows, pieces, progress)
    bigram_nll = bigram_likelihood(vocab, windows, train_data)
    rows, scores, features = continuations(service, pieces, bars_prompt, bars_generate, sampling, seed, arrange,
                                           progress)  # fmt: skip
    records = [{**row, "seed": seed} for row in rows]
    spread = {}
    if seeds > 1:
        overlaps = [distribution_overlap(features["real"], features["model"])["mean"]]
        for extra in range(seed + 1, seed + seeds):
            more_rows, _, more_features = continuations(service, pieces, bars_prompt, bars_generate, sampling, extra,
                                                        None, progress)  # fmt: skip
            overlaps.append(distribution_overlap(more_features["real"], more_features["model"])["mean"])
            records += [{**row, "seed": extra} for row in more_rows]
        spread = seed_spread(overlaps, distribution_overlap(features["real"], features["copy"])["mean"])
    return {
        "model": info["name"],
        "files": len(pieces),
        "tokens": count,
        "nll_per_token": round(total / max(count, 1), 4),
        "bigram_nll_per_token": round(bigram_nll, 4),
        "bigram_fitted_on": "training split" if train_data is not None else "evaluation files",
        "phrase_nll_per_token": [round(float(nll / max(n, 1)), 4) for nll, n in statements],
        **continuation_report(rows, scores, features, sampling, bars_prompt, seed),
        **(arrange_summary([r for r in rows if r["decodable"]]) if arrange is not None else {}),
        "seed": seed,
        **spread,
    }, records


def likelihood(model, vocab, windows: list[np.ndarray], pieces: list[tuple[Path, GridSong]],
               progress: bool) -> tuple[float, int, np.ndarray]:  # fmt: skip
    """(NLL summed over the windows' tokens, their count, NLL and tokens of each statement of
    the recall probe: each file's first phrase played three times, `phrase_thrice`)."""
    import torch
    from tqdm import tqdm

    from meloformer_core.model.loss import document_loss
    from meloformer_core.model.masks import build_layout

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
    return total, count, statements


def bigram_likelihood(vocab, windows: list[np.ndarray], train_data: Path | None) -> float:
    """The NLL per token of a bigram fitted on ``train_data``'s training split (the windows
    themselves without one) over the windows."""
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
    return bigram_total / max(bigram_count, 1)


def continuations(service, pieces: list[tuple[Path, GridSong]], bars_prompt: int, bars_generate: int,
                  sampling: SamplingConfig, seed: int, arrange: dict | None,
                  progress: bool) -> tuple[list[dict], dict, dict]:  # fmt: skip
    """Each file long enough continued from its first ``bars_prompt`` bars: (a record per
    file, the scores of model, copy and real per decodable file, their bar features pooled).
    ``arrange``: also `arrange_under_lead` each file, with these options."""
    from tqdm import tqdm

    vocab, model = service.bundle.vocab, service.bundle.model
    rows = []  # one record per file long enough
    scores: dict[str, list[dict]] = {"model": [], "copy": [], "real": []}  # of the decodable continuations
    features = {variant: {name: [] for name in FEATURES} for variant in scores}  # of every bar, pooled
    for index, (path, grid) in enumerate(tqdm(pieces, desc="continuations", unit="file", disable=not progress)):
        if grid.bar_count < bars_prompt + bars_generate:
            continue
        stop = bars_prompt + bars_generate
        prompt_grid = slice_grid(grid, 0, bars_prompt)
        prompt = from_grid(prompt_grid)
        real = from_grid(slice_grid(grid, bars_prompt, stop))
        heard = bars_prompt - window_start(prompt_grid, vocab, int(model.config.max_seq_len * PROMPT_SHARE))
        try:
            # the takes of different files never share a seed
            takes_seed = (seed + index) * (sampling.takes or AUTO_MAX_TAKES)
            result = service.continue_song(prompt, bars_generate, replace(sampling, seed=takes_seed))
            continued = to_grid(result.song, vocab)
            generated = from_grid(slice_grid(continued, bars_prompt, stop))
            generated.validate()
            encode(generated)
        except MeloformerError:
            rows.append({"file": path.name, "decodable": False})
            continue
        copied_grid = copy_continuation(grid, bars_prompt, bars_generate)
        songs = {"model": generated, "copy": from_grid(slice_grid(copied_grid, bars_prompt, stop)), "real": real}
        file_scores = {variant: {**continuation_scores(song, real, prompt),
                                 "chord_change_rate": chord_change_rate(song, bars_generate)}
                       for variant, song in songs.items()}  # fmt: skip
        file_features = {variant: bar_features(song, bars_generate) for variant, song in songs.items()}
        for variant in songs:
            scores[variant].append(file_scores[variant])
            for name, values in file_features[variant].items():
                features[variant][name] += values
        said = set(bar_contents(grid, 0, bars_prompt)) - {b""}
        rows.append({
            "file": path.name, "decodable": True, **file_scores["model"],
            "reference_pitch_class_overlap": pitch_class_overlap(prompt, real),
            "baseline_pitch_class_overlap": profile_baseline(pitch_class_profile(prompt, by_duration=False), real,
                                                             seed + index),
            "restated_bar_rate": restated_share(continued, said, bars_prompt, stop),
            "reference_restated_bar_rate": restated_share(grid, said, bars_prompt, stop),
            **{f"copy_{key}": value for key, value in file_scores["copy"].items()},
            "copy_restated_bar_rate": restated_share(copied_grid, said, bars_prompt, stop),
            **{f"real_{key}": file_scores["real"][key]
               for key in ("in_scale_rate", "empty", "drum_in_kit_rate", "drum_new_key_rate", "chord_change_rate")},
            "tokens_per_s": result.tokens_per_s, "takes": len(result.takes), "prompt_bars_heard": heard,
            "bar_features": {variant: {name: [v.tolist() for v in values] for name, values in named.items()}
                             for variant, named in file_features.items()},
        })  # fmt: skip
        if arrange is not None:
            arranged = arrange_under_lead(service, prompt, replace(sampling, seed=seed + index), **arrange)
            rows[-1].update(arranged or {})
    return rows, scores, features


def continuation_report(rows: list[dict], scores: dict, features: dict, sampling: SamplingConfig,
                        bars_prompt: int, seed: int) -> dict:  # fmt: skip
    """The continuation measures over the files: medians or means, model beside copy and real."""
    scored = [r for r in rows if r["decodable"]]

    def median(key: str) -> float:
        return round(float(np.median([r[key] for r in scored])), 4) if scored else 0.0

    def mean(key: str) -> float:
        return round(float(np.mean([r[key] for r in scored])), 4) if scored else 0.0

    def mean_known(key: str) -> float | None:
        """The mean over the files that have the measure (None when none has)."""
        known = [r[key] for r in scored if r[key] is not None]
        return round(float(np.mean(known)), 4) if known else None

    def continuation_summary(variant: str) -> dict:
        """The new measures of one variant over the files: track measures pooled, and OA."""
        prefix = "" if variant == "model" else f"{variant}_"
        pooled = {f"{prefix}{key}": rounded(value) for key, value in pooled_track_measures(scores[variant]).items()}
        overlap = distribution_overlap(features["real"], features[variant])
        mean_overlap = rounded(overlap.pop("mean"))
        by_feature = {name: rounded(value) for name, value in overlap.items()}
        return {
            **pooled,
            f"{prefix}distribution_overlap": mean_overlap,
            f"{prefix}distribution_overlap_by_feature": by_feature,
        }

    copy_baseline = {f"copy_{key}": median(f"copy_{key}") for key in FILE_MEDIANS}
    real_pooled = pooled_track_measures(scores["real"])
    return {
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
        "empty_rate": mean("empty"),
        "chord_change_rate": mean_known("chord_change_rate"),
        **continuation_summary("model"),
        **copy_baseline,
        "copy_restated_bar_rate": mean("copy_restated_bar_rate"),
        "copy_empty_rate": mean("copy_empty"),
        "copy_chord_change_rate": mean_known("copy_chord_change_rate"),
        **continuation_summary("copy"),
        "real_in_scale_rate": median("real_in_scale_rate"),
        "real_empty_rate": mean("real_empty"),
        "real_chord_change_rate": mean_known("real_chord_change_rate"),
        "real_drum_in_kit_rate": rounded(real_pooled["drum_in_kit_rate"]),
        "real_drum_new_key_rate": rounded(real_pooled["drum_new_key_rate"]),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "prompt_guidance": sampling.prompt_guidance,
        "takes": sampling.takes or "auto",
        "takes_decoded": mean("takes"),
        "prompt_heard_rate": round(float(np.mean([r["prompt_bars_heard"] == bars_prompt for r in scored])), 4)
        if scored
        else 0.0,
        "prompt_bars_heard_min": min((r["prompt_bars_heard"] for r in scored), default=0),
    }


def arrange_summary(rows: list[dict]) -> dict:
    """``--arrange``'s rates over the files that had drums and a lead."""
    arranged = [r for r in rows if "arrange_drums_played" in r]
    if not arranged:
        return {"arranged_files": 0}
    played = [r[key] for r in arranged for key in ("arrange_drums_played", "arrange_bass_played")]
    drum_notes = sum(r["arrange_drum_notes"] for r in arranged)
    return {
        "arranged_files": len(arranged),
        "arrange_played_rate": round(float(np.mean(played)), 4),
        "arrange_bass_below_lead_rate": round(float(np.mean([r["arrange_bass_below_lead"] for r in arranged])), 4),
        "arrange_drum_in_kit_rate": rounded(sum(r["arrange_drum_in_kit"] for r in arranged) / drum_notes)
        if drum_notes
        else None,
        "arrange_drum_density_ratio": median_of([r["arrange_drum_density_ratio"] for r in arranged]),
        "arrange_bass_density_ratio": median_of([r["arrange_bass_density_ratio"] for r in arranged]),
        "arrange_bass_register_distance": median_of([r["arrange_bass_register_distance"] for r in arranged]),
        "arrange_bass_within_octave_rate": rounded(np.mean([abs(d) <= 12 for d in distances]))
        if (distances := [d for r in arranged if (d := r["arrange_bass_register_distance"]) is not None])
        else None,
    }


def median_of(values: list[float | None]) -> float | None:
    """The median of the values that are not None (None when all are)."""
    known = [v for v in values if v is not None]
    return rounded(np.median(known)) if known else None


def rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def print_table(report: dict) -> None:
    """Every scalar of the report, then the continuation measures as model | copy | real."""
    shown = {key for metric, _ in SIDE_BY_SIDE for key in (metric, f"copy_{metric}")}
    shown |= {real for _, real in SIDE_BY_SIDE if isinstance(real, str)}
    shown |= {"distribution_overlap_by_feature", "copy_distribution_overlap_by_feature"}
    width = max(len(key) for key in report)
    for key, value in report.items():
        if key not in shown:
            print(f"{key:<{width}}  {value}")

    def cell(value: object) -> str:
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = [("measure", "model", "copy", "real")]
    for metric, real in SIDE_BY_SIDE:
        real_cell = cell(report.get(real)) if isinstance(real, str) else f"({cell(real)})"
        lines.append((metric, cell(report.get(metric)), cell(report.get(f"copy_{metric}")), real_cell))
    model_by_feature = report.get("distribution_overlap_by_feature", {})
    copy_by_feature = report.get("copy_distribution_overlap_by_feature", {})
    for name in FEATURES:
        lines.append((f"  {name}", cell(model_by_feature.get(name)), cell(copy_by_feature.get(name)), "(1)"))
    widths = [max(len(line[column]) for line in lines) for column in range(4)]
    for line in lines:
        print("  ".join(f"{text:<{widths[0]}}" if column == 0 else f"{text:>{widths[column]}}"
                        for column, text in enumerate(line)))  # fmt: skip
    print("(ideal): the real bars against themselves; - : no such notes or tracks")


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
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="continue every file with N seeds from --seed and report the distribution measure's "
                             "mean over them and its lead over the copy (others: the first seed's)")  # fmt: skip
    add_sampling_options(parser)
    parser.add_argument("--takes", default=RECOMMENDED.takes_label, metavar="N|auto",
                        help="continuations sampled per prompt, or auto (as `meloformer continue`); the most typical "
                             f"is scored (default {RECOMMENDED.takes_label})")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--arrange", action="store_true", help="also arrange drums and a bass under each file's lead (files with drums)"
    )
    parser.add_argument("--arrange-free", action="store_true",
                        help="as --arrange, without the presence plan: whether the model itself writes each requested "
                             "track")  # fmt: skip
    parser.add_argument("--arrange-bass-first", action="store_true",
                        help="with --arrange or --arrange-free: request the bass before the drums")  # fmt: skip
    parser.add_argument("--records", type=Path, default=None, metavar="FILE",
                        help="also write each file's measures there, one JSON object a line")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        report, records = evaluate(
            args.model, args.data, args.train_data, args.bars_prompt, args.bars_generate, args.seed, args.limit,
            progress=not args.quiet, split=args.split,
            sampling=sampling_from_options(args, takes=parse_takes(args.takes)),
            arrange={"presence": not args.arrange_free, "bass_first": args.arrange_bass_first}
            if args.arrange or args.arrange_free
            else None,
            seeds=args.seeds,
        )  # fmt: skip
    except MeloformerError as error:
        print(f"meloformer-eval: error: {error}", file=sys.stderr)
        return 1
    if args.records is not None:
        args.records.write_text("".join(json.dumps(record) + "\n" for record in records))
    print_table(report)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
