"""Sampling settings: a validated dataclass that imports no torch (the app builds it too)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from meloformer_core.errors import MeloformerError


class SamplingError(MeloformerError):
    """Sampling settings out of range."""


MAX_PROMPT_GUIDANCE = 5.0
MAX_TAKES = 16
AUTO_MAX_TAKES = 8  # the most automatic takes (0) decode: see `generate.auto_takes`


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    min_p: float = 0.0  # 0: off
    repetition_penalty: float = 1.0  # 1: off; > 1 discourages pitches used in the recent window
    repetition_window: int = 64  # tokens
    # 1: off; > 1 keeps to the prompt's material: the logits are pushed away from those of
    # the same model that has heard only the song's instruments (classifier-free guidance)
    prompt_guidance: float = 1.0
    seed: int | None = None
    # continuations sampled together (seeds seed, seed + 1, …); the one most like the others
    # is the result (`generate.typicality_order`); 0: automatic, as many as fit a fixed amount
    # of work (`generate.auto_takes`); continuing only, arranging samples one
    takes: int = 1

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
        if not 0 <= self.prompt_guidance <= MAX_PROMPT_GUIDANCE:
            raise SamplingError(f"prompt guidance must be in [0, {MAX_PROMPT_GUIDANCE:g}], got {self.prompt_guidance}")
        if not 0 <= self.takes <= MAX_TAKES:
            raise SamplingError(f"takes must be in 1-{MAX_TAKES} (0: automatic), got {self.takes}")

    @property
    def takes_label(self) -> str:
        return "auto" if self.takes == 0 else str(self.takes)

    def to_dict(self) -> dict:
        return asdict(self)


# What the app, the CLI and meloformer-eval start from: below the model's own
# temperature and without its least likely tail, which keeps continuations in key and in
# style; no prompt guidance (with guidance 2 the band model replays prompt bars exactly in
# 26 % of the new bars of classical music, 2.3x as often as the real next bars do; 1.5
# still 1.7x); and the most typical of as many takes as fit the time of about one take of
# a 4-voice chorale (resources/models/default/MODEL_CARD.md has the measurements).
RECOMMENDED = SamplingConfig(temperature=0.7, top_p=0.95, prompt_guidance=1.0, takes=0)


def parse_takes(text: str | int) -> int:
    """A ``--takes`` option: a number of takes, or ``auto`` (0)."""
    if str(text).strip().lower() == "auto":
        return 0
    try:
        takes = int(text)
    except ValueError:
        raise SamplingError(f"--takes: expected a number of takes or 'auto', got {text!r}") from None
    if not 1 <= takes <= MAX_TAKES:
        raise SamplingError(f"--takes: takes must be in 1-{MAX_TAKES} or 'auto', got {takes}")
    return takes
