"""Token files on disk and the batches drawn from them.

A split is a flat array of token ids saved as raw little-endian uint16 (`.bin`), as in nanoGPT,
or uint32 when the vocabulary does not fit in 16 bits. Splits are small enough (a few MB) to load
into RAM, which avoids the memmap growth nanoGPT saw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from folio.errors import FolioError
from folio.fileio import atomic_path


class SplitTooShort(FolioError, ValueError):
    """A split holds fewer tokens than one training window."""


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of `parts` (e.g. seed, rank, step): the same in
    every process, on every machine and Python version (unlike hash(), which may change)."""
    key = ",".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """Split into (train, val) text, the tail as val, so val text never precedes train text.
    Splitting text rather than ids lets tokenizers train on the train part alone."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = int(round(len(text) * val_fraction))
    return text[: len(text) - n_val], text[len(text) - n_val :]


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (halves disk and RAM), uint32 otherwise."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_tokens(path: str | Path, ids, dtype: np.dtype | str = np.uint16) -> None:
    ids, dtype = np.asarray(ids), np.dtype(dtype)
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(dtype).max):
        raise ValueError(f"token ids must fit in {dtype.name}")
    with atomic_path(path) as tmp:
        ids.astype(dtype).tofile(tmp)


def read_tokens(path: str | Path, dtype: np.dtype | str = np.uint16) -> torch.Tensor:
    """The whole split as an int64 tensor (what embedding lookups want)."""
    return torch.from_numpy(np.fromfile(path, dtype=np.dtype(dtype)).astype(np.int64))


class BatchSampler:
    """Random (x, y) windows of `block_size` tokens, y shifted by one.

    The batch for (step, micro_step) is a pure function of the seed and the rank, so the data
    position needs no saved state: a resumed run draws exactly what the uninterrupted run would,
    and each DDP rank draws its own batches.
    """

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, seed: int, rank: int = 0):
        if len(tokens) < block_size + 1:
            raise SplitTooShort(
                f"a split holds {len(tokens):,} tokens, fewer than block_size + 1 = {block_size + 1:,}; "
                "lower model.block_size, or use a longer corpus or a larger data.val_fraction")
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.seed, self.rank = seed, rank
        self.generator = torch.Generator()

    def batch(self, step: int, micro_step: int = 0, device: torch.device | str = "cpu"):
        self.generator.manual_seed(derive_seed(self.seed, self.rank, step, micro_step))
        starts = torch.randint(
            len(self.tokens) - self.block_size, (self.batch_size,), generator=self.generator
        )
        offsets = torch.arange(self.block_size)
        x = self.tokens[starts[:, None] + offsets]  # (B, T)
        y = self.tokens[starts[:, None] + offsets + 1]  # (B, T)
        return x.to(device), y.to(device)


def sequential_windows(
    tokens: torch.Tensor, block_size: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every target of the split exactly once: consecutive non-overlapping windows, the last one
    shorter. Used to evaluate the whole split deterministically."""
    n_targets = len(tokens) - 1
    starts = list(range(0, n_targets, block_size))
    full = [s for s in starts if s + block_size <= n_targets]
    for i in range(0, len(full), batch_size):
        idx = torch.tensor(full[i : i + batch_size])[:, None] + torch.arange(block_size)
        yield tokens[idx], tokens[idx + 1]
    tail = [s for s in starts if s + block_size > n_targets]
    for s in tail:
        yield tokens[s:n_targets][None], tokens[s + 1 : n_targets + 1][None]
