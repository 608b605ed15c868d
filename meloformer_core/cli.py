"""The `meloformer` command line.

Every subcommand prints, as its last line on stdout, one JSON object with its results.
A `MeloformerError` (bad file, bad option) ends the command with one readable line on
stderr and exit status 1; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from meloformer_core.errors import MeloformerError
from meloformer_core.sampling_settings import (
    AUTO_MAX_TAKES,
    RECOMMENDED,
    add_sampling_options,
    first_take_seed,
    parse_takes,
    sampling_from_options,
)


class UsageError(MeloformerError):
    """A command-line value is malformed."""


@contextmanager
def about(path: Path) -> Iterator[None]:
    """Errors raised while working on ``path``'s music name it (the encoder and the service
    do not know where a song came from)."""
    try:
        yield
    except MeloformerError as error:
        if str(path) in str(error):
            raise
        raise type(error)(f"{path}: {error}") from None


def _roundtrip(args: argparse.Namespace) -> dict:
    from meloformer_core.encoding import decode, encode
    from meloformer_core.metrics import compare
    from meloformer_core.midi_io import read_midi, write_midi

    song = read_midi(args.input)
    with about(args.input):
        tokens = encode(song)
        decoded = decode(tokens)
    write_midi(decoded, args.output)
    report = compare(song, decoded, len(tokens)).to_dict()
    print(f"{args.input} -> {args.output}: {report['notes_in']} notes in, {report['notes_out']} out, "
          f"recall {report['note_recall']:.4f}, {report['tokens']} tokens", file=sys.stderr)  # fmt: skip
    return report


def _sampling(args: argparse.Namespace):
    takes = parse_takes(getattr(args, "takes", 1))  # continue only
    return sampling_from_options(args, seed=first_take_seed(args.seed), takes=takes)


def parse_bars(text: str | None) -> tuple[int, int] | None:
    """``A:B`` (1-based, inclusive) → (A - 1, B); None stays None."""
    if text is None:
        return None
    first, sep, last = text.partition(":")
    try:
        start, stop = int(first), int(last if sep else first)
    except ValueError:
        raise UsageError(f"--bars {text!r}: expected A:B, bar numbers from 1 (e.g. 9:12)") from None
    if not 1 <= start <= stop:
        raise UsageError(f"--bars {text!r}: expected 1 ≤ A ≤ B")
    return start - 1, stop


def parse_tracks(text: str, song) -> list:
    """``--tracks`` items: an existing track's number or name, ``NAME:PROGRAM``, ``NAME:drums`` or ``drums``."""
    from meloformer_core.service import TrackRequest

    requests: list = []
    for item in (part.strip() for part in text.split(",")):
        name, sep, kind = item.partition(":")
        if not item:
            continue
        if item.isdigit():
            requests.append(int(item) - 1)
        elif item.lower() == "drums" or (sep and kind.lower() == "drums"):
            requests.append(TrackRequest(name if sep else "Drums", 0, True))
        elif sep:
            if not kind.isdigit() or not 0 <= int(kind) <= 127:
                raise UsageError(f"--tracks {item!r}: the program must be a GM number 0-127 or 'drums'")
            requests.append(TrackRequest(name, int(kind)))
        else:
            requests.append(track_named(item, song))
    if not requests:
        raise UsageError("--tracks: name at least one track")
    return requests


def _generate(args: argparse.Namespace, plan: Callable) -> dict:
    """continue, arrange and infill: read IN, check the options, load the model, generate
    with a progress line per bar, write OUT, report. ``plan(song)`` parses the command's
    own options and returns ``run(service, sampling, progress) -> GenerationResult``."""
    from meloformer_core.midi_io import read_midi, write_midi
    from meloformer_core.service import GenerationService

    song = read_midi(args.input)
    with about(args.input):
        run = plan(song)
    sampling = _sampling(args)  # every option is checked before the model loads
    folder = args.output.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"{args.output}: cannot write there (no such folder, or not writable)")
    service = GenerationService(device=args.device)
    model = service.load(args.model)

    def progress(done: int, total: int, _song: object) -> None:
        print(f"bar {done}/{total}", file=sys.stderr, flush=True)

    with about(args.input):
        result = run(service, sampling, progress)
    write_midi(result.song, args.output)
    for warning in result.warnings:  # also in the JSON line
        print(f"meloformer {args.command}: warning: {warning}", file=sys.stderr)
    report = {**result.summary(), "model": model["name"], "device": model["device"], "seed": args.seed}
    if getattr(args, "write_takes", False):
        others = [args.output.with_name(f"{args.output.stem}.take-{k}{args.output.suffix}")
                  for k in range(2, len(result.takes) + 1)]  # fmt: skip
        for take, path in zip(result.takes[1:], others, strict=True):
            write_midi(take, path)
        report["takes_written"] = [str(path) for path in others]
    return report


