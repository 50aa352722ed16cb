"""Training side by side with the real nanoGPT, in the same run (see benchmarks/nanogpt.py).

    python benchmarks/bench_nanogpt.py throughput [--rounds 3] [--steps 300] [--no-compile]
    python benchmarks/bench_nanogpt.py speedrun [--preset presets/cpu-speedrun.yaml] [--set key=value ...]
    python benchmarks/bench_nanogpt.py gpu [--dry-run]     # benchmarks/gpu_check.sh runs this

`throughput` alternates, round by round, nanoGPT's train.py at its CPU recipe (4 layers, width 128,
4 heads, block 64, batch 12, no biases, float32 eager: what its README runs on a CPU) with folio's
training loop on the same model, batch and torch threads (nanoGPT's process gets this one's
thread count through OMP_NUM_THREADS), three ways: float32 eager (like for like with nanoGPT),
folio's defaults for this machine (`train.dtype: auto`, eager) and compiled (`train.compile:
true`). Both sides read the loss every step and are timed the same way: each step's wall time
(nanoGPT's printed times; folio's per-read times), the first WARMUP_STEPS steps left out, the
median of the rest (`nanogpt.median_step_ms`). The report gives each side's median over rounds
and, for each comparison, the median of the per-round ratios with what still differs beside it.
Model-FLOPs utilisation (nanoGPT's 6N + 12LHQT FLOPs per token) is given against both this
machine's fp32 and bf16 matmul peaks, measured in the same run.

`speedrun` times nanoGPT's whole CPU recipe (2000 steps) as one process, then `folio train
--params <preset>` as one process in a workspace whose data stages ran first (untimed, as
nanoGPT's prepare.py is). Then both are scored the same way: each side's best checkpoint (the one
with its lowest val estimate, as each trainer saves it), on the same val text (folio's val split,
read through the pipeline's reader, and the same characters in nanoGPT's ids), by one function
(`nanogpt.whole_split_loss`, float32). The goal: folio's whole-val loss <= nanoGPT's in <= half
its wall time. `gpu` does the same with nanoGPT's GPU recipe and presets/gpu-shakespeare.yaml,
like for like (`gpu_settings`): both sides train in the dtype folio's rule picks for the GPU
(nanoGPT through --dtype), both compile, neither uses deterministic kernels (folio:
train.deterministic=false), and MFU is taken against the matmul peak of the dtype the hardware
runs (an emulated bf16 against the fp16 peak), measured in the same run. Each ratio is reported
with those settings beside it, and each checkpoint's record of them is checked.

Each writes a JSON report to reports/ and appends a line to reports/bench_nanogpt.md (gpu only
outside --dry-run).
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

try:  # an interpreter without the project installed: one line, not a traceback
    import numpy as np
    import torch
    import yaml

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import corpus_tokens, flops_per_token, matmul_peak
    from nanogpt import (CORPUS, CPU_BATCH, CPU_MODEL, CPU_RECIPE, PROJECT, Anchor, AnchorMissing,
                         median_step_ms, whole_split_loss)

    from folio.config import GPTConfig, TrainConfig
    from folio.device import Hardware, decide_dtype, native_bf16, torch_hardware
    from folio.evaluate import bits_per_byte
    from folio.model import create_model
    from folio.train import Trainer
    from pipeline import params as folio_params
    from pipeline.artifacts import LAST_CKPT, models, prepared
    from pipeline.artifacts import tokenizer as tokenizer_files
    from pipeline.errors import StageError
except ModuleNotFoundError as err:
    sys.exit(f"error: {err.name} is not installed for {sys.executable}; install the project in its "
             "environment (make setup), or run this with the interpreter that has it")

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

WARMUP_STEPS = 20  # steps left out on both sides: allocator warm-up, and compilation when compiled
# folio's sides: (train.dtype, train.compile)
FOLIO_SIDES = {"folio_fp32": ("float32", False), "folio": ("auto", False), "folio_compiled": ("auto", True)}
# what stays different in every comparison: each side's own training loop around the same model
LOOPS = ("each side's own loop (folio: fused AdamW on the CPU and its own batch sampler; nanoGPT: "
         "torch's default single-tensor AdamW there and its get_batch)")


class StepTimes:
    """folio's per-step wall times as (iteration from 0, loss, ms) rows, nanoGPT's log format. With
    log_interval 1 each read covers one step, so tokens_per_sec is one step's tokens over its time."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step, self.iters = tokens_per_step, []

    def on_start(self, info):
        self.info = info

    def on_step(self, step, metrics):
        ms = 1000 * self.tokens_per_step / metrics["tokens_per_sec"]
        self.iters.append((step - 1, metrics["train_loss"], ms))

    def on_eval(self, step, metrics):
        pass


