"""Training checkpoints: model, optimizer, schedule, step, data position and RNG — no pickle.

    OUT/checkpoints/step-000120/
      model.safetensors       full (unsharded) model weights
      optimizer.safetensors   optimizer state tensors, one entry per (parameter, field)
      rng.safetensors         torch CPU (and CUDA) generator states
      state.json              step, loader state, configs, vocabulary hash, optimizer hyper-parameters

A checkpoint is written to a temporary sibling directory and renamed into place, so a
run killed while writing leaves the previous checkpoints intact; the last K are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from meloformer_core.atomic import FolderKind, json_marker, replace_directory
from meloformer_core.errors import MeloformerError

STATE = "state.json"
MODEL = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"


class CheckpointError(MeloformerError):
    """A checkpoint is missing, incomplete or made for another model."""


CHECKPOINT_KIND = FolderKind(
    "training checkpoint",
    frozenset({STATE, MODEL, OPTIMIZER, RNG}),
    json_marker(STATE, lambda data: isinstance(data, dict) and "step" in data),
)


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:07d}"


def latest_checkpoint(out: Path) -> Path | None:
    root = out / "checkpoints"
    if not root.is_dir():
        return None
    complete = sorted(p for p in root.glob("step-*") if (p / STATE).is_file() and not p.name.startswith("."))
    return complete[-1] if complete else None


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimizer state_dict → (tensors for safetensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for key, fields in state["state"].items():
        for name, value in fields.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{key}/{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(key), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict = {}
    for flat, value in tensors.items():
        key, name = flat.rsplit("/", 1)
        state.setdefault(int(key) if key.isdigit() else key, {})[name] = value
    for key, fields in rest.get("scalars", {}).items():
        state.setdefault(int(key) if key.isdigit() else key, {}).update(fields)
    return {"state": state, "param_groups": rest["param_groups"]}


def fuse_optimizer_state(state: dict, names: list[str]) -> dict:
    """An optimizer state saved before the blocks fused their projections (`transformer.UNFUSED`),
    for the parameters ``names`` (the current model's, in the optimizer's order): each fused
    matrix gets its four parts' moments, stacked as the matrix stacks them. Keys are
    parameter indices, or names (FSDP)."""
    from meloformer_core.model.transformer import FUSED, UNFUSED, fuse_projections

    old_names: list[str] = []  # the order the unfused model listed its parameters in
    for name in names:
        if name.endswith(FUSED):
            old_names += [name[: -len(FUSED)] + part for part in UNFUSED[:2]]
        else:
            old_names.append(name)
            if name.endswith("summarise.out_proj.weight"):
                prefix = name[: -len("summarise.out_proj.weight")]
                old_names += [prefix + part for part in UNFUSED[2:]]
    by_index = all(isinstance(key, int) for group in state["param_groups"] for key in group["params"])
    name_of = (lambda key: old_names[key]) if by_index else (lambda key: key)
    fields = {name_of(key): value for key, value in state["state"].items()}

    def stack(parts: list[dict]) -> dict:
        return {k: torch.cat([part[k] for part in parts]) if isinstance(v, torch.Tensor) and v.dim() else v
                for k, v in parts[0].items()}  # fmt: skip

    fields = fuse_projections(fields, fuse=stack)
    key_of = names.index if by_index else (lambda name: name)
    groups = []
    for group in state["param_groups"]:
        current = [name for name in (name_of(key) for key in group["params"]) if not name.endswith(UNFUSED[1:])]
        current = [name[: -len(UNFUSED[0])] + FUSED if name.endswith(UNFUSED[0]) else name for name in current]
        groups.append({**group, "params": [key_of(name) for name in current]})
    return {"state": {key_of(name): value for name, value in fields.items()}, "param_groups": groups}


def save_checkpoint(out: Path, step: int, model_state: dict, optimizer_state: dict, extra: dict, keep: int) -> Path:
    from safetensors.torch import save_file

    target = checkpoint_dir(out, step)
    with replace_directory(target, CHECKPOINT_KIND) as staging:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}, staging / MODEL)
        tensors, rest = flatten_optimizer(optimizer_state)
        save_file(tensors, staging / OPTIMIZER)
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        save_file(rng, staging / RNG)
        (staging / STATE).write_text(json.dumps({**extra, "step": step, "optimizer": rest}, indent=1))
    for old in sorted(p for p in target.parent.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """(model state, optimizer state, extra incl. step) — raises `CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from meloformer_core.model.bundle import BundleError, check_weights_file, read_json_file
    from meloformer_core.model.config import ConfigError, ModelConfig

    if not (path / STATE).is_file():
        raise CheckpointError(f"{path}: not a training checkpoint (no {STATE})")
    try:  # bounds first: the state's model config and the weights' header, before any allocation
        extra = read_json_file(path / STATE, limit=64 << 20)  # the loader state grows with the corpus
        if not isinstance(extra, dict) or not isinstance(extra.get("step"), int):
            raise CheckpointError(f"{path / STATE}: not a training checkpoint's state")
        check_weights_file(path / MODEL, ModelConfig.from_dict(extra.get("model"), source=str(path / STATE)))
    except (BundleError, ConfigError) as error:
        raise CheckpointError(str(error)) from None
    try:
        model_state = load_file(path / MODEL)
        optimizer_state = unflatten_optimizer(load_file(path / OPTIMIZER), extra.pop("optimizer"))
        rng = load_file(path / RNG)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error})") from None
    extra["rng"] = rng
    return model_state, optimizer_state, extra