def _continue(args: argparse.Namespace) -> dict:
    def plan(song):
        return lambda service, sampling, progress: service.continue_song(song, args.bars, sampling, progress=progress)

    return _generate(args, plan)


def _arrange(args: argparse.Namespace) -> dict:
    def plan(song):
        tracks, bars = parse_tracks(args.tracks, song), parse_bars(args.bars)
        return lambda service, sampling, progress: service.arrange_song(song, tracks, bars, sampling, progress=progress)

    return _generate(args, plan)


def _infill(args: argparse.Namespace) -> dict:
    def plan(song):
        tracks = parse_tracks(args.tracks, song) if args.tracks else None
        bars = parse_bars(args.bars)
        return lambda service, sampling, progress: service.infill_song(song, bars, tracks, sampling, progress=progress)

    return _generate(args, plan)


def _init_model(args: argparse.Namespace) -> dict:
    import torch

    from meloformer_core.atomic import check_output_folder
    from meloformer_core.encoding.vocab import DEFAULT_VOCAB
    from meloformer_core.model.bundle import BUNDLE_KIND, save_bundle
    from meloformer_core.model.config import named_config
    from meloformer_core.model.transformer import MeloFormer

    check_output_folder(args.output, BUNDLE_KIND)  # before building a model that may be large
    torch.manual_seed(args.seed)
    model = MeloFormer(named_config(args.size, len(DEFAULT_VOCAB)))
    card = {"description": "Randomly initialised weights, for tests and benchmarks: it makes noise, not music."}
    path = save_bundle(model, DEFAULT_VOCAB, args.output, card={"name": args.output.name, **card})
    parameters = model.parameter_count()
    print(f"{args.size}: {parameters:,} parameters -> {path}", file=sys.stderr)
    return {"size": args.size, "parameters": parameters, "path": str(path)}


def _sizes(args: argparse.Namespace) -> dict:
    import torch

    from meloformer_core.encoding.vocab import DEFAULT_VOCAB
    from meloformer_core.model.config import SIZES, named_config
    from meloformer_core.model.transformer import MeloFormer

    counts = {}
    for size in SIZES:
        config = named_config(size, len(DEFAULT_VOCAB))
        with torch.device("meta"):  # count without allocating
            counts[size] = MeloFormer(config).parameter_count()
        print(f"{size:<8} d_model {config.d_model:>5}  layers {config.n_layers:>3}  heads {config.n_heads:>3}  "
              f"context {config.max_seq_len:>5}  parameters {counts[size]:>13,}", file=sys.stderr)  # fmt: skip
    return counts


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    add_sampling_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")


