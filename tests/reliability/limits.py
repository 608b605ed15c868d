"""Running a command as a user would, under a memory limit, and judging how it failed.

Every fault case asserts the same things: exit status, no traceback, one line on stderr
that names the file at fault, and memory bounded by ``RLIMIT_AS`` (a command that tries
to allocate what a hostile file asks for dies with MemoryError, which is a traceback).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 3 << 30  # address space: torch and the debug model need about 1.5 GB of it


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args: str | Path, module: str = "meloformer_core.cli", timeout: float = 300, **kwargs):
    """``python -m module args…`` with at most `MEMORY_LIMIT` of address space."""
    command = [sys.executable, "-m", module, *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory,
                          cwd=ROOT, env=env, **kwargs)  # fmt: skip


def error_line(result: subprocess.CompletedProcess[str], about: Path | str, status: int = 1) -> str:
    """Assert ``result`` failed with ``status`` and exactly one stderr line naming ``about``."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert str(about) in lines[0], (about, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing of the user's changed)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}
