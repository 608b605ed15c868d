"""`meloformer roundtrip`: the JSON report, and one readable line on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meloformer_core.midi_io import read_midi
from tests.conftest import FIXTURES

KEYS = {"notes_in", "notes_out", "note_recall", "onset_error_ms_mean", "tracks_in", "tracks_out",
        "tempo_changes_in", "tempo_changes_out", "time_signatures_in", "time_signatures_out", "tokens"}  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meloformer_core.cli", *args], capture_output=True, text=True)


def test_roundtrip_writes_the_file_and_reports_json_last(tmp_path: Path) -> None:
    out = tmp_path / "out.mid"
    result = run("roundtrip", str(FIXTURES / "drum_groove.mid"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.keys() >= KEYS
    assert report["note_recall"] == 1.0 and report["tracks_out"] == 4 and report["tempo_changes_out"] == 2
    assert read_midi(out).note_count == report["notes_out"]


@pytest.mark.parametrize(
    "content", [b"", b"hello, not midi", b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x00\x60MTrk\x00\x00\xff"]
)
def test_roundtrip_on_a_bad_file_exits_nonzero_with_one_line(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    result = run("roundtrip", str(bad), "-o", str(tmp_path / "out.mid"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.mid" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out.mid").exists()


def test_help_names_the_app_mode_and_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "meloformer_app.launch", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "meloformer SONG.mid" in " ".join(result.stdout.split()) and "opens the app" in result.stdout
    for command in ("roundtrip", "continue", "arrange", "infill", "init-model", "sizes", "ports", "play"):
        assert command in result.stdout
