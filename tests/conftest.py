from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAILURES = ROOT / "output" / "test-failures"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One torch thread per test process (and the commands it starts): the suite must pass on a
# busy machine, where two threads fighting another process for one core ran a test 9× slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# CI and a quick local run use the same number of examples; deadlines are meaningless
# on a shared 2-core machine.
settings.register_profile("default", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.mid"))


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised debug-size model bundle (core and app tests share it)."""
    import torch

    from meloformer_core.encoding import DEFAULT_VOCAB
    from meloformer_core.model.bundle import save_bundle
    from meloformer_core.model.config import named_config
    from meloformer_core.model.transformer import MeloFormer

    torch.manual_seed(0)
    model = MeloFormer(named_config("debug", len(DEFAULT_VOCAB), max_seq_len=512))
    return save_bundle(model, DEFAULT_VOCAB, tmp_path_factory.mktemp("models") / "debug-bundle")


@pytest.fixture(scope="session")
def jack():
    """A JACK server with the dummy driver (skips where JACK is not installed)."""
    from tests.jack import JackServer

    server = JackServer()
    yield server
    server.stop()


@pytest.fixture
def receiver(jack):
    """A JACK MIDI input client recording what it gets."""
    from tests.jack import Receiver

    client = Receiver()
    yield client
    client.close()
