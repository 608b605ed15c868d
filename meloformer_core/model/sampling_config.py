"""Sampling settings: a validated dataclass that imports no torch (the app builds it too)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from meloformer_core.errors import MeloformerError


class SamplingError(MeloformerError):
    """Sampling settings out of range."""


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    min_p: float = 0.0  # 0: off
    repetition_penalty: float = 1.0  # 1: off; > 1 discourages pitches used in the recent window
    repetition_window: int = 64  # tokens
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise SamplingError(f"temperature must be ≥ 0, got {self.temperature}")
        if self.top_k < 0:
            raise SamplingError(f"top-k must be ≥ 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"top-p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise SamplingError(f"min-p must be in [0, 1), got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise SamplingError(f"repetition penalty must be > 0, got {self.repetition_penalty}")
        if self.repetition_window < 0:
            raise SamplingError("repetition window must be ≥ 0")

    def to_dict(self) -> dict:
        return asdict(self)


# What the app, the CLI and meloformer-eval start from: a little below the model's own
# distribution and without its least likely tail, which keeps continuations in key and
# in style (see resources/models/default/MODEL_CARD.md for the measurements).
RECOMMENDED = SamplingConfig(temperature=0.9, top_p=0.95)
