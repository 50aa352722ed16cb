"""Training side by side with the real nanoGPT, in the same run (see benchmarks/nanogpt.py).

    python benchmarks/bench_nanogpt.py throughput [--rounds 3] [--steps 300]
    python benchmarks/bench_nanogpt.py speedrun [--preset presets/cpu-speedrun.yaml] [--set key=value ...]

`throughput` alternates, round by round, nanoGPT's train.py at its CPU recipe (4 layers, width 128,
4 heads, block 64, batch 12, no biases, float32 eager: what its README runs on a CPU) with folio's
training loop on the same model, same batch and same torch threads: folio's defaults for this
machine (`train.dtype: auto`, eager) and compiled (`train.compile: true`). Each side's tokens/s in a
round is the median over its steps after warm-up (nanoGPT's printed step times; folio's
per-read averages, compilation excluded); the report gives the median over rounds of each side
and of the per-round ratio.
Model-FLOPs utilisation (nanoGPT's 6N + 12LHQT FLOPs per token) is given against both this
machine's fp32 and bf16 matmul peaks, measured in the same run.

`speedrun` times nanoGPT's whole CPU recipe (2000 steps) as one process, then `folio train
--params <preset>` as one process in a workspace whose data stages ran first (untimed, as
nanoGPT's prepare.py is), and scores both best checkpoints on the whole val split with one
function. The goal: folio's whole-val loss <= nanoGPT's in <= half its wall time.

Each writes a JSON report to reports/ and appends a line to reports/bench_nanogpt.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import corpus_tokens, flops_per_token, matmul_peak  # noqa: E402
from nanogpt import CORPUS, CPU_BATCH, CPU_MODEL, CPU_RECIPE, PROJECT, Anchor, whole_split_loss  # noqa: E402

from folio.config import GPTConfig, TrainConfig  # noqa: E402
from folio.data import read_tokens  # noqa: E402
from folio.model import create_model  # noqa: E402
from folio.train import Trainer  # noqa: E402
from pipeline.artifacts import prepared  # noqa: E402

REPORTS = PROJECT / "reports"
DATA_STAGES = ("download", "validate", "tokenize", "prepare", "validate_tokens")


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}


def record(name: str, result: dict, line: str) -> None:
    print(line)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"bench_nanogpt_{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    with (REPORTS / "bench_nanogpt.md").open("a") as f:
        f.write(f"- {result['machine']['date']} {line}\n")


# ---- throughput -------------------------------------------------------------------------------

class StepTimes:
    def __init__(self):
        self.tokens_per_sec = []

    def on_start(self, info):
        self.info = info

    def on_step(self, step, metrics):
        self.tokens_per_sec.append(metrics["tokens_per_sec"])

    def on_eval(self, step, metrics):
        pass


def folio_trainer(steps: int, compile: bool) -> tuple[Trainer, StepTimes]:
    tok, train_ids, val_ids = corpus_tokens()
    config = GPTConfig(vocab_size=tok.vocab_size, dropout=0.0, **CPU_MODEL)
    # nanoGPT's optimisation settings at this recipe; evaluation only at the start and the end
    cfg = TrainConfig(max_iters=steps, batch_size=CPU_BATCH, learning_rate=1e-3, min_lr=1e-4,
                      warmup_iters=100, beta2=0.99, eval_interval=10**6, eval_iters=20,
                      device="cpu", dtype="auto", compile=compile)
    times = StepTimes()
    trainer = Trainer(create_model(config, seed=0), train_ids, val_ids, cfg,
                      Path(tempfile.mkdtemp(prefix="folio-tp-")),
                      tokenizer_info={"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest},
                      callback=times, log=lambda m: None)
    return trainer, times


def folio_round(steps: int, compile: bool) -> dict:
    trainer, times = folio_trainer(steps, compile)
    trainer.fit()
    shutil.rmtree(trainer.out_dir, ignore_errors=True)
    # the first reads hold the warm-up (and, compiled, the compilation)
    steady = times.tokens_per_sec[20:]
    return {"tokens_per_sec": statistics.median(steady), "dtype": times.info["dtype"],
            "dtype_reason": times.info["dtype_reason"], "params": times.info["num_params"]}


def throughput(args) -> None:
    anchor = Anchor()
    recipe = [a for a in CPU_RECIPE if not a.startswith(("--max_iters", "--lr_decay_iters", "--log_interval"))]
    recipe += [f"--max_iters={args.steps}", f"--lr_decay_iters={args.steps}", "--log_interval=1",
               "--eval_interval=100000"]
    rounds = []
    for i in range(args.rounds):
        nano = anchor.train(recipe)
        nano_tps = CPU_BATCH * CPU_MODEL["block_size"] / (nano["median_step_ms"] / 1000)
        default, compiled = folio_round(args.steps, compile=False), folio_round(args.steps, compile=True)
        rounds.append({"nanogpt": nano_tps, "folio": default["tokens_per_sec"],
                       "folio_compiled": compiled["tokens_per_sec"], "dtype": default["dtype"],
                       "dtype_reason": default["dtype_reason"], "params": default["params"]})
        print(f"round {i + 1}: nanoGPT {nano_tps:,.0f} tokens/s, folio {default['tokens_per_sec']:,.0f}, "
              f"folio compiled {compiled['tokens_per_sec']:,.0f}", flush=True)
    anchor.cleanup()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    config = GPTConfig(vocab_size=65, **CPU_MODEL)
    flops = flops_per_token(config, rounds[0]["params"])
    result = {"machine": machine(), "steps": args.steps, "rounds": rounds, "peak_gflops": peaks,
              "flops_per_token": flops}
    for side in ("nanogpt", "folio", "folio_compiled"):
        tps = statistics.median(r[side] for r in rounds)
        result[side] = {"tokens_per_sec": tps,
                        **{f"mfu_{k}": tps * flops / (v * 1e9) for k, v in peaks.items()}}
    for side in ("folio", "folio_compiled"):
        result[side]["vs_nanogpt"] = statistics.median(r[side] / r["nanogpt"] for r in rounds)
    n, f, c = result["nanogpt"], result["folio"], result["folio_compiled"]
    record("throughput", result,
           f"throughput at nanoGPT's CPU recipe, {args.rounds} rounds of {args.steps} steps, "
           f"{torch.get_num_threads()} threads: nanoGPT {n['tokens_per_sec']:,.0f} tokens/s "
           f"(MFU {n['mfu_fp32']:.1%} of fp32 peak {peaks['fp32']:.0f} GFLOP/s); folio {rounds[0]['dtype']} "
           f"eager {f['tokens_per_sec']:,.0f} ({f['vs_nanogpt']:.2f}x), compiled {c['tokens_per_sec']:,.0f} "
           f"({c['vs_nanogpt']:.2f}x; MFU {c['mfu_bf16']:.1%} of bf16 peak {peaks['bf16']:.0f}, "
           f"{c['mfu_fp32']:.1%} of fp32)")


# ---- speedrun ---------------------------------------------------------------------------------

def folio_env(root: Path) -> dict:
    return {**os.environ, "FOLIO_DATA_MIRROR": str(CORPUS.parent), "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def folio_workspace() -> Path:
    """A folder with the project's params.yaml and presets/, its data stages run."""
    root = Path(tempfile.mkdtemp(prefix="folio-speedrun-"))
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    shutil.copytree(PROJECT / "presets", root / "presets")
    folio = shutil.which("folio") or "folio"
    for stage in DATA_STAGES:
        subprocess.run([folio, stage], cwd=root, env=folio_env(root), check=True, stdout=subprocess.DEVNULL)
    return root


