"""Attention maps as a PNG: one heatmap per layer (rows) and head (columns) of what each token
of a prompt attends to. matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

from pathlib import Path

import torch

from folio.fileio import atomic_path
from folio.model import GPT

MAX_LABELED_TOKENS = 48  # beyond this, tick labels would overlap


def token_labels(tokenizer, ids: list[int]) -> list[str]:
    """A short readable label per token (whitespace made visible)."""
    shown = {"\n": "⏎", " ": "␣", "\t": "⇥"}
    return ["".join(shown.get(ch, ch) for ch in tokenizer.decode([i])) for i in ids]


def attention_figure(maps: torch.Tensor, labels: list[str], title: str = ""):
    """maps (n_layer, n_head, T, T) -> a matplotlib Figure with an n_layer x n_head grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layer, n_head, T, _ = maps.shape
    fig, axes = plt.subplots(n_layer, n_head, figsize=(2.2 * n_head, 2.2 * n_layer + 0.6),
                             squeeze=False)
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer][head]
            ax.imshow(maps[layer, head].float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if T <= MAX_LABELED_TOKENS and head == 0:
                ax.set_yticks(range(T), labels, fontsize=5)
            if T <= MAX_LABELED_TOKENS and layer == n_layer - 1:
                ax.set_xticks(range(T), labels, fontsize=5, rotation=90)
    fig.suptitle(title or "attention (rows: query token, columns: key token)", fontsize=10)
    fig.tight_layout()
    return fig


def save_attention_png(model: GPT, tokenizer, prompt: str, path: str | Path) -> Path:
    """Write the attention maps of `prompt` (its last block_size tokens) to `path` as a PNG."""
    ids = tokenizer.encode(prompt)[-model.config.block_size :]
    if not ids:
        raise ValueError("the prompt must hold at least one token")
    model.eval()
    device = next(model.parameters()).device
    maps = model.attention_maps(torch.tensor([ids], device=device))[:, 0]  # (n_layer, n_head, T, T)
    fig = attention_figure(maps, token_labels(tokenizer, ids),
                           f"attention over {len(ids)} prompt tokens (rows: query, columns: key)")
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
