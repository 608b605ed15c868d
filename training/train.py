"""`meloformer-train`: train a model on a preprocessed dataset or a folder of MIDI files, alone or under torchrun.

    meloformer-train --data DIR --out DIR --recipe {debug,default,small,…} [--set key=value …] [--resume | --init MODEL]
    torchrun --nproc_per_node 8 -m training.train --data DIR --out DIR --recipe small

``--data`` is a folder written by `meloformer-preprocess`, or MIDI files (a folder, or a
text file listing them): those are preprocessed first into ``OUT/data-cache`` (or
``--data-cache``), which later runs reuse while the files and the options are unchanged
(`training/midi_cache.py`); under torchrun rank 0 preprocesses while the others wait.
Windows longer than the recipe's context are cut at bar lines (`training/cut_windows.py`).

One process trains on one device; under ``torchrun`` every rank takes its share of the
batches (DDP, or FSDP2 ``fully_shard`` when the recipe says ``fsdp``). bf16 autocast where
the device has native bf16 (Ampere or later GPUs, CPUs with AVX-512 BF16 or AMX), float32
elsewhere. Attention: FlexAttention on GPUs, the dense reference path on CPUs
(FlexAttention has no CPU backward). The model itself knows nothing of distribution: it is
wrapped here.

Outputs in OUT: ``checkpoints/step-*/`` (atomic, last K kept), ``metrics.jsonl`` (one line
per logged step and per validation), ``tensorboard/`` (scalars: loss, learning rate,
gradient norm, tokens/s, memory) and ``config.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from meloformer_core.atomic import FolderKind, check_output_folder, json_marker, write_bytes_atomically
from meloformer_core.encoding.vocab import DEFAULT_VOCAB
from meloformer_core.errors import MeloformerError
from meloformer_core.model.config import named_config
from meloformer_core.model.loss import document_loss
from meloformer_core.model.masks import build_layout
from meloformer_core.model.transformer import (
    MeloFormer,
    bf16_native,
    state_for_loading,
    state_for_saving,
    unfused_blocks,
)
from training.checkpoint import fuse_optimizer_state, latest_checkpoint, load_checkpoint, save_checkpoint
from training.cut_windows import ContextView
from training.data import Augmentation, LoaderState, MixedDataset, PackedLoader, TokenDataset
from training.midi_cache import CACHE_NAME, is_cache, is_midi_source, prepare_cache
from training.preprocess import Options
from training.recipes import RECIPES, TrainConfig, recipe

# Fault injection for the tests, never set in normal use: kill this process (SIGKILL, no
# clean-up) after this step; make the loss of this step NaN.
KILL_AFTER_STEP_ENV = "MELOFORMER_TEST_KILL_AFTER_STEP"
NAN_AT_STEP_ENV = "MELOFORMER_TEST_NAN_AT_STEP"


class TrainingError(MeloformerError):
    """Training cannot go on (bad data, NaN loss, out of memory, …)."""


def batch_layout(rows, max_seq_len: int, static: bool):
    """A training batch's layout: rows padded to the context. ``static`` (FlexAttention, or a
    compiled model) gives every batch the same shape: the summary stream is padded to half
    the context, the most segments a row can hold (every segment has at least two tokens).
    With a varying summary count each batch recompiled the kernels, and after 8 recompiles
    PyTorch fell back to eager attention: 25k instead of 330k tokens/s for `default` on an
    H100."""
    return build_layout(rows, DEFAULT_VOCAB, pad_to=max_seq_len, summaries_to=max_seq_len // 2 if static else None)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr × min_lr_ratio`` at ``max_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# Model settings that may differ between the weights a run starts from and the run itself.
_TRAINING_ONLY = ("dropout", "gradient_checkpointing", "max_seq_len", "name")


def initial_weights(path: Path, config) -> dict[str, torch.Tensor]:
    """The weights of a bundle, a checkpoint or a run's latest checkpoint, checked against ``config``."""
    from meloformer_core.model.bundle import CONFIG, WEIGHTS, load_bundle

    if (path / WEIGHTS).is_file() and (path / CONFIG).is_file() and not (path / "state.json").is_file():
        bundle = load_bundle(path)
        source, found = bundle.model.config.to_dict(), bundle.model.state_dict()
    else:
        checkpoint = path if (path / "state.json").is_file() else latest_checkpoint(path)
        if checkpoint is None:
            raise TrainingError(f"{path}: --init needs a model bundle, a checkpoint or a training folder")
        state, _, extra = load_checkpoint(checkpoint)
        if extra.get("vocab_hash") != DEFAULT_VOCAB.hash:
            made_with = extra.get("vocab_hash")
            raise TrainingError(f"{checkpoint}: made with vocabulary {made_with}, not {DEFAULT_VOCAB.hash}")
        source, found = extra["model"], state
    wanted = config.to_dict()
    differ = sorted(k for k in wanted if k not in _TRAINING_ONLY and source.get(k) != wanted[k])
    if differ:
        detail = ", ".join(f"{k} {source.get(k)} vs {wanted[k]}" for k in differ)
        raise TrainingError(f"{path}: a different model ({detail}); choose the recipe or --set size that matches")
    return state_for_loading(config, found)


