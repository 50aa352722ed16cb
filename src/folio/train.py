"""The training loop: AdamW (or Muon + AdamW), warmup + cosine decay over a step or time budget,
gradient accumulation and clipping, mixed precision, periodic evaluation on both splits, rotating
checkpoints plus `best`, early stopping, exact resume, and DDP under torchrun.

Every random draw is a pure function of (seed, rank, step): the batches (folio.data.WindowSampler)
and dropout (the global RNG is reseeded from them before each step). So a resumed run, on any
rank, draws exactly what the uninterrupted run would, and no RNG state needs saving. Build the
model with `create_model(config, seed)` to make its initial weights a function of the seed too.

Metrics leave through a `TrainingCallback`, so the loop knows nothing of where they go.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch.nn.parallel import DistributedDataParallel

from folio import checkpoint, distributed
from folio.config import TrainConfig
from folio.data import WindowSampler
from folio.seeds import derive_seed
from folio.device import (DeviceQueue, autocast_for, enable_tf32, make_deterministic, not_deterministic,
                          pick_device, pick_dtype)
from folio.errors import FolioError, first_line
from folio.optim import lr_scale, make_optimizers, set_lr


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


class NonFiniteLossError(FolioError, RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class OutOfMemory(FolioError, RuntimeError):
    """The device ran out of memory; the message names it, the step and what to lower."""

    def __init__(self, device: torch.device, step: int, detail: str):
        self.device, self.step, self.detail = device, step, detail
        super().__init__(f"{device} ran out of memory at step {step} ({detail}); lower the batch size "
                         "(more gradient accumulation keeps the global batch), the block size or the "
                         "model, or turn gradient checkpointing on")


@dataclass
class TrainState:
    step: int = 0
    best_val_loss: float = float("inf")
    evals_since_best: int = 0
    train_seconds: float = 0.0
    history: dict = field(default_factory=lambda: {"steps": [], "evals": []})
    stop_reason: str | None = None  # set once the run has stopped: resuming it trains no more


@dataclass
class TrainResult:
    step: int
    best_val_loss: float
    history: dict
    seconds: float
    stop_reason: str


def lr_at(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """The (AdamW) learning rate of `step`: warmup, then cosine decay to min_lr over the step or
    time budget (`elapsed` seconds of it spent); Muon's follows the same curve."""
    return cfg.learning_rate * lr_scale(
        step, elapsed, warmup_iters=cfg.warmup_iters, max_iters=cfg.max_iters,
        max_seconds=cfg.max_seconds, min_lr_ratio=cfg.min_lr / cfg.learning_rate)


@torch.no_grad()
def estimate_loss(model, samplers: dict[str, WindowSampler], eval_iters: int, device, dtype) -> dict:
    """Mean loss over the same `eval_iters` batches of each split at every evaluation."""
    model.eval()
    out = {}
    for split, sampler in samplers.items():
        losses = torch.zeros(eval_iters, device=device)
        for i in range(eval_iters):
            x, y = sampler.batch(i, device=device)
            with autocast_for(device, dtype):
                _, loss = model(x, y)
            losses[i] = loss
        out[f"{split}_loss"] = losses.mean().item()  # one host sync per split
    model.train()
    return out


def model_size(model: torch.nn.Module) -> dict:
    n = sum(p.numel() for p in model.parameters())
    return {"num_params": n, "size_fp32_mb": n * 4 / 2**20, "size_bf16_mb": n * 2 / 2**20}


