"""Bad and extreme MIDI files through every command that reads MIDI: each is either done
(valid files) or refused with one line naming the file — never a traceback, never
unbounded memory, never a change to the user's file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability.limits import run_limited
from tests.reliability.midi_cases import CASES, unreadable_is_readable


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bool, bytes | None]]:
    """name → (path, valid, the file's bytes); the unreadable case counts as valid where root reads it."""
    folder = tmp_path_factory.mktemp("midi-cases")
    made = {}
    for case in CASES:
        path = case.make(folder)
        valid = case.valid or (case.name == "unreadable" and unreadable_is_readable(path))
        made[case.name] = (path, valid, path.read_bytes() if path.is_file() and os.access(path, os.R_OK) else None)
    return made


def _commands(path: Path, out: Path, model: Path) -> dict[str, list[str]]:
    generation = ["--model", str(model), "--seed", "0", "-o", str(out)]
    return {
        "roundtrip": ["roundtrip", str(path), "-o", str(out)],
        "continue": ["continue", str(path), "--bars", "1", "--takes", "1", *generation],
        "arrange": ["arrange", str(path), "--tracks", "bass:33", "--bars", "1:1", *generation],
        "infill": ["infill", str(path), "--bars", "1:1", *generation],
        "play": ["play", str(path), "--port", "no such port"],
    }


def test_every_command_opens_or_refuses_every_case(cases: dict, bundle_dir: Path, tmp_path: Path) -> None:
    argvs, expected = [], []
    for name, (path, valid, _) in cases.items():
        for command, argv in _commands(path, tmp_path / f"{name}.out.mid", bundle_dir).items():
            argvs.append(argv)
            expected.append((name, command, path, valid))
    (tmp_path / "cases.json").write_text(json.dumps(argvs))
    driver = run_limited(tmp_path / "cases.json", module="tests.reliability.cli_driver", timeout=900)
    assert driver.returncode == 0, driver.stderr[-3000:]
    results = json.loads(driver.stdout.splitlines()[-1])
    for (name, command, path, valid), result in zip(expected, results, strict=True):
        where = f"{command} {name}: {result['stderr'][-1500:]}"
        assert "Traceback" not in result["stderr"] and result["status"] in (0, 1), where
        lines = [line for line in result["stderr"].splitlines() if line.strip() and not line.startswith("bar ")]
        if result["status"] == 1:
            assert len(lines) == 1, where
            # a file is named, whatever is wrong with it; only play may fail for its port
            # (there is no MIDI server here), which it names instead
            assert str(path) in lines[0] or (valid and command == "play" and "no MIDI output port" in lines[0]), where
        else:
            assert valid, f"{command} accepted a bad file: {where}"
    for name, (path, _, data) in cases.items():
        if data is not None:
            assert path.read_bytes() == data, f"{name} was changed"


def test_preprocess_records_the_bad_files_and_goes_on(cases: dict, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, (path, _, _) in cases.items():
        if path.is_file() and name not in ("unreadable",):
            (inputs / path.name).write_bytes(path.read_bytes())
    result = run_limited("--input", inputs, "--output", tmp_path / "dataset", "--workers", "1", "--quiet",
                         module="training.preprocess", timeout=900)  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    failures = [json.loads(line) for line in (tmp_path / "dataset" / "failures.jsonl").read_text().splitlines()]
    failed = {Path(failure["path"]).stem for failure in failures}
    bad = {name for name, (path, valid, _) in cases.items() if not valid and path.is_file()}
    assert bad <= failed, bad - failed
