"""The import rules (docs/architecture.md, Import rules) and the code style, checked on every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_import_contracts_hold() -> None:
    result = subprocess.run([BIN / "lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_reading_and_encoding_a_song_loads_neither_torch_nor_qt() -> None:
    code = (
        "import sys\n"
        "from meloformer_core.midi_io import read_midi\n"
        "from meloformer_core.encoding import encode, decode\n"
        "decode(encode(read_midi('resources/examples/bach_chorale.mid')))\n"
        "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_ruff_lint_and_format() -> None:
    lint = subprocess.run([BIN / "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    formatting = subprocess.run([BIN / "ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert formatting.returncode == 0, formatting.stdout


def test_the_generation_service_loads_torch_only_when_a_model_is_loaded() -> None:
    code = (
        "import sys\n"
        "from meloformer_core.service import GenerationService\n"
        "service = GenerationService(device='cpu')\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_distributed_code_lives_only_in_training() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "meloformer_core").rglob("*.py")
        if "torch.distributed" in path.read_text() or "DistributedDataParallel" in path.read_text()
    ]
    assert offenders == []