def steady_tokens_per_sec(history: dict, tokens_per_step: int) -> float:
    """Training tokens/s between the first evaluation after step 0 (compilation and warm-up done)
    and the last; over the whole run when there are only those two."""
    evals = history["evals"]
    first = evals[1] if len(evals) > 2 else evals[0]
    last = evals[-1]
    return (last[0] - first[0]) * tokens_per_step / (last[3] - first[3])


def run_folio(root: Path, preset: Path, overrides: list[str]) -> dict:
    """`folio train --params <preset>` as one timed process; its best checkpoint scored whole."""
    from folio import checkpoint

    command = [shutil.which("folio") or "folio", "train", "--params", str(preset)]
    for assignment in overrides:
        command += ["--set", assignment]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=root, env=folio_env(root), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"error: folio train failed: {proc.stderr.strip().splitlines()[-1:]}")
    last = checkpoint.load(root / "models" / "last.pt")
    model = checkpoint.build_model(checkpoint.load(root / "models" / "best.pt")).eval()
    cfg, train = last["model_config"], last["train_config"]
    with contextlib.chdir(root):  # the pipeline's own reader of data/prepared/
        whole_val = whole_split_loss(model, prepared.load_split("val"), cfg["block_size"])
    tokens_per_step = train["batch_size"] * train["grad_accum_steps"] * cfg["block_size"]
    return {"wall_s": wall, "steps": last["step"], "train_seconds": last["train_seconds"],
            "val_loss": last["best_val_loss"], "tokens_per_step": tokens_per_step,
            "tokens_per_sec": steady_tokens_per_sec(last["history"], tokens_per_step),
            "whole_val_loss": whole_val,
            "params": model.num_params(), "config": cfg,
            "log_tail": (proc.stdout + proc.stderr).strip().splitlines()[-3:]}


