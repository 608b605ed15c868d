from __future__ import annotations

from pathlib import Path

import pytest
import torch

from meloformer_core.encoding import DEFAULT_VOCAB
from meloformer_core.model.bundle import save_bundle
from meloformer_core.model.config import named_config
from meloformer_core.model.transformer import MeloFormer
from meloformer_core.service import GenerationService


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised debug-size model bundle."""
    torch.manual_seed(0)
    model = MeloFormer(named_config("debug", len(DEFAULT_VOCAB), max_seq_len=512))
    return save_bundle(model, DEFAULT_VOCAB, tmp_path_factory.mktemp("models") / "debug-bundle")


@pytest.fixture(scope="session")
def service(bundle_dir: Path) -> GenerationService:
    service = GenerationService(device="cpu")
    service.load(bundle_dir)
    return service
