"""Hypothesis strategies for random songs: several tracks, drums, metre and tempo changes, gaps."""

from __future__ import annotations

from hypothesis import strategies as st

from meloformer_core.music import KeySignature, Note, Song, TempoChange, TimeSignature, Track

RESOLUTIONS = st.sampled_from([96, 120, 192, 384, 480, 1000])
METRES = st.sampled_from([(4, 4), (3, 4), (6, 8), (2, 4), (5, 4), (7, 8), (12, 8), (2, 2), (9, 16), (6, 32), (13, 8)])


@st.composite
def songs(draw: st.DrawFn, max_tracks: int = 5, max_quarters: int = 64, max_notes: int = 40) -> Song:
    resolution = draw(RESOLUTIONS)
    span = max_quarters * resolution
    tick = st.integers(0, span)
    tempos = draw(st.lists(st.builds(TempoChange, tick, st.integers(150_000, 3_000_000)), max_size=5))
    metres = draw(st.lists(st.tuples(tick, METRES), max_size=4))
    signatures = [TimeSignature(t, n, d) for t, (n, d) in metres]
    keys = draw(st.lists(st.builds(KeySignature, tick, st.integers(-7, 7), st.booleans()), max_size=3))
    tracks = []
    for index in range(draw(st.integers(0, max_tracks))):
        is_drum = draw(st.booleans()) if index else False
        # Short pitch ranges and few onsets make chords, repeats and same-pitch overlaps likely.
        low = draw(st.integers(0, 120))
        note = st.builds(
            Note,
            start=st.one_of(tick, st.integers(0, 8).map(lambda q, r=resolution: q * r // 2)),
            pitch=st.integers(low, low + 7),
            duration=st.one_of(st.integers(1, 4 * resolution), st.integers(1, 40 * resolution)),
            velocity=st.integers(1, 127),
        )
        notes = draw(st.lists(note, max_size=max_notes))
        tracks.append(Track(f"track {index}", draw(st.integers(0, 127)), is_drum, notes))
    return Song(resolution, tuple(tempos), tuple(signatures), tuple(keys), tuple(tracks))


def random_song(rng, bars: int = 8, tracks: int = 4, density: float = 3.0) -> Song:
    """A random multi-track song (numpy, fast): several bars, drums, a metre and a tempo change."""
    resolution = 480
    bar_ticks = 4 * resolution
    built = []
    for slot in range(tracks):
        is_drum = slot == tracks - 1 and tracks > 1
        count = int(rng.poisson(density * bars)) + 1
        starts = rng.integers(0, bars * 16, count) * (resolution // 4)
        pitches = rng.integers(36, 50, count) if is_drum else rng.integers(40 + 6 * slot, 64 + 6 * slot, count)
        notes = [
            Note(int(s), int(p), int(rng.integers(1, 8)) * 120, int(rng.integers(40, 120)))
            for s, p in zip(starts, pitches, strict=True)
        ]
        built.append(Track(f"t{slot}", int(rng.integers(0, 128)), is_drum, notes))
    return Song(
        resolution,
        (TempoChange(0, 500_000), TempoChange(bar_ticks * (bars // 2) + resolution, 400_000)),
        (TimeSignature(0, 4, 4), TimeSignature(bar_ticks * (bars - 2), 3, 4)),
        (),
        tuple(built),
    )
