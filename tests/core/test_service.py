"""The generation service with the model that ships."""

from __future__ import annotations

from meloformer_core.generation.sampling import SamplingConfig
from meloformer_core.midi_io import read_midi
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


def test_the_default_model_keeps_the_dynamics_of_the_prompt() -> None:
    """A soft chorale goes on softly and a loud one loudly (the training corpus plays nearly
    everything at velocity 90; velocity augmentation taught the model to follow the prompt)."""
    import numpy as np

    song = read_midi(DEFAULT_BUNDLE.parent.parent / "examples" / "bach_chorale.mid")
    service = GenerationService(device="cpu")
    service.load()
    for velocity in (40, 116):
        prompt = song.replace(tracks=[t.with_notes(t.notes.array * [1, 1, 1, 0] + [0, 0, 0, velocity])
                                      for t in song.tracks])  # fmt: skip
        result = service.continue_song(prompt, 2, SamplingConfig(temperature=0.9, top_p=0.95, seed=0))
        new = np.concatenate([t.notes.velocities[len(o.notes) :] for t, o in zip(result.song.tracks, prompt.tracks,
                                                                                   strict=True)])  # fmt: skip
        assert len(new) and abs(float(np.median(new)) - velocity) <= 12, (velocity, np.unique(new))


def test_prompt_guidance_keeps_the_default_model_to_the_song_s_material() -> None:
    """Guidance contrasts the model with itself having heard only the instruments: 0 is that
    prompt-deaf model alone, 1 the model as it is, 2 stays closer to the jig's pitch classes."""
    import numpy as np

    from tests.conftest import FIXTURES

    song = read_midi(FIXTURES / "jig_6_8.mid")
    service = GenerationService(device="cpu")
    service.load()

    def profile(tracks, skip) -> np.ndarray:
        counts = np.zeros(12)
        for track, before in zip(tracks, skip, strict=True):
            np.add.at(counts, track.notes.pitches[before:] % 12, 1)
        return counts / max(counts.sum(), 1)

    heard = profile(song.tracks, [0] * len(song.tracks))
    overlap = {}
    for guidance in (0.0, 1.0, 2.0):
        values = []
        for seed in range(4):
            sampling = SamplingConfig(temperature=0.7, top_p=0.95, prompt_guidance=guidance, seed=seed)
            result = service.continue_song(song, 4, sampling)
            new = profile(result.song.tracks, [len(t.notes) for t in song.tracks])
            values.append(float(np.minimum(new, heard).sum()))
        overlap[guidance] = float(np.mean(values))
    assert overlap[0.0] < 0.5 < overlap[1.0] < overlap[2.0] - 0.03, overlap


def test_regenerating_any_voice_of_the_chorale_with_the_default_model_writes_that_voice() -> None:
    """Regenerate the soprano (or the alto) of bars 3-6: the model used to close every bar
    after the kept voices and write nothing. Each voice now sings in every bar it sang, in
    its own register."""
    import numpy as np

    song = read_midi(DEFAULT_BUNDLE.parent.parent / "examples" / "bach_chorale.mid")
    service = GenerationService(device="cpu")
    service.load()
    bar = 4 * song.resolution
    for voice in (0, 1):
        old = song.tracks[voice].notes
        result = service.infill_song(song, (2, 6), [voice], SamplingConfig(seed=0))
        new = result.song.tracks[voice].notes
        written = [n for n in new if 2 * bar <= n.start < 6 * bar]
        assert {n.start // bar for n in written} == {2, 3, 4, 5}, result.warnings
        assert not result.warnings
        low, high = np.percentile(old.pitches, [0, 100])
        assert all(low - 3 <= n.pitch <= high + 3 for n in written)
