"""The CUDA paths of training, proven on the CPU (issue: "Ready for the first GPU"). No GPU is
lent to CI, so each test fakes the one thing a GPU does differently, and says what the fake
stands for: work that finishes after the host returns, a compiler that fails, a rank that
disagrees, PyTorch's strict deterministic mode, a float16 gradient scaler."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from folio import checkpoint, device as device_mod, train as train_mod
from folio.device import DeviceQueue, NotDeterministic, make_deterministic
from folio.train import Trainer
from tests.test_train import Crash, CrashAt, Recorder, _cfg, _model, tokens  # noqa: F401  (tokens is a fixture)


def _info(tok):
    return {"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest}


def _trainer(tokens, out, cfg, **kw):
    tok, train_ids, val_ids = tokens
    return Trainer(_model(tok.vocab_size), train_ids, val_ids, cfg, out, tokenizer_info=_info(tok), **kw)


class LateDevice(DeviceQueue):
    """Stands for a GPU: a step returns to the host at once, and the device finishes its work
    later — here each step's work takes STEP seconds, spent when the host waits for it."""

    STEP = 0.1

    def mark(self) -> None:
        self.unfinished.append("a step's queued kernels")

    def wait(self, behind: int = 0) -> None:
        while len(self.unfinished) > behind:
            self.unfinished.popleft()
            time.sleep(self.STEP)

    def drain(self) -> None:
        self.wait(0)


def test_the_time_budget_and_tokens_per_second_count_the_work_the_device_finishes_late(tokens, tmp_path, monkeypatch):
    """Timing only the host's part of a step (what returns at once on a GPU) let a 1-second
    budget run every step of max_iters, and tokens/s read high. The clock is now read once the
    device has finished: the budget is kept to within one step, and tokens/s is the device's."""
    monkeypatch.setattr(train_mod, "DeviceQueue", LateDevice)
    recorder = Recorder()
    cfg = _cfg(max_iters=1000, max_seconds=1.0, log_interval=5, eval_interval=1000, eval_iters=1)
    started = time.perf_counter()
    result = _trainer(tokens, tmp_path, cfg, callback=recorder).fit()
    wall = time.perf_counter() - started
    assert result.stop_reason == "max_seconds" and result.seconds >= 1.0
    assert result.seconds >= result.step * LateDevice.STEP  # the device's work is counted
    assert result.step <= 1.0 / LateDevice.STEP + 1, result.step  # the budget is over by a step at most
    assert wall < 10
    tokens_per_step = cfg.batch_size * 16
    assert all(m["tokens_per_sec"] <= tokens_per_step / LateDevice.STEP for _, m in recorder.steps)


def _broken_compiled(error: BaseException):
    def compiled(x, y):
        raise error
    return compiled


def test_a_failure_outside_the_compiler_is_raised_not_retried_in_eager(tokens, tmp_path):
    """A NCCL or CUDA error at the first compiled step is not torch.compile's: eager mode would
    hit it too (and, under DDP, one rank retrying alone leaves the ranks out of step). It is
    raised as it is, with no 'torch.compile failed' fallback. The stand-in compiled model raises
    what NCCL raises."""
    logged = []
    trainer = _trainer(tokens, tmp_path, _cfg(max_iters=4), log=logged.append)
    trainer.compiled = _broken_compiled(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1, unhandled system error"))
    with pytest.raises(RuntimeError, match="NCCL error"):
        trainer.fit()
    assert not any("torch.compile" in line for line in logged)
    assert not (tmp_path / "last.pt").exists()  # it failed before any step, and wrote nothing


def test_all_ranks_fall_back_to_eager_together(tokens, tmp_path, monkeypatch):
    """Under DDP the ranks vote (an all-reduce) on whether compilation failed before any of them
    trains, so they fall back together. Here this rank compiled fine and the stand-in vote says
    another rank failed: this one falls back too, and trains as an eager run does."""
    votes = []

    def another_rank_failed(flag, rank, device):
        votes.append(flag)
        return True

    monkeypatch.setattr(train_mod.distributed, "any_rank", another_rank_failed)
    logged = []
    trainer = _trainer(tokens, tmp_path / "voted", _cfg(max_iters=4), log=logged.append)
    model = trainer.model
    trainer.compiled = lambda x, y: model(x, y)  # a compiled model that works
    result = trainer.fit()
    assert votes[0] is False  # this rank's own vote: its compilation worked
    assert trainer.compiled is model and trainer.runner is model
    assert "warning: torch.compile failed (on another rank); training in eager mode" in logged
    monkeypatch.undo()
    eager = _trainer(tokens, tmp_path / "eager", _cfg(max_iters=4)).fit()
    assert result.history["steps"] == eager.history["steps"]


def test_resuming_a_bfloat16_or_cpu_checkpoint_into_float16_starts_a_fresh_scaler(tokens, tmp_path):
    """A CPU, bf16 or fp32 run saves an empty GradScaler state, which a float16 GradScaler (what
    `auto` picks on a GPU without native bf16) refused to load. It now starts a fresh scaler.
    float16 autocast on the CPU stands for the GPU's."""
    with pytest.raises(Crash):  # interrupted after its step-10 checkpoint
        _trainer(tokens, tmp_path, _cfg(max_iters=20, dtype="float32"), callback=CrashAt(15)).fit()
    saved = checkpoint.load(tmp_path / "last.pt")
    assert saved["scaler"] == {}
    trainer = _trainer(tokens, tmp_path, _cfg(max_iters=20, dtype="float16"), resume=saved)
    assert trainer.scaler.is_enabled() and trainer.state.step == 10
    result = trainer.fit()
    assert result.step == 20 and trainer.scaler.state_dict()["scale"] > 0


def test_deterministic_mode_on_cuda_is_strict_and_skips_the_nan_fill(monkeypatch):
    """With warn_only=True, SDPA's flash and memory-efficient backward stayed nondeterministic
    (one warning), while filling new tensors with NaN cost ~15% anyway. Strict mode picks their
    deterministic backward. The recorded calls stand for CUDA's (no GPU here)."""
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, *, warn_only=False: calls.append((mode, warn_only)))
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    applied = make_deterministic(torch.device("cuda"))
    assert calls == [(True, False)]
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert device_mod.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert applied.startswith("cuda strict")
    assert make_deterministic(torch.device("cpu")).startswith("cpu kernels")


