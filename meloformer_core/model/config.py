"""Model configuration: a validated dataclass, saved in every bundle and checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from meloformer_core.errors import MeloformerError


class ConfigError(MeloformerError):
    """A configuration value is out of range or unknown."""


# Documented bounds of every size field: generous for any model a server trains (xlarge is
# 1,536 × 32 layers), small enough that a config alone never asks for absurd memory.
LIMITS: dict[str, tuple[float, float]] = {
    "vocab_size": (1, 1 << 20),
    "d_model": (2, 16384),
    "n_layers": (1, 256),
    "n_heads": (1, 256),
    "mlp_ratio": (0.25, 16.0),
    "max_seq_len": (1, 1 << 18),
    "rope_base": (2.0, 1e9),
    "dropout": (0.0, 1.0),
}
FLOAT_FIELDS = frozenset({"mlp_ratio", "rope_base", "dropout"})


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
        self._check_bounds()
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(f"d_model {self.d_model} must split into {self.n_heads} heads of even size")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be in [0, 1)")
        object.__setattr__(self, "related_bar_offsets", tuple(sorted(set(self.related_bar_offsets))))

    def _check_bounds(self) -> None:
        """Types and documented bounds (`LIMITS`), checked before anything is built from a
        config: a bundle's JSON must not be able to ask for a model of terabytes."""
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            whole = isinstance(value, int) and not isinstance(value, bool)
            number = whole or isinstance(value, float)
            if not (whole if name not in FLOAT_FIELDS else number) or not low <= value <= high:
                kind = "a number" if name in FLOAT_FIELDS else "a whole number"
                raise ConfigError(f"{name} must be {kind} from {low:g} to {high:g}, not {value!r}")
        offsets = self.related_bar_offsets
        if not isinstance(offsets, tuple | list) or len(offsets) > 64:
            raise ConfigError("related_bar_offsets must be a list of at most 64 bar distances")
        if any(type(offset) is not int or not 0 < offset <= 1 << 14 for offset in offsets):
            raise ConfigError("related_bar_offsets must be positive bar distances up to 16384")
        for name in ("tie_embeddings", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false")
        if not isinstance(self.name, str) or len(self.name) > 100:
            raise ConfigError("name must be a short text")

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
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the model config is not a table of values")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{source}: unknown model config keys {sorted(unknown)}")
        values = dict(data)
        if isinstance(values.get("related_bar_offsets"), list):
            values["related_bar_offsets"] = tuple(values["related_bar_offsets"])
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
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
