"""A tiny training run as a separate process, for tests that kill it or launch it with torchrun.

    python tests/train_worker.py OUT_DIR [--max-iters N] [--checkpoint-every K] [--resume]

Writes OUT_DIR/history-rank<R>.json (the step losses) and OUT_DIR/params-rank<R>.txt (a checksum
of the final weights) when it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from folio import checkpoint, distributed
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer
from folio.train import TrainConfig, train

TEXT = "".join(f"{i} little pigs said {i * 7 % 13} words to the big bad wolf.\n" for i in range(300))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--max-iters", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if distributed.launched_by_torchrun():  # a test kills torchrun: its ranks must not train on
        from pipeline.lock import follow_parent

        follow_parent(os.getppid(), "train_worker")
    torch.set_num_threads(1)
    tok = CharTokenizer.train(TEXT)
    ids = torch.tensor(tok.encode(TEXT))
    split = int(len(ids) * 0.9)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32,
                          dropout=0.1))
    cfg = TrainConfig(max_iters=args.max_iters, batch_size=8, learning_rate=3e-3, warmup_iters=5,
                      eval_interval=10, eval_iters=2, checkpoint_every=args.checkpoint_every,
                      device="cpu", seed=3, dtype="float32")
    resume = checkpoint.load(args.out_dir / "last.pt") if args.resume else None
    result = train(model, ids[:split], ids[split:], cfg, args.out_dir, resume=resume,
                   tokenizer_info={"kind": "char", "vocab_size": tok.vocab_size, "digest": tok.digest},
                   log=lambda message: None)
    rank = distributed.init(torch.device("cpu")).rank
    (args.out_dir / f"history-rank{rank}.json").write_text(json.dumps(result.history))
    checksum = sum(float(p.double().sum()) for p in model.parameters())
    (args.out_dir / f"params-rank{rank}.txt").write_text(repr(checksum))
    distributed.shutdown()


if __name__ == "__main__":
    main()
