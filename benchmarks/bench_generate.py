"""Generation speed on CPU: the real nanoGPT's sampling loop against folio's KV cache, int8 and
compiled decoding, at batch 1 and 8, time to first token, the memory-bandwidth limit, and what
int8 does to the val loss of a trained checkpoint.

    python benchmarks/bench_generate.py [--threads N] [--repeats 3] [--new-tokens 500]
        [--workspace .] [--checkpoint models/best.pt]

The speed model is nanoGPT's Shakespeare-char size — 6 layers, width 384, 6 heads, block 256,
vocab 65: 10.7M parameters — with random weights (speed does not depend on them), sampling at
temperature 0.8 with top-k 200 from a one-token prompt, as nanoGPT's sample.py does. nanoGPT runs
from a temporary copy of ../shared/anchors/nanoGPT: its own `GPT.generate` on its own `GPT` of the
same size, in the same process and threads.

Like for like: every row is timed the same way (one warm-up run, timed apart as "first run",
then the median of --repeats runs), and each row's "vs nanoGPT" is against the nanoGPT row at the
same batch size that computes the same windows as folio. folio's Decoder restarts a full window
(block_size tokens) from its last block_size // 2 tokens (its positions are learned, so a cache
cannot slide); nanoGPT's generate crops a sliding window of block_size. The baseline rows call
nanoGPT's generate once per window, restarting it as folio does (`nanogpt_run`), so both sides
compute the same windows; one more row times nanoGPT's generate as it ships (sliding), for
reference. What else differs is written beside each ratio.

The limit: one decoding step reads every int8 weight and the KV cache once, so tokens/s at
batch 1 can not exceed read bandwidth / bytes per token; the bandwidth is measured on a buffer of
the weights' size (it stays in the L3 cache, as the weights do) and on one far larger (DRAM).

The int8 quality lines score a trained checkpoint of the --workspace (default: here) in float32
and int8 over its whole val split, read through the pipeline's own reader (data/prepared/ shards
and meta.json, data/tokenizer/), in nats per token and bits per byte (folio.evaluate.bits_per_byte
over the bytes of the predicted tokens, counted by `folio.evaluate.text_bytes`, as the evaluate stage counts them). If an input
is missing, the report says so in place of those lines, naming it and the stage that makes it.
Writes reports/bench_generate.md and reports/bench_generate.json.
Target (issue #14): >= 25x nanoGPT at batch 1.

    python benchmarks/bench_generate.py --options [--lengths 200 5000] [--repeats 2]

`--options` times, instead, what `folio generate` users choose between: plain, `--quantize int8`,
`--compile` and both, each run as its own `folio generate --json` process (as a user runs it, so
every compiled run pays its compile), on the default model (params.yaml's, the trained
models/best.pt when present) and on the 10.8M model of presets/gpu-shakespeare.yaml (random weights
of its shape), at each of --lengths new tokens from the prompt "ROMEO:", temperature 0.8, top-k 200,
seed 1. Per run: the generation seconds `folio generate` reports (compiling included) and the
process's wall time (importing torch and loading the model too); the median of --repeats.
Writes reports/bench_generate_options.md and .json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from folio.errors import FolioError
from folio.evaluate import bits_per_byte, split_loss, text_bytes
from folio.generate import GenerationConfig, generate_ids
from folio.model import GPT, GPTConfig
from folio.quantize import Int8Linear, quantize_int8
from nanogpt import Anchor, AnchorMissing
from folio import checkpoint
from pipeline import params as params_module
from pipeline.artifacts import BEST_CKPT, TOKENIZER_DIR, MissingArtifact, models, prepared
from pipeline.artifacts import tokenizer as tokenizer_files
from pipeline.errors import StageError
from timing import cpu_name, timed, warm_timed

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


def restart_windows(prompt_len: int, new_tokens: int, block_size: int) -> list[tuple[int, int]]:
    """folio's windows as calls of nanoGPT's generate: (the window a call starts from, the tokens
    it makes). From a window of L tokens a call can make block_size - L + 1 before its window would
    outgrow block_size; folio then restarts from the last block_size // 2 tokens
    (folio.generate.Decoder), and so does the next call."""
    keep, window = max(1, block_size // 2), min(prompt_len, block_size)
    calls, left = [], new_tokens
    while left > 0:
        calls.append((window, min(block_size - window + 1, left)))
        left -= calls[-1][1]
        window = keep
    return calls


def mean_windows(prompt_len: int, new_tokens: int, block_size: int) -> dict:
    """The mean window (tokens computed for one new token) of folio's restarts and of a sliding window."""
    restart = [w for start, n in restart_windows(prompt_len, new_tokens, block_size) for w in range(start, start + n)]
    sliding = [min(prompt_len + i, block_size) for i in range(new_tokens)]
    return {"restart": sum(restart) / len(restart), "sliding": sum(sliding) / len(sliding)}


