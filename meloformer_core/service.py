"""The generation service: one entry point for the app, the CLI and the tests.

Load a model bundle, then continue a `Song` by N bars. The result is a new `Song`: the
input exactly as it was (its own resolution, names and timing) plus the generated bars
after its last bar. Each finished bar is streamed through a progress callback; a cancel
flag is polled between tokens and cancelling changes nothing. Same seed, same model,
same input → same output.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meloformer_core.encoding.grid import GridSong
from meloformer_core.encoding.quantize import to_grid
from meloformer_core.errors import MeloformerError
from meloformer_core.generation.placing import place_bars, written_region
from meloformer_core.music import Song, Track
from meloformer_core.threads import decoding_threads

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "resources" / "models" / "default"
SUFFIX_BARS = 8  # bars after an infilled range that the model sees (as many as fit)

Progress = Callable[[int, int, Song], None]  # (bars done, bars requested, song so far)
CancelFlag = threading.Event | Callable[[], bool] | None


class ServiceError(MeloformerError):
    """The request cannot be served (no model loaded, nothing to continue, …)."""


@dataclass(frozen=True)
class GenerationResult:
    song: Song
    bars_added: int  # new bars after the song (Continue); arranging and infilling add none
    bars_generated: int  # bars written
    tokens_generated: int  # sampled
    tokens_fed: int  # known tokens (kept tracks, conductor) fed through the model, in one pass where they fit
    tokens_per_s: float
    first_bar_s: float
    total_s: float
    prompt_tokens: int
    takes: tuple[Song, ...] = ()  # every take, the most typical (``song``) first …
    take_seeds: tuple[int | None, ...] = ()  # … and the seed of each …
    regions: tuple[tuple[int, int], ...] = ()  # … and the ticks of the bars it wrote: [start, end)
    warnings: tuple[str, ...] = ()  # what the user asked for and did not get (an empty track)

    @classmethod
    def of(
        cls,
        takes: tuple[Song, ...],
        seeds: tuple[int | None, ...],
        regions: tuple[tuple[int, int], ...],
        stats,
        warnings: tuple[str, ...] = (),
        added: bool = True,
    ) -> GenerationResult:
        """The result whose song is the first of ``takes`` (``added``: its bars come after the song)."""
        return cls(takes[0], stats.bars_generated if added else 0, stats.bars_generated, stats.tokens_generated,
                   stats.tokens_fed, stats.tokens_per_s, stats.first_bar_s, stats.total_s, stats.prompt_tokens, takes,
                   seeds, regions, warnings)  # fmt: skip

    @property
    def region(self) -> tuple[int, int]:
        """The ticks of the bars ``song`` has new: [start, end)."""
        return self.regions[0]

    def summary(self) -> dict:
        return {
            "bars_added": self.bars_added,
            "bars_generated": self.bars_generated,
            "tokens_generated": self.tokens_generated,
            "tokens_fed": self.tokens_fed,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "first_bar_s": round(self.first_bar_s, 3),
            "total_s": round(self.total_s, 3),
            "prompt_tokens": self.prompt_tokens,
            "takes": len(self.takes),
            "region_ticks": list(self.region),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }


class GenerationService:
    def __init__(self, device: str | None = None, half_weights: bool | None = None) -> None:
        """``half_weights``: decode with 16-bit weights (default: on a CPU, where decoding is
        bound by memory traffic and this is faster; see `DecodingGroup`)."""
        self._device = device
        self._half_weights = half_weights
        self.bundle = None
        self.last_threads: int | None = None  # the threads the last generation decoded on (CPU)

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def load(self, path: str | Path | None = None) -> dict:
        """Load a bundle (the default one if ``path`` is None); return its description."""
        from meloformer_core.model.bundle import load_bundle

        if path is None:
            if not DEFAULT_BUNDLE.exists():
                raise ServiceError("no default model is installed; pass a model bundle directory")
            path = DEFAULT_BUNDLE
        self.bundle = load_bundle(path, device=self.device)
        return {**self.bundle.describe(), "device": self.device}

    @contextlib.contextmanager
    def _threads(self):
        """On a CPU, decode on as many threads as there are idle cores (`meloformer_core.threads`);
        the count chosen is ``last_threads``."""
        if self.device != "cpu":
            yield
            return
        with decoding_threads() as count:
            self.last_threads = count
            yield

    def _prepare(self, song: Song, sampling, cancel: CancelFlag):
        from meloformer_core.generation.sampling import SamplingConfig

        if self.bundle is None:
            raise ServiceError("no model loaded")
        if not song.tracks:
            raise ServiceError("the song has no tracks")
        should_cancel = cancel.is_set if isinstance(cancel, threading.Event) else cancel
        half = self.device == "cpu" if self._half_weights is None else self._half_weights
        options = {"should_cancel": should_cancel, "half_weights": half}
        return sampling or SamplingConfig(), to_grid(song, self.bundle.vocab), options

    def continue_song(
        self,
        song: Song,
        bars: int,
        sampling=None,
        *,
        progress: Progress | None = None,
        cancel: CancelFlag = None,
    ) -> GenerationResult:
        """The song plus ``bars`` new bars after its last bar (with several takes, ``sampling.takes``
        > 1 or automatic (0), the most typical of them; all of them are in ``takes``)."""
        from meloformer_core.generation.generate import continue_grid

        if bars < 1:
            raise ServiceError(f"bars to generate must be at least 1, got {bars}")
        sampling, grid, options = self._prepare(song, sampling, cancel)

        def on_bar(done: int, new_bars: GridSong) -> None:
            if progress is not None:
                progress(done, bars, place_bars(song, grid, new_bars, grid.bar_count))

        model, vocab = self.bundle.model, self.bundle.vocab
        with self._threads():
            takes, order, stats = continue_grid(model, vocab, grid, bars, sampling, on_bar=on_bar, **options)
        songs = tuple(place_bars(song, grid, takes[k], grid.bar_count) for k in order)
        seeds = tuple(None if sampling.seed is None else sampling.seed + k for k in order)
        regions = tuple(written_region(song, grid, takes[k], grid.bar_count) for k in order)
        return GenerationResult.of(songs, seeds, regions, stats)

    def arrange_song(
        self,
        song: Song,
        tracks: list[int | TrackRequest],
        bars: tuple[int, int] | None = None,
        sampling=None,
        *,
        progress: Progress | None = None,
        cancel: CancelFlag = None,
        suffix_bars: int = 0,
        presence: bool = True,
    ) -> GenerationResult:
        """Write the chosen tracks (existing ones by index, or new ones) in ``bars`` (0-based,
        end exclusive; the whole song when None); every other track is kept exactly.
        ``suffix_bars`` > 0 lets the model see that many bars after the range (infilling).
        ``presence`` False leaves the model free to leave a track out of a bar where it is
        due (`presence_plan`): how evaluation measures the model's own choice."""
        from meloformer_core.generation.generate import arrange_grid

        song, targets = add_tracks(song, tracks)
        sampling, grid, options = self._prepare(song, sampling, cancel)
        first, stop = bars if bars is not None else (0, grid.bar_count)
        if not 0 <= first < stop <= grid.bar_count:
            raise ServiceError(f"bars {first + 1}-{stop} are outside the song (bars 1-{grid.bar_count})")
        total = stop - first

        def on_bar(done: int, new_bars: GridSong) -> None:
            if progress is not None:
                progress(done, total, place_bars(song, grid, new_bars, first, replace=targets))

        model, vocab = self.bundle.model, self.bundle.vocab
        with self._threads():
            new_bars, stats = arrange_grid(model, vocab, grid, targets, first, stop, sampling, on_bar=on_bar,
                                           suffix_bars=suffix_bars, presence=presence, **options)  # fmt: skip
        placed = place_bars(song, grid, new_bars, first, replace=targets)
        warnings = empty_track_warnings(placed, targets, new_bars, first, stop)
        region = written_region(song, grid, new_bars, first)
        return GenerationResult.of((placed,), (sampling.seed,), (region,), stats, warnings, added=False)

    def infill_song(
        self,
        song: Song,
        bars: tuple[int, int],
        tracks: list[int | TrackRequest] | None = None,
        sampling=None,
        *,
        progress: Progress | None = None,
        cancel: CancelFlag = None,
    ) -> GenerationResult:
        """Regenerate ``bars`` (0-based, end exclusive) of the chosen tracks (all when None) so
        that they connect to the music before *and after* them."""
        chosen = tracks if tracks is not None else list(range(len(song.tracks)))
        return self.arrange_song(song, chosen, bars, sampling, progress=progress, cancel=cancel,
                                 suffix_bars=SUFFIX_BARS)  # fmt: skip