_RUN_CONFIG = json_marker("config.json", lambda data: isinstance(data, dict) and {"train", "model"} <= set(data))


def _is_run(folder: Path) -> bool:
    """A run's folder: its config.json, or (a run stopped while it preprocessed) only its data cache."""
    if _RUN_CONFIG(folder):
        return True
    visible = {entry.name for entry in folder.iterdir() if not entry.name.startswith(".")}
    return visible == {CACHE_NAME} and is_cache(folder / CACHE_NAME)


# A training run's folder (--out): what `Trainer.run` writes, recognised by its config.json.
RUN_KIND = FolderKind(
    "MeloFormer training run",
    frozenset({"config.json", "metrics.jsonl", "checkpoints", "tensorboard", "wandb", CACHE_NAME}),
    _is_run,
)


class Trainer:
    def __init__(
        self,
        data: Path | list[Path],
        out: Path,
        config: TrainConfig,
        resume: bool,
        init: Path | None = None,
        *,
        data_cache: Path | None = None,
        workers: int | None = None,
        mix: list[float] | None = None,
    ) -> None:
        # Long on purpose (95 lines): one setup read top to bottom (process group, data, model,
        # optimizer, resume); each step needs the ones before it.
        check_output_folder(out, RUN_KIND)  # new, empty or a run of ours: never a folder of the user's
        self.config = config
        self.out = out
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.world_size > 1:
            import torch.distributed as dist

            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, device_id=self.device if self.device.type == "cuda" else None)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.backend = (
            config.attention if config.attention != "auto" else ("flex" if self.device.type == "cuda" else "dense")
        )
        self.autocast = config.bf16 and bf16_native(self.device)

        torch.manual_seed(config.seed)
        sources = [data] if isinstance(data, Path) else list(data)
        if mix is not None and len(mix) != len(sources):
            raise TrainingError(f"--mix gives {len(mix)} rates for {len(sources)} --data sources")
        cache = data_cache or out / CACHE_NAME
        names = [source.name or str(source) for source in sources]
        names = [name if names.count(name) == 1 else f"{k + 1}-{name}" for k, name in enumerate(names)]
        folders = [
            self._dataset_folder(source, cache if len(sources) == 1 else cache / f"{k + 1}-{source.name}",
                                 workers or os.cpu_count() or 1)
            for k, source in enumerate(sources)
        ]  # fmt: skip
        # windows longer than the context are cut at bar lines, once, here (not per validation)
        train_parts = [ContextView(TokenDataset(folder, "train"), config.max_seq_len) for folder in folders]
        self.valid_parts: list[tuple[str, ContextView]] = []
        for name, folder in zip(names, folders, strict=True):
            with contextlib.suppress(MeloformerError):  # a corpus too small for a validation split has none
                self.valid_parts.append((name, ContextView(TokenDataset(folder, "valid"), config.max_seq_len)))
        views = [(f"{name} training", view) for name, view in zip(names, train_parts, strict=True)]
        views += [(f"{name} validation", view) for name, view in self.valid_parts]
        cut = [f"{split}: {view.summary()}" for split, view in views if view.summary()]
        if cut:
            self._say("; ".join(cut))
        if len(sources) == 1 and mix is None:
            self.train_data: ContextView | MixedDataset = train_parts[0]
        else:
            try:
                self.train_data = MixedDataset(train_parts, mix or [1.0] * len(sources), names)
            except MeloformerError as error:
                raise TrainingError(f"--mix: {error}") from None
            self._say(f"mix: {self.train_data.summary()}")
        model_config = named_config(
            config.size, len(DEFAULT_VOCAB), max_seq_len=config.max_seq_len, dropout=config.dropout,
            gradient_checkpointing=config.gradient_checkpointing,
        )  # fmt: skip
        self.raw_model = MeloFormer(model_config)
        if init is not None and not resume:
            self.raw_model.load_state_dict(initial_weights(init, model_config))
        self.raw_model.to(self.device)
        self.model = self._wrap(self.raw_model)
        parameters = dict(self.raw_model.named_parameters())
        decay, no_decay = ([parameters[name] for name in group] for group in self._parameter_groups())
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(0.9, config.beta2), fused=self.device.type == "cuda",
        )  # fmt: skip
        augmentation = Augmentation(
            config.max_transpose, config.tempo_jitter, config.track_shuffle_rate, config.fim_rate,
            velocity_relevel=config.velocity_relevel, velocity_track_spread=config.velocity_track_spread,
            repeat_rate=config.repeat_rate, arrange_rate=config.arrange_rate, thin_rate=config.thin_rate,
            split_rate=config.split_rate,
        )  # fmt: skip
        self.loader = PackedLoader(
            self.train_data, max_seq_len=config.max_seq_len, rows_per_batch=config.rows_per_batch,
            seed=config.seed, rank=self.rank, world_size=self.world_size, augmentation=augmentation,
        )  # fmt: skip
        self.step = 0
        self.last_checkpoint: Path | None = None
        if resume:
            self._resume()
        elif latest_checkpoint(out) is not None:
            raise TrainingError(f"{out}: already holds checkpoints; pass --resume to continue, or choose another --out")
        self.writer = self._tensorboard() if self.rank == 0 else None
        self.wandb = self._wandb() if self.rank == 0 and config.wandb else None

    # --- setup --------------------------------------------------------------------------------
    def _dataset_folder(self, data: Path, cache: Path, workers: int) -> Path:
        """``data`` itself for a preprocessed dataset; for MIDI files, their cache, made or reused
        by rank 0 while the other ranks wait (on a group of its own with a long time-out:
        preprocessing a corpus takes far longer than a collective is allowed to)."""
        if not is_midi_source(data):
            return data
        options = Options(max_seq_len=self.config.max_seq_len)
        failure: MeloformerError | None = None
        if self.rank == 0:
            try:
                prepare_cache(data, cache, options, workers=workers, progress=True, say=self._say)
            except MeloformerError as error:
                failure = error
        if self.world_size > 1:
            import datetime

            import torch.distributed as dist

            group = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=7))
            message = [str(failure) if failure is not None else None]
            dist.broadcast_object_list(message, src=0, group=group)
            dist.destroy_process_group(group)
            if message[0] is not None and failure is None:
                failure = TrainingError(message[0])
        if failure is not None:
            raise failure
        return cache

    def _wrap(self, model: MeloFormer) -> torch.nn.Module:
        config = self.config
        if self.world_size > 1 and config.fsdp:
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            policy = (
                MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if self.autocast else None
            )
            kwargs = {"mp_policy": policy} if policy else {}
            for block in model.blocks:
                fully_shard(block, **kwargs)
            fully_shard(model, **kwargs)
            wrapped: torch.nn.Module = model
        elif self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(
                model, device_ids=[self.local_rank] if self.device.type == "cuda" else None
            )
        else:
            wrapped = model
        if config.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("meloformer-train: tensorboard is not installed; scalars go to metrics.jsonl only", file=sys.stderr)
            return None
        return SummaryWriter(log_dir=str(self.out / "tensorboard"))

    def _wandb(self):
        try:
            import wandb
        except ImportError:
            raise TrainingError(
                "wandb was asked for (--set wandb=true) but is not installed: pip install wandb"
            ) from None
        return wandb.init(project=self.config.wandb_project, config=self.config.to_dict(), dir=str(self.out))

    def _state_dicts(self) -> tuple[dict, dict]:
        if self.config.fsdp and self.world_size > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_state_dict(self.model, self.optimizer, options=options)
        return self.raw_model.state_dict(), self.optimizer.state_dict()

    def _parameter_groups(self) -> tuple[list[str], list[str]]:
        """The parameters' names in the optimizer's two groups: the matrices (weight decay), the rest."""
        named = list(self.raw_model.named_parameters())
        return [n for n, p in named if p.dim() >= 2], [n for n, p in named if p.dim() < 2]

    def _resume(self) -> None:
        path = latest_checkpoint(self.out)
        if path is None:
            raise TrainingError(f"{self.out}: nothing to resume (no complete checkpoint)")
        model_state, optimizer_state, extra = load_checkpoint(path)
        if unfused_blocks(model_state):  # written before the blocks fused their projections
            decay, rest = self._parameter_groups()
            optimizer_state = fuse_optimizer_state(optimizer_state, decay + rest)
        model_state = state_for_loading(self.raw_model.config, model_state)
        if extra.get("vocab_hash") != DEFAULT_VOCAB.hash:
            raise TrainingError(f"{path}: made with vocabulary {extra.get('vocab_hash')}, not {DEFAULT_VOCAB.hash}")
        if extra.get("model") != self.raw_model.config.to_dict():
            raise TrainingError(f"{path}: made for another model configuration; resume with the same recipe and --set")
        if self.config.fsdp and self.world_size > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
            set_state_dict(self.model, self.optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                           options=options)  # fmt: skip
        else:
            self.raw_model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
        self.step = extra["step"]
        self.loader.state = LoaderState(**extra["loader"][str(self.rank)])
        torch.set_rng_state(extra["rng"]["cpu"])
        if "cuda" in extra["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(extra["rng"]["cuda"])
        self.last_checkpoint = path
        self._say(f"resumed from {path} at step {self.step}")

    # --- the loop -----------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.rank == 0:
            print(f"meloformer-train: {text}", file=sys.stderr, flush=True)

    def _log(self, record: dict) -> None:
        if self.rank != 0:
            return
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "kind") and isinstance(value, int | float):
                    self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])
        if self.wandb is not None:
            self.wandb.log({f"{record['kind']}/{k}": v for k, v in record.items() if k != "kind"}, step=record["step"])

    def layout(self, rows):
        static = self.backend == "flex" or self.config.compile
        return batch_layout(rows, self.config.max_seq_len, static)

    def _forward_loss(self, rows) -> tuple[torch.Tensor, int, int]:
        layout = self.layout(rows).to(self.device)
        context = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else nullcontext()
        with context:
            logits = self.model(layout, self.backend)
        loss, count = document_loss(logits, layout)
        return loss, count, int((~layout.is_pad).sum())

    def run(self) -> None:
        # Long on purpose (75 lines): the training loop (step, log, evaluate, checkpoint, stop) in
        # the order each step does them.
        config = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_bytes_atomically(
                self.out / "config.json",
                json.dumps({"train": config.to_dict(), "model": self.raw_model.config.to_dict()}, indent=1).encode(),
            )
        parameters = self.raw_model.parameter_count()
        self._say(f"{config.size}: {parameters:,} parameters on {self.device} × {self.world_size}, "
                  f"attention {self.backend}, {'bf16 autocast' if self.autocast else 'float32'}, "
                  f"{len(self.train_data)} training windows "
                  f"({self.train_data.token_count:,} tokens)")  # fmt: skip
        kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "0"))
        nan_at = int(os.environ.get(NAN_AT_STEP_ENV, "0"))
        self.model.train()
        while self.step < config.max_steps:
            started = time.perf_counter()
            lr = learning_rate(self.step, config)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            tokens = 0
            total = torch.zeros((), device=self.device)
            try:
                for micro in range(config.grad_accum):
                    sync = nullcontext()
                    if self.world_size > 1 and not config.fsdp and micro < config.grad_accum - 1:
                        sync = self.model.no_sync()
                    with sync:
                        loss, _, seen = self._forward_loss(self.loader.next_batch())
                        (loss / config.grad_accum).backward()
                    total += loss.detach() / config.grad_accum
                    tokens += seen
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            except torch.cuda.OutOfMemoryError:
                raise TrainingError(
                    f"out of GPU memory at step {self.step} with {config.rows_per_batch} rows of {config.max_seq_len} "
                    f"tokens: lower --set rows_per_batch (and raise grad_accum to keep the batch), or "
                    f"--set gradient_checkpointing=true"
                ) from None
            if nan_at and self.step + 1 == nan_at:
                total = total * float("nan")
            loss_value = self._reduce(total)
            if not math.isfinite(loss_value):
                where = self.last_checkpoint or "none yet"
                raise TrainingError(f"loss became {loss_value} at step {self.step}; last good checkpoint: {where}")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            elapsed = time.perf_counter() - started
            if self.step % config.log_every == 0 or self.step == config.max_steps:
                throughput = round(tokens * self.world_size / elapsed, 1)
                record = {"kind": "train", "step": self.step, "loss": round(loss_value, 6), "lr": lr,
                          "grad_norm": round(float(norm), 6), "tokens_per_s": throughput,
                          "epoch": self.loader.state.epoch}  # fmt: skip
                if self.device.type == "cuda":
                    record["memory_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
                self._log(record)
                self._say(f"step {self.step}/{config.max_steps} loss {loss_value:.4f} lr {lr:.2e} "
                          f"{record['tokens_per_s']:.0f} tok/s")  # fmt: skip
            if self.valid_parts and (self.step % config.eval_every == 0 or self.step == config.max_steps):
                losses = {name: round(loss, 6) for name, loss in self.validate().items()}
                record = {"kind": "valid", "step": self.step, "loss": round(sum(losses.values()) / len(losses), 6)}
                if isinstance(self.train_data, MixedDataset):  # each source's own loss; "loss" is their mean
                    record.update({f"loss_{name}": loss for name, loss in losses.items()})
                self._log(record)
            if self.step % config.checkpoint_every == 0 or self.step == config.max_steps:
                self.checkpoint()
            if kill_after and self.step == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank is done before any tears the process group down
        self._say(f"done: {self.step} steps; checkpoint {self.last_checkpoint}")

    def _reduce(self, value: torch.Tensor) -> float:
        if self.world_size > 1:
            import torch.distributed as dist

            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.AVG if self.device.type == "cuda" else dist.ReduceOp.SUM)
            if self.device.type != "cuda":
                value /= self.world_size  # gloo has no AVG
        return float(value)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Each source's mean loss over its first ``eval_batches`` validation batches (no augmentation)."""
        config = self.config
        self.model.eval()
        result = {}
        for name, view in self.valid_parts:
            loader = PackedLoader(view, max_seq_len=config.max_seq_len, rows_per_batch=config.rows_per_batch,
                                  seed=0, rank=self.rank, world_size=self.world_size, shuffle=False)  # fmt: skip
            losses = []
            for _ in range(min(self.config.eval_batches, loader.batches_per_epoch())):
                loss, _, _ = self._forward_loss(loader.next_batch())
                losses.append(loss)
            result[name] = self._reduce(torch.stack(losses).mean())
        self.model.train()
        return result

    def checkpoint(self) -> None:
        model_state, optimizer_state = self._state_dicts()
        loader_states = self._gather_loader_states()
        if self.rank == 0:
            extra = {"vocab_hash": DEFAULT_VOCAB.hash, "model": self.raw_model.config.to_dict(),
                     "train": self.config.to_dict(), "loader": loader_states}  # fmt: skip
            weights = state_for_saving(self.raw_model, model_state)
            self.last_checkpoint = save_checkpoint(self.out, self.step, weights, optimizer_state, extra,
                                                   self.config.keep_checkpoints)  # fmt: skip
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def _gather_loader_states(self) -> dict[str, dict]:
        state = {"epoch": self.loader.state.epoch, "batch": self.loader.state.batch}
        if self.world_size == 1:
            return {"0": state}
        import torch.distributed as dist

        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, state)
        return {str(rank): s for rank, s in enumerate(gathered)}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.world_size > 1:
            import gc

            import torch.distributed as dist

            # Drop the DDP/FSDP wrappers (they hold gloo work objects) while the interpreter is
            # fully alive: freed during interpreter shutdown they abort the process (SIGABRT).
            self.model = self.raw_model = self.optimizer = None
            gc.collect()
            if dist.is_initialized():
                dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meloformer-train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, action="append",
                        help="a folder written by meloformer-preprocess, or MIDI files (a folder, or a text file "
                             "listing them) to preprocess first; repeat it to train on several corpora")  # fmt: skip
    parser.add_argument("--mix", default=None, metavar="R1,R2,…",
                        help="with several --data: how many times each one's windows are drawn per epoch, in "
                             "--data order (default 1 each; 0.5 draws a random half every epoch)")  # fmt: skip
    parser.add_argument("--data-cache", type=Path, default=None, metavar="DIR",
                        help=f"where MIDI --data is preprocessed (default: OUT/{CACHE_NAME}); reused while the files "
                             "and the options are unchanged")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that preprocess MIDI --data (default: one per core)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="checkpoints, logs and TensorBoard files go here")
    parser.add_argument("--recipe", default="debug", choices=list(RECIPES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set max_steps=1000 (repeatable)")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--init", type=Path, default=None, metavar="MODEL",
                        help="start from these weights (a bundle, checkpoint or training folder) with a fresh "
                             "optimizer and schedule: fine-tuning")  # fmt: skip
    args = parser.parse_args(argv)
    if args.init is not None and args.resume:
        parser.error("--init starts a new run and --resume continues one; give one of them")
    try:
        mix = [float(rate) for rate in args.mix.split(",")] if args.mix else None
    except ValueError:
        parser.error(f"--mix {args.mix!r}: expected rates separated by commas, e.g. 1,0.5")
    trainer = None
    try:
        config = recipe(args.recipe, args.overrides)
        data = args.data[0] if len(args.data) == 1 else args.data
        trainer = Trainer(data, args.out, config, args.resume, args.init, data_cache=args.data_cache,
                          workers=args.workers, mix=mix)  # fmt: skip
        trainer.run()
    except MeloformerError as error:
        print(f"meloformer-train: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("meloformer-train: interrupted; resume with --resume", file=sys.stderr)
        return 130
    finally:
        if trainer is not None:
            trainer.close()
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # a rank that failed while setting up (see Trainer.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
