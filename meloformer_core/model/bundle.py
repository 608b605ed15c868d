"""Model bundles: a directory with safetensors weights, JSON config, vocabulary and model card.

    bundle/
      model.safetensors   weights (no pickle anywhere)
      config.json         format, version, model config, vocabulary hash, card
      vocab.json          the vocabulary with its hash
      MODEL_CARD.md       for people

Loading checks every part and says in one line what is wrong; a file that would need
unpickling (``.pt``, ``.bin``, ``.ckpt``) is refused, never opened.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from meloformer_core.atomic import atomic_directory
from meloformer_core.encoding.vocab import DEFAULT_VOCAB, Vocabulary
from meloformer_core.errors import MeloformerError
from meloformer_core.model.config import ConfigError, ModelConfig
from meloformer_core.model.transformer import MeloFormer, state_for_loading, state_for_saving

FORMAT = "meloformer-bundle"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
VOCAB = "vocab.json"
CARD = "MODEL_CARD.md"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


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
    """Write a bundle directory atomically (a temporary sibling renamed into place)."""
    from safetensors.torch import save_file

    target = Path(path)
    card = {"name": target.name, **(card or {})}
    with atomic_directory(target) as staging:
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
    try:
        config = json.loads((root / CONFIG).read_text())
    except (OSError, ValueError) as error:
        raise BundleError(f"{root / CONFIG}: unreadable ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BundleError(f"{root / CONFIG}: not a MeloFormer bundle config")
    if config.get("version") != VERSION:
        raise BundleError(
            f"{root}: bundle format version {config.get('version')} is not supported (expected {VERSION})"
        )
    bundle_vocab = Vocabulary.from_json((root / VOCAB).read_text(), source=str(root / VOCAB))
    if bundle_vocab.hash != vocab.hash or config.get("vocab_hash") != vocab.hash:
        raise BundleError(
            f"{root}: trained with vocabulary {config.get('vocab_hash')}, but this MeloFormer uses {vocab.hash}"
        )
    try:
        model_config = ModelConfig.from_dict(config["model"], source=str(root / CONFIG))
    except (KeyError, ConfigError) as error:
        raise BundleError(f"{root / CONFIG}: invalid model config ({error})") from None
    if model_config.vocab_size != len(vocab):
        raise BundleError(f"{root}: model vocabulary size {model_config.vocab_size} != {len(vocab)}")
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