@dataclass(frozen=True)
class TrackRequest:
    """A new track to write: a name and a GM program, or drums."""

    name: str
    program: int = 0
    is_drum: bool = False


def empty_track_warnings(song: Song, targets: set[int], new_bars: GridSong, first: int, stop: int) -> tuple[str, ...]:
    """One line for each track that was asked for and got no note in the bars written."""
    written = set(new_bars.notes[:, 0].tolist())
    bars = f"bar {first + 1}" if stop == first + 1 else f"bars {first + 1}-{stop}"
    return tuple(
        f"track {slot + 1} ({song.tracks[slot].name}) got no notes in {bars}"
        for slot in sorted(targets)
        if slot not in written
    )


def add_tracks(song: Song, requests: list[int | TrackRequest]) -> tuple[Song, set[int]]:
    """Append the requested new tracks; return the song and the target slots."""
    tracks = list(song.tracks)
    targets: set[int] = set()
    for request in requests:
        if isinstance(request, TrackRequest):
            if not 0 <= request.program <= 127:
                raise ServiceError(f"GM program {request.program} is outside 0-127")
            tracks.append(Track(request.name, request.program, request.is_drum))
            targets.add(len(tracks) - 1)
        elif 0 <= request < len(song.tracks):
            targets.add(request)
        else:
            raise ServiceError(f"the song has no track {request + 1} (it has {len(song.tracks)})")
    if not targets:
        raise ServiceError("choose at least one track to write")
    return song.replace(tracks=tuple(tracks)), targets