def run_nanogpt(anchor: Anchor, recipe: list[str]) -> dict:
    nano = anchor.train(recipe)
    model = anchor.load_checkpoint(nano.pop("checkpoint"))
    nano["whole_val_loss"] = whole_split_loss(model, read_tokens(anchor.data / "val.bin"),
                                              model.config.block_size)
    args = dict(a.removeprefix("--").split("=", 1) for a in recipe if a.startswith("--"))
    config_file = runpy.run_path(str(anchor.root / recipe[0]))  # its config is Python
    batch = int(args.get("batch_size", config_file["batch_size"]))
    block = int(args.get("block_size", config_file["block_size"]))
    nano["tokens_per_sec"] = batch * block / (nano["median_step_ms"] / 1000)
    nano["params"] = model.get_num_params(non_embedding=False)
    nano["config"] = dataclasses.asdict(model.config)
    return nano


def side_by_side(nano_recipe: list[str], preset: Path, overrides: list[str]) -> dict:
    anchor = Anchor()
    nano = run_nanogpt(anchor, nano_recipe)
    print(f"nanoGPT: {nano['wall_s']:.1f} s whole process, {nano['tokens_per_sec']:,.0f} tokens/s, "
          f"val {nano['val_loss']:.4f} (whole val {nano['whole_val_loss']:.4f})", flush=True)
    anchor.cleanup()
    root = folio_workspace()
    ours = run_folio(root, preset, overrides)
    print(f"folio: {ours['wall_s']:.1f} s whole process, {ours['tokens_per_sec']:,.0f} tokens/s, "
          f"val {ours['val_loss']:.4f} (whole val {ours['whole_val_loss']:.4f})", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return {"machine": machine(), "nanogpt": nano, "folio": ours, "preset": str(preset),
            "preset_keys": yaml.safe_load((PROJECT / preset).read_text()), "overrides": overrides,
            "wall_ratio": ours["wall_s"] / nano["wall_s"]}


def speedrun(args) -> None:
    result = side_by_side(CPU_RECIPE, args.preset, args.set)
    nano, ours = result["nanogpt"], result["folio"]
    result["met"] = ours["whole_val_loss"] <= nano["val_loss"] and ours["wall_s"] <= nano["wall_s"] / 2
    extra = f" with {' '.join(args.set)}" if args.set else ""
    record("speedrun", result,
           f"speedrun {args.preset}{extra}: folio {ours['wall_s']:.1f} s whole process "
           f"({ours['steps']} steps, {ours['train_seconds']:.1f} s training), whole-val "
           f"{ours['whole_val_loss']:.4f}; nanoGPT {nano['wall_s']:.1f} s, val {nano['val_loss']:.4f} "
           f"(whole val {nano['whole_val_loss']:.4f}); wall ratio {result['wall_ratio']:.2f} "
           f"({'met' if result['met'] else 'not met'})")


# nanoGPT's Shakespeare GPU recipe as its README runs it (6 layers, width 384, block 256, batch 64,
# dropout 0.2, 5000 steps, bf16 autocast, compiled) and folio's preset of the same recipe
GPU_RECIPE = ["config/train_shakespeare_char.py"]
GPU_PRESET = Path("presets/gpu-shakespeare.yaml")
# --dry-run: a few steps of a small model on the CPU, to check the script end to end
DRY_RUN_SIZE = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 32}
DRY_RUN_TRAIN = {"max_iters": 4, "eval_interval": 2, "eval_iters": 2, "batch_size": 4, "warmup_iters": 1}
NANO_DRY_RUN = ["--device=cpu", "--compile=False", "--log_interval=1", "--lr_decay_iters=4",
                *(f"--{k}={v}" for k, v in {**DRY_RUN_SIZE, **DRY_RUN_TRAIN}.items() if k != "warmup_iters"),
                "--warmup_iters=1"]
