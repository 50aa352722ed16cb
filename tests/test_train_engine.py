"""The training engine: gradient accumulation equals one larger batch, precisions, compiled
training on CPU and its fallback to eager when compilation fails, the time budget and its
schedule, rotating checkpoints, early stopping, Muon, exact resume after a real SIGKILL (same
losses, same weights), auto dtype per CPU, and DDP with two CPU processes under torchrun (killed and resumed too)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.optim import lr_scale
from folio.tokenizers import CharTokenizer
from folio.train import TrainConfig, Trainer

WORKER = Path(__file__).with_name("train_worker.py")


@pytest.fixture
def tokens(tiny_text):
    tok = CharTokenizer.train(tiny_text)
    ids = torch.tensor(tok.encode(tiny_text))
    return tok, ids[:2800], ids[2800:]


def _model(vocab_size, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32, **kw))


def _cfg(**kw):
    base = dict(max_iters=20, batch_size=8, learning_rate=3e-3, warmup_iters=2, eval_interval=10,
                eval_iters=2, device="cpu", seed=7)
    return TrainConfig(**{**base, **kw})


def _trainer(tokens, out_dir, cfg, model=None):
    tok, train_ids, val_ids = tokens
    info = {"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest}
    return Trainer(model or _model(tok.vocab_size), train_ids, val_ids, cfg, out_dir,
                   tokenizer_info=info, log=lambda m: None)


def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(tokens, tmp_path):
    # a vanishing learning rate and no clipping: after the step, .grad holds the raw gradient
    cfg = _cfg(grad_accum_steps=4, learning_rate=1e-30, min_lr=0.0, grad_clip=0.0, dtype="float32")
    trainer = _trainer(tokens, tmp_path, cfg)
    reference = _model(tokens[0].vocab_size)
    reference.load_state_dict(trainer.model.state_dict())
    trainer.train_step()
    xs, ys = zip(*(trainer.sampler.batch(0, micro) for micro in range(4)))
    _, loss = reference(torch.cat(xs), torch.cat(ys))  # one batch of 4 x 8 windows
    loss.backward()
    for (name, p), q in zip(trainer.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_trains_on_cpu(tokens, tmp_path, dtype):
    trainer = _trainer(tokens, tmp_path, _cfg(dtype=dtype, max_iters=10))
    assert trainer.scaler.is_enabled() == (dtype == "float16")
    result = trainer.fit()
    first, last = result.history["evals"][0][2], result.history["evals"][-1][2]
    assert last < first


def test_compiled_training_on_cpu_follows_eager(tokens, tmp_path):
    """train.compile=true on CPU (the fast route for small models): the same steps as eager, up to
    float rounding in the fused kernels, and a checkpoint without the compile wrapper's prefix."""
    eager = _trainer(tokens, tmp_path / "eager", _cfg(max_iters=8, compile=False)).fit()
    compiled = _trainer(tokens, tmp_path / "compiled", _cfg(max_iters=8, compile=True))
    assert compiled.compiled is not compiled.model  # really compiled, not a silent fallback
    result = compiled.fit()
    losses = lambda r: [loss for _, loss, _ in r.history["steps"]]
    assert losses(result) == pytest.approx(losses(eager), rel=1e-4)
    state = checkpoint.load(tmp_path / "compiled" / "last.pt")["model"]
    assert not any(key.startswith("_orig_mod.") for key in state)


def test_time_budget_stops_training_and_the_schedule_follows_it(tokens, tmp_path):
    result = _trainer(tokens, tmp_path, _cfg(max_iters=100_000, max_seconds=1.5, min_lr=3e-4)).fit()
    assert result.stop_reason == "max_seconds" and result.step < 100_000
    assert result.seconds >= 1.5
    lrs = [lr for _, _, lr in result.history["steps"]][2:]  # after warmup
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.5 * lrs[0]
    assert (tmp_path / "last.pt").exists()


def test_the_schedule_follows_whichever_budget_runs_out_first():
    kw = dict(warmup_iters=0, max_iters=1000, min_lr_ratio=0.0)
    assert lr_scale(10, 90.0, max_seconds=100.0, **kw) == pytest.approx(lr_scale(900, 0.0, max_seconds=None, **kw))
    assert lr_scale(900, 10.0, max_seconds=100.0, **kw) == pytest.approx(lr_scale(900, 0.0, max_seconds=None, **kw))
    assert lr_scale(10, 100.0, max_seconds=100.0, **kw) == pytest.approx(0.0)


def test_only_the_last_k_checkpoints_are_kept_plus_best(tokens, tmp_path):
    _trainer(tokens, tmp_path, _cfg(max_iters=20, checkpoint_every=4, keep_checkpoints=2)).fit()
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == ["best.pt", "last.pt", "step-0000016.pt", "step-0000020.pt"]
    assert checkpoint.load(tmp_path / "last.pt")["step"] == 20


def test_patience_stops_when_val_loss_stops_improving(tokens, tmp_path):
    cfg = _cfg(max_iters=200, learning_rate=1e-30, min_lr=0.0, eval_interval=5, patience=2)
    result = _trainer(tokens, tmp_path, cfg).fit()
    assert result.stop_reason == "patience" and result.step == 10


