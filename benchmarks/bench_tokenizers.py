"""Tokenizer speed on the corpus: BPE training time (rustbpe) and encoding throughput per kind.

    python benchmarks/bench_tokenizers.py [--corpus PATH] [--vocab-size 2048] [--out reports/bench_tokenizers.md]

Targets (issue #4): BPE training on the 1.1 MB corpus at vocab 2048 in <= 2 s on 2 CPU cores;
encoding >= 10 MB/s.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from folio.tokenizers import train_tokenizer
from timing import timed

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("reports/bench_tokenizers.md"))
    args = parser.parse_args()
    text = args.corpus.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6

    rows = []
    train_best, train_median = timed(lambda: train_tokenizer("bpe", text, args.vocab_size), args.repeats)
    rows.append(f"| bpe train (rustbpe), vocab {args.vocab_size} | {train_best:.3f} s | {train_median:.3f} s | — |")
    for kind in ("char", "word", "bpe"):
        tok = train_tokenizer(kind, text, args.vocab_size)
        best, median = timed(lambda: tok.encode(text), args.repeats)
        rows.append(f"| {kind} encode ({tok.vocab_size} tokens) | {best:.3f} s | {median:.3f} s | "
                    f"{megabytes / best:.1f} MB/s |")
    report = "\n".join([
        "# Tokenizer benchmark",
        "",
        f"`python benchmarks/bench_tokenizers.py` on {args.corpus.name} ({megabytes:.2f} MB), "
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"best and median of {args.repeats} runs.",
        "",
        "| what | best | median | throughput (best) |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
