"""The generation service: one entry point for the app, the CLI and the tests.

Load a model bundle, then continue a `Song` by N bars. The result is a new `Song`: the
input exactly as it was (its own resolution, names and timing) plus the generated bars
after its last bar. Each finished bar is streamed through a progress callback; a cancel
flag is polled between tokens and cancelling changes nothing. Same seed, same model,
same input → same output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meloformer_core.encoding.quantize import GridSong, to_grid, us_per_quarter, velocity_value
from meloformer_core.encoding.vocab import STEPS_PER_QUARTER
from meloformer_core.errors import MeloformerError
from meloformer_core.music import KeySignature, Note, NoteArray, Song, TempoChange, TimeSignature

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "resources" / "models" / "default"

Progress = Callable[[int, int, Song], None]  # (bars done, bars requested, song so far)
CancelFlag = threading.Event | Callable[[], bool] | None


class ServiceError(MeloformerError):
    """The request cannot be served (no model loaded, nothing to continue, …)."""


@dataclass(frozen=True)
class GenerationResult:
    song: Song
    bars_added: int
    tokens_generated: int
    tokens_per_s: float
    first_bar_s: float
    total_s: float
    prompt_tokens: int

    def summary(self) -> dict:
        return {
            "bars_added": self.bars_added,
            "tokens_generated": self.tokens_generated,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "first_bar_s": round(self.first_bar_s, 3),
            "total_s": round(self.total_s, 3),
            "prompt_tokens": self.prompt_tokens,
        }


class GenerationService:
    def __init__(self, device: str | None = None, half_weights: bool | None = None) -> None:
        """``half_weights``: decode with float16 weights (default: on a CPU, where decoding is
        bound by memory traffic and this is several times faster; see `DecodingCache`)."""
        self._device = device
        self._half_weights = half_weights
        self.bundle = None

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

    def continue_song(
        self,
        song: Song,
        bars: int,
        sampling=None,
        *,
        progress: Progress | None = None,
        cancel: CancelFlag = None,
    ) -> GenerationResult:
        from meloformer_core.model.generate import continue_grid
        from meloformer_core.model.sampling import SamplingConfig

        if self.bundle is None:
            raise ServiceError("no model loaded")
        if bars < 1:
            raise ServiceError(f"bars to generate must be at least 1, got {bars}")
        if not song.tracks:
            raise ServiceError("the song has no tracks to continue")
        sampling = sampling or SamplingConfig()
        grid = to_grid(song, self.bundle.vocab)
        should_cancel = cancel.is_set if isinstance(cancel, threading.Event) else cancel

        def on_bar(done: int, new_bars: GridSong) -> None:
            if progress is not None:
                progress(done, bars, append_bars(song, grid, new_bars))

        half = self.device == "cpu" if self._half_weights is None else self._half_weights
        _, new_bars, stats = continue_grid(
            self.bundle.model,
            self.bundle.vocab,
            grid,
            bars,
            sampling,
            on_bar=on_bar,
            should_cancel=should_cancel,
            half_weights=half,
        )
        return GenerationResult(
            song=append_bars(song, grid, new_bars),
            bars_added=stats.bars_added,
            tokens_generated=stats.tokens_generated,
            tokens_per_s=stats.tokens_per_s,
            first_bar_s=stats.first_bar_s,
            total_s=stats.total_s,
            prompt_tokens=stats.prompt_tokens,
        )


def append_bars(song: Song, grid: GridSong, new: GridSong) -> Song:
    """``song`` with the bars of ``new`` (a grid slice starting at step 0) after the last bar of ``grid``.

    ``grid`` is ``to_grid(song)``; the song's own notes and maps are kept untouched.
    """
    origin = int(grid.bar_starts[-1])
    resolution = song.resolution

    def tick(step: int) -> int:
        return round((origin + step) * resolution / STEPS_PER_QUARTER)

    tracks = list(song.tracks)
    notes = new.notes
    for slot, track in enumerate(tracks):
        rows = notes[notes[:, 0] == slot]
        if not len(rows):
            continue
        added = [
            Note(
                tick(int(onset)),
                int(pitch),
                max(1, round(int(duration) * resolution / STEPS_PER_QUARTER)),
                int(velocity_value(vel)),
            )
            for _, onset, pitch, duration, vel in rows.tolist()
        ]
        tracks[slot] = track.with_notes(track.notes.concatenate(NoteArray(added)))
    tempo_in_force = [t for t in grid.tempos if t[0] <= origin][-1][1]
    tempos = list(song.tempos)
    for step, tenths in new.tempos:
        if step == 0 and tenths == tempo_in_force:
            continue  # the window restates the tempo in force
        tempos.append(TempoChange(tick(step), us_per_quarter(tenths)))
    metre_in_force = grid.time_signatures[-1][1:]
    signatures = list(song.time_signatures)
    for bar, numerator, denominator in new.time_signatures:
        if bar == 0 and (numerator, denominator) == metre_in_force:
            continue
        signatures.append(TimeSignature(tick(int(new.bar_starts[bar])), numerator, denominator))
    key_in_force = grid.keys[-1][1:] if grid.keys else None
    keys = list(song.key_signatures)
    for bar, sharps, minor in new.keys:
        if bar == 0 and (sharps, minor) == key_in_force:
            continue
        keys.append(KeySignature(tick(int(new.bar_starts[bar])), sharps, minor))
    return song.replace(
        tracks=tuple(tracks), tempos=tuple(tempos), time_signatures=tuple(signatures), key_signatures=tuple(keys)
    )
