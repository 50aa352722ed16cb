"""Training benchmarks on this machine: matmul peak, throughput and MFU, and loss per second.

    python benchmarks/bench_train.py peak
    python benchmarks/bench_train.py throughput [--dtype float32|bfloat16] [--compile] [--steps 60]
        [--set model.n_embd=192 ...]
    python benchmarks/bench_train.py budget --seconds 71 [--set model.n_embd=192 ...]
    python benchmarks/bench_train.py memory        # gradient checkpointing: saved activations

`throughput` runs nanoGPT's CPU config (4 layers, width 128, 4 heads, block 64, batch 12) through
folio's own train step and reports tokens/s and model-FLOPs utilisation against the fp32 matmul
peak measured by `peak`. `budget` trains on Tiny Shakespeare (char) for a wall-clock budget of
optimisation and reports the loss over the whole val split, plus when the run first reached a
target val loss (nanoGPT's 1.886 by default). Each run appends a line to reports/bench_train.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from folio import flops
from folio.splits import BOUNDARY, split_stream, tail_plan
from folio.evaluate import split_loss
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer
from folio.train import TrainConfig, Trainer

CORPUS = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
REPORT = Path("reports/bench_train.md")
NANOGPT_CPU = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)


def record(line: str) -> None:
    print(line)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as f:
        f.write(f"- {time.strftime('%Y-%m-%d %H:%M')} {line}\n")


def matmul_peak(dtype=torch.float32, n: int = 2048, repeats: int = 20) -> float:
    """Best GFLOP/s of an n x n matmul on this machine's threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def flops_per_token(cfg: GPTConfig, n_params: int) -> float:
    """folio.flops's estimate (nanoGPT's and PaLM's) for a model config."""
    return flops.flops_per_token(n_params, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size)


def corpus_tokens(val_fraction: float = 0.1):
    text = CORPUS.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    parts = {"train": [], "val": []}  # the pipeline's tail split of one text
    for split, piece in split_stream([(text, True)], tail_plan(len(text), val_fraction)):
        if piece is not BOUNDARY:
            parts[split].append(piece)
    return tok, *(torch.tensor(tok.encode("".join(parts[split]))) for split in ("train", "val"))


def trainer_for(model_kw: dict, train_kw: dict, out_dir: Path) -> Trainer:
    tok, train_ids, val_ids = corpus_tokens()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **model_kw))
    info = {"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest}
    return Trainer(model, train_ids, val_ids, TrainConfig(device="cpu", **train_kw), out_dir,
                   tokenizer_info=info, log=lambda m: None)


def throughput(args) -> None:
    model_kw, train_kw = parse_overrides(args.set)
    model_kw = {**NANOGPT_CPU, **model_kw}
    train_kw = {"batch_size": 12, "max_iters": 10**6, **train_kw, "dtype": args.dtype, "compile": args.compile}
    trainer = trainer_for(model_kw, train_kw, Path("/tmp/folio-bench"))
    for _ in range(10):  # warm-up (and compilation)
        trainer.train_step()
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    seconds = time.perf_counter() - started
    tokens_per_sec = args.steps * train_kw["batch_size"] * model_kw["block_size"] / seconds
    n_params = trainer.model.num_params()
    peak = matmul_peak()
    mfu = tokens_per_sec * flops_per_token(trainer.model.config, n_params) / (peak * 1e9)
    config = "nanoGPT-CPU config" if not args.set else f"nanoGPT-CPU config with {' '.join(args.set)}"
    record(f"throughput {config}, dtype {args.dtype}, compile {args.compile}: "
           f"{tokens_per_sec:,.0f} tokens/s, MFU {mfu:.1%} of fp32 peak {peak:.0f} GFLOP/s "
           f"({n_params:,} params, {args.steps} steps)")


def parse_overrides(pairs: list[str]) -> tuple[dict, dict]:
    model_kw, train_kw = {}, {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        section, name = key.split(".", 1)
        {"model": model_kw, "train": train_kw}[section][name] = yaml.safe_load(value)
    return model_kw, train_kw


def budget(args) -> None:
    model_kw, train_kw = parse_overrides(args.set)
    model_kw = {**NANOGPT_CPU, **model_kw}
    train_kw = {"batch_size": 12, "max_iters": 10**6, "eval_interval": 100, "eval_iters": 20,
                **train_kw, "max_seconds": args.seconds}
    trainer = trainer_for(model_kw, train_kw, Path("/tmp/folio-bench-budget"))
    result = trainer.fit()
    val = split_loss(trainer.model, trainer.eval_samplers["val"].tokens, batch_size=64)["loss"]
    reached = next((sec for _, _, v, sec in result.history["evals"] if v <= args.target), None)
    when = f"{reached:.0f} s" if reached is not None else "never"
    record(f"budget {args.seconds:.0f} s, model {model_kw}, train {train_kw}: {result.step} steps, "
           f"whole-val loss {val:.4f}, last eval-estimate {result.history['evals'][-1][2]:.4f}, "
           f"estimate first <= {args.target} at {when}")


def memory(args) -> None:
    """Bytes of activations autograd saves for backward, with and without checkpointing."""
    saved = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=65, n_layer=6, n_head=6, n_embd=384, block_size=256))
        model.grad_checkpointing = checkpointing
        x = torch.randint(65, (16, 256))
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _, loss = model(x, x)
        loss.backward()
        saved[checkpointing] = total
    record(f"memory 6x384, block 256, batch 16: saved activations {saved[False] / 2**20:,.0f} MiB "
           f"without gradient checkpointing, {saved[True] / 2**20:,.0f} MiB with "
           f"({1 - saved[True] / saved[False]:.0%} less)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("peak")
    p = sub.add_parser("throughput")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--set", action="append", default=[], help="model.KEY=VALUE or train.KEY=VALUE")
    p = sub.add_parser("budget")
    p.add_argument("--seconds", type=float, default=71)
    p.add_argument("--target", type=float, default=1.886)
    p.add_argument("--set", action="append", default=[], help="model.KEY=VALUE or train.KEY=VALUE")
    sub.add_parser("memory")
    args = parser.parse_args()
    if args.what == "peak":
        record(f"matmul peak (2048^2): fp32 {matmul_peak():.0f} GFLOP/s, "
               f"bf16 {matmul_peak(torch.bfloat16):.0f} GFLOP/s")
    else:
        {"throughput": throughput, "budget": budget, "memory": memory}[args.what](args)


if __name__ == "__main__":
    main()
