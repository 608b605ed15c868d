"""Sampling settings, described once: a validated dataclass that imports no torch (the app
builds it too), and `CONTROLS`, from which the command-line flags (`add_sampling_options`),
the Generate panel's controls and the app's settings file take their range, default and help.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields

from meloformer_core.errors import MeloformerError


class SamplingError(MeloformerError):
    """Sampling settings out of range."""


MAX_PROMPT_GUIDANCE = 5.0
MAX_TAKES = 16
AUTO_MAX_TAKES = 8  # the most automatic takes (0) decode: see `generation.takes.auto_takes`


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
    # is the result (`generation.takes.typicality_order`); 0: automatic, as many as fit a fixed amount
    # of work (`generation.takes.auto_takes`); continuing only, arranging samples one
    takes: int = 1

    def __post_init__(self) -> None:
        for control in CONTROLS:
            value = getattr(self, control.name)
            if not control.minimum <= value <= control.maximum:
                raise SamplingError(f"{control.flag}: {control.range_text}, got {value}")
        if self.repetition_window < 0:
            raise SamplingError("repetition window must be ≥ 0")
        if not 0 <= self.takes <= MAX_TAKES:
            raise SamplingError(f"takes must be in 1-{MAX_TAKES} (0: automatic), got {self.takes}")

    @property
    def takes_label(self) -> str:
        return "auto" if self.takes == 0 else str(self.takes)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Control:
    """One sampling setting as users meet it: the option, the words, the range and the help."""

    name: str  # the `SamplingConfig` field
    flag: str  # the command-line option
    label: str  # the Generate panel's words
    minimum: float
    maximum: float
    step: float  # the panel's step (1 for a whole number)
    help: str  # plain words: the option's help and the control's tooltip
    advanced: bool = False  # under the panel's Advanced

    @property
    def whole(self) -> bool:
        """Whether the setting is a whole number."""
        return isinstance(getattr(SamplingConfig(), self.name), int)

    @property
    def range_text(self) -> str:
        return f"from {self.minimum:g} to {self.maximum:g}"


CONTROLS = (
    Control("temperature", "--temperature", "Creativity", 0.0, 3.0, 0.05,
            "How adventurous the music is: low keeps to the model's likeliest ideas (0: always the likeliest), "
            "1 takes them as the model hears them, higher is wilder"),
    Control("prompt_guidance", "--guidance", "Stay close to the song", 0.0, MAX_PROMPT_GUIDANCE, 0.1,
            "How closely the new music keeps to the song's own motifs and harmony: 1 is off (about 1.5× as fast, "
            "freer), higher keeps closer"),
    Control("top_k", "--top-k", "Likeliest ideas only", 0, 1000, 1,
            "Choose each next step among only this many of the model's likeliest ideas (0: no limit; "
            "a note's length and a bar's chord are never limited)", True),
    Control("top_p", "--top-p", "Leave out the unlikely", 0.01, 1.0, 0.01,
            "Leave out the model's unlikeliest ideas: keep the likeliest that together make this share of its "
            "confidence (1: keep all; a note's length and a bar's chord are never limited)", True),
    Control("min_p", "--min-p", "Leave out below", 0.0, 0.99, 0.01,
            "Leave out ideas less likely than this share of the likeliest one (0: off; a note's length and a "
            "bar's chord are never limited)", True),
    Control("repetition_penalty", "--repetition-penalty", "Avoid recent pitches", 0.5, 3.0, 0.05,
            "Above 1 avoids the pitches just played (1: off)", True),
)  # fmt: skip
assert {c.name for c in CONTROLS} <= {f.name for f in fields(SamplingConfig)}


# What the app, the CLI and meloformer-eval start from: the model's own temperature
# without its unlikely tail (min-p 0.05: every idea under a twentieth of the likeliest one's
# chance is left out, but never a note's length or a bar's chord: `sampling.choose_tokens`),
# so note lengths, rhythms and chord changes keep the spread the model learnt and notes
# leave the key about as often as the real bars' do (min-p 0.1 cut more of the voicings
# and rhythms bands play: on the distribution measure band validation scored 0.9796 on
# average over seeds 0-3 against 0.9812 now; classical music did not move); a lower
# temperature narrows them all
# (temperature 0.7 and top-p 0.95 before: the classical split's continuations scored 0.969
# on the distribution measure against the copy's 0.975, this 0.976 and 0.978 with two
# seeds, and 0.977 and 0.975 since chords are drawn whole). No prompt guidance
# (with guidance 2 the band model replays prompt bars exactly in 26 % of the new bars of
# classical music, 2.3x as often as the real next bars do; 1.5 still 1.7x); and the most
# typical of as many takes as fit the time of about one take of a 4-voice chorale
# (resources/models/default/MODEL_CARD.md has the measurements).
RECOMMENDED = SamplingConfig(temperature=1.0, min_p=0.05, prompt_guidance=1.0, takes=0)


def first_take_seed(seed: int | None) -> int | None:
    """The seed of the first take for a seed a person chose (`--seed`, the app's Seed box).
    Take k of the service's seed s is drawn with s + k, so seeds next to each other shared
    all their takes but one, and the most typical was often the same: the chorale continued
    alike with seeds 2-5. Each chosen seed now owns `MAX_TAKES` take seeds of its own."""
    return None if seed is None else seed * MAX_TAKES


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


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Every `CONTROLS` setting as an option (``--guidance`` …), defaults from `RECOMMENDED`."""
    group = parser.add_argument_group("sampling")
    for control in CONTROLS:
        default = getattr(RECOMMENDED, control.name)
        group.add_argument(control.flag, dest=control.name, type=int if control.whole else float, default=default,
                           help=f"{control.help}; {control.range_text} (default {default:g})")  # fmt: skip


def sampling_from_options(args: argparse.Namespace, **others) -> SamplingConfig:
    """The `SamplingConfig` of options added by `add_sampling_options` (``others``: seed, takes)."""
    return SamplingConfig(**{control.name: getattr(args, control.name) for control in CONTROLS}, **others)
