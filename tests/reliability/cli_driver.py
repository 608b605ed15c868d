"""Run many `meloformer` command lines in one process (one torch import, not one per case).

    python -m tests.reliability.cli_driver CASES.json   (a list of argument lists)

Prints one JSON line: for each case its exit status and what it wrote to stderr. The
test that starts it sets the memory limit, so every case runs under it.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from pathlib import Path


def main() -> None:
    from meloformer_core.cli import main as cli

    results = []
    for argv in json.loads(Path(sys.argv[1]).read_text()):
        errors, output = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(output):
            try:
                status = cli(argv)
            except SystemExit as exit_:  # argparse
                status = exit_.code
            except BaseException:  # a traceback is what the test looks for
                traceback.print_exc()
                status = "crashed"
        results.append({"argv": argv, "status": status, "stderr": errors.getvalue()})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
