"""The `meloformer` command line.

Every subcommand prints, as its last line on stdout, one JSON object with its results.
A `MeloformerError` (bad file, bad option) ends the command with one readable line on
stderr and exit status 1; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from meloformer_core.errors import MeloformerError


def _roundtrip(args: argparse.Namespace) -> dict:
    from meloformer_core.encoding import decode, encode
    from meloformer_core.metrics import compare
    from meloformer_core.midi_io import read_midi, write_midi

    song = read_midi(args.input)
    tokens = encode(song)
    decoded = decode(tokens)
    write_midi(decoded, args.output)
    report = compare(song, decoded, len(tokens)).to_dict()
    print(f"{args.input} -> {args.output}: {report['notes_in']} notes in, {report['notes_out']} out, "
          f"recall {report['note_recall']:.4f}, {report['tokens']} tokens", file=sys.stderr)  # fmt: skip
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meloformer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    roundtrip = commands.add_parser(
        "roundtrip", help="encode and decode a MIDI file; report what survives",
        description="Write decode(encode(IN)) to OUT and print round-trip statistics as JSON.",
    )  # fmt: skip
    roundtrip.add_argument("input", type=Path, metavar="IN.mid")
    roundtrip.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mid")
    roundtrip.set_defaults(run=_roundtrip)
    return parser


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