def nanogpt_run(model, prompt: torch.Tensor, new_tokens: int):
    """nanoGPT's sampling loop, `GPT.generate` (the whole window recomputed every token), called
    once per window of folio's (`restart_windows`): each call continues from the last
    block_size // 2 tokens of the one before, so it computes the same windows as folio's Decoder."""
    keep = max(1, model.config.block_size // 2)
    calls = restart_windows(prompt.size(1), new_tokens, model.config.block_size)

    def run():
        window = prompt
        for _, n in calls:
            window = model.generate(window, n, temperature=TEMPERATURE, top_k=TOP_K)[:, -keep:]
    return run


def nanogpt_sliding_run(model, prompt: torch.Tensor, new_tokens: int):
    """nanoGPT's `GPT.generate` as it ships: a window sliding one token at a time once full."""
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


def folio_run(model: GPT, prompts: list[list[int]], new_tokens: int, use_cache: bool = True,
              compile: bool = False):
    """folio's sampling loop, `generate_ids`, with the KV cache or recomputing every window."""
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


def start(batch: int) -> torch.Tensor:
    """nanoGPT's prompt: one token 0 per row, as folio's [[0]] * batch."""
    return torch.zeros(batch, 1, dtype=torch.long)


def speed_runs(anchor: Anchor, new_tokens: int) -> tuple[list[tuple], list[tuple]]:
    """The generation runs, (what, batch, run, what differs from the nanoGPT baseline of its batch,
    whether it is that baseline), and the time-to-first-token runs, (what, run)."""
    nano = nanogpt_model(anchor)
    torch.manual_seed(0)
    model = GPT(SPEED_MODEL).eval()
    int8 = quantize_int8(GPT(SPEED_MODEL).eval())
    n, one, threads = new_tokens, [[0]], torch.get_num_threads()
    windows = mean_windows(1, n, SPEED_MODEL.block_size)
    runs = [
        ("nanoGPT generate (no cache), batch 1", 1, nanogpt_run(nano, start(1), n), "the baseline", True),
        ("nanoGPT generate (no cache), batch 8", 8, nanogpt_run(nano, start(8), n), "the baseline", True),
        ("nanoGPT generate as it ships (sliding window), batch 1", 1, nanogpt_sliding_run(nano, start(1), n),
         f"nanoGPT's own sliding window: {windows['sliding']:.0f} tokens a step on average, against "
         f"{windows['restart']:.0f}", False),
        ("folio, no cache, batch 1", 1, folio_run(model, one, n, use_cache=False),
         "nothing but the code: the same windows, recomputed every token", False),
        ("folio KV cache, batch 1", 1, folio_run(model, one, n), "KV cache", False),
        ("folio KV cache, int8, batch 1", 1, folio_run(int8, one, n), "KV cache, int8 weights", False),
        ("folio KV cache, batch 8", 8, folio_run(model, one * 8, n), "KV cache", False),
        ("folio KV cache, int8, batch 8", 8, folio_run(int8, one * 8, n), "KV cache, int8 weights", False),
        ("folio KV cache, compiled, batch 1", 1, folio_run(model, one, n, compile=True),
         "KV cache, torch.compile", False),
        ("folio KV cache, int8, compiled, batch 1", 1, folio_run(int8, one, n, compile=True),
         "KV cache, int8 weights, torch.compile", False),
        ("folio KV cache, int8, compiled, batch 8", 8, folio_run(int8, one * 8, n, compile=True),
         "KV cache, int8 weights, torch.compile", False),
    ]
    if threads > 1:
        runs += [
            ("folio KV cache, batch 1, 1 thread", 1, with_threads(1, folio_run(model, one, n)),
             f"KV cache, 1 torch thread (nanoGPT: {threads})", False),
            ("folio KV cache, int8, batch 1, 1 thread", 1, with_threads(1, folio_run(int8, one, n)),
             f"KV cache, int8 weights, 1 torch thread (nanoGPT: {threads})", False),
        ]
    prompt_200 = torch.randint(SPEED_MODEL.vocab_size, (200,)).tolist()
    return runs, [  # time to first token: the same 200-token window on both sides
        ("nanoGPT generate, first token of a 200-token prompt", nanogpt_run(nano, torch.tensor([prompt_200]), 1)),
        ("folio KV cache, first token of a 200-token prompt", folio_first_token(model, prompt_200)),
        ("folio KV cache, int8, first token of a 200-token prompt", folio_first_token(int8, prompt_200)),
    ]


def speed_rows(args, anchor: Anchor) -> list[dict]:
    """Every run timed alike: one warm-up run (timed apart: it compiles the compiled lines), then
    best and median of args.repeats runs; each row's ratio is against its batch's baseline."""
    runs, first_token = speed_runs(anchor, args.new_tokens)
    rows = []
    for name, batch, fn, differs, baseline in runs:
        first_s, best, median = warm_timed(fn, args.repeats)
        rows.append({"what": name, "batch": batch, "new_tokens": args.new_tokens, "best_s": best,
                     "median_s": median, "tokens_per_s": batch * args.new_tokens / median,
                     "first_run_s": first_s, "differs": differs, "baseline": baseline})
        print(f"{name}: {rows[-1]['tokens_per_s']:.0f} tokens/s (median {median:.2f} s)", flush=True)
    base = {r["batch"]: r["tokens_per_s"] for r in rows if r["baseline"]}
    for r in rows:
        r["vs_nanogpt"] = r["tokens_per_s"] / base[r["batch"]]
    for name, fn in first_token:
        best, median = timed(fn, max(5, args.repeats))
        rows.append({"what": name, "batch": 1, "new_tokens": 1, "best_s": best, "median_s": median,
                     "time_to_first_token_ms": 1000 * median})
        print(f"{name}: {1000 * median:.1f} ms", flush=True)
    return rows


def quality(workspace: Path, checkpoint_path: Path, new_tokens: int, repeats: int) -> dict:
    """Val loss (nats per token) and bits per byte of a trained checkpoint in float32 and int8 over
    the whole val split, and its decoding speed: {"checkpoint", "config", "rows"}; or
    {"skipped": why} naming the missing input and the stage that makes it. Everything is read
    through the pipeline's artifact layer, in `workspace`; inputs that are there but do not fit
    together (another tokenizer, partial shards) raise its one-line errors."""
    if not workspace.is_dir():
        return {"skipped": f"the workspace {workspace} is not a folder"}
    with contextlib.chdir(workspace):
        try:
            tokenizer = tokenizer_files.load()
            state, model = models.load_model(tokenizer, checkpoint_path)
            val = prepared.load_split("val")
        except MissingArtifact as err:
            return {"skipped": str(err)}
        rows = []
        for name, m in [("float32", model.eval()), ("int8", quantize_int8(model))]:
            # the bytes of the text the predicted tokens stand for, counted by the evaluate stage's rule
            result = split_loss(m, val, target_bytes=text_bytes(tokenizer))
            _, median = timed(folio_run(m, [[0]], new_tokens), repeats)
            rows.append({"what": name, "val_loss": result["loss"], "tokens": result["n_tokens"],
                         "bytes": result["n_bytes"],
                         "bits_per_byte": bits_per_byte(result["loss"], result["n_tokens"], result["n_bytes"]),
                         "tokens_per_s": new_tokens / median})
            print(f"checkpoint {name}: val loss {result['loss']:.4f}, {rows[-1]['bits_per_byte']:.4f} bits/byte, "
                  f"{rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    rows.append({"what": "change (int8 - float32)", "val_loss": rows[1]["val_loss"] - rows[0]["val_loss"],
                 "bits_per_byte": rows[1]["bits_per_byte"] - rows[0]["bits_per_byte"],
                 "tokens_per_s": rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]})
    return {"checkpoint": str(workspace / checkpoint_path), "config": state["model_config"], "rows": rows}


