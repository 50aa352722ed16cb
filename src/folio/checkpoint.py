"""The one checkpoint format used by training, evaluation, sampling and the registry.

A checkpoint is a dict of tensors and plain containers, written atomically with `torch.save`
and read with `weights_only=True`, so loading an untrusted file cannot run code.
Keys: model (state dict), model_config, tokenizer (kind, vocab_size, digest), step, best_val_loss,
and for resuming: optimizers, scaler, train_seconds, history, meta. Neither the data position nor
any RNG needs saving: batches and dropout are pure functions of (seed, rank, step).

A write that fails (a full disk) leaves the previous file untouched and raises CheckpointWriteError
naming the path and the space needed; a file that cannot be read raises CheckpointError.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
from pathlib import Path

import torch

from folio.errors import FolioError, MissingFile, first_line
from folio.fileio import atomic_path
from folio.model import GPTConfig, create_model


class CheckpointError(FolioError, ValueError):
    """A checkpoint that cannot be used: unreadable, or trained with another tokenizer."""


class CheckpointWriteError(FolioError, OSError):
    """A checkpoint could not be written (e.g. the disk is full); the previous one is intact."""

    def __str__(self) -> str:
        return self.strerror  # the message alone, without "[Errno 28]"


def tensor_bytes(state, seen: set | None = None) -> int:
    """The bytes of the tensors in a nested checkpoint dict, each storage once (a tied head
    shares the embedding's): about the size of the file."""
    seen = set() if seen is None else seen
    if isinstance(state, torch.Tensor):
        storage = state.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(state, dict):
        return sum(tensor_bytes(v, seen) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in state)
    return 0

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


def weights_digest(state: dict) -> str:
    """A digest of a checkpoint's weights alone (not its optimizer state or step): every tensor of
    `state["model"]` by name, dtype, shape and bytes. The metrics evaluate writes, the version the
    registry holds and the file a pruned run left in MLflow are all tied to weights by it."""
    h = hashlib.sha256()
    for name, tensor in sorted(clean_state_dict(state["model"]).items()):
        tensor = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def save(path: str | Path, state: dict) -> None:
    """Write `state` atomically; `state["model"]` may come from a wrapped model."""
    state = dict(state, model=clean_state_dict(state["model"]))
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a Python file: errors keep their errno
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except Exception as err:
        if not _disk_full(err):
            raise
        needed, free = tensor_bytes(state) / 2**20, shutil.disk_usage(path.parent).free / 2**20
        raise CheckpointWriteError(
            errno.ENOSPC, f"no space left on the device writing {path} (needs about {needed:,.1f} MB, "
            f"{free:,.1f} MB free); free some space and rerun: training resumes from the last "
            "checkpoint written, which is intact") from None


def _disk_full(err: BaseException | None) -> bool:
    """Whether `err`, or an error it was raised while handling, is a full disk or quota (torch's
    zip writer turns the OSError into a RuntimeError when it closes the file)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        err = err.__cause__ or err.__context__
    return False


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
            save(tmp, state)
    for old in sorted(out_dir.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"no checkpoint at {path}; check the path")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:  # truncated, corrupt, not a checkpoint
        if isinstance(err, OSError) and err.errno is not None:
            raise  # a real I/O error (permissions, ...), not a bad file
        reason = first_line(err).split(". ")[0]
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason}): it is truncated or "
                              "corrupt; restore it (dvc checkout, dvc pull) or train again") from None


def load_model(path: str | Path, device: str | torch.device = "cpu",
               tokenizer_digest: str | None = None) -> tuple[dict, torch.nn.Module]:
    """(checkpoint, model) for inference on `device`: the tensors are read onto `device`
    (map_location), the model is rebuilt from them (`build_model`: another vocabulary is refused)
    and moved there, in eval mode."""
    state = load(path, map_location=device)
    return state, build_model(state, tokenizer_digest).to(device).eval()


def build_model(state: dict, tokenizer_digest: str | None = None) -> torch.nn.Module:
    """Rebuild the model from a checkpoint; refuse it if it was trained with another vocabulary."""
    saved = state["tokenizer"]
    if tokenizer_digest is not None and saved["digest"] != tokenizer_digest:
        raise CheckpointError(
            f"the checkpoint was trained with tokenizer {saved['kind']} (vocab {saved['vocab_size']}, "
            f"digest {saved['digest']}), not the one given (digest {tokenizer_digest}); use the "
            "tokenizer it was trained with, or train again with this one")
    model = create_model(GPTConfig(**state["model_config"]))
    model.load_state_dict(clean_state_dict(state["model"]))
    return model
