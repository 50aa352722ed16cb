"""Generation speed on CPU: the real nanoGPT's sampling loop against folio's KV cache, int8 and
compiled decoding, at batch 1 and 8, time to first token, the memory-bandwidth limit, and what
int8 does to the val loss of a trained checkpoint.

    python benchmarks/bench_generate.py [--threads N] [--repeats 3] [--new-tokens 500]
        [--checkpoint models/best.pt --tokenizer data/tokenizer --val data/prepared/val.bin]

The speed model is nanoGPT's Shakespeare-char size — 6 layers, width 384, 6 heads, block 256,
vocab 65: 10.7M parameters — with random weights (speed does not depend on them), sampling at
temperature 0.8 with top-k 200 from a one-token prompt, as nanoGPT's sample.py does. nanoGPT runs
from a temporary copy of ../shared/anchors/nanoGPT: its own `GPT.generate` on its own `GPT` of the
same size, in the same run. Each row's "vs nanoGPT" is against nanoGPT at the same batch size.
The limit: one decoding step reads every int8 weight and the KV cache once, so tokens/s at
batch 1 can not exceed read bandwidth / bytes per token; the bandwidth is measured on a buffer of
the weights' size (it stays in the L3 cache, as the weights do) and on one far larger (DRAM).
The int8 quality lines need a trained checkpoint; they are skipped if it is missing. Writes
reports/bench_generate.md and reports/bench_generate.json. Target (issue #14): >= 25x nanoGPT at
batch 1. The compiled lines (`GenerationConfig(compile=True)`) report their first run, which
compiles, apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from folio import checkpoint
from folio.data import read_tokens
from folio.evaluate import split_loss
from folio.generate import GenerationConfig, generate_ids
from folio.model import GPT, GPTConfig
from folio.quantize import Int8Linear, quantize_int8
from folio.tokenizers import load_tokenizer
from nanogpt import Anchor
from timing import timed

SPEED_MODEL = GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)
TEMPERATURE, TOP_K = 0.8, 200


def nanogpt_model(anchor: Anchor):
    """nanoGPT's own GPT (from the anchor's model.py) at the speed model's size, random weights."""
    module = anchor.model_module()
    torch.manual_seed(0)
    config = module.GPTConfig(n_layer=SPEED_MODEL.n_layer, n_head=SPEED_MODEL.n_head,
                              n_embd=SPEED_MODEL.n_embd, block_size=SPEED_MODEL.block_size,
                              vocab_size=SPEED_MODEL.vocab_size, dropout=0.0)
    return module.GPT(config).eval()


def nanogpt_run(model, prompt: torch.Tensor, new_tokens: int):
    """nanoGPT's sampling loop, `GPT.generate`: the whole cropped context every token."""
    return lambda: model.generate(prompt, new_tokens, temperature=TEMPERATURE, top_k=TOP_K)


