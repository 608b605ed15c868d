"""Training configuration: a validated dataclass and the named recipes."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields

from meloformer_core.errors import MeloformerError
from meloformer_core.model.config import SIZES


class RecipeError(MeloformerError):
    """An unknown recipe or a bad ``--set`` value."""


@dataclass(frozen=True)
class TrainConfig:
    size: str = "debug"
    max_seq_len: int = 512  # tokens per packed row (the model's context)
    rows_per_batch: int = 2  # rows per micro-batch on each rank
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 50
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr × this
    warmup_steps: int = 10
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    dropout: float = 0.0
    seed: int = 0
    eval_every: int = 25
    eval_batches: int = 4
    checkpoint_every: int = 25
    keep_checkpoints: int = 2
    log_every: int = 1
    max_transpose: int = 5
    # every window played at a random dynamic level (the same notes, louder or softer), each
    # track up to velocity_track_spread bins from it: the model learns to keep a prompt's
    # dynamics (see training.data.Augmentation). With three tracks in four it kept leaning on
    # the corpus's usual velocity and learned far slower.
    velocity_relevel: float = 1.0
    velocity_track_spread: int = 2
    tempo_jitter: float = 0.0
    # Arranging: half the windows have the tracks of every bar in a random order (the rest
    # keep the canonical order, plain continuation), so any track can be written under others.
    track_shuffle_rate: float = 0.5
    # Infilling: a quarter of the windows become fill-in-the-middle examples (bars moved
    # after the bars that follow them); the rest train plain continuation.
    fim_rate: float = 0.25
    # Form: a quarter of the windows play a phrase twice in a row, so the model learns to
    # recall and restate material (it barely did from the corpus alone). The default
    # model's last run used 1.0 on a model that had learned the rest (see its card).
    repeat_rate: float = 0.25
    # Arranging as the app asks for it: a share of the windows have one track (drums, bass
    # or another, each family as likely) last in every bar (training.data.target_last);
    # track shuffling then applies to the rest.
    arrange_rate: float = 0.0
    # Arranging under a bare melody: a share of the windows keep only the lead and some of
    # the other tracks, the lead first (training.data.lead_and_some).
    thin_rate: float = 0.0
    # Bars of as many tracks as real songs have: a share of the other windows play up to
    # three chordal tracks on two tracks each, split by register (training.data.split_by_register;
    # tried in run 15, not in the default recipe).
    split_rate: float = 0.0
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard parameters, gradients and optimizer state (large sizes)
    compile: bool = False  # torch.compile the model (GPU)
    bf16: bool = True  # autocast to bfloat16 where the device has native bf16 (see `transformer.bf16_native`)
    attention: str = "auto"  # auto: FlexAttention on GPUs, the dense reference on CPUs
    wandb: bool = False
    wandb_project: str = "meloformer"

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise RecipeError(f"unknown model size {self.size!r}; choose one of {', '.join(SIZES)}")
        positive = ("max_seq_len", "rows_per_batch", "grad_accum", "max_steps", "eval_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise RecipeError(f"{name} must be positive, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise RecipeError("keep_checkpoints must be at least 1")
        if self.attention not in ("auto", "flex", "dense"):
            raise RecipeError("attention must be auto, flex or dense")
        if not 0 < self.lr < 1:
            raise RecipeError(f"lr must be in (0, 1), got {self.lr}")
        rates = ("velocity_relevel", "track_shuffle_rate", "fim_rate", "repeat_rate", "arrange_rate", "thin_rate")
        for name in (*rates, "split_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise RecipeError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.velocity_track_spread < 0:
            raise RecipeError(f"velocity_track_spread must be 0 or more, got {self.velocity_track_spread}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, assignments: list[str]) -> TrainConfig:
        """Apply ``key=value`` strings, converting each value to the field's type."""
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, object] = {}
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in types:
                known = ", ".join(sorted(types))
                raise RecipeError(f"--set {assignment!r}: expected key=value with a key among: {known}")
            kind = types[key]
            try:
                if kind in ("bool", bool):
                    if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(raw)
                    changes[key] = raw.lower() in ("true", "1", "yes")
                elif kind in ("int", int):
                    changes[key] = int(raw)
                elif kind in ("float", float):
                    changes[key] = float(raw)
                else:
                    changes[key] = raw
            except ValueError:
                raise RecipeError(f"--set {assignment!r}: {raw!r} is not a valid {kind}") from None
        return dataclasses.replace(self, **changes)


RECIPES: dict[str, TrainConfig] = {
    "debug": TrainConfig(),
    # 3,072 tokens: the prompt (three quarters of it) holds 8 bars of a 7-track band; three
    # windows in ten thinned to a lead and some tracks (arranging under a bare melody).
    # split_rate stays 0: run 15 (docs/model-history.md) trained with 0.5 and still silenced
    # the tracks after the seventh of real songs
    "default": TrainConfig(
        size="default", max_seq_len=3072, rows_per_batch=2, max_steps=20_000, lr=1e-3, warmup_steps=300,
        eval_every=500, eval_batches=20, checkpoint_every=500, log_every=10, dropout=0.1,
        track_shuffle_rate=0.25, arrange_rate=0.25, repeat_rate=0.1, thin_rate=0.3,
    ),
    "small": TrainConfig(
        size="small", max_seq_len=8192, rows_per_batch=6, max_steps=100_000, lr=6e-4, warmup_steps=2000,
        eval_every=1000, eval_batches=50, checkpoint_every=1000, log_every=20, dropout=0.1,
    ),
    "base": TrainConfig(
        size="base", max_seq_len=8192, rows_per_batch=4, max_steps=200_000, lr=3e-4, warmup_steps=2000,
        eval_every=2000, eval_batches=50, checkpoint_every=2000, log_every=50, dropout=0.1,
        gradient_checkpointing=True,
    ),
    "large": TrainConfig(
        size="large", max_seq_len=8192, rows_per_batch=2, grad_accum=2, max_steps=200_000, lr=2e-4,
        warmup_steps=4000, eval_every=2000, eval_batches=50, checkpoint_every=2000, log_every=50, dropout=0.1,
        gradient_checkpointing=True, fsdp=True,
    ),
    "xlarge": TrainConfig(
        size="xlarge", max_seq_len=8192, rows_per_batch=1, grad_accum=4, max_steps=300_000, lr=1.5e-4,
        warmup_steps=4000, eval_every=2000, eval_batches=50, checkpoint_every=2000, log_every=50, dropout=0.1,
        gradient_checkpointing=True, fsdp=True,
    ),
}  # fmt: skip


def recipe(name: str, overrides: list[str] | None = None) -> TrainConfig:
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name].with_overrides(overrides or [])
