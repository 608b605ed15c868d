"""Model configuration: a validated dataclass, saved in every bundle and checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from meloformer_core.errors import MeloformerError


class ConfigError(MeloformerError):
    """A configuration value is out of range or unknown."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 8 / 3  # SwiGLU hidden size = mlp_ratio * d_model (rounded to 64)
    max_seq_len: int = 2048  # regular tokens in one window (summaries come on top)
    related_bar_offsets: tuple[int, ...] = (1, 2, 4, 8)  # earlier bars a token sees in detail
    rope_base: float = 10_000.0
    dropout: float = 0.0
    tie_embeddings: bool = True
    gradient_checkpointing: bool = False
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.vocab_size <= 0:
            raise ConfigError("vocab_size must be positive")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(f"d_model {self.d_model} must split into {self.n_heads} heads of even size")
        if self.n_layers <= 0 or self.max_seq_len <= 0:
            raise ConfigError("n_layers and max_seq_len must be positive")
        if any(offset <= 0 for offset in self.related_bar_offsets):
            raise ConfigError("related_bar_offsets must be positive bar distances")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be in [0, 1)")
        object.__setattr__(self, "related_bar_offsets", tuple(sorted(set(self.related_bar_offsets))))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        return round(self.mlp_ratio * self.d_model / 64) * 64

    def to_dict(self) -> dict:
        data = asdict(self)
        data["related_bar_offsets"] = list(self.related_bar_offsets)
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{source}: unknown model config keys {sorted(unknown)}")
        values = dict(data)
        if "related_bar_offsets" in values:
            values["related_bar_offsets"] = tuple(values["related_bar_offsets"])
        try:
            return cls(**values)
        except TypeError as error:
            raise ConfigError(f"{source}: {error}") from None

    def replace(self, **changes: object) -> ModelConfig:
        return replace(self, **changes)


# Named sizes. "default" is the CPU-friendly size of the shipped model.
SIZES: dict[str, dict] = {
    "debug": {"d_model": 64, "n_layers": 2, "n_heads": 2, "max_seq_len": 512},
    "default": {"d_model": 256, "n_layers": 4, "n_heads": 4, "max_seq_len": 2048},
    "small": {"d_model": 512, "n_layers": 4, "n_heads": 8, "max_seq_len": 8192},
    "base": {"d_model": 768, "n_layers": 12, "n_heads": 12, "max_seq_len": 8192},
    "large": {"d_model": 1024, "n_layers": 24, "n_heads": 16, "max_seq_len": 8192},
    "xlarge": {"d_model": 1536, "n_layers": 32, "n_heads": 24, "max_seq_len": 8192},
}


def named_config(size: str, vocab_size: int, **overrides: object) -> ModelConfig:
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    return ModelConfig(vocab_size=vocab_size, name=size, **{**SIZES[size], **overrides})