def folio_trainer(steps: int, dtype: str, compile: bool) -> tuple[Trainer, StepTimes]:
    tok, train_ids, val_ids = corpus_tokens()
    config = GPTConfig(vocab_size=tok.vocab_size, dropout=0.0, **CPU_MODEL)
    # nanoGPT's optimisation settings at this recipe; the loss read every step, as nanoGPT's
    # --log_interval=1 does; evaluation only at the start and the end
    cfg = TrainConfig(max_iters=steps, batch_size=CPU_BATCH, learning_rate=1e-3, min_lr=1e-4,
                      warmup_iters=100, beta2=0.99, eval_interval=10**6, eval_iters=20, log_interval=1,
                      device="cpu", dtype=dtype, compile=compile)
    times = StepTimes(CPU_BATCH * CPU_MODEL["block_size"])
    trainer = Trainer(create_model(config, seed=0), train_ids, val_ids, cfg,
                      Path(tempfile.mkdtemp(prefix="folio-tp-")),
                      tokenizer_info={"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest},
                      callback=times, log=lambda m: None)
    return trainer, times


def steady_tokens_per_sec(iters: list[tuple[int, float, float]]) -> float:
    """One side's tokens/s: a step's tokens over the median step time after WARMUP_STEPS."""
    return CPU_BATCH * CPU_MODEL["block_size"] / (median_step_ms(iters, skip=WARMUP_STEPS) / 1000)


def folio_round(steps: int, dtype: str, compile: bool) -> dict:
    trainer, times = folio_trainer(steps, dtype, compile)
    trainer.fit()
    shutil.rmtree(trainer.out_dir, ignore_errors=True)
    return {"tokens_per_sec": steady_tokens_per_sec(times.iters), "dtype": times.info["dtype"],
            "dtype_reason": times.info["dtype_reason"], "params": times.info["num_params"]}


def comparisons(rounds: list[dict]) -> list[dict]:
    """The ratios folio / nanoGPT (median over rounds of each round's ratio), each with what still
    differs between the two sides beyond what every comparison shares."""
    dtype, reason = rounds[0]["dtype"], rounds[0]["dtype_reason"]
    default = (f"folio {dtype} autocast (train.dtype {reason}), nanoGPT float32"
               if dtype != "float32" else f"none in dtype: both float32 (train.dtype {reason})")
    rows = [
        ("fp32 vs fp32", "folio_fp32", f"both float32 eager; {LOOPS}"),
        ("defaults vs defaults", "folio", f"{default}; both eager; {LOOPS}"),
        ("folio compiled vs nanoGPT's CPU recipe", "folio_compiled",
         f"folio {dtype} with torch.compile, nanoGPT float32 eager (its CPU recipe: --compile=False); {LOOPS}"),
    ]
    return [{"name": name, "folio_side": side, "differences": differences,
             "ratio": statistics.median(r[side] / r["nanogpt"] for r in rounds)}
            for name, side, differences in rows if all(side in r for r in rounds)]


def summarize(rounds: list[dict], peaks: dict, flops: float, steps: int) -> dict:
    """The throughput report: each side's median tokens/s over rounds with its MFU, and the comparisons."""
    result = {"machine": machine(), "steps": steps, "warmup_steps": WARMUP_STEPS, "rounds": rounds,
              "peak_gflops": peaks, "flops_per_token": flops,
              "alike": (f"same model (nanoGPT's CPU recipe), batch {CPU_BATCH}, torch threads, loss read "
                        f"every step, median step time after {WARMUP_STEPS} warm-up steps")}
    for side in ("nanogpt", *FOLIO_SIDES):
        if all(side in r for r in rounds):
            tps = statistics.median(r[side] for r in rounds)
            result[side] = {"tokens_per_sec": tps, **{f"mfu_{k}": tps * flops / (v * 1e9) for k, v in peaks.items()}}
    result["comparisons"] = comparisons(rounds)
    return result


def throughput_line(result: dict) -> str:
    n, peaks = result["nanogpt"], result["peak_gflops"]
    parts = [f"{c['name']} {result[c['folio_side']]['tokens_per_sec']:,.0f} ({c['ratio']:.2f}x; differs: "
             f"{c['differences']})" for c in result["comparisons"]]
    return (f"throughput at nanoGPT's CPU recipe, {len(result['rounds'])} rounds of {result['steps']} steps, "
            f"{result['machine']['threads']} threads, {result['alike']}: nanoGPT {n['tokens_per_sec']:,.0f} "
            f"tokens/s (float32 eager; MFU {n['mfu_fp32']:.1%} of fp32 peak {peaks['fp32']:.0f} GFLOP/s); "
            f"folio: " + "; ".join(parts))


def throughput(args) -> None:
    anchor = Anchor()
    recipe = [a for a in CPU_RECIPE if not a.startswith(("--max_iters", "--lr_decay_iters", "--log_interval"))]
    recipe += [f"--max_iters={args.steps}", f"--lr_decay_iters={args.steps}", "--log_interval=1",
               "--eval_interval=100000"]
    sides = {k: v for k, v in FOLIO_SIDES.items() if not (args.no_compile and v[1])}
    threads, rounds = torch.get_num_threads(), []
    try:
        for i in range(args.rounds):
            nano = anchor.train(recipe, threads=threads)
            row = {"nanogpt": steady_tokens_per_sec(nano["iters"])}
            for side, (dtype, compile) in sides.items():
                run = folio_round(args.steps, dtype, compile)
                row[side] = run["tokens_per_sec"]
                if side == "folio":
                    row.update(dtype=run["dtype"], dtype_reason=run["dtype_reason"], params=run["params"])
            rounds.append(row)
            print(f"round {i + 1}: " + ", ".join(f"{k} {row[k]:,.0f}" for k in ("nanogpt", *sides)) + " tokens/s",
                  flush=True)
    finally:
        anchor.cleanup()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    flops = flops_per_token(GPTConfig(vocab_size=65, **CPU_MODEL), rounds[0]["params"])
    result = summarize(rounds, peaks, flops, args.steps)
    record("throughput", result, throughput_line(result))


# ---- speedrun and gpu: whole runs, both best checkpoints scored alike -------------------------

def folio_env(root: Path) -> dict:
    return {**os.environ, "FOLIO_DATA_MIRROR": str(CORPUS.parent), "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def folio_command() -> str:
    """The `folio` of this interpreter's environment (beside it, else on PATH), as an absolute
    path: it runs in temporary workspaces, where a relative PATH entry (.venv/bin) finds nothing."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("folio", path=search)
    if found is None:
        sys.exit(f"error: no `folio` command beside {sys.executable} or on PATH; install the project in "
                 "this environment (make setup)")
    return os.path.abspath(found)


def folio_workspace() -> Path:
    """A folder with the project's params.yaml and presets/, its data stages run."""
    folio, root = folio_command(), Path(tempfile.mkdtemp(prefix="folio-speedrun-"))
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    shutil.copytree(PROJECT / "presets", root / "presets")
    for stage in DATA_STAGES:
        proc = subprocess.run([folio, stage], cwd=root, env=folio_env(root), capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            sys.exit(f"error: folio {stage} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return root


def eval_tokens_per_sec(history: dict, tokens_per_step: int) -> float:
    """Training tokens/s between the first evaluation after step 0 (compilation and warm-up done)
    and the last; over the whole run when there are only those two."""
    evals = history["evals"]
    first = evals[1] if len(evals) > 2 else evals[0]
    last = evals[-1]
    return (last[0] - first[0]) * tokens_per_step / (last[3] - first[3])


def run_folio(root: Path, preset: Path, overrides: list[str]) -> dict:
    """`folio train --params <preset>` as one timed process; what its last checkpoint records."""
    command = [folio_command(), "train", "--params", str(preset)]
    for assignment in overrides:
        command += ["--set", assignment]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=root, env=folio_env(root), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"error: folio train failed: {proc.stderr.strip().splitlines()[-1:]}")
    with contextlib.chdir(root):
        last = models.load_checkpoint(LAST_CKPT)
    cfg, train = last["model_config"], last["train_config"]
    tokens_per_step = train["batch_size"] * train["grad_accum_steps"] * cfg["block_size"]
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {"wall_s": wall, "steps": last["step"], "train_seconds": last["train_seconds"],
            "val_estimate_best": last["best_val_loss"], "tokens_per_step": tokens_per_step,
            "tokens_per_sec": eval_tokens_per_sec(last["history"], tokens_per_step), "config": cfg,
            "trained_with": {k: train[k] for k in ("device", "dtype", "compile", "deterministic")},
            "warnings": [line.strip() for line in lines if line.strip().startswith("warning:")],
            "log_tail": lines[-3:]}


def run_nanogpt(anchor: Anchor, recipe: list[str]) -> dict:
    """Its train.py as one timed process; tokens/s from its median step time."""
    nano = anchor.train(recipe)
    nano.pop("iters")
    args = dict(a.removeprefix("--").split("=", 1) for a in recipe if a.startswith("--"))
    config_file = runpy.run_path(str(anchor.root / recipe[0]))  # its config is Python
    batch = int(args.get("batch_size", config_file["batch_size"]))
    block = int(args.get("block_size", config_file["block_size"]))
    nano["tokens_per_sec"] = batch * block / (nano["median_step_ms"] / 1000)
    return nano


def split_ids(split) -> np.ndarray:
    """Every id of a prepared split, its shards in order."""
    return np.concatenate([split.read(i, 0, n) for i, n in enumerate(split.lengths)])


def shared_val(anchor: Anchor, root: Path) -> dict:
    """The val text both sides are scored on: folio's val split (read through the pipeline's own
    reader), which neither side trained on, in folio's ids and in nanoGPT's (through its
    meta.pkl). nanoGPT's own val.bin is the corpus from int(0.9 n) on; folio's split is the last
    round(0.1 n) characters, so it lies inside nanoGPT's val. Per-token losses compare only
    when both tokenizers are character-level: the same number of tokens."""
    with contextlib.chdir(root):
        split, tokenizer = prepared.load_split("val"), tokenizer_files.load()
    ids = split_ids(split)
    text = tokenizer.decode(ids.tolist())
    nano_ids = anchor.encode(text)
    if len(nano_ids) != len(ids):
        sys.exit(f"error: folio's val split is {len(ids):,} tokens, nanoGPT's ids of the same text "
                 f"{len(nano_ids):,}: the losses compare only with tokenizer.kind: char")
    # every token but the first is a target; each stands for one character
    return {"folio": ids, "nanogpt": nano_ids, "predicted_bytes": len(text[1:].encode("utf-8"))}


def score_best_checkpoints(anchor: Anchor, root: Path, nano: dict, ours: dict, device: str) -> dict:
    """Both best checkpoints on the same val text by whole_split_loss, in float32 on `device`;
    adds whole_val_loss and whole_val_bits_per_byte to each side and returns how they were scored."""
    val = shared_val(anchor, root)
    nano_model, nano_config = anchor.load_checkpoint(nano.pop("checkpoint"))
    nano["trained_with"] = {k: nano_config[k] for k in ("device", "dtype", "compile")}
    with contextlib.chdir(root):
        state, folio_model = models.load_model(tokenizer_files.load())  # models/best.pt
    nano["params"] = nano_model.get_num_params(non_embedding=False)
    nano["config"] = dataclasses.asdict(nano_model.config)
    ours["params"], ours["checkpoint_step"] = folio_model.num_params(), state["step"]
    for side, model in ((nano, nano_model), (ours, folio_model.eval())):
        tokens = val["folio" if side is ours else "nanogpt"]
        loss = whole_split_loss(model.to(device), tokens, model.config.block_size)
        side["whole_val_loss"] = loss
        side["whole_val_bits_per_byte"] = bits_per_byte(loss, len(tokens) - 1, val["predicted_bytes"])
    return {"checkpoints": "best vs best: each trainer's checkpoint at its lowest val estimate, as it saves it",
            "val_text": "folio's val split (the same characters in each side's ids)",
            "val_tokens": len(val["folio"]), "function": "benchmarks/nanogpt.py whole_split_loss, float32"}


def side_by_side(nano_recipe: list[str], preset: Path, overrides: list[str], device: str = "cpu") -> dict:
    """nanoGPT's recipe and folio's preset, each timed as one process, then scored alike."""
    folio_params.load(PROJECT / preset, overrides)  # a bad preset or override: one line, before nanoGPT's minutes
    folio_command()  # before nanoGPT's minutes, not after
    anchor, root = Anchor(), None
    try:
        nano = run_nanogpt(anchor, nano_recipe)
        print(f"nanoGPT: {nano['wall_s']:.1f} s whole process, {nano['tokens_per_sec']:,.0f} tokens/s", flush=True)
        root = folio_workspace()
        ours = run_folio(root, preset, overrides)
        print(f"folio: {ours['wall_s']:.1f} s whole process, {ours['tokens_per_sec']:,.0f} tokens/s", flush=True)
        scored = score_best_checkpoints(anchor, root, nano, ours, device)
    finally:
        anchor.cleanup()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"scored: {scored['checkpoints']}; {scored['val_tokens']:,} tokens of {scored['val_text']}; "
          f"{scored['function']}: nanoGPT {nano['whole_val_loss']:.4f}, folio {ours['whole_val_loss']:.4f}",
          flush=True)
    return {"machine": machine(), "nanogpt": nano, "folio": ours, "scored": scored, "preset": str(preset),
            "preset_keys": yaml.safe_load((PROJECT / preset).read_text()), "overrides": overrides,
            "wall_ratio": ours["wall_s"] / nano["wall_s"]}


def goal_met(nano: dict, ours: dict, max_wall_ratio: float) -> bool:
    """folio's whole-val loss at most nanoGPT's, in at most `max_wall_ratio` of its wall time: two
    whole-val losses (the same function, text and kind of checkpoint), never an estimate."""
    return ours["whole_val_loss"] <= nano["whole_val_loss"] and ours["wall_s"] <= max_wall_ratio * nano["wall_s"]


SPEEDRUN_WALL_RATIO = 0.5


def speedrun(args) -> None:
    result = side_by_side(CPU_RECIPE, args.preset, args.set)
    nano, ours = result["nanogpt"], result["folio"]
    result["met"] = goal_met(nano, ours, SPEEDRUN_WALL_RATIO)
    extra = f" with {' '.join(args.set)}" if args.set else ""
    verdict = "met" if result["met"] else "not met"
    record("speedrun", result,
           f"speedrun {args.preset}{extra}: folio {ours['wall_s']:.1f} s whole process ({ours['steps']} steps, "
           f"{ours['train_seconds']:.1f} s training), whole-val {ours['whole_val_loss']:.4f}; nanoGPT "
           f"{nano['wall_s']:.1f} s, whole-val {nano['whole_val_loss']:.4f} (best checkpoints, the same "
           f"{result['scored']['val_tokens']:,} val characters, one function); wall ratio "
           f"{result['wall_ratio']:.2f} (goal, whole-val <= nanoGPT's in <= {SPEEDRUN_WALL_RATIO} of its time: "
           f"{verdict})")


# ---- gpu: nanoGPT's GPU recipe beside presets/gpu-shakespeare.yaml, like for like -------------

# nanoGPT's Shakespeare GPU recipe as its README runs it (6 layers, width 384, block 256, batch 64,
# dropout 0.2, 5000 steps, compiled) and folio's preset of the same recipe; the device, dtype,
# compilation and determinism of both come from gpu_settings
GPU_RECIPE = ["config/train_shakespeare_char.py"]
GPU_PRESET = Path("presets/gpu-shakespeare.yaml")
# --dry-run: a few steps of a small model on the CPU, to check the script end to end
DRY_RUN_SIZE = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 32}
DRY_RUN_TRAIN = {"max_iters": 4, "eval_interval": 2, "eval_iters": 2, "batch_size": 4, "warmup_iters": 1}
NANO_DRY_RUN = ["--log_interval=1", "--lr_decay_iters=4",
                *(f"--{k}={v}" for k, v in {**DRY_RUN_SIZE, **DRY_RUN_TRAIN}.items())]
FOLIO_DRY_RUN = [*(f"model.{k}={v}" for k, v in DRY_RUN_SIZE.items()),
                 *(f"train.{k}={v}" for k, v in DRY_RUN_TRAIN.items())]
GPU_GOAL = "whole-val loss <= nanoGPT's in less wall time; best checkpoints, the same val text, one function"
# the matmul each MFU peak is measured with: its dtype, and whether float32 matmuls may use TF32
PEAKS = {"bf16": (torch.bfloat16, False), "fp16": (torch.float16, False), "tf32": (torch.float32, True),
         "fp32": (torch.float32, False)}
# what the two tokens/s figures still measure differently, and the two wall times
TOKENS_DIFFER = ("nanoGPT: the median of its printed step times (every log_interval-th step, on the host "
                 "clock, read before its loss is synced from the device); folio: the tokens of its steps between "
                 "its first evaluation after step 0 and its last, over its training time between them "
                 "(evaluations left out); each side's own loop and batch sampler (AdamW: fused on both on CUDA; "
                 "in the CPU dry run folio's fused, nanoGPT's single-tensor)")
WALL_DIFFER = ("each whole process: start-up, compilation, training, evaluations, checkpoints; folio's also "
               "logs to MLflow (a local SQLite store); each side's data prepared before, untimed")
LOSS_DIFFER = ("none in the measure (one function, float32, the same val text, each side's best checkpoint); "
               "each side's own random draws (initial weights, batches, dropout)")


@dataclasses.dataclass(frozen=True)
class GpuSettings:
    """What the GPU check sets alike on both sides, with why, and the matmul peak (a key of PEAKS)
    that both sides' MFU is taken against, with why."""

    device: str
    dtype: str
    dtype_reason: str
    compile: bool
    peak: str
    peak_reason: str
    deterministic: bool = False  # nanoGPT asks for no deterministic kernels, so folio does not either

    def nanogpt_args(self) -> list[str]:
        return [f"--device={self.device}", f"--dtype={self.dtype}", f"--compile={self.compile}"]

    def folio_overrides(self) -> list[str]:
        return [f"train.device={self.device}", f"train.dtype={self.dtype}",
                f"train.compile={str(self.compile).lower()}", f"train.deterministic={str(self.deterministic).lower()}"]

    def held_equal(self) -> str:
        """The settings both sides train with, in a few words (each comparison's `held equal`)."""
        return (f"{self.device}, {self.dtype}, {'compiled' if self.compile else 'eager'}, deterministic kernels "
                f"{'on' if self.deterministic else 'off'}")

    def reasons(self) -> list[str]:
        return [f"dtype {self.dtype}: {self.dtype_reason}",
                f"deterministic kernels {'on' if self.deterministic else 'off'} on both: nanoGPT asks for none, "
                f"folio runs with train.deterministic={str(self.deterministic).lower()}",
                "torch.compile on both sides" if self.compile else "torch.compile on neither side",
                f"MFU against the {self.peak} matmul peak: {self.peak_reason}"]


def gpu_settings(hw: Hardware, device: str, requested_dtype: str = "auto") -> GpuSettings:
    """The settings both sides of the GPU check train with, decided from a Hardware record alone
    (so a T4 or an H100 can be faked on a CPU). The dtype is folio's own rule (`decide_dtype`) over
    the preset's train.dtype, passed to nanoGPT as --dtype and to folio as train.dtype; on the CPU
    (--dry-run) float32, as nanoGPT's train.py autocasts only on CUDA. MFU is taken against the
    peak of what the hardware runs: bf16 emulated on a GPU without bf16 tensor cores is measured
    against the fp16 peak, not its own (emulated, low) one."""
    if device == "cpu":
        chosen, _ = decide_dtype(hw, "cpu", requested_dtype)
        reason = "the CPU dry run: nanoGPT's train.py autocasts only on CUDA"
        if chosen != "float32":
            reason += f", so folio trains in float32 too (its train.dtype {requested_dtype} would be {chosen})"
        return GpuSettings("cpu", "float32", reason, compile=False, peak="fp32", peak_reason="float32 on the CPU")
    dtype, why = decide_dtype(hw, "cuda", requested_dtype)
    reason = (f"folio's train.dtype {requested_dtype} ({why.removeprefix('auto: ')}), given to nanoGPT as "
              f"--dtype={dtype}")
    capability = "compute capability {}.{}".format(*hw.gpu_capability)
    native = native_bf16(hw.gpu_capability)
    if not native and dtype != "bfloat16":
        reason += ("; nanoGPT's own default here would be bfloat16, emulated (torch.cuda.is_bf16_supported() "
                   "counts emulation)")
    if dtype == "bfloat16" and native:
        peak, why = "bf16", f"bf16 autocast on this GPU's bf16 tensor cores ({capability})"
    elif dtype == "bfloat16":
        peak, why = "fp16", (f"bf16 is emulated on this GPU ({capability}: no bf16 tensor cores), so MFU is "
                             "against its fp16 peak, the fastest its tensor cores run, not the emulated bf16 one")
    elif dtype == "float16":
        peak, why = "fp16", "fp16 autocast with a gradient scaler on both"
    elif native:
        peak, why = "tf32", f"both allow TF32, so float32 matmuls run as TF32 here ({capability})"
    else:
        peak, why = "fp32", f"float32 on this GPU ({capability}: no TF32)"
    return GpuSettings("cuda", dtype, reason, compile=True, peak=peak, peak_reason=why)


def settings_not_held(settings: GpuSettings, nano: dict, ours: dict) -> list[str]:
    """Where what each side's checkpoint records it trained with differs from `settings`."""
    wanted = {"device": settings.device, "dtype": settings.dtype, "compile": settings.compile}
    found = [f"nanoGPT trained with {k}={nano['trained_with'][k]}, not {v}"
             for k, v in wanted.items() if nano["trained_with"][k] != v]
    wanted["deterministic"] = settings.deterministic
    found += [f"folio trained with train.{k}={ours['trained_with'][k]}, not {v}"
              for k, v in wanted.items() if ours["trained_with"][k] != v]
    return found


def matmul_peak_on(device: str, peak: str) -> float:
    """GFLOP/s of a square matmul of PEAKS[peak] on the device (8192 on a GPU, 2048 on a CPU)."""
    dtype, tf32 = PEAKS[peak]
    if device == "cpu":
        return matmul_peak(dtype)
    n, allowed = 8192, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        started, repeats = time.perf_counter(), 20
        for _ in range(repeats):
            a @ b
        torch.cuda.synchronize()
        return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed


COMPARED_FORMAT = {"training tokens/s": ",.0f", "wall time, whole process (s)": ",.1f",
                   "whole-val loss (nats/char)": ".4f"}


def gpu_comparisons(result: dict) -> list[dict]:
    """folio against nanoGPT, each row with the settings held equal and what still differs."""
    nano, ours, held = result["nanogpt"], result["folio"], result["settings"]["held_equal"]
    return [
        {"name": "training tokens/s", "nanogpt": nano["tokens_per_sec"], "folio": ours["tokens_per_sec"],
         "ratio": ours["tokens_per_sec"] / nano["tokens_per_sec"], "held_equal": held, "differs": TOKENS_DIFFER},
        {"name": "wall time, whole process (s)", "nanogpt": nano["wall_s"], "folio": ours["wall_s"],
         "ratio": ours["wall_s"] / nano["wall_s"], "held_equal": held, "differs": WALL_DIFFER},
        {"name": "whole-val loss (nats/char)", "nanogpt": nano["whole_val_loss"], "folio": ours["whole_val_loss"],
         "difference": ours["whole_val_loss"] - nano["whole_val_loss"], "held_equal": held, "differs": LOSS_DIFFER},
    ]


def gpu_report(result: dict) -> str:
    """The GPU check's report: what both sides held equal, each run, and the comparisons with
    the settings beside each ratio."""
    settings, peak = result["settings"], result["peak_gflops"]
    lines = [f"{result['device']}: {settings['peak']} matmul peak {peak:,.0f} GFLOP/s", "",
             "held equal on both sides:", *(f"- {r}" for r in settings["reasons"]),
             f"- scored: {result['scored']['checkpoints']}; {result['scored']['val_tokens']:,} tokens of "
             f"{result['scored']['val_text']}; {result['scored']['function']}", "",
             f"| run | tokens/s | MFU ({settings['peak']} peak) | wall | whole-val loss (best checkpoint) | bits/byte |",
             "|---|---|---|---|---|---|"]
    for name in ("nanogpt", "folio"):
        side = result[name]
        lines.append(f"| {name} | {side['tokens_per_sec']:,.0f} | {side['mfu']:.1%} | {side['wall_s']:.1f} s "
                     f"| {side['whole_val_loss']:.4f} | {side['whole_val_bits_per_byte']:.4f} |")
    lines += ["", "| compared | nanoGPT | folio | folio / nanoGPT | held equal | still differs |",
              "|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        shown = COMPARED_FORMAT[c["name"]]
        versus = f"{c['ratio']:.2f}x" if "ratio" in c else f"{c['difference']:+.4f}"
        lines.append(f"| {c['name']} | {c['nanogpt']:{shown}} | {c['folio']:{shown}} | {versus} | {c['held_equal']} "
                     f"| {c['differs']} |")
    lines += [f"warning: {w}" for w in result["not_held"]]
    lines += [f"folio {w}" for w in result["folio"]["warnings"]]
    lines += ["", f"goal ({GPU_GOAL}): {'met' if result['goal_met'] else 'not met'}"]
    return "\n".join(lines)


def gpu(args) -> None:
    """nanoGPT's GPU recipe, nanoGPT against folio, on one GPU (benchmarks/gpu_check.sh)."""
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU is visible; run with --dry-run to check the script on a CPU")
    preset_overrides = FOLIO_DRY_RUN if args.dry_run else []
    requested = folio_params.load(PROJECT / GPU_PRESET, preset_overrides).train.dtype
    settings = gpu_settings(torch_hardware(torch.device(device)), device, requested)
    recipe = GPU_RECIPE + (NANO_DRY_RUN if args.dry_run else []) + settings.nanogpt_args()
    result = side_by_side(recipe, GPU_PRESET, preset_overrides + settings.folio_overrides(), device)
    peak = matmul_peak_on(device, settings.peak)
    for name in ("nanogpt", "folio"):
        side = result[name]
        cfg = GPTConfig(vocab_size=65, **{k: side["config"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")})
        side["mfu"] = side["tokens_per_sec"] * flops_per_token(cfg, side["params"]) / (peak * 1e9)
    nano, ours = result["nanogpt"], result["folio"]
    result.update(settings={**dataclasses.asdict(settings), "held_equal": settings.held_equal(),
                            "reasons": settings.reasons()},
                  peak_gflops=peak, not_held=settings_not_held(settings, nano, ours),
                  device=torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
                  goal_met=goal_met(nano, ours, max_wall_ratio=1.0))
    result["comparisons"] = gpu_comparisons(result)
    print("\n" + gpu_report(result))
    if not args.dry_run:
        tokens, wall = result["comparisons"][:2]
        record("gpu", result, f"gpu check on {result['device']} ({settings.held_equal()}): folio "
               f"{ours['tokens_per_sec']:,.0f} tokens/s ({tokens['ratio']:.2f}x nanoGPT's "
               f"{nano['tokens_per_sec']:,.0f}; MFU {ours['mfu']:.1%} against {nano['mfu']:.1%} of the "
               f"{settings.peak} peak, {peak:,.0f} GFLOP/s), {ours['wall_s']:.0f} s ({wall['ratio']:.2f} of "
               f"nanoGPT's {nano['wall_s']:.0f} s), whole-val {ours['whole_val_loss']:.4f} against "
               f"{nano['whole_val_loss']:.4f} (best checkpoints, the same val text, one function); goal "
               f"{'met' if result['goal_met'] else 'not met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--no-compile", action="store_true", help="leave out folio's compiled side (a quick check)")
    p = sub.add_parser("speedrun")
    p.add_argument("--preset", type=Path, default=Path("presets/cpu-speedrun.yaml"))
    p.add_argument("--set", action="append", default=[], help="key=value on top of the preset")
    p = sub.add_parser("gpu")
    p.add_argument("--dry-run", action="store_true", help="a few steps of a small model on the CPU")
    args = parser.parse_args()
    try:
        {"throughput": throughput, "speedrun": speedrun, "gpu": gpu}[args.what](args)
    except (AnchorMissing, StageError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
