"""The training loop: AdamW with weight-decay groups, linear warmup + cosine decay, gradient
clipping, periodic evaluation on both splits, `last`/`best` checkpoints and exact resume.

Metrics leave through a `TrainingCallback`, so the loop knows nothing of where they go.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from folio import checkpoint
from folio.data import BatchSampler
from folio.device import autocast_for, pick_device, seed_everything
from folio.model import GPT


@dataclass(frozen=True)
class TrainConfig:
    max_iters: int = 2000
    batch_size: int = 16
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    device: str = "auto"
    compile: bool | None = None  # None: compile on CUDA only


class TrainingCallback(Protocol):
    def on_start(self, info: dict) -> None: ...
    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...


class NullCallback:
    def on_start(self, info: dict) -> None:
        pass

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        pass


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class TrainResult:
    step: int
    best_val_loss: float
    history: dict = field(default_factory=dict)
    seconds: float = 0.0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_lr at max_iters."""
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    progress = min(1.0, (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.optimizer_groups(cfg.weight_decay),
        lr=cfg.learning_rate,
        betas=(cfg.beta1, cfg.beta2),
        fused=device.type == "cuda",
    )


@torch.no_grad()
def estimate_loss(model, samplers: dict[str, BatchSampler], eval_iters: int, device) -> dict:
    """Mean loss over `eval_iters` batches of each split. The eval samplers are re-seeded on
    every call, so each evaluation sees the same batches and never touches the training RNG."""
    model.eval()
    out = {}
    for split, sampler in samplers.items():
        sampler.generator.manual_seed(0)
        losses = []
        for _ in range(eval_iters):
            x, y = sampler.next_batch(device)
            with autocast_for(device):
                _, loss = model(x, y)
            losses.append(loss.item())
        out[f"{split}_loss"] = sum(losses) / len(losses)
    model.train()
    return out


def _maybe_compile(model: GPT, cfg: TrainConfig, device: torch.device, log) -> torch.nn.Module:
    wanted = cfg.compile if cfg.compile is not None else device.type == "cuda"
    if not wanted:
        return model
    try:
        return torch.compile(model)
    except Exception as err:  # no Triton, unsupported platform: eager still trains
        log(f"torch.compile failed ({err}); training in eager mode")
        return model


def train(
    model: GPT,
    train_tokens: torch.Tensor,
    val_tokens: torch.Tensor,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    tokenizer_info: dict,
    callback: TrainingCallback | None = None,
    resume: dict | None = None,
    meta: dict | None = None,
    log=print,
) -> TrainResult:
    """Train `model`, writing `last.pt` at every evaluation and `best.pt` when val loss improves.

    `resume` is a checkpoint written by this function: model, optimizer, step, RNG and sampler
    position are restored so the run continues as if never interrupted. `meta` is stored verbatim
    in every checkpoint (the caller's fingerprint of the run, for instance).
    """
    callback = callback or NullCallback()
    out_dir = Path(out_dir)
    choice = pick_device(cfg.device)
    device = choice.device
    seed_everything(cfg.seed)
    block = model.config.block_size
    sampler = BatchSampler(train_tokens, block, cfg.batch_size, seed=cfg.seed)
    eval_samplers = {
        "train": BatchSampler(train_tokens, block, cfg.batch_size, seed=0),
        "val": BatchSampler(val_tokens, block, cfg.batch_size, seed=0),
    }
    model.to(device)
    optimizer = make_optimizer(model, cfg, device)
    step, best_val, history = 0, float("inf"), {"steps": [], "evals": []}
    if resume is not None:
        model.load_state_dict(checkpoint.clean_state_dict(resume["model"]))
        optimizer.load_state_dict(resume["optimizer"])
        sampler.load_state_dict(resume["sampler"])
        torch.set_rng_state(resume["rng"]["torch"])
        if device.type == "cuda" and resume["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(resume["rng"]["cuda"])
        step, best_val, history = resume["step"], resume["best_val_loss"], resume["history"]
    runner = _maybe_compile(model, cfg, device, log)
    callback.on_start(
        {
            "device": str(device),
            "device_reason": choice.reason,
            "num_params": model.num_params(),
            "resumed_from_step": step if resume is not None else None,
        }
    )

    def state() -> dict:
        return {
            "model": model.state_dict(),
            "model_config": model.config.to_dict(),
            "tokenizer": tokenizer_info,
            "train_config": asdict(cfg),
            "optimizer": optimizer.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            },
            "step": step,
            "best_val_loss": best_val,
            "history": history,
            "meta": meta or {},
        }

    def evaluate_and_save() -> None:
        nonlocal best_val
        losses = estimate_loss(runner, eval_samplers, cfg.eval_iters, device)
        history["evals"].append([step, losses["train_loss"], losses["val_loss"]])
        improved = losses["val_loss"] < best_val
        if improved:
            best_val = losses["val_loss"]
        callback.on_eval(step, {**losses, "best_val_loss": best_val})
        snapshot = state()
        checkpoint.save(out_dir / "last.pt", snapshot)
        if improved:
            checkpoint.save(out_dir / "best.pt", snapshot)

    started = time.perf_counter()
    model.train()
    if resume is None:
        evaluate_and_save()
    tokens_per_step = cfg.batch_size * block
    while step < cfg.max_iters:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = sampler.next_batch(device)
        with autocast_for(device):
            _, loss = runner(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"loss is {loss_value} at step {step + 1}; the last good checkpoint is "
                f"{out_dir / 'last.pt'} (step {resume_step(out_dir)})"
            )
        optimizer.step()
        step += 1
        history["steps"].append([step, loss_value, lr])
        elapsed = time.perf_counter() - t0
        callback.on_step(
            step,
            {
                "train_loss": loss_value,
                "lr": lr,
                "grad_norm": float(grad_norm),
                "tokens_per_sec": tokens_per_step / max(elapsed, 1e-9),
            },
        )
        if step % cfg.eval_interval == 0 or step == cfg.max_iters:
            evaluate_and_save()
    return TrainResult(step, best_val, history, time.perf_counter() - started)


def resume_step(out_dir: Path) -> int | None:
    path = Path(out_dir) / "last.pt"
    return checkpoint.load(path)["step"] if path.exists() else None
