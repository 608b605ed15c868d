"""`meloformer-corpus`: the public-domain training corpus inside music21, converted to MIDI.

    meloformer-corpus --output DIR [--composers bach palestrina …] [--workers N] [--limit N]
    meloformer-corpus --reserved --output DIR [--composers beethoven …]
    meloformer-corpus --band --output DIR [--seed N …]   (band arrangements rendered with MMA: training/band.py)

Only the training composers (docs/training.md, Which music may be trained on) are converted for training; every other
composer of the music21 corpus is reserved for independent evaluation. ``--reserved``
converts those (all of them by default) into a folder marked as an evaluation corpus,
which `meloformer-preprocess` refuses: they are for `meloformer-eval` only.

A file holding several works (an ABC or Essen collection, an opus) gives one MIDI file per
work; files keep their sub-folders, and a work present in two formats is converted once.
Repeat barlines are stripped before conversion (music21 fails to unfold some of them; the
music between them is kept once). Works are converted in isolated worker processes: one
that raises, hangs or crashes is recorded and the run goes on; a rerun skips what exists.
``corpus.json`` in DIR counts works, conversions, failures and notes per composer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from meloformer_core.atomic import write_bytes_atomically
from meloformer_core.errors import MeloformerError
from training.isolation import run_isolated

TRAINING_COMPOSERS = (
    "bach", "palestrina", "monteverdi", "trecento", "josquin", "ciconia", "luca", "lusitano", "ryansMammoth",
    "essenFolksong", "oneills1850", "airdsAirs", "nottingham-dataset", "miscFolk", "leadSheet", "demos",
    "theoryExercises",
)  # fmt: skip
NOTATION_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi", ".md", ".capx")


class CorpusError(MeloformerError):
    """The corpus cannot be converted as asked."""


def reserved_composers() -> tuple[str, ...]:
    """The composers of the music21 corpus that are not training composers."""
    from music21 import corpus

    root = Path(corpus.__file__).parent
    names = (p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    return tuple(sorted(name for name in names if name not in TRAINING_COMPOSERS and corpus.getComposer(name)))


class CorpusFile(NamedTuple):
    composer: str
    path: Path
    name: str  # its place in the composer's folder, without suffix: where its MIDI goes


def corpus_files(composers: tuple[str, ...], reserved: bool = False) -> tuple[list[CorpusFile], int]:
    """(The notation files of ``composers``, how many were left out as another format of a
    file kept: bwv277.krn beside bwv277.mxl). Files keep their sub-folders (Beethoven's
    quartets are opus18no1/movement1.mxl, opus18no2/movement1.mxl, …)."""
    from music21 import corpus

    allowed = reserved_composers() if reserved else TRAINING_COMPOSERS
    root = Path(corpus.__file__).parent
    chosen: dict[tuple[str, str], CorpusFile] = {}
    found = 0
    for composer in composers:
        if composer not in allowed:
            if reserved:
                raise CorpusError(f"{composer!r} is not a reserved composer (a training composer, or unknown)")
            raise CorpusError(f"{composer!r} is not a training composer (reserved for evaluation, or unknown)")
        for path in corpus.getComposer(composer):
            path = Path(str(path))
            if path.suffix.lower() not in NOTATION_SUFFIXES:
                continue
            found += 1
            inside = path.relative_to(root / composer) if path.is_relative_to(root / composer) else Path(path.name)
            entry = CorpusFile(composer, path, inside.with_suffix("").as_posix())
            other = chosen.get((composer, entry.name))
            if other is None or _preference(path) < _preference(other.path):
                chosen[(composer, entry.name)] = entry
    files = sorted(chosen.values(), key=lambda item: (item.composer, str(item.path)))
    return files, found - len(files)


def _preference(path: Path) -> tuple[int, str]:
    return NOTATION_SUFFIXES.index(path.suffix.lower()), path.name


def corpus_purpose(folder: Path) -> str | None:
    """What a folder `meloformer-corpus` wrote is for: "training" or "evaluation" (None for any
    other folder; older corpus records, all of training corpora, say nothing: "training")."""
    try:
        record = json.loads((folder / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("purpose", "training") if isinstance(record, dict) else None


def _strip_repeats(score) -> None:
    from music21 import bar, repeat

    for element in list(score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatMark))):
        site = element.activeSite
        if isinstance(element, bar.Repeat):
            replacement = bar.Barline("regular")
            if site.leftBarline is element:
                site.leftBarline = None
            elif site.rightBarline is element:
                site.rightBarline = replacement
        else:
            site.remove(element)


def convert_file(job: tuple[str, str, str, str]) -> dict:
    """Convert one corpus file (one or several works) to MIDI files; runs in a worker.
    Notes are counted in the MIDI files as `read_midi` reads them, converted now or before."""
    composer, source, output, stem = job
    from music21 import converter, stream

    from meloformer_core.midi_io import read_midi

    single = Path(output) / composer / f"{stem}.mid"
    if single.exists():  # converted by an earlier run: no need to parse it again
        return {"works": 1, "written": [str(single)], "notes": read_midi(single).note_count, "failures": []}
    parsed = converter.parse(source)
    works = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    written, notes, failures = [], 0, []
    for index, work in enumerate(works):
        name = f"{stem}.mid" if len(works) == 1 else f"{stem}_{index + 1:04d}.mid"
        target = Path(output) / composer / name
        try:
            if not target.exists():
                _strip_repeats(work)
                midi = work.write("midi")
                data = Path(midi).read_bytes()
                Path(midi).unlink(missing_ok=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomically(target, data)
            notes += read_midi(target).note_count
            written.append(str(target))
        except Exception as error:  # a work music21 cannot write: recorded, the others go on
            failures.append(f"{name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    return {"works": len(works), "written": written, "notes": notes, "failures": failures}


def convert(output: Path, composers: tuple[str, ...], workers: int, limit: int | None, timeout: float,
            progress: bool = True, reserved: bool = False) -> dict:  # fmt: skip
    from tqdm import tqdm

    files, other_formats = corpus_files(composers, reserved)
    files = files[:limit] if limit else files
    purpose = "evaluation" if reserved else "training"
    found = corpus_purpose(output)
    if found not in (None, purpose):
        raise CorpusError(f"{output} already holds a corpus for {found}: convert this one into another folder")
    output.mkdir(parents=True, exist_ok=True)
    jobs = [(index, (f.composer, str(f.path), str(output), f.name)) for index, f in enumerate(files)]
    per_composer: dict[str, Counter] = {c: Counter() for c in composers}
    failures = []
    bar = tqdm(total=len(jobs), desc="converting", unit="file", disable=not progress)
    for outcome in run_isolated(convert_file, jobs, workers=workers, timeout=timeout):
        composer, path, _ = files[outcome.index]
        counts = per_composer[composer]
        counts["files"] += 1
        if outcome.error is not None:
            counts["files_failed"] += 1
            failures.append({"path": str(path), "reason": outcome.error})
        else:
            result = outcome.value
            counts["works"] += result["works"]
            counts["midi_files"] += len(result["written"])
            counts["notes"] += result["notes"]
            counts["works_failed"] += len(result["failures"])
            failures += [{"path": str(path), "reason": reason} for reason in result["failures"]]
        bar.update(1)
    bar.close()
    summary = {
        "purpose": purpose,
        "composers": {c: dict(sorted(v.items())) for c, v in per_composer.items()},
        "midi_files": sum(v["midi_files"] for v in per_composer.values()),
        "works": sum(v["works"] for v in per_composer.values()),
        "notes": sum(v["notes"] for v in per_composer.values()),
        "other_formats_skipped": other_formats,
        "failures": failures,
    }
    write_bytes_atomically(output / "corpus.json", json.dumps(summary, indent=1).encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--band" in argv:
        from training.band import main as band_main

        return band_main([argument for argument in argv if argument != "--band"])
    parser = argparse.ArgumentParser(prog="meloformer-corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--band", action="store_true", help="band arrangements rendered with MMA (--band --help)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--composers", nargs="+", help="default: all training (with --reserved: reserved) composers")
    parser.add_argument("--reserved", action="store_true", help="convert the composers reserved for evaluation")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N corpus files")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per corpus file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        composers = tuple(args.composers or (reserved_composers() if args.reserved else TRAINING_COMPOSERS))
        summary = convert(args.output, composers, args.workers, args.limit, args.timeout, not args.quiet, args.reserved)
    except MeloformerError as error:
        print(f"meloformer-corpus: error: {error}", file=sys.stderr)
        return 1
    seconds = round(time.perf_counter() - started, 1)
    counts = {"purpose": summary["purpose"], "works": summary["works"], "midi_files": summary["midi_files"],
              "notes": summary["notes"], "failures": len(summary["failures"])}  # fmt: skip
    print(json.dumps({**counts, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
