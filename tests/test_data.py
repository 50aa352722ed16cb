"""Token files and batches: tail split, uint16/uint32 round trip, shards written in order and
memory-mapped, shifted targets, batches that are a pure function of (seed, rank, step) drawn
without replacement within an epoch and disjoint across ranks, whole-split windows that cover
every target exactly once, and a fixed evaluation subset."""

import numpy as np
import pytest
import torch

from folio.data import ShardWriter, TokenSplit, WindowSampler, sequential_windows, token_dtype


def _round_trip(tmp_path, ids, dtype):
    """Write `ids` as one shard, then read them back: (the shard's path, the ids read)."""
    writer = ShardWriter(tmp_path, "x", dtype, shard_tokens=1000)
    writer.write(ids)
    (shard,) = writer.close()
    path = tmp_path / shard["file"]
    return path, TokenSplit.open([path], dtype).head(len(ids)).tolist()


def test_token_file_round_trip_is_uint16(tmp_path):
    ids = [0, 1, 65535, 42]
    path, read = _round_trip(tmp_path, np.array(ids), token_dtype(100))
    assert path.stat().st_size == 2 * len(ids) and read == ids


def test_large_vocabularies_use_uint32(tmp_path):
    assert token_dtype(65_536) == np.uint16 and token_dtype(100_277) == np.uint32
    path, read = _round_trip(tmp_path, [100_000, 3], token_dtype(100_277))
    assert path.stat().st_size == 8 and read == [100_000, 3]


def test_ids_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        ShardWriter(tmp_path, "x", np.uint16, shard_tokens=10).write(np.array([70000]))


def test_batches_are_shifted_windows():
    tokens = torch.arange(50)
    x, y = WindowSampler(tokens, block_size=8, batch_size=4, seed=0).batch(step=0)
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
    torch.testing.assert_close(y, x + 1)


def test_batches_depend_only_on_seed_rank_step_and_micro_step():
    a = WindowSampler(torch.arange(1000), 8, 4, seed=1, grad_accum_steps=2)
    b = WindowSampler(torch.arange(1000), 8, 4, seed=1, grad_accum_steps=2)
    for step in (5, 0, 40, 5):  # any order, any sampler: the same batch for the same step
        torch.testing.assert_close(a.batch(step)[0], b.batch(step)[0])
    assert not torch.equal(a.batch(5)[0], a.batch(6)[0])
    assert not torch.equal(a.batch(5, micro_step=1)[0], a.batch(5)[0])
    other_seed = WindowSampler(torch.arange(1000), 8, 4, seed=2, grad_accum_steps=2)
    assert not torch.equal(other_seed.batch(5)[0], a.batch(5)[0])


def _starts(sampler, steps):
    return [int(x[0]) for step in steps for x in sampler.batch(step)[0]]


def test_an_epoch_draws_every_window_once_and_ranks_never_share_one():
    tokens = torch.arange(1001)  # windows of 9 tokens at a stride of 8: 124 or 125 per epoch
    ranks = [WindowSampler(tokens, 8, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    per_epoch = ranks[0].windows_in_epoch(0)
    steps = range(per_epoch // 8)  # 2 ranks x 4 windows per step
    starts = [_starts(r, steps) for r in ranks]
    assert not set(starts[0]) & set(starts[1])
    drawn = starts[0] + starts[1]
    assert len(drawn) == len(set(drawn))  # without replacement
    offset = drawn[0] % 8
    assert all(s % 8 == offset for s in drawn)  # one grid per epoch, shifted by a seeded offset
    later = {WindowSampler(tokens, 8, 4, seed=3).window(d)[0] % 8 for d in range(0, 50 * per_epoch, per_epoch)}
    assert len(later) > 1  # the grid moves between epochs
    assert ranks[0].epochs_done(2 * per_epoch) == pytest.approx(2.0)


def test_windows_never_span_two_shards_and_are_read_from_the_files(tmp_path):
    writer = ShardWriter(tmp_path, "train", np.uint16, shard_tokens=100)
    writer.write(np.arange(150))
    writer.write(np.arange(150, 250))
    shards = writer.close()
    assert [s["tokens"] for s in shards] == [100, 100, 50] and not list(tmp_path.glob(".*"))
    split = TokenSplit.open([tmp_path / s["file"] for s in shards], np.uint16)
    assert isinstance(split.shards[0], np.memmap) and len(split) == 250
    sampler = WindowSampler(split, 8, 4, seed=0)
    for draw in range(3 * sampler.windows_in_epoch(0)):
        window = sampler.window(draw)
        assert (np.diff(window) == 1).all()  # consecutive ids: inside one shard


def test_an_aborted_shard_writer_leaves_nothing(tmp_path):
    writer = ShardWriter(tmp_path, "val", np.uint16, shard_tokens=10)
    writer.write(np.arange(25))
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_too_short_split_is_refused():
    with pytest.raises(ValueError, match="block_size \\+ 1 = 9"):
        WindowSampler(torch.arange(8), 8, 1, seed=0)


def test_the_evaluation_subset_is_fixed_and_evenly_spread():
    tokens = torch.arange(10_001)
    windows = [x for x, _ in sequential_windows(tokens, 10, batch_size=4, max_tokens=100)]
    starts = torch.cat(windows)[:, 0].tolist()
    assert len(starts) == 10 and starts == sorted(starts) and starts[-1] > 8_000
    again = [x for x, _ in sequential_windows(tokens, 10, batch_size=4, max_tokens=100)]
    assert all(torch.equal(a, b) for a, b in zip(windows, again))


@pytest.mark.parametrize("n_tokens", [9, 17, 40, 41])
def test_sequential_windows_cover_every_target_once(n_tokens):
    tokens = torch.arange(n_tokens)
    targets = torch.cat([y.flatten() for _, y in sequential_windows(tokens, 8, batch_size=2)])
    assert sorted(targets.tolist()) == list(range(1, n_tokens))
    for x, y in sequential_windows(tokens, 8, batch_size=2):
        torch.testing.assert_close(y, x + 1)
