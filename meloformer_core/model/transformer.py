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

Incremental decoding (`meloformer_core.model.decoding`) reuses `Attention.project` and
`Attention.attend`, so cached logits equal the full forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from meloformer_core.model.config import ModelConfig
from meloformer_core.model.masks import Layout, block_mask, dense_mask, summarise_mask_mod, update_mask_mod

BACKENDS = ("dense", "flex")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 even under bf16 autocast, then cast back.
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


class Rotary(nn.Module):
    """Rotary position embedding tables; positions are gathered per token."""

    def __init__(self, head_dim: int, max_positions: int, base: float) -> None:
        super().__init__()
        inverse = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inverse)  # (P, E/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x_BHLE: torch.Tensor, positions_BL: torch.Tensor) -> torch.Tensor:
        cos = self.cos[positions_BL][:, None].to(x_BHLE.dtype)  # (B, 1, L, E/2)
        sin = self.sin[positions_BL][:, None].to(x_BHLE.dtype)
        x1, x2 = x_BHLE[..., 0::2], x_BHLE[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Attention(nn.Module):
    """Multi-head attention whose queries and keys may come from different streams."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.kv_proj = nn.Linear(config.d_model, 2 * config.d_model, bias=False)
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.dropout = config.dropout

    def _heads(self, x_BLD: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x_BLD.shape
        return x_BLD.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, E)

    def project_queries(self, x_BLD: torch.Tensor, positions: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        return rotary(self._heads(self.q_proj(x_BLD)), positions)

    def project(
        self, x_BLD: torch.Tensor, positions: torch.Tensor, rotary: Rotary
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (with rotary) and values of a stream: what the decoding cache stores."""
        key, value = self.kv_proj(x_BLD).chunk(2, dim=-1)
        return rotary(self._heads(key), positions), self._heads(value)

    def attend(self, q_BHQE: torch.Tensor, k_BHKE: torch.Tensor, v_BHKE: torch.Tensor, mask) -> torch.Tensor:
        """Attention output projected back to (B, Q, D); ``mask`` is a dense bool mask or a BlockMask."""
        if isinstance(mask, torch.Tensor):
            dropout = self.dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(q_BHQE, k_BHKE, v_BHKE, attn_mask=mask, dropout_p=dropout)
        else:
            out = _flex_attention(q_BHQE, k_BHKE, v_BHKE, block_mask=mask)
        batch, _, queries, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, queries, -1))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.silu(gate) * up))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm_regular = RMSNorm(config.d_model)
        self.norm_summary = RMSNorm(config.d_model)
        self.norm_mlp = RMSNorm(config.d_model)
        self.summarise = Attention(config)
        self.update = Attention(config)
        self.mlp = SwiGLU(config)

    def forward(self, x_BTD, s_BSD, layout: Layout, masks: tuple, rotary: Rotary, capture: list | None = None):
        """One block; ``capture`` (decoding prefill) receives the keys/values of both phases."""
        positions = layout.positions
        seg_positions = layout.seg_positions
        key_positions = torch.cat([positions, seg_positions], dim=1)
        summarise_mask, update_mask = masks

        nx = self.norm_regular(x_BTD)
        ns = self.norm_summary(s_BSD)
        # summarise: summaries read their own segment and earlier summaries
        q = self.summarise.project_queries(ns, seg_positions, rotary)
        k, v = self.summarise.project(torch.cat([nx, ns], dim=1), key_positions, rotary)
        if capture is not None:
            capture.append((k, v))
        s_BSD = s_BSD + self.summarise.attend(q, k, v, summarise_mask)
        s_BSD = s_BSD + self.mlp(self.norm_mlp(s_BSD))
        # update: tokens read their bar, related bars and the summaries closed before them
        ns = self.norm_summary(s_BSD)
        q = self.update.project_queries(nx, positions, rotary)
        k, v = self.update.project(torch.cat([nx, ns], dim=1), key_positions, rotary)
        if capture is not None:
            capture.append((k, v))
        x_BTD = x_BTD + self.update.attend(q, k, v, update_mask)
        x_BTD = x_BTD + self.mlp(self.norm_mlp(x_BTD))
        return x_BTD, s_BSD


TIED_HEAD = "head.weight"  # with tied embeddings, the same tensor as "embed.weight"


def state_for_saving(model: MeloFormer, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state dict without the tied head (safetensors refuses shared tensors), on the CPU."""
    state = model.state_dict() if state is None else state
    return {
        k: v.detach().to("cpu").contiguous()
        for k, v in state.items()
        if not (model.config.tie_embeddings and k == TIED_HEAD)
    }


def state_for_loading(config: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
        self.apply(self._init_weights)
        # GPT-2 style: scale the residual projections by depth
        for name, parameter in self.named_parameters():
            if name.endswith(("out_proj.weight", "down.weight")):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def initial_summaries(self, seg_opener_BS: torch.Tensor) -> torch.Tensor:
        """A summary starts as a learned vector plus the embedding of the token that opened it."""
        return self.summary_start + self.embed(seg_opener_BS)

    def masks(self, layout: Layout, backend: str) -> tuple:
        batch, length, summaries = layout.shape
        keys = length + summaries
        summarise = summarise_mask_mod(layout)
        update = update_mask_mod(layout, self.config.related_bar_offsets)
        device = layout.tokens.device
        if backend == "dense":
            return (
                dense_mask(summarise, batch, summaries, keys, device),
                dense_mask(update, batch, length, keys, device),
            )
        if backend == "flex":
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
        x = self.embed(layout.tokens)
        s = self.initial_summaries(layout.seg_opener)
        for block in self.blocks:
            if self.config.gradient_checkpointing and self.training:
                x, s = checkpoint(block, x, s, layout, masks, self.rotary, use_reentrant=False)
            else:
                x, s = block(x, s, layout, masks, self.rotary)
        logits = self.head(self.norm_out(x))
        return (logits, s) if return_summaries else logits