def read_bandwidth(n_bytes: int, repeats: int = 20) -> float:
    """GB/s of summing a float32 buffer of n_bytes (a buffer that fits the L3 cache stays there)."""
    best, _ = timed(torch.ones(n_bytes // 4).sum, repeats)
    return n_bytes / best / 1e9


def decode_bytes_per_token(model: GPT, new_tokens: int) -> dict:
    """What one decoding step of an int8 model reads: its int8 Linear weights (1 byte each, a
    bf16 scale and a float32 bias per row), one token and one position row (float32), and the
    float32 KV cache up to the mean position."""
    cfg = model.config
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    weights = sum(m.weight.numel() + 6 * m.out_features for m in layers) + 2 * 4 * cfg.n_embd
    kv = 2 * cfg.n_layer * (new_tokens / 2) * cfg.n_embd * 4
    return {"int8_weights": weights, "kv_cache": kv, "total": weights + kv}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def folio_run(model: GPT, prompts: list[list[int]], new_tokens: int, use_cache: bool = True,
              compile: bool = False):
    config = GenerationConfig(max_new_tokens=new_tokens, temperature=TEMPERATURE, top_k=TOP_K, seed=0,
                              compile=compile)
    return lambda: sum(1 for _ in generate_ids(model, prompts, config, use_cache))


def folio_first_token(model: GPT, prompt: list[int]):
    config = GenerationConfig(max_new_tokens=1, temperature=TEMPERATURE, top_k=TOP_K, seed=0)
    return lambda: next(generate_ids(model, [prompt], config))


def with_threads(n: int, fn):
    """fn run with n torch threads (a busy machine can make 2 threads far slower than 1)."""
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def speed_rows(args, anchor: Anchor) -> list[dict]:
    nano = nanogpt_model(anchor)
    torch.manual_seed(0)
    model = GPT(SPEED_MODEL).eval()
    int8 = quantize_int8(GPT(SPEED_MODEL).eval())
    n, one = args.new_tokens, [[0]]
    prompt_200 = torch.randint(SPEED_MODEL.vocab_size, (200,)).tolist()
    runs = [
        ("nanoGPT generate (no cache), batch 1", 1, n, nanogpt_run(nano, torch.zeros(1, 1, dtype=torch.long), n)),
        ("nanoGPT generate (no cache), batch 8", 8, n, nanogpt_run(nano, torch.zeros(8, 1, dtype=torch.long), n)),
        ("folio, no cache (same windows), batch 1", 1, n, folio_run(model, one, n, use_cache=False)),
        ("folio KV cache, batch 1", 1, n, folio_run(model, one, n)),
        ("folio KV cache, int8, batch 1", 1, n, folio_run(int8, one, n)),
        ("folio KV cache, batch 8", 8, n, folio_run(model, one * 8, n)),
        ("folio KV cache, int8, batch 8", 8, n, folio_run(int8, one * 8, n)),
        ("folio KV cache, compiled, batch 1", 1, n, folio_run(model, one, n, compile=True)),
        ("folio KV cache, int8, compiled, batch 1", 1, n, folio_run(int8, one, n, compile=True)),
        ("folio KV cache, int8, compiled, batch 8", 8, n, folio_run(int8, one * 8, n, compile=True)),
    ]
    if torch.get_num_threads() > 1:
        runs += [
            ("folio KV cache, batch 1, 1 thread", 1, n, with_threads(1, folio_run(model, one, n))),
            ("folio KV cache, int8, batch 1, 1 thread", 1, n, with_threads(1, folio_run(int8, one, n))),
        ]
    rows = []
    for name, batch, tokens, fn in runs:
        started = time.perf_counter()
        fn()  # the first run: compiles the step for the compiled lines
        first_s = time.perf_counter() - started
        # nanoGPT at batch 8 recomputes 8 windows of up to 256 tokens a step: minutes a run, so
        # its one (eager, nothing to warm up that matters at that length) run is the figure
        slow = name.startswith("nanoGPT") and batch > 1
        best, median = (first_s, first_s) if slow else timed(fn, args.repeats)
        rows.append({"what": name, "batch": batch, "new_tokens": tokens, "best_s": best,
                     "median_s": median, "tokens_per_s": batch * tokens / median, "first_run_s": first_s})
        print(f"{name}: {rows[-1]['tokens_per_s']:.0f} tokens/s (median {median:.2f} s)", flush=True)
    ttft = [
        ("nanoGPT generate, first token of a 200-token prompt", nanogpt_run(nano, torch.tensor([prompt_200]), 1)),
        ("folio KV cache, first token of a 200-token prompt", folio_first_token(model, prompt_200)),
        ("folio KV cache, int8, first token of a 200-token prompt", folio_first_token(int8, prompt_200)),
    ]
    for name, fn in ttft:
        best, median = timed(fn, max(5, args.repeats))
        rows.append({"what": name, "batch": 1, "new_tokens": 1, "best_s": best, "median_s": median,
                     "time_to_first_token_ms": 1000 * median})
        print(f"{name}: {1000 * median:.1f} ms", flush=True)
    return rows


def quality_rows(args) -> list[dict]:
    """Val loss and bits per byte of the trained checkpoint in float32 and int8, and its speed."""
    tokenizer = load_tokenizer(args.tokenizer)
    model = checkpoint.build_model(checkpoint.load(args.checkpoint), tokenizer.digest).eval()
    val = read_tokens(args.val)
    predicted_bytes = len(tokenizer.decode(val[1:].tolist()).encode("utf-8"))
    rows = []
    for name, m in [("float32", model), ("int8", quantize_int8(model))]:
        result = split_loss(m, val)
        total_bits = result["loss"] * result["n_tokens"] / math.log(2)
        _, median = timed(folio_run(m, [[0]], args.new_tokens), args.repeats)
        rows.append({"what": name, "val_loss": result["loss"], "bits_per_byte": total_bits / predicted_bytes,
                     "tokens_per_s": args.new_tokens / median})
        print(f"checkpoint {name}: val loss {result['loss']:.4f}, "
              f"{rows[-1]['bits_per_byte']:.4f} bits/byte, {rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    rows.append({"what": "change (int8 - float32)", "val_loss": rows[1]["val_loss"] - rows[0]["val_loss"],
                 "bits_per_byte": rows[1]["bits_per_byte"] - rows[0]["bits_per_byte"],
                 "tokens_per_s": rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]})
    return rows


