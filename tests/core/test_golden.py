"""Golden outputs of generation: seeded continue, takes, guidance, arrange and infill on a
fixed random model, in float32, compared note for note with `golden_generation.json`.

They pin what generation does before the engine is rebuilt (issue 24): a refactor that
changes a single sampled note fails here. After a deliberate change, write them again with
``MELOFORMER_UPDATE_GOLDEN=1 pytest tests/core/test_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from meloformer_core.generation.sampling import SamplingConfig
from meloformer_core.midi_io import read_midi
from meloformer_core.service import GenerationService, TrackRequest
from tests.conftest import FIXTURES

GOLDEN = Path(__file__).with_name("golden_generation.json")
SAMPLING = SamplingConfig(temperature=0.9, top_p=0.95, seed=5)


def cases(service: GenerationService) -> dict[str, list]:
    from dataclasses import replace

    chorale, groove, folk = (read_midi(FIXTURES / name) for name in ("bach_chorale.mid", "drum_groove.mid",
                                                                     "folk_song_3_4.mid"))  # fmt: skip
    results = {
        "continue": service.continue_song(chorale, 2, SAMPLING),
        "continue_guided": service.continue_song(chorale, 2, replace(SAMPLING, prompt_guidance=2.0)),
        "continue_3_takes": service.continue_song(folk, 2, replace(SAMPLING, takes=3)),
        "arrange_bass": service.arrange_song(groove, [1], (0, 2), SAMPLING),
        "arrange_new_drums": service.arrange_song(folk, [TrackRequest("Drums", 0, True)], (0, 3), SAMPLING),
        "infill": service.infill_song(folk, (1, 3), None, SAMPLING),
    }
    return {name: [[list(note) for note in track.notes] for track in result.song.tracks]
            for name, result in results.items()}  # fmt: skip


@pytest.mark.slow
def test_seeded_generation_matches_the_golden_outputs(bundle_dir: Path) -> None:
    service = GenerationService(device="cpu", half_weights=False)
    service.load(bundle_dir)
    got = cases(service)
    if os.environ.get("MELOFORMER_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, separators=(",", ":")) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == expected[name], f"{name} differs from its golden output"
