"""Model bundles: a directory with safetensors weights, JSON config, vocabulary and model card.

    bundle/
      model.safetensors   weights (no pickle anywhere)
      config.json         format, version, model config, vocabulary hash, card
      vocab.json          the vocabulary with its hash
      MODEL_CARD.md       for people

Loading checks every part and says in one line what is wrong; a file that would need
unpickling (``.pt``, ``.bin``, ``.ckpt``) is refused, never opened. Nothing is allocated
before the JSON files are within bounds (`read_json_file`, `ModelConfig`'s limits), the
vocabulary's hash is ours, and the weights file's header lists exactly the tensors the
config implies (`check_weights_file`), so a hostile config cannot make us build a model
of terabytes.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from meloformer_core.atomic import FolderKind, json_marker, replace_directory
from meloformer_core.encoding.vocab import DEFAULT_VOCAB, Vocabulary
from meloformer_core.errors import MeloformerError
from meloformer_core.model.config import ConfigError, ModelConfig
from meloformer_core.model.transformer import (
    FUSED,
    TIED_HEAD,
    UNFUSED,
    UNFUSED_ROWS,
    MeloFormer,
    state_for_loading,
    state_for_saving,
    unfused_blocks,
)

FORMAT = "meloformer-bundle"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
VOCAB = "vocab.json"
CARD = "MODEL_CARD.md"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
MAX_JSON_BYTES = 4 << 20  # config.json and vocab.json are a few kB; the shipped vocab.json 40 kB
MAX_HEADER_BYTES = 16 << 20  # a safetensors header lists names, shapes and offsets: kB per layer
WEIGHT_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}

BUNDLE_KIND = FolderKind(
    "MeloFormer model bundle",
    frozenset({WEIGHTS, CONFIG, VOCAB, CARD}),
    json_marker(CONFIG, lambda data: isinstance(data, dict) and data.get("format") == FORMAT),
)


class BundleError(MeloformerError):
    """A model bundle is missing, incomplete, corrupt or made for another vocabulary."""


@dataclass
class Bundle:
    model: MeloFormer
    vocab: Vocabulary
    path: Path
    card: dict

    @property
    def name(self) -> str:
        return str(self.card.get("name") or self.path.name)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "size": self.model.config.name,
            "parameters": self.model.parameter_count(),
            "path": str(self.path),
            "vocab_hash": self.vocab.hash,
        }


def save_bundle(model: MeloFormer, vocab: Vocabulary, path: str | os.PathLike[str], card: dict | None = None) -> Path:
    """Write a bundle directory atomically (a temporary sibling swapped into place).

    ``path`` must be new, empty or a bundle (`BUNDLE_KIND`): anything else raises
    `OutputFolderError` before a byte is written.
    """
    from safetensors.torch import save_file

    target = Path(path)
    card = {"name": target.name, **(card or {})}
    with replace_directory(target, BUNDLE_KIND) as staging:
        save_file(state_for_saving(model), staging / WEIGHTS, metadata={"format": FORMAT})
        config = {
            "format": FORMAT,
            "version": VERSION,
            "model": model.config.to_dict(),
            "vocab_hash": vocab.hash,
            "card": card,
        }
        (staging / CONFIG).write_text(json.dumps(config, indent=1))
        (staging / VOCAB).write_text(vocab.to_json())
        (staging / CARD).write_text(_card_text(model, vocab, card))
    return target


def _card_text(model: MeloFormer, vocab: Vocabulary, card: dict) -> str:
    lines = [f"# {card['name']}", "", card.get("description", "A MeloFormer model bundle."), ""]
    lines += [f"- size: {model.config.name} ({model.parameter_count():,} parameters)", f"- vocabulary: {vocab.hash}"]
    lines += [f"- {key}: {value}" for key, value in card.items() if key not in ("name", "description")]
    return "\n".join(lines) + "\n"


def load_bundle(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", vocab: Vocabulary = DEFAULT_VOCAB
) -> Bundle:
    """Load and check a bundle; raise `BundleError` with one readable line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(path)
    if not root.exists():
        raise BundleError(f"{root}: no such model bundle")
    if root.is_file():
        if root.suffix in PICKLE_SUFFIXES:
            raise BundleError(
                f"{root}: a pickled checkpoint; MeloFormer loads only bundle directories with safetensors"
            )
        raise BundleError(f"{root}: not a model bundle (expected a directory with {WEIGHTS}, {CONFIG}, {VOCAB})")
    missing = [name for name in (WEIGHTS, CONFIG, VOCAB) if not (root / name).is_file()]
    if missing:
        pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f"; it holds pickled weights ({', '.join(pickles)}), which are never loaded" if pickles else ""
        raise BundleError(f"{root}: not a model bundle, missing {', '.join(missing)}{hint}")
    config = read_json_file(root / CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BundleError(f"{root / CONFIG}: not a MeloFormer bundle config")
    if config.get("version") != VERSION:
        raise BundleError(
            f"{root / CONFIG}: bundle format version {config.get('version')!r} is not supported (expected {VERSION})"
        )
    check_vocabulary_file(root / VOCAB, vocab)
    if config.get("vocab_hash") != vocab.hash:
        raise BundleError(
            f"{root / CONFIG}: made for vocabulary {config.get('vocab_hash')!r}, but this MeloFormer uses {vocab.hash}"
        )
    try:
        model_config = ModelConfig.from_dict(config["model"], source=str(root / CONFIG))
    except KeyError:
        raise BundleError(f"{root / CONFIG}: no model config") from None
    except ConfigError as error:
        raise BundleError(str(error)) from None
    if model_config.vocab_size != len(vocab):
        raise BundleError(f"{root / CONFIG}: vocab_size {model_config.vocab_size}, but the vocabulary has {len(vocab)}")
    check_weights_file(root / WEIGHTS, model_config)
    try:
        state = load_file(root / WEIGHTS)
    except (SafetensorError, OSError, ValueError) as error:
        raise BundleError(f"{root / WEIGHTS}: not a valid safetensors file ({error})") from None
    model = MeloFormer(model_config)
    try:
        model.load_state_dict(state_for_loading(model_config, state), strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise BundleError(f"{root / WEIGHTS}: weights do not match the config ({first})") from None
    model.to(device).eval()
    return Bundle(model=model, vocab=vocab, path=root, card=dict(config.get("card") or {}))


def read_json_file(path: Path, limit: int = MAX_JSON_BYTES) -> object:
    """A small JSON file, read only if it is small; `BundleError` naming the file otherwise."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise BundleError(f"{path}: {size:,} bytes, too large for this file (at most {limit:,})")
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as error:
        detail = getattr(error, "strerror", None) or str(error).splitlines()[0][:200]
        raise BundleError(f"{path}: unreadable JSON ({detail})") from None


def check_vocabulary_file(path: Path, vocab: Vocabulary) -> None:
    """``path`` holds exactly ``vocab``: its hash is checked on the file's own text, so a hostile
    vocabulary (tempo tables of 10⁹ entries …) is refused without building anything from it."""
    data = read_json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or "tokens" not in data:
        raise BundleError(f"{path}: not a MeloFormer vocabulary")
    found = Vocabulary.hash_of(data)
    if data.get("hash") != found:
        raise BundleError(f"{path}: corrupt vocabulary (its content does not match its hash {data.get('hash')!r})")
    if found != vocab.hash:
        raise BundleError(
            f"{path}: vocabulary {found}, but this MeloFormer uses {vocab.hash} (another version's model)"
        )


def expected_shapes(config: ModelConfig, unfused: bool = False) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor a weights file for ``config`` holds (built on the meta
    device: no memory is allocated, whatever the config says); ``unfused``: as files written
    before the fused projections name them (`transformer.UNFUSED`)."""
    with torch.device("meta"):
        model = MeloFormer(config)
    shapes = {
        name: tuple(tensor.shape)
        for name, tensor in model.state_dict().items()
        if not (config.tie_embeddings and name == TIED_HEAD)
    }
    if not unfused:
        return shapes
    width = config.d_model
    for name in [name for name in shapes if name.endswith(FUSED)]:
        del shapes[name]
        prefix = name[: -len(FUSED)]
        shapes.update({prefix + part: (rows * width, width) for part, rows in zip(UNFUSED, UNFUSED_ROWS, strict=True)})
    return shapes


def check_weights_file(path: Path, config: ModelConfig) -> None:
    """Read the safetensors header only and check it lists exactly the tensors ``config``
    implies, in a float type, and that the model fits in this machine's memory."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise BundleError(f"{path}: not a valid safetensors file (header length {length}, file {size:,} bytes)")
            header = json.loads(handle.read(length))
    except OSError as error:
        raise BundleError(f"{path}: cannot read ({error.strerror or error})") from None
    except (ValueError, RecursionError):
        raise BundleError(f"{path}: not a valid safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise BundleError(f"{path}: not a valid safetensors file (its header is not a table of tensors)")
    header.pop("__metadata__", None)
    wanted = expected_shapes(config, unfused=bool(unfused_blocks(header)))
    missing = sorted(set(wanted) - set(header))
    extra = sorted(set(header) - set(wanted))
    if missing or extra:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        count = len(missing or extra)
        raise BundleError(f"{path}: weights do not match the config ({detail}{', …' if count > 3 else ''})")
    for name, shape in wanted.items():
        entry = header[name]
        if not isinstance(entry, dict) or entry.get("dtype") not in WEIGHT_DTYPES:
            dtype = entry.get("dtype") if isinstance(entry, dict) else entry
            raise BundleError(f"{path}: tensor {name} has type {dtype!r}, not a float type")
        if entry.get("shape") != list(shape):
            raise BundleError(
                f"{path}: weights do not match the config ({name} has shape {entry.get('shape')}, "
                f"the config implies {list(shape)})"
            )
    needed = sum(_numel(shape) for shape in wanted.values()) * 4  # float32 once loaded
    available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > available:
        raise BundleError(f"{path}: a model of {needed / 2**30:.1f} GiB does not fit in this machine's "
                          f"{available / 2**30:.1f} GiB of memory")  # fmt: skip
    ends = [entry.get("data_offsets") for entry in header.values()]
    if not all(isinstance(end, list) and len(end) == 2 and all(type(x) is int for x in end) for end in ends):
        raise BundleError(f"{path}: not a valid safetensors file (a tensor without its data offsets)")
    extent = max((end[1] for end in ends), default=0)
    if extent != size - 8 - length:
        raise BundleError(f"{path}: truncated or padded (its header describes {extent:,} bytes of weights, "
                          f"the file holds {size - 8 - length:,})")  # fmt: skip


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for extent in shape:
        count *= extent
    return count
