"""The real nanoGPT (../shared/anchors/nanoGPT), run from a temporary copy as an outside program.

The anchor is read-only and nanoGPT writes next to itself, so `Anchor()` copies it to a temporary
folder, gives it Tiny Shakespeare (its prepare.py then skips the download) and runs its own
`data/shakespeare_char/prepare.py`. `Anchor.train(...)` runs its `train.py` as a subprocess and
parses what it prints; `Anchor.model_module()` imports its `model.py` from the copy (for its
`GPT.generate`, and to score its checkpoint); `Anchor.encode(text)` maps text to its ids through
the vocabulary its prepare.py wrote (meta.pkl). Nothing of nanoGPT is copied into folio.

`whole_split_loss` is the one function that scores both sides' checkpoints, and `median_step_ms`
the one that turns both sides' step times into a steady speed.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
ANCHOR = SHARED / "anchors" / "nanoGPT"
CORPUS = SHARED / "data" / "tinyshakespeare.txt"

# nanoGPT's CPU recipe: its README's "I only have a macbook" line, with dropout 0
CPU_RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
              "--log_interval=10", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
              "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
CPU_MODEL = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "bias": False}
CPU_BATCH = 12

ITER_LINE = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
EVAL_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


class AnchorMissing(RuntimeError):
    pass


def parse_log(text: str) -> dict:
    """Step times (ms) and evaluations from train.py's output."""
    iters = [(int(m[1]), float(m[2]), float(m[3])) for m in map(ITER_LINE.match, text.splitlines()) if m]
    evals = [(int(m[1]), float(m[2]), float(m[3])) for m in map(EVAL_LINE.match, text.splitlines()) if m]
    return {"iters": iters, "evals": evals}


def median_step_ms(iters: list[tuple[int, float, float]], skip: int = 10) -> float:
    """The median iteration time of (iteration from 0, loss, ms) rows, leaving out iterations
    before `skip` (warm-up; all but iteration 0 in a run shorter than that). Evaluations are in a
    few iterations' times: the median leaves them out."""
    times = [ms for i, _, ms in iters if i >= skip] or [ms for i, _, ms in iters if i > 0]
    return statistics.median(times)


class Anchor:
    def __init__(self, root: Path | None = None):
        if not (ANCHOR / "train.py").exists():
            raise AnchorMissing(f"nanoGPT is not at {ANCHOR}; the benchmarks compare against it there")
        if not CORPUS.exists():
            raise AnchorMissing(f"Tiny Shakespeare is not at {CORPUS}")
        self.root = Path(root or tempfile.mkdtemp(prefix="nanogpt-"))
        shutil.copytree(ANCHOR, self.root, dirs_exist_ok=True)
        for path in [self.root, *self.root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        shutil.copy(CORPUS, self.root / "data/shakespeare_char/input.txt")
        subprocess.run([sys.executable, "data/shakespeare_char/prepare.py"], cwd=self.root, check=True,
                       stdout=subprocess.DEVNULL)
        self.data = self.root / "data" / "shakespeare_char"

    def train(self, args: list[str], out_dir: str = "out", threads: int | None = None) -> dict:
        """Run its train.py (with `threads` torch threads: OMP_NUM_THREADS); whole-process wall
        time, peak RSS, its step times, its evaluations (its own estimates, on eval_iters random
        batches) and its checkpoint: the one it saved last, i.e. its best by those estimates
        (nanoGPT saves only when the val estimate improves, unless always_save_checkpoint)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "train.py", *args, f"--out_dir={out_dir}"], cwd=self.root,
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"nanoGPT's train.py failed: {proc.stderr.strip().splitlines()[-1:]}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        log = parse_log(proc.stdout)
        return {"wall_s": wall, "peak_rss_mb": peak / 1024 if peak > before else None,
                "iters": log["iters"], "median_step_ms": median_step_ms(log["iters"]), "evals": log["evals"],
                "val_estimate_last": log["evals"][-1][2], "val_estimate_best": min(e[2] for e in log["evals"]),
                "checkpoint": self.root / out_dir / "ckpt.pt"}

    def model_module(self):
        """nanoGPT's model.py, imported from the copy."""
        spec = importlib.util.spec_from_file_location("nanogpt_model", self.root / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def load_checkpoint(self, path: Path):
        """nanoGPT's model with the weights its train.py saved (as its sample.py loads them), and
        the settings it trained with (its `config`: dtype, compile, device, ...)."""
        import torch

        module = self.model_module()
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model = module.GPT(module.GPTConfig(**ckpt["model_args"]))
        state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
        model.load_state_dict(state)
        return model.eval(), ckpt["config"]

    def encode(self, text: str) -> np.ndarray:
        """Text as nanoGPT's ids, through the vocabulary its prepare.py saved (meta.pkl)."""
        stoi = pickle.loads((self.data / "meta.pkl").read_bytes())["stoi"]
        unknown = set(text) - stoi.keys()
        if unknown:
            raise ValueError(f"nanoGPT's vocabulary lacks {len(unknown)} characters of the text, e.g. "
                             f"{sorted(unknown)[:5]}")
        return np.array([stoi[c] for c in text], dtype=np.int64)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def whole_split_loss(model, tokens, block_size: int, batch_size: int = 64) -> float:
    """Mean loss in nats per token over every target of a split (all tokens but the first), in
    consecutive windows of `block_size`, in float32 on the model's device, for any model whose
    forward(x, y) returns (logits, mean loss): nanoGPT's and folio's are scored alike."""
    import torch

    from folio.data import sequential_windows

    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in sequential_windows(tokens, block_size, batch_size):
            x, y = x.to(device), y.to(device)
            _, loss = model(x, y)
            total += loss.item() * y.numel()
            count += y.numel()
    return total / count