def test_muon_trains_the_block_matrices(tokens, tmp_path):
    trainer = _trainer(tokens, tmp_path, _cfg(optimizer="muon", max_iters=20))
    muon, adamw = trainer.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert all(p.dim() == 2 for g in muon.param_groups for p in g["params"])
    result = trainer.fit()
    assert result.history["evals"][-1][2] < result.history["evals"][0][2] - 0.3


def _worker(out_dir: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(WORKER.parents[1]))
    return subprocess.Popen([sys.executable, str(WORKER), str(out_dir), *args], env=env)


def _wait_for_step(out_dir: Path, proc: subprocess.Popen, step: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        last = out_dir / "last.pt"
        if last.exists() and checkpoint.load(last)["step"] >= step:
            return
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    raise TimeoutError(f"no checkpoint at step {step}")


def test_sigkill_and_resume_reproduce_the_uninterrupted_losses(tmp_path):
    full = tmp_path / "full"
    assert _worker(full).wait(timeout=300) == 0
    expected = json.loads((full / "history-rank0.json").read_text())

    cut = tmp_path / "cut"
    for kill_after_step in (7, 22):  # two crashes, at different points of the run
        proc = _worker(cut, *(["--resume"] if kill_after_step > 7 else []))
        _wait_for_step(cut, proc, kill_after_step)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _worker(cut, "--resume").wait(timeout=300) == 0
    resumed = json.loads((cut / "history-rank0.json").read_text())
    assert resumed["steps"] == expected["steps"]  # every logged step: same loss, same lr
    # evaluations too (their last column, seconds of training so far, is wall time)
    assert [e[:3] for e in resumed["evals"]] == [e[:3] for e in expected["evals"]]
    assert (cut / "params-rank0.txt").read_text() == (full / "params-rank0.txt").read_text()  # same weights


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out_dir: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(WORKER.parents[1]), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(WORKER),
                             str(out_dir), "--max-iters", "40", "--checkpoint-every", "5", *args],
                            env=env, start_new_session=True)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """40 steps of 2 DDP processes on the CPU, uninterrupted."""
    out = tmp_path_factory.mktemp("ddp")
    assert _torchrun(out).wait(timeout=300) == 0
    return out


def test_ddp_on_two_cpu_processes(ddp_run):
    history = json.loads((ddp_run / "history-rank0.json").read_text())
    assert history["evals"][-1][2] < history["evals"][0][2] - 0.3  # val loss falls
    checksums = [float((ddp_run / f"params-rank{r}.txt").read_text()) for r in (0, 1)]
    assert checksums[0] == checksums[1]  # DDP kept the replicas identical
    rank1 = json.loads((ddp_run / "history-rank1.json").read_text())
    assert rank1["steps"][0][1] != history["steps"][0][1]  # but each rank saw its own batches
    state = checkpoint.load(ddp_run / "last.pt")
    model = checkpoint.build_model(state)  # loads in a single process
    assert state["step"] == 40 and model.num_params() > 0


def test_ddp_kill_and_resume_gives_every_rank_its_own_dropout_back(ddp_run, tmp_path):
    """With dropout on, each rank draws its own masks from (seed, rank, step): a DDP run killed
    with SIGKILL and resumed ends with the very weights of the uninterrupted run on both ranks."""
    cut = tmp_path / "cut"
    proc = _torchrun(cut)
    try:
        _wait_for_step(cut, proc, 10)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert checkpoint.load(cut / "last.pt")["step"] < 40
    assert _torchrun(cut, "--resume").wait(timeout=300) == 0
    for rank in (0, 1):
        assert (cut / f"params-rank{rank}.txt").read_text() == (ddp_run / f"params-rank{rank}.txt").read_text()


def test_a_compile_failure_at_the_first_step_falls_back_to_eager(tokens, tmp_path, monkeypatch):
    """torch.compile fails lazily, at the first forward (no C++ compiler, no Triton): one warning,
    then the run trains in eager mode exactly as an eager run would."""
    real_compile = torch.compile

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no working C++ compiler (simulated)")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend=broken_backend))
    logs = []
    tok, train_ids, val_ids = tokens
    info = {"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest}
    trainer = Trainer(_model(tok.vocab_size), train_ids, val_ids, _cfg(max_iters=6, compile=True),
                      tmp_path / "fallback", tokenizer_info=info, log=logs.append)
    assert trainer.compiled is not trainer.model  # torch.compile itself did not complain
    try:
        result = trainer.fit()
    finally:
        torch._dynamo.reset()
    assert trainer.compiled is trainer.model
    (warning,) = [line for line in logs if "torch.compile" in line]
    assert warning.startswith("warning: torch.compile failed (")
    assert warning.endswith("training in eager mode") and "\n" not in warning
    eager = _trainer(tokens, tmp_path / "eager", _cfg(max_iters=6, compile=False)).fit()
    assert result.history["steps"] == eager.history["steps"]
