"""Seeds derived from (seed, rank, step, ...): torch-free, so the data stages import it cheaply."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of `parts` (e.g. seed, rank, step): the same in
    every process, on every machine and Python version (unlike hash(), which may change)."""
    key = ",".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
