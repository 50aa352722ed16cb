"""Optimizers and the learning-rate schedule.

AdamW decays 2-D weights (matmuls, embeddings) but never biases or norm gains. With Muon, the
2-D weight matrices inside the transformer blocks are orthogonalised by `torch.optim.Muon`;
embeddings, the head and every 1-D parameter stay on AdamW. Each param group keeps its
`base_lr`; the schedule scales all of them by one factor.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def lr_scale(step: int, elapsed: float, *, warmup_iters: int, max_iters: int,
             max_seconds: float | None, min_lr_ratio: float) -> float:
    """Linear warmup over `warmup_iters` steps, then cosine decay to `min_lr_ratio` over the
    budget: whichever of the step budget and the time budget is nearer to running out."""
    if step < warmup_iters:
        return (step + 1) / (warmup_iters + 1)
    progress = (step - warmup_iters) / max(1, max_iters - warmup_iters)
    if max_seconds:
        progress = max(progress, elapsed / max_seconds)
    progress = min(1.0, progress)
    return min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_lr_ratio)


def _adamw(params: list[nn.Parameter], lr, weight_decay, betas, device) -> torch.optim.AdamW:
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # the fused kernel (CUDA and CPU) updates every tensor in one pass: ~15% faster steps here
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas,
                             fused=device.type in ("cuda", "cpu"))


def make_optimizers(model: nn.Module, *, kind: str, lr: float, muon_lr: float,
                    weight_decay: float, betas: tuple[float, float],
                    device: torch.device) -> list[torch.optim.Optimizer]:
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == "adamw":
        optimizers = [_adamw(params, lr, weight_decay, betas, device)]
    elif kind == "muon":
        blocks = getattr(model, "blocks", nn.ModuleList())
        matrices = [p for p in blocks.parameters() if p.dim() == 2 and p.requires_grad]
        ids = {id(p) for p in matrices}
        rest = [p for p in params if id(p) not in ids]
        optimizers = [_adamw(rest, lr, weight_decay, betas, device)]
        if matrices:  # the bigram baseline has none
            optimizers.insert(0, torch.optim.Muon(matrices, lr=muon_lr, weight_decay=weight_decay,
                                                  adjust_lr_fn="match_rms_adamw"))
    else:
        raise ValueError(f"unknown optimizer {kind!r}: use adamw or muon")
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


def set_lr(optimizers: list[torch.optim.Optimizer], scale: float) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * scale
