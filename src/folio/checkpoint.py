"""The one checkpoint format used by training, evaluation, sampling and the registry.

A checkpoint is a dict of tensors and plain containers, written atomically with `torch.save`
and read with `weights_only=True`, so loading an untrusted file cannot run code.
Keys: model (state dict), model_config, tokenizer (kind, vocab_size, digest), step, best_val_loss,
and for resuming: optimizers, scaler, rng, train_seconds, history, meta. The data position needs
no state: batches are a pure function of (seed, rank, step).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from folio.fileio import atomic_path
from folio.model import GPTConfig, create_model

# torch.compile wraps the model as `_orig_mod.`, DistributedDataParallel as `module.`
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def clean_state_dict(state: dict) -> dict:
    """Strip compile/DDP prefixes so any checkpoint loads into a plain GPT."""
    cleaned = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def save(path: str | Path, state: dict) -> None:
    """Write `state` atomically; `state["model"]` may come from a wrapped model."""
    state = dict(state, model=clean_state_dict(state["model"]))
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def save_rotating(out_dir: str | Path, state: dict, keep: int) -> Path:
    """Save `step-NNNNNNN.pt`, point `last.pt` at it, and delete all but the newest `keep` step files."""
    out_dir = Path(out_dir)
    path = out_dir / f"step-{state['step']:07d}.pt"
    save(path, state)
    with atomic_path(out_dir / "last.pt") as tmp:
        tmp.unlink()
        try:
            os.link(path, tmp)  # a second name, not a second copy
        except OSError:
            shutil.copyfile(path, tmp)
    for old in sorted(out_dir.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def build_model(state: dict, tokenizer_digest: str | None = None) -> torch.nn.Module:
    """Rebuild the model from a checkpoint; refuse it if it was trained with another vocabulary."""
    saved = state["tokenizer"]
    if tokenizer_digest is not None and saved["digest"] != tokenizer_digest:
        raise ValueError(
            f"checkpoint was trained with tokenizer {saved['kind']} (digest {saved['digest']}, "
            f"vocab {saved['vocab_size']}) but the tokenizer given has digest {tokenizer_digest}"
        )
    model = create_model(GPTConfig(**state["model_config"]))
    model.load_state_dict(clean_state_dict(state["model"]))
    return model
