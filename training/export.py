"""`meloformer-export`: turn a training checkpoint into a model bundle the app loads.

    meloformer-export CHECKPOINT --out BUNDLE [--name NAME] [--description TEXT]

CHECKPOINT is a ``checkpoints/step-*`` folder, or a training ``--out`` folder (its latest
checkpoint is taken). The bundle gets the weights (safetensors), the model config, the
vocabulary with its hash, and a model card with the training recipe and step.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from meloformer_core.atomic import check_output_folder
from meloformer_core.encoding.vocab import DEFAULT_VOCAB
from meloformer_core.errors import MeloformerError
from meloformer_core.model.bundle import BUNDLE_KIND, save_bundle
from meloformer_core.model.config import ModelConfig
from meloformer_core.model.transformer import MeloFormer, state_for_loading
from training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint


def export(checkpoint: Path, out: Path, name: str | None = None, description: str | None = None) -> Path:
    """Write ``checkpoint``'s model as a bundle at ``out``: a new or empty folder, or a bundle
    to replace (anything else is refused before the checkpoint is read)."""
    check_output_folder(out, BUNDLE_KIND)
    if not (checkpoint / "state.json").is_file():
        found = latest_checkpoint(checkpoint)
        if found is None:
            raise CheckpointError(f"{checkpoint}: neither a checkpoint nor a training folder with checkpoints")
        checkpoint = found
    model_state, _, extra = load_checkpoint(checkpoint)
    if extra.get("vocab_hash") != DEFAULT_VOCAB.hash:
        raise CheckpointError(f"{checkpoint}: made with vocabulary {extra.get('vocab_hash')}, not {DEFAULT_VOCAB.hash}")
    config = ModelConfig.from_dict(extra["model"], source=str(checkpoint / "state.json"))
    model = MeloFormer(config.replace(dropout=0.0, gradient_checkpointing=False))
    model.load_state_dict(state_for_loading(config, model_state))
    train = extra.get("train", {})
    card = {
        "name": name or out.name,
        "description": description or f"MeloFormer {config.name} model trained by meloformer-train.",
        "training step": extra["step"],
        "recipe": json.dumps(train, sort_keys=True),
        "checkpoint": "/".join(checkpoint.resolve().parts[-3:]),  # RUN/checkpoints/step-N: no machine's paths
    }
    return save_bundle(model, DEFAULT_VOCAB, out, card=card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meloformer-export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder to write")
    parser.add_argument("--name", default=None)
    parser.add_argument("--description", default=None)
    args = parser.parse_args(argv)
    try:
        path = export(args.checkpoint, args.out, args.name, args.description)
    except MeloformerError as error:
        print(f"meloformer-export: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"bundle": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
