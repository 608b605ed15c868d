from __future__ import annotations

from pathlib import Path

import pytest

from meloformer_core.service import GenerationService


@pytest.fixture(scope="session")
def service(bundle_dir: Path) -> GenerationService:
    service = GenerationService(device="cpu")
    service.load(bundle_dir)
    return service
