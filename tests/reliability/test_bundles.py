"""Tampered and hostile model bundles: refused in one line naming the file and the field,
before anything the files ask for is allocated, and never by executing a pickle."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from meloformer_core.encoding.vocab import DEFAULT_VOCAB, Vocabulary
from tests.conftest import FIXTURES
from tests.reliability.limits import error_line, run_limited

PICKLE_MARKER = Path("/tmp/meloformer-reliability-pickle-ran")


class _Payload:
    def __reduce__(self):
        return (PICKLE_MARKER.touch, ())


def _config(field: str, value: object) -> Callable[[Path], str]:
    def tamper(bundle: Path) -> str:
        config = json.loads((bundle / "config.json").read_text())
        config["model"][field] = value
        (bundle / "config.json").write_text(json.dumps(config))
        return "config.json"

    return tamper


def _text(name: str, data: bytes) -> Callable[[Path], str]:
    def tamper(bundle: Path) -> str:
        (bundle / name).write_bytes(data)
        return name

    return tamper


def _vocabulary(consistent: bool) -> Callable[[Path], str]:
    """tempo_bpm_max 10⁹: a table of a billion tempo tokens, if anything built it."""

    def tamper(bundle: Path) -> str:
        data = json.loads((bundle / "vocab.json").read_text())
        data["config"]["tempo_bpm_max"] = 10**9
        if consistent:
            data["hash"] = Vocabulary.hash_of(data)
        (bundle / "vocab.json").write_text(json.dumps(data))
        return "vocab.json"

    return tamper


def _truncated(bundle: Path) -> str:
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return "model.safetensors"


def _lying_header(bundle: Path) -> str:
    weights = bundle / "model.safetensors"
    weights.write_bytes(struct.pack("<Q", 1 << 40) + weights.read_bytes()[8:])
    return "model.safetensors"


def _huge_but_consistent_header(bundle: Path) -> str:
    """A config of 256 layers of 16,384 and a header listing exactly its tensors: the shapes
    agree, only the memory check (and the missing data) can refuse it."""
    from meloformer_core.model.bundle import expected_shapes
    from meloformer_core.model.config import ModelConfig

    config = json.loads((bundle / "config.json").read_text())
    config["model"].update(d_model=16384, n_layers=256, n_heads=128)
    (bundle / "config.json").write_text(json.dumps(config))
    header, offset = {}, 0
    for name, shape in expected_shapes(ModelConfig.from_dict(config["model"])).items():
        size = 4
        for extent in shape:
            size *= extent
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    (bundle / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text)
    return "model.safetensors"


CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "n_layers 100000": (_config("n_layers", 100_000), "n_layers"),
    "d_model 10^6": (_config("d_model", 10**6), "d_model"),
    "d_model as text": (_config("d_model", "256"), "d_model"),
    "max_seq_len 10^12": (_config("max_seq_len", 10**12), "max_seq_len"),
    "mlp_ratio NaN": (_config("mlp_ratio", float("nan")), "mlp_ratio"),
    "negative heads": (_config("n_heads", -4), "n_heads"),
    "a thousand bar offsets": (_config("related_bar_offsets", list(range(1, 1001))), "related_bar_offsets"),
    "config.json nested 10^5 deep": (_text("config.json", b"[" * 100_000), "unreadable JSON"),
    "config.json of 8 MB": (_text("config.json", b" " * (8 << 20) + b"{}"), "too large"),
    "vocab tempo 10^9, hash not updated": (_vocabulary(consistent=False), "does not match its hash"),
    "vocab tempo 10^9, hash updated": (_vocabulary(consistent=True), "but this MeloFormer uses"),
    "pickle as model.safetensors": (_text("model.safetensors", pickle.dumps(_Payload())), "safetensors"),
    "pickle as config.json": (_text("config.json", pickle.dumps(_Payload())), "unreadable JSON"),
    "pickle as vocab.json": (_text("vocab.json", pickle.dumps(_Payload())), "unreadable JSON"),
    "truncated weights": (_truncated, "truncated"),
    "weights header length 2^40": (_lying_header, "header length"),
    "huge model, consistent header": (_huge_but_consistent_header, "does not fit in this machine's"),
}


@pytest.fixture(scope="module")
def hostile(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("hostile")
    made = {}
    for index, (name, (tamper, _)) in enumerate(CASES.items()):
        bundle = root / f"bundle-{index:02d}"
        shutil.copytree(bundle_dir, bundle)
        made[name] = (bundle, tamper(bundle))
    return made


def test_hostile_bundles_are_refused_in_one_line_within_bounded_memory(
    hostile: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    PICKLE_MARKER.unlink(missing_ok=True)
    song = FIXTURES / "folk_song_3_4.mid"
    cases = [["continue", str(song), "--bars", "1", "--model", str(bundle), "-o", str(tmp_path / "out.mid")]
             for bundle, _ in hostile.values()]  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    driver = run_limited(tmp_path / "cases.json", module="tests.reliability.cli_driver")
    assert driver.returncode == 0, driver.stderr[-3000:]
    results = json.loads(driver.stdout.splitlines()[-1])
    for (name, (bundle, culprit)), result in zip(hostile.items(), results, strict=True):
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert result["status"] == 1, (name, result)
        assert len(lines) == 1 and "Traceback" not in result["stderr"], (name, result["stderr"][-2000:])
        assert str(bundle / culprit) in lines[0], (name, lines[0])
        assert CASES[name][1] in lines[0], (name, lines[0])
    assert not (tmp_path / "out.mid").exists()
    assert not PICKLE_MARKER.exists(), "a pickle was executed"


def test_a_hostile_bundle_ends_the_real_command_with_status_1(hostile: dict[str, tuple[Path, str]]) -> None:
    bundle, culprit = hostile["n_layers 100000"]
    result = run_limited("continue", FIXTURES / "folk_song_3_4.mid", "--bars", "1", "--model", bundle,
                         "-o", bundle.parent / "never.mid")  # fmt: skip
    line = error_line(result, bundle / culprit)
    assert "n_layers must be a whole number from 1 to 256, not 100000" in line


def test_another_consistent_vocabulary_names_both_hashes(hostile: dict[str, tuple[Path, str]]) -> None:
    from meloformer_core.model.bundle import BundleError, load_bundle

    bundle, _ = hostile["vocab tempo 10^9, hash updated"]
    theirs = Vocabulary.hash_of(json.loads((bundle / "vocab.json").read_text()))
    with pytest.raises(BundleError) as raised:
        load_bundle(bundle)
    assert f"vocabulary {theirs}, but this MeloFormer uses {DEFAULT_VOCAB.hash}" in str(raised.value)
    assert theirs != DEFAULT_VOCAB.hash


def test_a_hostile_training_checkpoint_is_refused_before_allocation(bundle_dir: Path, tmp_path: Path) -> None:
    """meloformer-export (and --init, --resume) read checkpoints: their state.json is bounded too."""
    checkpoint = tmp_path / "run" / "checkpoints" / "step-0000001"
    checkpoint.mkdir(parents=True)
    config = json.loads((bundle_dir / "config.json").read_text())["model"]
    state = {"step": 1, "vocab_hash": DEFAULT_VOCAB.hash, "model": {**config, "n_layers": 100_000}, "optimizer": {}}
    (checkpoint / "state.json").write_text(json.dumps(state))
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
        shutil.copy(bundle_dir / "model.safetensors", checkpoint / name)
    result = run_limited(tmp_path / "run", "--out", tmp_path / "bundle", module="training.export")
    assert "n_layers" in error_line(result, checkpoint / "state.json")
    assert not (tmp_path / "bundle").exists()