def _generation_command(commands, name: str, run: Callable, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with the options continue, arrange and infill share."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.add_argument("input", type=Path, metavar="IN.mid")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mid")
    parser.add_argument("--model", type=Path, default=None, help="model bundle directory (default: the shipped model)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    _add_sampling_options(parser)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    # Long on purpose (73 lines): a flat list of subcommands and their options, one statement each.
    parser = argparse.ArgumentParser(
        prog="meloformer",
        usage="meloformer [SONG.mid]  |  meloformer COMMAND [options]",
        description="Continue and arrange music with a Transformer you can run and train yourself.",
        epilog="With no command, `meloformer` opens the app; `meloformer SONG.mid` opens it with SONG.mid. "
        "Each COMMAND has its own --help. Training: meloformer-corpus, meloformer-preprocess, meloformer-train, "
        "meloformer-export, meloformer-eval.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    roundtrip = commands.add_parser(
        "roundtrip", help="encode and decode a MIDI file; report what survives",
        description="Write decode(encode(IN)) to OUT and print round-trip statistics as JSON.",
    )  # fmt: skip
    roundtrip.add_argument("input", type=Path, metavar="IN.mid")
    roundtrip.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mid")
    roundtrip.set_defaults(run=_roundtrip)

    cont = _generation_command(
        commands, "continue", _continue, "continue a MIDI file by N bars with a model",
        "Write IN plus N generated bars to OUT; print generation statistics as JSON.",
    )  # fmt: skip
    cont.add_argument("--bars", type=int, default=8, help="bars to add (default 8)")
    cont.add_argument("--takes", default=RECOMMENDED.takes_label, metavar="N|auto",
                      help="continuations sampled together, each with its own seed; OUT gets the one most like the "
                           f"others; auto: as many (up to {AUTO_MAX_TAKES}) as fit about the time of one take of a "
                           f"4-voice chorale (default {RECOMMENDED.takes_label})")  # fmt: skip
    cont.add_argument("--write-takes", action="store_true",
                      help="also write the other takes, next most typical first, as OUT.take-2.mid, …")  # fmt: skip

    arrange = _generation_command(
        commands, "arrange", _arrange, "write chosen tracks (new or existing) under the others",
        "Write IN with the chosen tracks generated in the chosen bars to OUT; every other track is kept.",
    )  # fmt: skip
    arrange.add_argument("--tracks", required=True, metavar="SPEC",
                         help="comma-separated: an existing track's number or name, NAME:PROGRAM for a new track "
                              "(GM program 0-127), NAME:drums or drums (e.g. bass:33,drums)")  # fmt: skip
    arrange.add_argument("--bars", default=None, metavar="A:B", help="bars A to B, from 1, inclusive (default: all)")

    infill = _generation_command(
        commands, "infill", _infill, "regenerate a range of bars so that it joins what comes before and after",
        "Write IN with bars A to B regenerated (all tracks, or the chosen ones) to OUT.",
    )  # fmt: skip
    infill.add_argument("--bars", required=True, metavar="A:B", help="bars A to B, from 1, inclusive")
    infill.add_argument("--tracks", default=None, metavar="SPEC", help="as for arrange (default: every track)")

    init = commands.add_parser(
        "init-model", help="write a randomly initialised model bundle (tests, benchmarks)",
        description="Write a bundle with random weights of a named size.",
    )  # fmt: skip
    init.add_argument("--size", default="default", help="debug, default, small, base, large or xlarge")
    init.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(run=_init_model)

    sizes = commands.add_parser("sizes", help="list the named model sizes with their parameter counts")
    sizes.set_defaults(run=_sizes)

    ports = commands.add_parser("ports", help="list the MIDI output ports (every API python-rtmidi was built with)")
    ports.set_defaults(run=_ports)
    play = commands.add_parser(
        "play", help="play a MIDI file on a MIDI output port",
        description="Play IN (or bars A to B of it) on a MIDI output port; exit when it has finished.",
    )  # fmt: skip
    play.add_argument("input", type=Path, metavar="IN.mid")
    play.add_argument("--port", default=None,
                      help="the port's name or a part of it (default: the first port); 'virtual' opens a port of "
                           "our own (MeloFormer:out) for a synthesizer to connect to")  # fmt: skip
    play.add_argument("--bars", default=None, metavar="A:B", help="bars A to B, from 1, inclusive (default: all)")
    play.add_argument("--metronome", action="store_true", help="click the beats on the drum channel")
    play.set_defaults(run=_play)
    _add_render_command(commands)
    return parser


def _ports(args: argparse.Namespace) -> dict:
    from meloformer_core.playback.ports import list_output_ports

    ports, problems = list_output_ports()
    for port in ports:
        print(port.label)
    for problem in problems:
        print(f"unavailable: {problem}", file=sys.stderr)
    if not ports:
        print("no MIDI output ports", file=sys.stderr)
    return {"ports": [port.label for port in ports], "problems": problems}


def _play(args: argparse.Namespace) -> dict:
    import threading
    import time

    from meloformer_core.midi_io import read_midi
    from meloformer_core.playback.player import Player
    from meloformer_core.playback.ports import OutputLostError, open_output

    song = read_midi(args.input)
    first, stop = 0, None
    bars = parse_bars(args.bars)
    if bars is not None:
        starts = song.bar_lines()
        if bars[0] >= len(starts) - 1:
            raise UsageError(f"--bars {args.bars}: the song has {len(starts) - 1} bars")
        first, stop = starts[bars[0]], starts[min(bars[1], len(starts) - 1)]
    done, failure = threading.Event(), []
    with open_output(args.port) as output:
        # output.problem: a JACK port's writes never fail, so the player asks whether it is still
        # there (a synthesizer that quit, a JACK server that stopped) and stops within a second
        player = Player(output.send, on_error=lambda message: (failure.append(message), done.set()),
                        on_finished=done.set, check=output.problem)  # fmt: skip
        player.metronome = args.metronome
        started = time.monotonic()
        player.play(song, first, end_tick=stop)
        try:
            done.wait()
        finally:
            player.close()
    if failure:
        raise OutputLostError(failure[0])
    played = sum(e.message[0] & 0xF0 == 0x90 and not e.click for e in player.events)
    return {"port": output.label, "seconds": round(time.monotonic() - started, 3), "notes_played": played}


def _add_render_command(commands) -> None:
    from meloformer_core.playback.synth import SAMPLE_RATE, TAIL_SECONDS

    render = commands.add_parser(
        "render", help="render a MIDI file to audio (WAV or FLAC) with the built-in synth",
        description="Render IN (some tracks, some bars) to OUT.wav or OUT.flac with the built-in SoundFont synth, "
        f"much faster than real time; the last notes ring out for {TAIL_SECONDS:g} s after the music.",
    )  # fmt: skip
    render.add_argument("input", type=Path, metavar="IN.mid")
    render.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wav|OUT.flac")
    render.add_argument("--soundfont", type=Path, default=None, metavar="SF2",
                        help="a General MIDI SoundFont (.sf2; default: TimGM6mb, installed with the app)")  # fmt: skip
    render.add_argument("--tracks", default=None, metavar="1,3",
                        help="the tracks to hear, by number or name, comma-separated (default: all)")  # fmt: skip
    render.add_argument("--bars", default=None, metavar="A:B", help="bars A to B, from 1, inclusive (default: all)")
    render.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help=f"default {SAMPLE_RATE}")
    render.set_defaults(run=_render)