def test_the_run_says_which_determinism_applied(tokens, tmp_path):
    on, off = Recorder(), Recorder()
    _trainer(tokens, tmp_path / "on", _cfg(max_iters=1), callback=on).fit()
    _trainer(tokens, tmp_path / "off", _cfg(max_iters=1, deterministic=False), callback=off).fit()
    assert on.info["determinism"].startswith("cpu kernels") and off.info["determinism"] == "off"


def test_an_op_with_no_deterministic_kernel_is_one_line_naming_the_param(tokens, tmp_path, monkeypatch):
    """Strict mode raises for an op that has no deterministic CUDA kernel: the trainer names the
    op (NotDeterministic) and the stage says which param to change. The raised text is PyTorch's."""
    from pipeline.errors import StageError
    from pipeline.params import load
    from pipeline.stages import train as stage

    trainer = _trainer(tokens, tmp_path, _cfg(max_iters=3))
    message = ("scatter_add_cuda_kernel does not have a deterministic implementation, but you set "
               "'torch.use_deterministic_algorithms(True)'. You can turn off determinism just for this "
               "operation, or you can use the 'warn_only=True' option, if that's acceptable for your "
               "application.")

    def step():
        raise RuntimeError(message)

    monkeypatch.setattr(trainer, "train_step", step)
    with pytest.raises(NotDeterministic) as raised:
        trainer.fit()
    assert raised.value.op == "scatter_add_cuda_kernel"

    def train(*args, **kwargs):
        raise raised.value

    monkeypatch.setattr(stage, "train", train)
    tok = SimpleNamespace(kind="char", vocab_size=65, digest="d")
    params = load(overrides=["train.device=cuda"])
    with pytest.raises(StageError) as refused:
        stage.fit(params, SimpleNamespace(resume=None, info={"fingerprint": "f"}), None,
                  {"train": None, "val": None}, tok, None)
    assert str(refused.value) == ("scatter_add_cuda_kernel has no deterministic kernel on cuda, and "
                                  "train.deterministic is true; set train.deterministic=false to train "
                                  "with it (the run is then not repeatable bit for bit)")


def test_a_run_resumes_only_on_the_device_type_and_dtype_it_was_trained_in():
    """`auto` resolves by machine: a checkpoint made in bf16 on this CPU is another run on a T4,
    where auto picks float16 (another trajectory, and a gradient scaler the checkpoint lacks)."""
    from pipeline import resume
    from pipeline.params import load

    params = load()
    here = resume.identity(params, "t", "c", "p", 1, "cpu bfloat16")
    t4 = resume.identity(params, "t", "c", "p", 1, "cuda float16")
    assert resume.fingerprint(here) != resume.fingerprint(t4)
    assert resume.changes(here, t4) == "compute 'cpu bfloat16' -> 'cuda float16'"
