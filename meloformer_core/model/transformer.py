"""The summary-token Transformer: norm → attention → block → model, top to bottom.

Legend: B batch, T regular tokens, S summaries, D model width, H heads, E head width,
K keys (T + S), V vocabulary.

Two streams run through every block (docs/architecture.md, "The model"):

    s ← s + Summarise(norm s | keys [norm x; norm s])      SR + SS, mask `summarise_mask_mod`
    s ← s + MLP(norm s)
    x ← x + Update(norm x | keys [norm x; norm s])         RR + RS, mask `update_mask_mod`
    x ← x + MLP(norm x)

so a regular token sees the summaries of closed segments as they leave this block. The
MLP is shared by both streams; the two attentions have their own weights. Attention
runs through one of two back ends fed by the same predicate: FlexAttention with a block
mask per sequence (GPU training, long prefill) or `scaled_dot_product_attention` with the
dense mask (the reference, and the CPU training path: FlexAttention has no CPU backward).

Every pass runs `Block.forward`: training and a prompt's prefill with `SequenceKeys` (the
whole sequence and its masks), incremental decoding with the keys of a cache
(`meloformer_core.generation.cache`), so there is one implementation of the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from meloformer_core.model.config import ModelConfig
from meloformer_core.model.masks import (
    KeyChunk,
    Layout,
    block_mask,
    dense_mask,
    dense_update_mask,
    key_chunks,
    summarise_mask_mod,
    update_mask_mod,
)

BACKENDS = ("dense", "flex")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 even under bf16 autocast, then cast back.
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


class Turns(NamedTuple):
    """The rotary turns of some positions, shaped (…, 1, L, E/2) for heads (…, H, L, E)."""

    cos: torch.Tensor
    sin: torch.Tensor
    unit: torch.Tensor | None  # cos + i·sin; None under torch.compile (see `Rotary.rotate`)


class Rotary(nn.Module):
    """Rotary position embedding: the pairs (x[2i], x[2i+1]) of a head are complex numbers
    turned by the angle of their position (`turns`), in one complex product (`rotate`)."""

    def __init__(self, head_dim: int, max_positions: int, base: float) -> None:
        super().__init__()
        inverse = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inverse)  # (P, E/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def turns(self, positions: torch.Tensor) -> Turns:
        """The turns of ``positions`` (…, L)."""
        cos, sin = self.cos[positions].float().unsqueeze(-3), self.sin[positions].float().unsqueeze(-3)
        return Turns(cos, sin, None if torch.compiler.is_compiling() else torch.complex(cos, sin))

    @staticmethod
    def rotate(x_BHLE: torch.Tensor, turns: Turns) -> torch.Tensor:
        """``x`` turned by ``turns``, computed in float32 and returned in x's dtype."""
        if x_BHLE.dtype != torch.float32:  # (bf16 training) the turn in float32, then back
            return Rotary.rotate(x_BHLE.float(), turns).to(x_BHLE.dtype)
        if turns.unit is None:  # compiling: inductor writes no code for complex numbers; the same turn in reals
            x1, x2 = x_BHLE[..., 0::2], x_BHLE[..., 1::2]
            cos, sin = turns.cos, turns.sin
            return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
        pairs = torch.view_as_complex(x_BHLE.reshape(*x_BHLE.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * turns.unit).reshape(x_BHLE.shape)

    def forward(self, x_BHLE: torch.Tensor, positions_BL: torch.Tensor) -> torch.Tensor:
        return self.rotate(x_BHLE, self.turns(positions_BL))


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: an NVIDIA GPU from Ampere on, or a
    CPU with AVX-512 BF16 or AMX. Elsewhere bfloat16 is converted in software and runs
    slower than float32: training then skips bf16 autocast (`training.train`), and batch
    decoding keeps float32 weights (`generation.cache.DecodingGroup`)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T``; with weights of another dtype (decoding with 16-bit weights), x is
    cast to theirs and the result back (under autocast, autocast chooses)."""
    if x.dtype == weight.dtype or torch.is_autocast_enabled(x.device.type):
        return F.linear(x, weight)
    return F.linear(x.to(weight.dtype), weight).to(x.dtype)


def split_heads(x_BLD: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) → (B, H, L, E)."""
    batch, length, width = x_BLD.shape
    return x_BLD.view(batch, length, heads, width // heads).transpose(1, 2)


def merge_heads(x_BHLE: torch.Tensor) -> torch.Tensor:
    """(B, H, L, E) → (B, L, D)."""
    batch, _, length, _ = x_BHLE.shape
    return x_BHLE.transpose(1, 2).reshape(batch, length, -1)


class Attention(nn.Module):
    """The output projection of one of a block's two attentions; their queries, keys and
    values come from the block's fused projection (`Block.qkv`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=False)


def attend(
    q_BHQE: torch.Tensor, k_BHKE: torch.Tensor, v_BHKE: torch.Tensor, mask, dropout: float = 0.0
) -> torch.Tensor:
    """Attention of (B, H, Q, E) queries over keys and values; ``mask`` is a dense bool mask
    (`scaled_dot_product_attention`), one cut into `key_chunks` (`chunked_attention`) or a
    FlexAttention BlockMask."""
    if isinstance(mask, torch.Tensor):
        return F.scaled_dot_product_attention(q_BHQE, k_BHKE, v_BHKE, attn_mask=mask, dropout_p=dropout)
    if isinstance(mask, tuple):
        return chunked_attention(q_BHQE, k_BHKE, v_BHKE, mask, dropout)
    return _flex_attention(q_BHQE, k_BHKE, v_BHKE, block_mask=mask)


def _flex_attention(q, k, v, block_mask):
    from torch.nn.attention.flex_attention import flex_attention

    if q.device.type == "cuda" or COMPILE_FLEX_ON_CPU:
        return _compiled_flex()(q, k, v, block_mask=block_mask)
    return flex_attention(q, k, v, block_mask=block_mask)


# FlexAttention is compiled on GPUs. On a CPU it runs eagerly unless this is set (compiling
# takes tens of seconds there; bench/attention.py sets it to measure the compiled kernel).
COMPILE_FLEX_ON_CPU = False
_COMPILED_FLEX = None


def _compiled_flex():
    global _COMPILED_FLEX
    if _COMPILED_FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, weights: BlockWeights | None = None) -> torch.Tensor:
        gate_up, down = (self.gate_up.weight, self.down.weight) if weights is None else weights[3:]
        gate, up = linear(x, gate_up).chunk(2, dim=-1)
        out = linear(F.silu(gate) * up, down)
        return self.dropout(out) if self.training else out


class BlockWeights(NamedTuple):
    """A block's weight matrices, as `Block.forward` uses them: its own parameters, or
    16-bit copies of them for decoding (`Block.weights`)."""

    qkv: torch.Tensor
    summarise_out: torch.Tensor
    update_out: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


class Keys(Protocol):
    """Where a block's attentions find their keys: the whole sequence (`SequenceKeys`: training,
    a prompt's prefill) or a decoding cache (`meloformer_core.generation.cache`). Queries,
    keys and values come in as (B, L, D) projections, unrotated; an attention returns its
    output (B, L, D) before the output projection. A block calls `tokens`, then
    `summarise` (unless it has no summaries), then `update`."""

    def tokens(self, layer: int, summarise: tuple, update: tuple) -> None:
        """The keys and values (k, v) of the block's tokens under the two projections."""
        ...

    def summarise(self, layer: int, queries: torch.Tensor, summaries: tuple) -> torch.Tensor:
        """Summaries read their segment's tokens and earlier summaries (SR + SS); ``summaries``:
        their own keys and values."""
        ...

    def update(self, layer: int, queries: torch.Tensor, summaries: tuple | None) -> torch.Tensor:
        """Tokens read their bar, related bars and closed summaries (RR + RS); ``summaries``: the
        summaries' keys and values as they leave the block, None when there are none (a
        decoding step that closes no segment)."""
        ...


class Block(nn.Module):
    """One block of both streams; training, prefill and every decoding step run this code.

    ``qkv`` holds both attentions' projections fused, rows [summarise q, k, v | update q, k, v],
    so each stream needs one product per phase: a token's five projections (all but the
    summarise query) are rows D:6D, a summary's summarise q, k, v rows 0:3D, and its update
    keys and values after the summarise phase rows 4D:6D.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm_regular = RMSNorm(config.d_model)
        self.norm_summary = RMSNorm(config.d_model)
        self.norm_mlp = RMSNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 6 * config.d_model, bias=False)
        self.summarise = Attention(config)
        self.update = Attention(config)
        self.mlp = SwiGLU(config)
        self.width = config.d_model

    def weights(self, dtype: torch.dtype | None = None) -> BlockWeights:
        """The block's weights, as they are or (decoding with 16-bit weights) cast to ``dtype``."""
        own = (self.qkv.weight, self.summarise.out_proj.weight, self.update.out_proj.weight,
               self.mlp.gate_up.weight, self.mlp.down.weight)  # fmt: skip
        return BlockWeights(*(w if dtype is None else w.detach().to(dtype).contiguous() for w in own))

    def forward(self, x_BTD: torch.Tensor, s_BSD: torch.Tensor | None, keys: Keys, layer: int,
                weights: BlockWeights | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """(x, s) after the block: summaries first (they read the tokens as this block gets
        them), then the tokens (they read the summaries as they leave it). ``s`` may be None
        (a decoding step in which no segment closes)."""
        d = self.width
        qkv, summarise_out, update_out = weights[:3] if weights is not None else self.weights()[:3]
        sum_k, sum_v, upd_q, upd_k, upd_v = linear(self.norm_regular(x_BTD), qkv[d:]).split(d, dim=-1)
        keys.tokens(layer, (sum_k, sum_v), (upd_k, upd_v))
        summary_kv = None
        if s_BSD is not None:
            q, k, v = linear(self.norm_summary(s_BSD), qkv[: 3 * d]).split(d, dim=-1)
            s_BSD = s_BSD + linear(keys.summarise(layer, q, (k, v)), summarise_out)
            s_BSD = s_BSD + self.mlp(self.norm_mlp(s_BSD), weights)
            summary_kv = linear(self.norm_summary(s_BSD), qkv[4 * d :]).split(d, dim=-1)
        x_BTD = x_BTD + linear(keys.update(layer, upd_q, summary_kv), update_out)
        x_BTD = x_BTD + self.mlp(self.norm_mlp(x_BTD), weights)
        return x_BTD, s_BSD


class SequenceKeys:
    """`Keys` of a whole sequence: every token and summary of the layout, under the two masks
    of `MeloFormer.masks`. ``store(layer, phase, keys, values)``, when given, receives the
    rotated keys and values (B, H, T + S, E) of each phase (a prompt's prefill keeps them)."""

    def __init__(self, layout: Layout, masks: tuple, rotary: Rotary, heads: int, dropout: float = 0.0,
                 store: Callable | None = None) -> None:  # fmt: skip
        self.masks, self.heads, self.dropout, self.store = masks, heads, dropout, store
        self.rotate = rotary.rotate
        self.token_turns, self.summary_turns = rotary.turns(layout.positions), rotary.turns(layout.seg_positions)

    def tokens(self, layer: int, summarise: tuple, update: tuple) -> None:
        self._tokens = (summarise, update)

    def _keys(self, layer: int, phase: int, summaries: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self._tokens[phase]
        k = torch.cat([self.rotate(split_heads(tokens[0], self.heads), self.token_turns),
                       self.rotate(split_heads(summaries[0], self.heads), self.summary_turns)], dim=2)  # fmt: skip
        v = torch.cat([split_heads(tokens[1], self.heads), split_heads(summaries[1], self.heads)], dim=2)
        if self.store is not None:
            self.store(layer, phase, k, v)
        return k, v

    def summarise(self, layer: int, queries: torch.Tensor, summaries: tuple) -> torch.Tensor:
        q = self.rotate(split_heads(queries, self.heads), self.summary_turns)
        k, v = self._keys(layer, 0, summaries)
        return merge_heads(attend(q, k, v, self.masks[0], self.dropout))

    def update(self, layer: int, queries: torch.Tensor, summaries: tuple | None) -> torch.Tensor:
        q = self.rotate(split_heads(queries, self.heads), self.token_turns)
        k, v = self._keys(layer, 1, summaries)
        return merge_heads(attend(q, k, v, self.masks[1], self.dropout))


# Queries per chunk of the dense attentions (`key_chunks`, `chunked_attention`): tokens, summaries.
QUERY_CHUNK = 128
SUMMARY_CHUNK = 64


def chunked_attention(q_BHTE: torch.Tensor, k_BHKE: torch.Tensor, v_BHKE: torch.Tensor, chunks: tuple[KeyChunk, ...],
                      dropout: float) -> torch.Tensor:  # fmt: skip
    """Attention with a dense mask cut into `key_chunks`: each chunk of queries attends over
    only the keys its queries see, so the update attention reads about a third of the keys a
    causal attention reads and the summarise attention about a third of its keys
    (`scaled_dot_product_attention` with a mask skips no masked key; FlexAttention, which
    would, has no backward on a CPU)."""
    return torch.cat([F.scaled_dot_product_attention(q_BHTE[:, :, chunk.start : chunk.stop],
                                                     k_BHKE.index_select(2, chunk.keys),
                                                     v_BHKE.index_select(2, chunk.keys),
                                                     attn_mask=chunk.mask, dropout_p=dropout)
                      for chunk in chunks], dim=2)  # fmt: skip


TIED_HEAD = "head.weight"  # with tied embeddings, the same tensor as "embed.weight"


def state_for_saving(model: MeloFormer, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state dict without the tied head (safetensors refuses shared tensors), on the CPU."""
    state = model.state_dict() if state is None else state
    return {
        k: v.detach().to("cpu").contiguous()
        for k, v in state.items()
        if not (model.config.tie_embeddings and k == TIED_HEAD)
    }


# Bundles and checkpoints written before the blocks fused their projections (MeloFormer 0.1.0 and
# earlier) hold each block's four query/key/value matrices apart, under these names; in
# this order they are the rows of `Block.qkv`.
UNFUSED = ("summarise.q_proj.weight", "summarise.kv_proj.weight", "update.q_proj.weight", "update.kv_proj.weight")
UNFUSED_ROWS = (1, 2, 1, 2)  # each one's rows, in d_model
FUSED = "qkv.weight"


def unfused_blocks(names) -> list[str]:
    """The prefixes (``blocks.3.``) of the blocks whose projections ``names`` hold apart, all four of them."""
    prefixes = {name[: -len(UNFUSED[0])] for name in names if name.endswith(UNFUSED[0])}
    return sorted(prefix for prefix in prefixes if all(prefix + part in names for part in UNFUSED))


def fuse_projections(state: dict, fuse: Callable = torch.cat) -> dict:
    """``state`` with every block's four unfused projections (`UNFUSED`) as its one `FUSED`
    matrix, joined by ``fuse`` (the tensors, or anything stored per parameter); unchanged when
    it already has the current names."""
    prefixes = unfused_blocks(state)
    if not prefixes:
        return state
    state = dict(state)
    for prefix in prefixes:
        state[prefix + FUSED] = fuse([state.pop(prefix + part) for part in UNFUSED])
    return state


def state_for_loading(config: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A saved state as `load_state_dict` takes it: the tied head restored, and the names of
    bundles and checkpoints written before the fused projections mapped (`fuse_projections`)."""
    state = fuse_projections(state)
    if config.tie_embeddings and "embed.weight" in state:
        return {**state, TIED_HEAD: state["embed.weight"]}
    return state


class MeloFormer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.summary_start = nn.Parameter(torch.zeros(config.d_model))
        self.rotary = Rotary(config.head_dim, config.max_seq_len, config.rope_base)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_out = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        self._initialise()

    def _initialise(self) -> None:
        """Normal(0, 0.02) weights, drawn in the order of the unfused projections (`UNFUSED`,
        each attention's output after its own), so a seed gives the model it gave before the
        projections were fused; then GPT-2's depth scaling of the residual projections."""
        std, width = 0.02, self.config.d_model
        drawn = [self.embed.weight]
        for block in self.blocks:
            summarise_q, summarise_kv, update_q, update_kv = block.qkv.weight.data.split(
                [rows * width for rows in UNFUSED_ROWS]
            )
            drawn += [summarise_q, summarise_kv, block.summarise.out_proj.weight, update_q, update_kv,
                      block.update.out_proj.weight, block.mlp.gate_up.weight, block.mlp.down.weight]  # fmt: skip
        drawn.append(self.head.weight)  # with tied embeddings, the embedding's final values
        for weight in drawn:
            nn.init.normal_(weight, mean=0.0, std=std)
        for name, parameter in self.named_parameters():
            if name.endswith(("out_proj.weight", "down.weight")):
                nn.init.normal_(parameter, mean=0.0, std=std / math.sqrt(2 * self.config.n_layers))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def initial_summaries(self, seg_opener_BS: torch.Tensor) -> torch.Tensor:
        """A summary starts as a learned vector plus the embedding of the token that opened it."""
        return self.summary_start + self.embed(seg_opener_BS)

    def masks(self, layout: Layout, backend: str) -> tuple:
        batch, length, summaries = layout.shape
        keys = length + summaries
        summarise = summarise_mask_mod(layout)
        device = layout.tokens.device
        if backend == "dense":
            return (
                key_chunks(dense_mask(summarise, batch, summaries, keys, device), SUMMARY_CHUNK),
                key_chunks(dense_update_mask(layout, self.config.related_bar_offsets), QUERY_CHUNK),
            )
        if backend == "flex":
            update = update_mask_mod(layout, self.config.related_bar_offsets)
            return (
                block_mask(summarise, batch, summaries, keys, device),
                block_mask(update, batch, length, keys, device),
            )
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")

    def forward(
        self, layout: Layout, backend: str = "dense", masks: tuple | None = None, return_summaries: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V): at position t, the distribution of token t + 1 (and the final summaries)."""
        if layout.tokens.shape[1] > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {layout.tokens.shape[1]} tokens exceeds max_seq_len {self.config.max_seq_len}"
            )
        masks = masks if masks is not None else self.masks(layout, backend)
        dropout = self.config.dropout if self.training else 0.0
        keys = SequenceKeys(layout, masks, self.rotary, self.config.n_heads, dropout)
        x, s = self.run(self.embed(layout.tokens), self.initial_summaries(layout.seg_opener), keys)
        logits = self.head(self.norm_out(x))
        return (logits, s) if return_summaries else logits

    def run(self, x_BTD: torch.Tensor, s_BSD: torch.Tensor | None, keys: Keys,
            weights: list[BlockWeights] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """Both streams through every block, their keys found in ``keys`` (the whole sequence,
        or a decoding cache); ``weights``: per block, the weights to use (`Block.weights`)."""
        for index, block in enumerate(self.blocks):
            chosen = weights[index] if weights is not None else None
            if self.config.gradient_checkpointing and self.training:
                x_BTD, s_BSD = checkpoint(block, x_BTD, s_BSD, keys, index, chosen, use_reentrant=False)
            else:
                x_BTD, s_BSD = block(x_BTD, s_BSD, keys, index, chosen)
        return x_BTD, s_BSD