def markdown(args, machine: dict, speed: list[dict], quality: list[dict], config: GPTConfig | None) -> str:
    base = {r["batch"]: r["tokens_per_s"] for r in speed if r["what"].startswith("nanoGPT generate (")}
    lines = [
        "# Generation benchmark", "",
        f"`python benchmarks/bench_generate.py` — {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['threads']} torch threads, torch {machine['torch']}; load average "
        f"{machine['load_before']:.2f} before, {machine['load_after']:.2f} after "
        "(well above 0 means other work shared the CPU and the numbers are pessimistic).", "",
        f"Model: {SPEED_MODEL.n_layer} layers, width {SPEED_MODEL.n_embd}, {SPEED_MODEL.n_head} heads, "
        f"block {SPEED_MODEL.block_size}, vocab {SPEED_MODEL.vocab_size} "
        f"({machine['params'] / 1e6:.1f}M parameters, random weights); {args.new_tokens} new tokens "
        f"from a 1-token prompt, temperature {TEMPERATURE}, top-k {TOP_K}; median of {args.repeats} runs.", "",
        "| what | tokens/s | vs nanoGPT | median | best | first run (compiles) |", "|---|---|---|---|---|---|",
    ]
    for r in speed:
        if "tokens_per_s" in r:
            lines.append(f"| {r['what']} | {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base[r['batch']]:.1f}x | "
                         f"{r['median_s']:.2f} s | {r['best_s']:.2f} s | {r['first_run_s']:.2f} s |")
    limit = machine["limit"]
    best_b1 = max(r["tokens_per_s"] for r in speed if r.get("batch") == 1 and "tokens_per_s" in r)
    lines += [
        "", f"Limit at batch 1: a step reads {limit['bytes']['int8_weights'] / 1e6:.1f} MB of int8 "
        f"weights and {limit['bytes']['kv_cache'] / 1e6:.1f} MB of KV cache (at the mean position), "
        f"{limit['bytes']['total'] / 1e6:.1f} MB a token. Read bandwidth measured now: "
        f"{limit['cache_gbs']:.0f} GB/s on a buffer that size (L3), {limit['dram_gbs']:.1f} GB/s on 1 GB "
        f"(DRAM). Bound: {limit['tokens_per_s_l3']:,.0f} tokens/s from L3, "
        f"{limit['tokens_per_s_dram']:,.0f} from DRAM; the fastest batch-1 line reached "
        f"{best_b1:,.0f} ({best_b1 / limit['tokens_per_s_l3']:.0%} of the L3 bound).",
    ]
    lines += ["", "| time to first token | median | best |", "|---|---|---|"]
    for r in speed:
        if "time_to_first_token_ms" in r:
            lines.append(f"| {r['what']} | {r['time_to_first_token_ms']:.1f} ms | {1000 * r['best_s']:.1f} ms |")
    if quality:
        lines += [
            "", f"int8 on the trained checkpoint `{args.checkpoint}` ({config.n_layer} layers, width "
            f"{config.n_embd}, block {config.block_size}), whole val split `{args.val}`:", "",
            "| weights | val loss (nats/token) | bits per byte | tokens/s (KV cache, batch 1) |",
            "|---|---|---|---|",
        ]
        for r in quality[:2]:
            lines.append(f"| {r['what']} | {r['val_loss']:.4f} | {r['bits_per_byte']:.4f} | {r['tokens_per_s']:.0f} |")
        d = quality[2]
        lines.append(f"| {d['what']} | {d['val_loss']:+.4f} | {d['bits_per_byte']:+.4f} | {d['tokens_per_s']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/best.pt"))
    parser.add_argument("--tokenizer", type=Path, default=Path("data/tokenizer"))
    parser.add_argument("--val", type=Path, default=Path("data/prepared/val.bin"))
    parser.add_argument("--out", type=Path, default=Path("reports/bench_generate.md"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)),
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "params": GPT(SPEED_MODEL).num_params(), "load_before": os.getloadavg()[0]}
    anchor = Anchor()
    speed = speed_rows(args, anchor)
    anchor.cleanup()
    torch.manual_seed(0)
    per_token = decode_bytes_per_token(quantize_int8(GPT(SPEED_MODEL).eval()), args.new_tokens)
    cache_gbs, dram_gbs = read_bandwidth(int(per_token["total"])), read_bandwidth(10**9, repeats=3)
    machine["limit"] = {"bytes": per_token, "cache_gbs": cache_gbs, "dram_gbs": dram_gbs,
                        "tokens_per_s_l3": cache_gbs * 1e9 / per_token["total"],
                        "tokens_per_s_dram": dram_gbs * 1e9 / per_token["total"]}
    quality, config = [], None
    if args.checkpoint.exists() and args.tokenizer.exists() and args.val.exists():
        quality = quality_rows(args)
        config = GPTConfig(**checkpoint.load(args.checkpoint)["model_config"])
    else:
        print(f"skipping the int8 quality lines: {args.checkpoint}, {args.tokenizer} or {args.val} missing")
    machine["load_after"] = os.getloadavg()[0]
    report = markdown(args, machine, speed, quality, config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "speed": speed,
         "int8_quality": quality}, indent=2) + "\n")
    print(report)


if __name__ == "__main__":
    main()
