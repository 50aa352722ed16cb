"""The training loop: loss falls on a tiny model, the schedule's shape, metrics reach the
callback, checkpoints are written, and resuming from `last` restores the exact state."""

import math

import pytest
import torch

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer
from folio.train import NonFiniteLossError, TrainConfig, lr_at, train


class Recorder:
    def __init__(self):
        self.steps, self.evals, self.info = [], [], None

    def on_start(self, info):
        self.info = info

    def on_step(self, step, metrics):
        self.steps.append((step, metrics))

    def on_eval(self, step, metrics):
        self.evals.append((step, metrics))


@pytest.fixture
def tokens(tiny_text):
    tok = CharTokenizer.train(tiny_text)
    ids = torch.tensor(tok.encode(tiny_text))
    return tok, ids[:2800], ids[2800:]


def _model(vocab_size, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32))


def _cfg(**kw):
    base = dict(max_iters=40, batch_size=8, learning_rate=3e-3, warmup_iters=5, eval_interval=10,
                eval_iters=2, device="cpu", seed=7)
    return TrainConfig(**{**base, **kw})


class Crash(Exception):
    pass


class CrashAt(Recorder):
    def __init__(self, step):
        super().__init__()
        self.crash_step = step

    def on_step(self, step, metrics):
        if step == self.crash_step:
            raise Crash(step)
        super().on_step(step, metrics)


def _tok_info(tok):
    return {"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest}


def _run(tokens, out_dir, cfg, resume=None, recorder=None):
    tok, train_ids, val_ids = tokens
    recorder = recorder or Recorder()
    result = train(_model(tok.vocab_size), train_ids, val_ids, cfg, out_dir,
                   tokenizer_info=_tok_info(tok), callback=recorder, resume=resume, log=lambda m: None)
    return result, recorder


def test_loss_falls_and_checkpoints_are_written(tokens, tmp_path):
    result, rec = _run(tokens, tmp_path, _cfg())
    assert result.step == 40
    assert rec.evals[-1][1]["val_loss"] < rec.evals[0][1]["val_loss"] - 0.5
    assert [s for s, _ in rec.evals] == [0, 10, 20, 30, 40]
    assert {"train_loss", "lr", "grad_norm", "tokens_per_sec"} <= set(rec.steps[0][1])
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()
    best = checkpoint.load(tmp_path / "best.pt")
    assert best["best_val_loss"] == pytest.approx(min(m["val_loss"] for _, m in rec.evals))


def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = _cfg(max_iters=100, warmup_iters=10, learning_rate=1.0, min_lr=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] < 1.0
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_training_follows_the_schedule(tokens, tmp_path):
    """The learning rate each step trains with is lr_at's: the schedule the test above checks."""
    cfg = _cfg(max_iters=12, warmup_iters=4, learning_rate=0.01, min_lr=0.001)
    result, _ = _run(tokens, tmp_path, cfg)
    assert [lr for _, _, lr in result.history["steps"]] == pytest.approx([lr_at(s, cfg) for s in range(12)])


def test_resume_from_last_matches_the_uninterrupted_run(tokens, tmp_path):
    cfg = _cfg(max_iters=30)
    full, full_rec = _run(tokens, tmp_path / "full", cfg)
    # Crash during step 25: the last checkpoint is the one written at step 20.
    with pytest.raises(Crash):
        _run(tokens, tmp_path / "cut", cfg, recorder=CrashAt(25))
    state = checkpoint.load(tmp_path / "cut" / "last.pt")
    assert state["step"] == 20
    resumed, resumed_rec = _run(tokens, tmp_path / "cut", cfg, resume=state)
    assert resumed_rec.info["resumed_from_step"] == 20
    full_losses = [m["train_loss"] for _, m in full_rec.steps]
    resumed_losses = [m["train_loss"] for _, m in resumed_rec.steps]
    assert resumed_losses == pytest.approx(full_losses[20:], abs=0)


def test_non_finite_loss_stops_with_the_step_named(tokens, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step \d+; the last good checkpoint is .*last.pt"):
        _run(tokens, tmp_path, _cfg(learning_rate=math.inf, warmup_iters=0, max_iters=3))


def test_out_of_memory_is_named_not_taken_for_a_compile_failure(tokens, tmp_path, monkeypatch):
    """A CUDA out-of-memory while torch.compile proves itself (the compiler wraps it in its own
    error) is no compilation failure: eager mode would need more memory, not less. It is raised as
    OutOfMemory naming the device, the step and what to lower, with no 'torch.compile failed'
    retry. The stand-in compiled model raises what Dynamo raises around an allocation failure."""
    from torch._dynamo.exc import BackendCompilerFailed

    from folio.train import OutOfMemory, Trainer

    tok, train_ids, val_ids = tokens
    logged = []
    trainer = Trainer(_model(tok.vocab_size), train_ids, val_ids, _cfg(max_iters=5), tmp_path,
                      tokenizer_info=_tok_info(tok), log=logged.append)

    def compiled(x, y):
        try:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except torch.OutOfMemoryError as err:
            raise BackendCompilerFailed(lambda *a: None, err) from err

    trainer.compiled = compiled  # as after torch.compile, before its first step ran
    with pytest.raises(OutOfMemory, match=r"cpu ran out of memory at step 0 \(CUDA out of memory. "
                                          r"Tried to allocate 2.00 GiB\); lower the batch size"):
        trainer.fit()
    assert not any("torch.compile" in line for line in logged)