def quality_markdown(section: dict) -> list[str]:
    if "skipped" in section:
        return ["", f"**int8 on a trained checkpoint: skipped.** {section['skipped']}"]
    c = section["config"]
    lines = ["", f"int8 on the trained checkpoint `{section['checkpoint']}` ({c['n_layer']} layers, width "
             f"{c['n_embd']}, block {c['block_size']}), whole val split (data/prepared/, "
             f"{section['rows'][0]['tokens']:,} tokens predicted):", "",
             "| weights | val loss (nats/token) | bits per byte | tokens/s (KV cache, batch 1) |", "|---|---|---|---|"]
    for r in section["rows"][:2]:
        lines.append(f"| {r['what']} | {r['val_loss']:.4f} | {r['bits_per_byte']:.4f} | {r['tokens_per_s']:.0f} |")
    d = section["rows"][2]
    lines.append(f"| {d['what']} | {d['val_loss']:+.4f} | {d['bits_per_byte']:+.4f} | {d['tokens_per_s']:.2f}x |")
    return lines


def markdown(args, machine: dict, speed: list[dict], quality_section: dict) -> str:
    windows = machine["mean_window"]
    lines = [
        "# Generation benchmark", "",
        f"`python benchmarks/bench_generate.py` — {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['threads']} torch threads, torch {machine['torch']}; load average "
        f"{machine['load_before']:.2f} before, {machine['load_after']:.2f} after "
        "(well above 0 means other work shared the CPU and the numbers are pessimistic).", "",
        f"Model: {SPEED_MODEL.n_layer} layers, width {SPEED_MODEL.n_embd}, {SPEED_MODEL.n_head} heads, "
        f"block {SPEED_MODEL.block_size}, vocab {SPEED_MODEL.vocab_size} "
        f"({machine['params'] / 1e6:.1f}M parameters, random weights); {args.new_tokens} new tokens "
        f"from a 1-token prompt, temperature {TEMPERATURE}, top-k {TOP_K}. Every row: one warm-up run "
        f"(\"first run\"), then the median of {args.repeats} runs, same threads unless its row says "
        f"otherwise. Windows: a full window restarts from its last {SPEED_MODEL.block_size // 2} tokens "
        f"on both sides (nanoGPT's generate called once per window), {windows['restart']:.0f} tokens a "
        f"step on average; nanoGPT's own sliding window averages {windows['sliding']:.0f}.", "",
        "| what | tokens/s | vs nanoGPT | differs from nanoGPT's row by | median | best | first run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in speed:
        if "tokens_per_s" in r:
            lines.append(f"| {r['what']} | {r['tokens_per_s']:.0f} | {r['vs_nanogpt']:.1f}x | {r['differs']} | "
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
    lines += ["", "| time to first token (the same 200-token window) | median | best |", "|---|---|---|"]
    for r in speed:
        if "time_to_first_token_ms" in r:
            lines.append(f"| {r['what']} | {r['time_to_first_token_ms']:.1f} ms | {1000 * r['best_s']:.1f} ms |")
    return "\n".join(lines + quality_markdown(quality_section)) + "\n"


OPTIONS = {"plain": [], "int8": ["--quantize", "int8"], "compile": ["--compile"],
           "int8 + compile": ["--quantize", "int8", "--compile"]}
OPTIONS_PROMPT = "ROMEO:"
PRESET_10M = Path("presets/gpu-shakespeare.yaml")


def option_models(tmp: Path) -> list[tuple[str, Path]]:
    """(what, checkpoint) of the two models `--options` times: the default model (models/best.pt
    when it is params.yaml's shape, else random weights of that shape) and the 10.8M preset's shape
    with random weights (speed does not depend on the weights), both over data/tokenizer/."""
    tokenizer = tokenizer_files.load()
    info = {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "digest": tokenizer.digest}
    found = []
    for what, params_file in (("default model (params.yaml)", Path("params.yaml")),
                              ("10.8M model (presets/gpu-shakespeare.yaml)", PRESET_10M)):
        config = params_module.model_config(params_module.load(params_file), tokenizer.vocab_size)
        if params_file.name == "params.yaml" and BEST_CKPT.exists() and \
                checkpoint.load(BEST_CKPT)["model_config"] == config.to_dict():
            found.append((f"{what}, trained {BEST_CKPT}", BEST_CKPT))
            continue
        torch.manual_seed(0)
        model = GPT(config)
        path = tmp / f"{params_file.stem}.pt"
        checkpoint.save(path, {"model": model.state_dict(), "model_config": config.to_dict(), "step": 0,
                               "tokenizer": info})
        found.append((f"{what}, random weights, {model.num_params() / 1e6:.1f}M parameters", path))
    return found


def folio_generate_seconds(ckpt: Path, new_tokens: int, flags: list[str], threads: int | None) -> dict:
    """One `folio generate --json` process: the generation seconds it reports, its wall time and
    its CPU time (user + system, all threads: less sensitive than wall time to other work on the
    machine)."""
    command = [str(Path(sys.executable).with_name("folio")), "generate", OPTIONS_PROMPT, "--checkpoint", str(ckpt),
               "--tokenizer", str(TOKENIZER_DIR), "--max-new-tokens", str(new_tokens), "--seed", "1",
               "--temperature", "0.8", "--top-k", "200", "--json", *flags]
    if threads:
        command += ["--threads", str(threads)]
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed: {done.stderr.strip().splitlines()[-1]}")
    out = json.loads(done.stdout)
    return {"generate_s": out["seconds"], "wall_s": wall, "cpu_s": cpu,
            "new_tokens": out["completions"][0]["new_tokens"]}


def option_rows(lengths: list[int], repeats: int, threads: int | None) -> list[dict]:
    """Every (model, length, option), each the median of `repeats` fresh processes; the options
    take turns (plain, int8, compile, both, plain, ...), so that other work on the machine falls
    on all of them alike."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for what, ckpt in option_models(Path(tmp)):
            for n in lengths:
                runs = {option: [] for option in OPTIONS}
                for _ in range(repeats):
                    for option, flags in OPTIONS.items():
                        runs[option].append(folio_generate_seconds(ckpt, n, flags, threads))
                        r = runs[option][-1]
                        print(f"{what}, {n} tokens, {option}: {r['generate_s']:.2f} s generating, "
                              f"{r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU", flush=True)
                rows += [{"model": what, "new_tokens": n, "option": option, "runs": runs[option],
                          **{key: statistics.median(r[key] for r in runs[option])
                             for key in ("generate_s", "wall_s", "cpu_s")}} for option in OPTIONS]
    return rows


def options_markdown(machine: dict, rows: list[dict], repeats: int) -> str:
    threads = f" --threads {machine['threads']}" if machine.get("threads_set") else ""
    lines = ["# folio generate: plain, int8, compile", "",
             f"`python benchmarks/bench_generate.py --options{threads}` — {machine['cpu']}, {machine['cores']} cores, "
             f"{machine['threads']} torch thread(s), torch {machine['torch']}; load average {machine['load_before']:.2f} before, "
             f"{machine['load_after']:.2f} after. Each cell: the median of {repeats} `folio generate --json` "
             f"processes, prompt {OPTIONS_PROMPT!r}, temperature 0.8, top-k 200, seed 1; \"generating\" is the "
             "seconds it reports (compiling included), \"wall\" the whole process (torch import, loading), "
             "\"CPU\" the process's user + system time over all its threads.", "",
             "| model | new tokens | option | generating | wall | CPU | vs plain (generating) |",
             "|---|---|---|---|---|---|---|"]
    plain = {(r["model"], r["new_tokens"]): r["generate_s"] for r in rows if r["option"] == "plain"}
    for r in rows:
        ratio = plain[(r["model"], r["new_tokens"])] / r["generate_s"]
        lines.append(f"| {r['model']} | {r['new_tokens']} | {r['option']} | {r['generate_s']:.2f} s | "
                     f"{r['wall_s']:.2f} s | {r['cpu_s']:.2f} s | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def options_main(args) -> None:
    machine = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
               "threads": args.threads or torch.get_num_threads(), "threads_set": bool(args.threads),
               "load_before": os.getloadavg()[0]}
    rows = option_rows(args.lengths, args.repeats, args.threads)
    machine["load_after"] = os.getloadavg()[0]
    out = args.out if args.out != Path("reports/bench_generate.md") else Path("reports/bench_generate_options.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(options_markdown(machine, rows, args.repeats))
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up, on every row")
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--workspace", type=Path, default=Path("."),
                        help="a folio workspace with a trained checkpoint and its data/ (the int8 quality lines)")
    parser.add_argument("--checkpoint", type=Path, default=BEST_CKPT, help="in the workspace")
    parser.add_argument("--out", type=Path, default=Path("reports/bench_generate.md"))
    parser.add_argument("--options", action="store_true",
                        help="time folio generate's plain, int8, compile and int8 + compile instead (see above)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[200, 5000],
                        help="--options: new tokens per run, a short and a long generation")
    args = parser.parse_args()
    if args.options:
        return options_main(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)),
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "params": GPT(SPEED_MODEL).num_params(), "load_before": os.getloadavg()[0],
               "mean_window": mean_windows(1, args.new_tokens, SPEED_MODEL.block_size)}
    try:
        anchor = Anchor()
    except AnchorMissing as err:
        sys.exit(f"error: {err}")
    try:
        speed = speed_rows(args, anchor)
    finally:
        anchor.cleanup()
    torch.manual_seed(0)
    per_token = decode_bytes_per_token(quantize_int8(GPT(SPEED_MODEL).eval()), args.new_tokens)
    cache_gbs, dram_gbs = read_bandwidth(int(per_token["total"])), read_bandwidth(10**9, repeats=3)
    machine["limit"] = {"bytes": per_token, "cache_gbs": cache_gbs, "dram_gbs": dram_gbs,
                        "tokens_per_s_l3": cache_gbs * 1e9 / per_token["total"],
                        "tokens_per_s_dram": dram_gbs * 1e9 / per_token["total"]}
    try:
        quality_section = quality(args.workspace, args.checkpoint, args.new_tokens, args.repeats)
    except (StageError, FolioError) as err:
        sys.exit(f"error: the int8 quality lines: {err}")
    if "skipped" in quality_section:
        print(f"SKIPPED the int8 quality lines: {quality_section['skipped']}", file=sys.stderr, flush=True)
    machine["load_after"] = os.getloadavg()[0]
    report = markdown(args, machine, speed, quality_section)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "speed": speed,
         "int8_quality": quality_section}, indent=2) + "\n")
    print(report)


if __name__ == "__main__":
    main()
