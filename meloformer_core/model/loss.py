"""The training objective: next-token cross entropy within each packed document."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from meloformer_core.model.masks import Layout


def document_loss(logits: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, int]:
    """(mean next-token cross entropy over the positions whose next token is in the same
    document, the count of those positions)."""
    targets = layout.tokens[:, 1:]
    same = (layout.document[:, 1:] == layout.document[:, :-1]) & ~layout.is_pad[:, 1:]
    losses = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    )
    count = int(same.sum())
    return (losses * same.reshape(-1)).sum() / max(count, 1), count
