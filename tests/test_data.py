"""Token files and batches: tail split, uint16/uint32 round trip, shifted targets, batches that
are a pure function of (seed, rank, step),
whole-split windows that cover every target exactly once."""

import numpy as np
import pytest
import torch

from folio.data import (BatchSampler, read_tokens, sequential_windows, split_text, token_dtype,
                        write_tokens)


def test_split_keeps_the_tail_as_val():
    train, val = split_text("abcdefghij" * 10, 0.1)
    assert train == "abcdefghij" * 9 and val == "abcdefghij"


def test_token_file_round_trip_is_uint16(tmp_path):
    ids = np.array([0, 1, 65535, 42])
    write_tokens(tmp_path / "x.bin", ids)
    assert (tmp_path / "x.bin").stat().st_size == 2 * len(ids)
    assert read_tokens(tmp_path / "x.bin").tolist() == ids.tolist()


def test_large_vocabularies_use_uint32(tmp_path):
    assert token_dtype(65_536) == np.uint16 and token_dtype(100_277) == np.uint32
    write_tokens(tmp_path / "x.bin", [100_000, 3], token_dtype(100_277))
    assert read_tokens(tmp_path / "x.bin", "uint32").tolist() == [100_000, 3]


def test_ids_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_tokens(tmp_path / "x.bin", np.array([70000]))


def test_batches_are_shifted_windows():
    tokens = torch.arange(50)
    x, y = BatchSampler(tokens, block_size=8, batch_size=4, seed=0).batch(step=0)
    assert x.shape == y.shape == (4, 8)
    torch.testing.assert_close(y, x + 1)


def test_batches_depend_only_on_seed_rank_step_and_micro_step():
    a = BatchSampler(torch.arange(1000), 8, 4, seed=1)
    b = BatchSampler(torch.arange(1000), 8, 4, seed=1)
    for step in (5, 0, 5):  # any order, any sampler: the same batch for the same step
        torch.testing.assert_close(a.batch(step)[0], b.batch(step)[0])
    assert not torch.equal(a.batch(5)[0], a.batch(6)[0])
    assert not torch.equal(a.batch(5, micro_step=1)[0], a.batch(5)[0])
    other_rank = BatchSampler(torch.arange(1000), 8, 4, seed=1, rank=1)
    assert not torch.equal(other_rank.batch(5)[0], a.batch(5)[0])


def test_too_short_split_is_refused():
    with pytest.raises(ValueError, match="block_size \\+ 1 = 9"):
        BatchSampler(torch.arange(8), 8, 1, seed=0)


@pytest.mark.parametrize("n_tokens", [9, 17, 40, 41])
def test_sequential_windows_cover_every_target_once(n_tokens):
    tokens = torch.arange(n_tokens)
    targets = torch.cat([y.flatten() for _, y in sequential_windows(tokens, 8, batch_size=2)])
    assert sorted(targets.tolist()) == list(range(1, n_tokens))
    for x, y in sequential_windows(tokens, 8, batch_size=2):
        torch.testing.assert_close(y, x + 1)