FOLIO_DRY_RUN = ["train.device=cpu", "train.compile=false",
                 *(f"model.{k}={v}" for k, v in DRY_RUN_SIZE.items()),
                 *(f"train.{k}={v}" for k, v in DRY_RUN_TRAIN.items())]


def matmul_peak_on(device: str, dtype=torch.bfloat16) -> float:
    """GFLOP/s of a square bf16 matmul on the device (8192 on a GPU, 2048 on a CPU)."""
    if device == "cpu":
        return matmul_peak(dtype)
    n = 8192
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started, repeats = time.perf_counter(), 20
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def gpu(args) -> None:
    """nanoGPT's GPU recipe, nanoGPT against folio, on one GPU (benchmarks/gpu_check.sh)."""
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU is visible; run with --dry-run to check the script on a CPU")
    recipe = GPU_RECIPE + (NANO_DRY_RUN if args.dry_run else [])
    result = side_by_side(recipe, GPU_PRESET, FOLIO_DRY_RUN if args.dry_run else [])
    peak = matmul_peak_on(device)
    rows = []
    for name in ("nanogpt", "folio"):
        side = result[name]
        cfg = GPTConfig(vocab_size=65, **{k: side["config"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")})
        side["mfu_bf16"] = side["tokens_per_sec"] * flops_per_token(cfg, side["params"]) / (peak * 1e9)
        rows.append(f"| {name} | {side['tokens_per_sec']:,.0f} | {side['mfu_bf16']:.1%} | {side['wall_s']:.1f} s "
                    f"| {side['val_loss']:.4f} | {side['whole_val_loss']:.4f} |")
    nano, ours = result["nanogpt"], result["folio"]
    result["bf16_peak_gflops"] = peak
    result["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    result["goal_met"] = ours["val_loss"] <= 1.47 and ours["wall_s"] < nano["wall_s"]
    print(f"\n{result['device']}: bf16 matmul peak {peak:,.0f} GFLOP/s\n")
    print("| run | tokens/s | MFU (bf16 peak) | wall | val loss | whole-val loss |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ngoal (val <= 1.47 in less wall time than nanoGPT): {'met' if result['goal_met'] else 'not met'}")
    if not args.dry_run:
        record("gpu", result, f"gpu check on {result['device']}: folio {ours['tokens_per_sec']:,.0f} tokens/s, "
               f"{ours['wall_s']:.0f} s, val {ours['val_loss']:.4f}; nanoGPT {nano['tokens_per_sec']:,.0f} tokens/s, "
               f"{nano['wall_s']:.0f} s, val {nano['val_loss']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p = sub.add_parser("speedrun")
    p.add_argument("--preset", type=Path, default=Path("presets/cpu-speedrun.yaml"))
    p.add_argument("--set", action="append", default=[], help="key=value on top of the preset")
    p = sub.add_parser("gpu")
    p.add_argument("--dry-run", action="store_true", help="a few steps of a small model on the CPU")
    args = parser.parse_args()
    {"throughput": throughput, "speedrun": speedrun, "gpu": gpu}[args.what](args)


if __name__ == "__main__":
    main()