def _causes(err: BaseException | None):
    """`err`, then what caused it (its __cause__ or __context__), and so on, each once."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def compile_failure(err: BaseException) -> bool:
    """Is `err` torch.compile's own failure (Dynamo's tracing, Inductor's code generation, a missing
    Triton), one that eager mode would not hit? Out of memory never is, wherever it was raised,
    nor is any error from outside the compiler (a NCCL error, a bad batch): eager would fail too."""
    if out_of_memory(err) is not None:
        return False
    return any(type(e).__module__.startswith(("torch._dynamo", "torch._inductor")) for e in _causes(err))


def out_of_memory(err: BaseException) -> torch.OutOfMemoryError | None:
    """The out-of-memory error behind `err` (the compiler wraps the ones it hits), if any."""
    return next((e for e in _causes(err) if isinstance(e, torch.OutOfMemoryError)), None)


def _maybe_compile(model, cfg: TrainConfig, device: torch.device, log):
    wanted = cfg.compile if cfg.compile is not None else device.type == "cuda"
    if not wanted:
        return model
    try:
        return torch.compile(model)
    except Exception as err:  # no Triton, unsupported platform: eager still trains
        log(f"warning: torch.compile is unavailable ({first_line(err)}); training in eager mode")
        return model


class Trainer:
    """One training run: set up in __init__, `fit()` to train, `snapshot()` for checkpoints."""

    def __init__(self, model, train_tokens, val_tokens, cfg: TrainConfig, out_dir, *,
                 tokenizer_info: dict, callback: TrainingCallback | None = None, resume: dict | None = None,
                 meta: dict | None = None, sources=None, log=print):
        self.cfg, self.out_dir, self.log = cfg, Path(out_dir), log
        self.callback = callback or NullCallback()
        self.tokenizer_info, self.meta = tokenizer_info, meta or {}
        choice = pick_device(cfg.device)
        self.rank = distributed.init(choice.device)
        self.device = (torch.device("cuda", self.rank.local_rank)
                       if choice.type == "cuda" and self.rank.distributed else choice.device)
        self.dtype, dtype_reason = pick_dtype(cfg.dtype, self.device)
        enable_tf32(self.device)
        self.determinism = make_deterministic(self.device) if cfg.deterministic else "off"
        block = model.config.block_size
        self.sampler = WindowSampler(train_tokens, block, cfg.batch_size, cfg.seed, self.rank.rank,
                                     self.rank.world_size, cfg.grad_accum_steps, sources=sources)
        self.eval_samplers = {"train": WindowSampler(train_tokens, block, cfg.batch_size, seed=0),
                              "val": WindowSampler(val_tokens, block, cfg.batch_size, seed=0)}
        self.model = model.to(self.device)
        self.model.grad_checkpointing = cfg.grad_checkpointing
        self.optimizers = make_optimizers(
            model, kind=cfg.optimizer, lr=cfg.learning_rate, muon_lr=cfg.muon_lr,
            weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2), device=self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.state = TrainState()
        if resume is not None:
            self._restore(resume)
        self.compiled = _maybe_compile(model, cfg, self.device, log)
        self._runner = None  # see `runner`
        self.callback.on_start({
            "device": str(self.device), "device_reason": choice.reason,
            "dtype": str(self.dtype).removeprefix("torch."), "dtype_reason": dtype_reason,
            "determinism": self.determinism,
            "world_size": self.rank.world_size, **model_size(model),
            "resumed_from_step": self.state.step if resume is not None else None,
        })

    @property
    def runner(self):
        """What a training step calls: the compiled model (or the model), DDP-wrapped under
        torchrun; wrapped at first use, after `_prove_compiled` has settled which."""
        if self._runner is None:
            if not self.rank.distributed:
                self._runner = self.compiled
            else:
                device_ids = [self.rank.local_rank] if self.device.type == "cuda" else None
                self._runner = DistributedDataParallel(self.compiled, device_ids=device_ids)
        return self._runner

    def _prove_compiled(self) -> None:
        """torch.compile fails lazily, at the first forward or backward. Prove it before training:
        one forward and backward in train mode and one forward in eval mode, on the first batch
        (the gradients are dropped, and dropout is reseeded at every step, so the run draws
        exactly what it would have). Only a compilation failure falls back to eager mode, retried
        outside the except (so the failed attempt's memory is freed), and on every rank at once:
        the ranks agree before any of them trains. Anything else is raised."""
        failure = None
        if self.compiled is not self.model:
            try:
                x, y = self.sampler.batch(self.state.step, 0, self.device)
                with autocast_for(self.device, self.dtype):
                    _, loss = self.compiled(x, y)
                loss.backward()
                self.model.eval()
                with torch.no_grad(), autocast_for(self.device, self.dtype):
                    self.compiled(x, y)
            except Exception as err:
                if not compile_failure(err):
                    raise
                failure = first_line(err)
            finally:
                self.model.train()
                self.model.zero_grad(set_to_none=True)
        if distributed.any_rank(failure is not None, self.rank, self.device):
            self.log(f"warning: torch.compile failed ({failure or 'on another rank'}); training in eager mode")
            self.compiled, self._runner = self.model, None

    # -- checkpoints ------------------------------------------------------------------------

    def snapshot(self) -> dict:
        s = self.state
        return {
            "model": self.model.state_dict(), "model_config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer_info, "train_config": asdict(self.cfg),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "scaler": self.scaler.state_dict(),
            "step": s.step, "best_val_loss": s.best_val_loss, "evals_since_best": s.evals_since_best,
            "train_seconds": s.train_seconds, "history": s.history, "stop_reason": s.stop_reason,
            "meta": self.meta,
        }

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(checkpoint.clean_state_dict(ckpt["model"]))
        for optimizer, saved in zip(self.optimizers, ckpt["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        if ckpt["scaler"]:  # a CPU, bf16 or fp32 run saves an empty state: fp16 starts a fresh scaler
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(ckpt["step"], ckpt["best_val_loss"], ckpt["evals_since_best"],
                                ckpt["train_seconds"], ckpt["history"], ckpt.get("stop_reason"))

    def _save(self, *, rotate: bool, best: bool) -> None:
        if not self.rank.is_main or not (rotate or best):
            return
        snapshot = self.snapshot()
        if rotate:
            checkpoint.save_rotating(self.out_dir, snapshot, self.cfg.keep_checkpoints)
        if best:
            checkpoint.save(self.out_dir / "best.pt", snapshot)

    # -- one step, one evaluation -------------------------------------------------------------

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward/backward over `grad_accum_steps` micro-batches, clip, step. Returns the mean
        loss and the gradient norm before clipping as tensors on the device: reading them is a
        host sync, left to `_read_back` at log intervals."""
        cfg, accum = self.cfg, self.cfg.grad_accum_steps
        torch.manual_seed(derive_seed(cfg.seed, self.rank.rank, self.state.step, "dropout"))
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            x, y = self.sampler.batch(self.state.step, micro, self.device)
            last_micro = micro == accum - 1
            # DDP averages gradients across ranks only on the last micro-batch
            no_sync = self.runner.no_sync() if self.rank.distributed and not last_micro else contextlib.nullcontext()
            with no_sync:
                with autocast_for(self.device, self.dtype):
                    _, loss = self.runner(x, y)
                self.scaler.scale(loss / accum).backward()
            total += loss.detach()
        for optimizer in self.optimizers:
            self.scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"), foreach=True)
        for optimizer in self.optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()
        return total / accum, grad_norm.detach()

    def _read_back(self, pending: list, seconds: float, tokens_per_step: int) -> None:
        """Read the losses of the steps since the last read (one host sync for all of them),
        stop on the first that is not finite, record them and report them step by step.
        `pending` holds (step, loss, grad_norm, lr); `seconds` is the wall time they took."""
        s = self.state
        losses, norms = torch.stack([p[1] for p in pending]), torch.stack([p[2] for p in pending])
        values = torch.stack([losses.float(), norms.float()]).tolist()
        for (step, _, _, lr), loss, grad_norm in zip(pending, *values):
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss} at step {step}; the last good checkpoint is "
                    f"{self.out_dir / 'last.pt'} (step {resume_step(self.out_dir)})")
            s.history["steps"].append([step, loss, lr])
            if self.rank.is_main:
                windows_drawn = step * tokens_per_step // self.model.config.block_size  # over all ranks
                self.callback.on_step(step, {"train_loss": loss, "lr": lr, "grad_norm": grad_norm,
                                             "tokens_per_sec": tokens_per_step * len(pending) / seconds,
                                             "tokens_seen": step * tokens_per_step,
                                             "epoch": self.sampler.epochs_done(windows_drawn)})
        pending.clear()

    def evaluate(self) -> bool:
        """Evaluate both splits; returns whether val loss improved."""
        s = self.state
        losses = estimate_loss(self.compiled, self.eval_samplers, self.cfg.eval_iters, self.device, self.dtype)
        s.history["evals"].append([s.step, losses["train_loss"], losses["val_loss"], s.train_seconds])
        improved = losses["val_loss"] < s.best_val_loss
        s.best_val_loss = min(s.best_val_loss, losses["val_loss"])
        s.evals_since_best = 0 if improved else s.evals_since_best + 1
        if self.rank.is_main:
            self.callback.on_eval(s.step, {**losses, "best_val_loss": s.best_val_loss})
        return improved

    # -- the loop -----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        try:
            return self._fit()
        except FolioError:
            raise
        except Exception as err:
            oom, refused = out_of_memory(err), not_deterministic(err)
            if oom is not None:
                raise OutOfMemory(self.device, self.state.step, first_line(oom)) from None
            if refused is not None:
                raise refused from None
            raise

    def _fit(self) -> TrainResult:
        cfg, s = self.cfg, self.state
        checkpoint_every = cfg.checkpoint_every or cfg.eval_interval
        tokens_per_step = cfg.batch_size * cfg.grad_accum_steps * self.model.config.block_size
        tokens_per_step *= self.rank.world_size
        self._prove_compiled()
        if s.step == 0 and not s.history["evals"]:
            self._save(rotate=True, best=self.evaluate())
        stop_reason = s.stop_reason or ("max_iters" if s.step >= cfg.max_iters else None)
        # A GPU runs the steps after the host has queued them: the clock is read only once the
        # device has finished them (queue.drain() at each read), so train_seconds, tokens/s and the
        # time budget count the device's work, not the host's. Between reads, with a time budget,
        # the host waits until at most one step is unfinished: the budget is over by one step at most.
        queue = DeviceQueue(self.device)
        pending, since_read = [], time.perf_counter()  # steps whose loss is still on the device
        while stop_reason is None:
            lr = lr_at(s.step, cfg, s.train_seconds + time.perf_counter() - since_read)
            set_lr(self.optimizers, lr / cfg.learning_rate)
            loss, grad_norm = self.train_step()
            queue.mark()
            s.step += 1
            pending.append((s.step, loss, grad_norm, lr))
            evaluating = s.step % cfg.eval_interval == 0
            saving = s.step % checkpoint_every == 0
            reading = len(pending) >= cfg.log_interval or evaluating or saving or s.step >= cfg.max_iters
            # the time budget is agreed by all ranks (a collective: at reads only, under DDP)
            if cfg.max_seconds is not None and (reading or not self.rank.distributed):
                queue.wait(behind=0 if reading else 1)
                spent = s.train_seconds + time.perf_counter() - since_read
                out_of_time = distributed.any_rank(spent >= cfg.max_seconds, self.rank, self.device)
                reading = reading or out_of_time
                stop_reason = "max_seconds" if out_of_time else None
            if stop_reason is None and s.step >= cfg.max_iters:
                stop_reason = "max_iters"
            if not reading:
                continue
            queue.drain()
            seconds = time.perf_counter() - since_read
            s.train_seconds += seconds
            self._read_back(pending, seconds, tokens_per_step)
            improved = False
            if evaluating or stop_reason:
                improved = self.evaluate()
                if cfg.patience and s.evals_since_best >= cfg.patience and not stop_reason:
                    stop_reason = "patience"
            s.stop_reason = stop_reason
            self._save(rotate=saving or bool(stop_reason), best=improved)
            queue.drain()
            since_read = time.perf_counter()  # evaluation and saving are not training time
        return TrainResult(s.step, s.best_val_loss, s.history, s.train_seconds, stop_reason)


def train(model, train_tokens, val_tokens, cfg: TrainConfig, out_dir, **kwargs) -> TrainResult:
    """Train `model`; see `Trainer` for the keyword arguments (tokenizer_info, callback, resume,
    meta, log, and sources: a mixture's (name, start, end, weight) in the train split, see
    folio.data.WindowSampler). Writes rotating `step-*.pt` checkpoints with `last.pt` pointing at the newest,
    and `best.pt` whenever val loss improves."""
    return Trainer(model, train_tokens, val_tokens, cfg, out_dir, **kwargs).fit()


def resume_step(out_dir: Path) -> int | None:
    path = Path(out_dir) / "last.pt"
    return checkpoint.load(path)["step"] if path.exists() else None
