"""`meloformer`: the app with no arguments or a MIDI file, the headless commands otherwise.

    meloformer                   open the main window
    meloformer SONG.mid          open the main window with SONG.mid
    meloformer continue SONG.mid …   (and roundtrip, arrange, infill, …: see meloformer --help)

The window needs a display and PySide6 (the ``app`` extra); without them this says so in
one line and exits non-zero, and the headless commands keep working.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _headless_commands() -> set[str]:
    from meloformer_core.cli import build_parser

    parser = build_parser()
    return {name for action in parser._subparsers._group_actions for name in action.choices}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0].startswith("-") or args[0] in _headless_commands()):
        from meloformer_core.cli import main as cli_main

        return cli_main(args)
    if len(args) > 1:
        print("meloformer: error: give at most one MIDI file to open (or a command; see meloformer --help)",
              file=sys.stderr)  # fmt: skip
        return 2
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        print("meloformer: error: no display to open the window on (DISPLAY is not set); the headless commands "
              "work without one: meloformer continue SONG.mid -o OUT.mid", file=sys.stderr)  # fmt: skip
        return 2
    try:
        from meloformer_app.app import run
    except ImportError as error:
        print(f"meloformer: error: the app needs PySide6 ({error}); install it with pip install 'meloformer[app]'",
              file=sys.stderr)  # fmt: skip
        return 2
    return run(Path(args[0]) if args else None)


if __name__ == "__main__":
    sys.exit(main())
