"""Token shards on disk and the batches drawn from them.

A split is a list of shards: flat arrays of token ids saved as raw little-endian uint16 (`.bin`),
as in nanoGPT, or uint32 when the vocabulary does not fit in 16 bits. `TokenSplit` reads a batch's
windows from the files, so memory does not grow with the corpus.

Batches are drawn without replacement within an epoch: each epoch is a seeded permutation of the
split's windows (block_size + 1 tokens at a seeded offset), and the windows of one optimizer step
are spread over DDP ranks by their draw index, so ranks never share a window within an epoch.

A mixture (`sources`: the split's token range of each source and its weight) draws each epoch as
many windows as the split holds on that epoch's grid (N); source s gets round(N · w_s / Σw) of
them (largest remainders: the shares sum to N). A source with fewer windows than its share repeats
them (each ⌊share / n_s⌋ times, the rest a seeded sample), one with more gives a seeded sample of
its windows, drawn anew each epoch; the epoch's draws are then shuffled. So the weights are the
shares of the drawn windows, and every draw is a pure function of (seed, epoch).
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from folio.errors import FolioError
from folio.fileio import fsync_path
from folio.seeds import derive_seed


class SplitTooShort(FolioError, ValueError):
    """A split holds fewer tokens than one training window."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (halves disk and RAM), uint32 otherwise."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _check_fits(ids: np.ndarray, dtype: np.dtype) -> None:
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(dtype).max):
        raise ValueError(f"token ids must fit in {dtype.name}")


class ShardWriter:
    """Appends ids to numbered shards of at most `shard_tokens` ids (`<split>-00000.bin`, ...), each
    written beside its final name and renamed there by `close()`, so a crash leaves no shard that
    looks whole."""

    def __init__(self, directory: str | Path, split: str, dtype: np.dtype | str, shard_tokens: int):
        self.directory, self.split, self.dtype = Path(directory), split, np.dtype(dtype)
        self.shard_tokens, self.shards, self.file = shard_tokens, [], None
        self.directory.mkdir(parents=True, exist_ok=True)

    def _open(self) -> None:
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self.shards.append({"file": name, "tokens": 0})
        self.file = open(self.directory / f".{name}.tmp", "wb")

    def write(self, ids) -> None:
        ids = np.asarray(ids)
        _check_fits(ids, self.dtype)
        while ids.size:
            if self.file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                self._finish_file()
                self._open()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            self.file.write(ids[:room].astype(self.dtype).tobytes())
            self.shards[-1]["tokens"] += min(room, ids.size)
            ids = ids[room:]

    def _finish_file(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())  # on the disk before meta.json names it
            self.file.close()
            self.file = None

    def close(self) -> list[dict]:
        """Rename every shard to its final name; [{"file", "tokens"}] in order (one, maybe empty, at least)."""
        if not self.shards:
            self._open()
        self._finish_file()
        for shard in self.shards:
            (self.directory / f".{shard['file']}.tmp").replace(self.directory / shard["file"])
        fsync_path(self.directory)
        return self.shards

    def abort(self) -> None:
        self._finish_file()
        for shard in self.shards:
            (self.directory / f".{shard['file']}.tmp").unlink(missing_ok=True)


class TokenSplit:
    """A split's shards as one sequence of token ids: memory maps of the shard files (or in-memory
    arrays). Windows are read from the files with plain reads, not through the maps: the kernel
    maps pages around every touched one into the process, so random windows through a map make
    its resident memory grow towards the size of the shards."""

    def __init__(self, shards: Sequence[np.ndarray]):
        self.shards = [s for s in shards if len(s)]
        self.lengths = [len(s) for s in self.shards]
        self._files: dict[int, object] = {}

    @classmethod
    def open(cls, paths: Sequence[str | Path], dtype: np.dtype | str) -> "TokenSplit":
        dtype = np.dtype(dtype)
        return cls([np.memmap(p, dtype=dtype, mode="r") for p in paths if Path(p).stat().st_size])

    @classmethod
    def of(cls, tokens) -> "TokenSplit":
        """A split from a TokenSplit, a tensor or an array of ids."""
        if isinstance(tokens, TokenSplit):
            return tokens
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.numpy()
        return cls([np.asarray(tokens)])

    def __len__(self) -> int:
        return sum(self.lengths)

    def _file(self, shard: int):
        if shard not in self._files:
            self._files[shard] = open(self.shards[shard].filename, "rb")
        return self._files[shard]

    def read(self, shard: int, start: int, length: int) -> np.ndarray:
        array = self.shards[shard]
        if isinstance(array, np.memmap) and array.filename:
            f, size = self._file(shard), array.dtype.itemsize
            f.seek(start * size)
            return np.frombuffer(f.read(length * size), dtype=array.dtype).astype(np.int64)
        return np.asarray(array[start:start + length], dtype=np.int64)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """Every id in order, `size` at a time, as int64."""
        for shard, n in enumerate(self.lengths):
            for start in range(0, n, size):
                yield self.read(shard, start, min(size, n - start))

    def head(self, n: int) -> np.ndarray:
        return self.read(0, 0, min(n, self.lengths[0])) if self.shards else np.zeros(0, dtype=np.int64)