def track_named(item: str, song) -> int:
    """The index of the song's first track called ``item`` (any case); `UsageError` naming them all."""
    matches = [i for i, track in enumerate(song.tracks) if track.name.lower() == item.lower()]
    if not matches:
        names = ", ".join(f"{i + 1} {t.name!r}" for i, t in enumerate(song.tracks))
        raise UsageError(f"--tracks {item!r}: no track of that name (tracks: {names})")
    return matches[0]


def existing_tracks(text: str, song) -> list[int]:
    """``--tracks`` of render: existing tracks by number (from 1) or name → indices from 0."""
    chosen: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.isdigit() and 1 <= int(item) <= len(song.tracks):
            chosen.append(int(item) - 1)
            continue
        chosen.append(track_named(item, song))
    if not chosen:
        raise UsageError("--tracks: name at least one track")
    return sorted(set(chosen))


def bar_ticks(song, text: str | None) -> tuple[int, int | None]:
    """``--bars A:B`` as a tick range of ``song`` ((0, None): the whole song)."""
    bars = parse_bars(text)
    if bars is None:
        return 0, None
    starts = song.bar_lines()
    if bars[0] >= len(starts) - 1:
        raise UsageError(f"--bars {text}: the song has {len(starts) - 1} bars")
    return starts[bars[0]], starts[min(bars[1], len(starts) - 1)]


def _render(args: argparse.Namespace) -> dict:
    import time

    from meloformer_core.midi_io import read_midi
    from meloformer_core.playback.audio import AUDIO_SUFFIXES, write_audio
    from meloformer_core.playback.soundfont import load_soundfont
    from meloformer_core.playback.synth import render_song

    if args.output.suffix.lower() not in AUDIO_SUFFIXES:
        raise UsageError(f"{args.output}: write .wav or .flac")
    if not 8000 <= args.sample_rate <= 192_000:
        raise UsageError(f"--sample-rate {args.sample_rate}: expected 8000 to 192000")
    folder = args.output.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"{args.output}: cannot write there (no such folder, or not writable)")
    song = read_midi(args.input)
    with about(args.input):
        tracks = existing_tracks(args.tracks, song) if args.tracks else None
        first, stop = bar_ticks(song, args.bars)
    end = song.end_tick if stop is None else stop
    chosen = range(len(song.tracks)) if tracks is None else tracks
    if not any(((t.notes.starts >= first) & (t.notes.starts < end)).any() for t in (song.tracks[i] for i in chosen)):
        raise UsageError(f"{args.input}: nothing to render (no notes in the chosen tracks and bars)")
    soundfont = load_soundfont(args.soundfont)
    started = time.monotonic()
    audio = render_song(song, soundfont, tracks, first, stop, args.sample_rate)
    rendered = time.monotonic() - started
    write_audio(args.output, audio, args.sample_rate)
    seconds = len(audio) / args.sample_rate
    print(f"{args.input} -> {args.output}: {seconds:.1f} s of audio rendered in {rendered:.2f} s "
          f"({soundfont.name})", file=sys.stderr)  # fmt: skip
    return {"output": str(args.output), "seconds": round(seconds, 3), "sample_rate": args.sample_rate,
            "tracks": [i + 1 for i in chosen], "soundfont": str(soundfont.path), "render_seconds": round(rendered, 3),
            "realtime_factor": round(rendered / max(seconds, 1e-9), 4)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except MeloformerError as error:
        print(f"meloformer {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"meloformer {args.command}: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
