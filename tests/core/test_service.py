"""The generation service with the model that ships."""

from __future__ import annotations

from meloformer_core.midi_io import read_midi
from meloformer_core.model.sampling import SamplingConfig
from meloformer_core.service import DEFAULT_BUNDLE, GenerationService


def test_the_shipped_default_model_loads_and_continues_the_example() -> None:
    """resources/models/default is what users get; a vocabulary or format change must not break it."""
    assert (DEFAULT_BUNDLE / "MODEL_CARD.md").is_file()
    assert sum(f.stat().st_size for f in DEFAULT_BUNDLE.iterdir()) <= 30 * 2**20
    service = GenerationService(device="cpu")
    info = service.load()
    assert info["name"] == "meloformer-default" and info["size"] == "default"
    song = read_midi(DEFAULT_BUNDLE.parent.parent / "examples" / "bach_chorale.mid")
    result = service.continue_song(song, 2, SamplingConfig(seed=0))
    assert result.bars_added == 2 and result.song.note_count > song.note_count
    assert [t.notes[: len(o.notes)] for t, o in zip(result.song.tracks, song.tracks, strict=True)] == [
        o.notes for o in song.tracks
    ]