class WindowSampler:
    """(x, y) batches of `block_size` windows, y shifted by one, drawn without replacement within
    each epoch. Draw `d` of the run is window perm_e[d - start_e] of epoch e; the draws of a step are
    ((step * accum + micro) * world_size + rank) * batch_size + b, so a batch is a pure function of
    (seed, rank, step): a resumed run draws what the uninterrupted one would, ranks draw disjoint windows.
    """

    def __init__(self, tokens, block_size: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, grad_accum_steps: int = 1,
                 sources: Sequence[tuple[str, int, int, float]] | None = None):
        """`sources`: a mixture, (name, start, end, weight) of each source's tokens [start, end)
        in the split, in order, together the whole split; None: the split is drawn uniformly."""
        self.split = TokenSplit.of(tokens)
        longest = max(self.split.lengths, default=0)
        if longest < block_size + 1:
            raise SplitTooShort(
                f"a split holds {longest:,} tokens in its longest shard, fewer than block_size + 1 = "
                f"{block_size + 1:,}; lower model.block_size, or use a longer corpus or a larger data.val_fraction")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.rank, self.world_size, self.accum = rank, world_size, grad_accum_steps
        # (shard, start in the shard, tokens, source) of each stretch windows are cut from
        self.segments = [(i, 0, n, 0) for i, n in enumerate(self.split.lengths)]
        self.sources = None
        if sources:
            self.sources = [(str(name), int(a), int(b), float(w)) for name, a, b, w in sources]
            self.segments = self._source_segments()
            longest = min(max(n for _, _, n, s in self.segments if s == k) for k in range(len(self.sources)))
        self.offsets = min(block_size, longest - block_size)  # each epoch shifts the window grid
        self.epoch_starts = [0]  # first draw of each epoch, extended as epochs are reached
        self._perms: dict[int, torch.Tensor] = {}

    def _source_segments(self) -> list[tuple[int, int, int, int]]:
        """Each source's range cut at the shard boundaries; a source without a stretch of
        block_size + 1 tokens is refused, named."""
        bounds = np.concatenate([[0], np.cumsum(self.split.lengths)])
        position, segments = 0, []
        for k, (name, start, end, weight) in enumerate(self.sources):
            if start != position or end < start or weight <= 0:
                raise ValueError(f"source {name!r}: tokens [{start}, {end}) with weight {weight:g} do not "
                                 f"follow the previous source (at {position}) with a positive weight")
            position = end
            for shard in range(len(self.split.lengths)):
                a, b = max(start, int(bounds[shard])), min(end, int(bounds[shard + 1]))
                if b > a:
                    segments.append((shard, a - int(bounds[shard]), b - a, k))
            if max((n for _, _, n, s in segments if s == k), default=0) < self.block_size + 1:
                raise SplitTooShort(f"source {name!r} holds {end - start:,} tokens of the split, fewer than "
                                    f"block_size + 1 = {self.block_size + 1:,} in one stretch; lower "
                                    "model.block_size, or give the source more text")
        if position != len(self.split):
            raise ValueError(f"the sources cover {position:,} tokens, the split holds {len(self.split):,}")
        return segments

    def _epoch_offset(self, epoch: int) -> int:
        return derive_seed(self.seed, "offset", epoch) % self.offsets

    def _counts(self, epoch: int) -> np.ndarray:
        """Windows per segment (per shard, when not a mixture) in `epoch`."""
        offset = self._epoch_offset(epoch)
        return np.array([max(0, (n - 1 - offset) // self.block_size) for _, _, n, _ in self.segments])

    def shares(self, windows: int) -> list[int]:
        """Windows of each source among `windows` draws: round(windows · w / Σw), by largest remainders."""
        weights = np.array([w for *_, w in self.sources], dtype=np.float64)
        exact = windows * weights / weights.sum()
        counts = np.floor(exact).astype(np.int64)
        for k in np.argsort(-(exact - counts), kind="stable")[:windows - int(counts.sum())]:
            counts[k] += 1
        return [int(c) for c in counts]

    def _mixture_draws(self, epoch: int) -> np.ndarray:
        """The epoch's windows (indices into its segments' windows), each source's share of them."""
        counts = self._counts(epoch)
        per_source = np.bincount([s for *_, s in self.segments], weights=counts,
                                 minlength=len(self.sources)).astype(np.int64)
        firsts = np.concatenate([[0], np.cumsum(per_source)])  # a source's segments follow each other
        rng = np.random.default_rng(derive_seed(self.seed, "mixture", epoch))
        picks = []
        for k, share in enumerate(self.shares(int(counts.sum()))):
            full, rest = divmod(share, int(per_source[k]))
            own = np.arange(firsts[k], firsts[k + 1], dtype=np.int64)
            picks += [np.tile(own, full), firsts[k] + np.sort(rng.permutation(int(per_source[k]))[:rest])]
        return np.concatenate(picks)

    def windows_in_epoch(self, epoch: int) -> int:
        return int(self._counts(epoch).sum())

    def epoch_of(self, draw: int) -> int:
        while self.epoch_starts[-1] <= draw:
            self.epoch_starts.append(self.epoch_starts[-1] + self.windows_in_epoch(len(self.epoch_starts) - 1))
        return bisect.bisect_right(self.epoch_starts, draw) - 1

    def epochs_done(self, draws: int) -> float:
        """Epochs completed after `draws` windows, with the fraction of the current one."""
        epoch = self.epoch_of(draws)
        return epoch + (draws - self.epoch_starts[epoch]) / self.windows_in_epoch(epoch)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            perm = torch.randperm(self.windows_in_epoch(epoch), generator=generator)
            self._perms[epoch] = perm if self.sources is None else torch.from_numpy(self._mixture_draws(epoch))[perm]
        return self._perms[epoch]

    def _locate(self, draw: int) -> tuple[int, int, int]:
        """(segment, start in its shard, epoch) of one draw."""
        epoch = self.epoch_of(draw)
        index = int(self._permutation(epoch)[draw - self.epoch_starts[epoch]])
        bounds = np.cumsum(self._counts(epoch))
        segment = int(np.searchsorted(bounds, index, side="right"))
        local = index - (int(bounds[segment - 1]) if segment else 0)
        return segment, self.segments[segment][1] + self._epoch_offset(epoch) + local * self.block_size, epoch

    def source_of(self, draw: int) -> int:
        """The index of the source one draw's window comes from (0 when not a mixture)."""
        return self.segments[self._locate(draw)[0]][3]

    def window(self, draw: int) -> np.ndarray:
        """The block_size + 1 tokens of one draw."""
        segment, start, _ = self._locate(draw)
        return self.split.read(self.segments[segment][0], start, self.block_size + 1)

    def first_draw(self, step: int, micro_step: int = 0) -> int:
        return ((step * self.accum + micro_step) * self.world_size + self.rank) * self.batch_size

    def batch(self, step: int, micro_step: int = 0, device: torch.device | str = "cpu"):
        first = self.first_draw(step, micro_step)
        windows = torch.from_numpy(np.stack([self.window(first + b) for b in range(self.batch_size)]))
        x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # (B, T) each
        if torch.device(device).type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)


def sequential_windows(tokens, block_size: int, batch_size: int,
                       max_tokens: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every target of the split exactly once: consecutive non-overlapping windows in each shard,
    the last one of a shard shorter. With `max_tokens`, a fixed subset: about max_tokens // block_size
    full windows evenly spaced over the split (the same windows in every run, so runs compare)."""
    split = TokenSplit.of(tokens)
    per_shard = [(n - 1) // block_size for n in split.lengths]  # full windows of each shard
    bounds = np.cumsum(per_shard)
    total = int(bounds[-1]) if len(bounds) else 0
    subset = max_tokens is not None and max_tokens < len(split)
    keep = min(max(1, max_tokens // block_size), total) if subset else total
    picks = (i * total // keep for i in range(keep)) if subset else range(total)

    def start_of(window: int) -> tuple[int, int]:
        shard = int(np.searchsorted(bounds, window, side="right"))
        return shard, (window - (int(bounds[shard - 1]) if shard else 0)) * block_size

    batch = []
    for window in picks:
        shard, start = start_of(window)
        batch.append(split.read(shard, start, block_size + 1))
        if len(batch) == batch_size:
            yield _pair(np.stack(batch))
            batch = []
    if batch:
        yield _pair(np.stack(batch))
    if subset:
        return
    for shard, n in enumerate(split.lengths):  # the shorter last window of each shard
        start = per_shard[shard] * block_size
        if start < n - 1:
            yield _pair(split.read(shard, start, n - start)[None])


def _pair(windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    windows = torch.from_numpy(windows)
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
