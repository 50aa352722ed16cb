"""GPU efficiency by construction, checked on the CPU: no host sync in a training step (losses are
read at log intervals, every step still reported), fp16 with a gradient scaler, the head's
vocabulary padded for tensor cores with the pad logits cut off, and each DDP rank on its own GPU."""

import pytest
import torch
import torch.nn.functional as F

from folio import distributed, model as model_module
from folio.config import GPTConfig, TrainConfig
from folio.model import GPT
from folio.tokenizers import CharTokenizer
from folio.train import Trainer


@pytest.fixture
def tokens(tiny_text):
    tok = CharTokenizer.train(tiny_text)
    ids = torch.tensor(tok.encode(tiny_text))
    return tok, ids[:2800], ids[2800:]


class Recorder:
    def __init__(self):
        self.steps, self.evals = [], []

    def on_start(self, info):
        self.info = info

    def on_step(self, step, metrics):
        self.steps.append((step, metrics))

    def on_eval(self, step, metrics):
        self.evals.append(step)


def _trainer(tokens, tmp_path, callback=None, **cfg):
    tok, train_ids, val_ids = tokens
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32))
    base = dict(max_iters=23, batch_size=4, eval_interval=10, eval_iters=2, warmup_iters=2,
                device="cpu", dtype="float32", log_interval=4)
    return Trainer(model, train_ids, val_ids, TrainConfig(**{**base, **cfg}), tmp_path,
                   tokenizer_info={"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest},
                   callback=callback, log=lambda m: None)


def test_a_training_step_never_reads_a_tensor_back_and_losses_are_read_at_log_intervals(
        tokens, tmp_path, monkeypatch):
    recorder = Recorder()
    trainer = _trainer(tokens, tmp_path, recorder)
    reads, in_step = [], [False]

    def forbid(name):
        real = getattr(torch.Tensor, name)

        def guarded(self, *args):
            if in_step[0]:
                raise AssertionError(f"Tensor.{name} (a host sync) inside train_step")
            return real(self, *args)
        monkeypatch.setattr(torch.Tensor, name, guarded)

    for name in ("item", "tolist", "__float__", "__bool__", "cpu", "numpy"):
        forbid(name)
    real_step, real_read = trainer.train_step, trainer._read_back

    def step():
        in_step[0] = True
        try:
            return real_step()
        finally:
            in_step[0] = False

    def read_back(pending, *args):
        reads.append(pending[-1][0])
        return real_read(pending, *args)

    monkeypatch.setattr(trainer, "train_step", step)
    monkeypatch.setattr(trainer, "_read_back", read_back)
    trainer.fit()
    # every log_interval steps, and at each evaluation and the last step
    assert reads == [4, 8, 10, 14, 18, 20, 23]
    assert [s for s, _ in recorder.steps] == list(range(1, 24))  # every step is still reported
    assert [row[0] for row in trainer.state.history["steps"]] == list(range(1, 24))
    assert recorder.evals == [0, 10, 20, 23]


def test_the_losses_read_late_are_the_losses_read_every_step(tokens, tmp_path):
    every = _trainer(tokens, tmp_path / "a", log_interval=1)
    late = _trainer(tokens, tmp_path / "b", log_interval=7)
    a, b = every.fit().history, late.fit().history
    assert a["steps"] == b["steps"]
    assert [e[:3] for e in a["evals"]] == [e[:3] for e in b["evals"]]  # less the seconds


def test_a_nan_loss_read_late_names_its_own_step_and_nothing_after_it_is_saved(tokens, tmp_path, monkeypatch):
    from folio.train import NonFiniteLossError

    trainer = _trainer(tokens, tmp_path, log_interval=5, eval_interval=100, max_iters=30)
    real_step = trainer.train_step

    def step():
        loss, norm = real_step()
        return (loss * float("nan"), norm) if trainer.state.step == 6 else (loss, norm)  # step 7

    monkeypatch.setattr(trainer, "train_step", step)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 7; .*last.pt \(step 0\)"):
        trainer.fit()
    assert [row[0] for row in trainer.state.history["steps"]] == [1, 2, 3, 4, 5, 6]


def test_float16_trains_with_a_gradient_scaler(tokens, tmp_path):
    trainer = _trainer(tokens, tmp_path, dtype="float16", max_iters=6, eval_interval=3)
    assert trainer.dtype == torch.float16 and trainer.scaler.is_enabled()
    result = trainer.fit()
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss, _ in result.history["steps"])
    assert trainer.snapshot()["scaler"]["scale"] > 0  # saved with the run, restored on resume


def test_the_padded_head_gives_the_same_logits_and_gradients_and_pads_to_64(monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=32))
    x = torch.randint(65, (3, 16))
    plain_logits, plain_loss = model(x, x)
    plain_loss.backward()
    plain_grad = model.lm_head.weight.grad.clone()
    model.zero_grad()

    shapes = []
    real_linear = F.linear

    def spy(inp, weight, bias=None):
        shapes.append(tuple(weight.shape))
        return real_linear(inp, weight, bias)

    monkeypatch.setattr(model_module, "pads_vocab", lambda x: True)  # as on CUDA
    monkeypatch.setattr(model_module.F, "linear", spy)
    logits, loss = model(x, x)
    loss.backward()
    assert (128, 32) in shapes  # the head ran over 65 ids padded to 128
    assert logits.shape == (3, 16, 65)  # the pad ids' logits are cut off
    torch.testing.assert_close(logits, plain_logits)
    torch.testing.assert_close(model.lm_head.weight.grad, plain_grad)
    assert model.state_dict()["lm_head.weight"].shape == (65, 32)  # checkpoints keep the true vocab


def test_a_cpu_never_pads_the_head():
    assert not model_module.pads_vocab(torch.zeros(1))


def test_each_ddp_rank_sets_its_own_gpu_before_joining(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    rank = distributed.init(torch.device("cuda"))
    assert calls == [("set_device", 1), ("init", "nccl")]  # its own GPU first, then NCCL
    assert rank == distributed.Rank(1, 1, 2)
    calls.clear()
    distributed.init(torch.device("cpu"))
    assert calls == [("init", "gloo")]  # no GPU to pick on the CPU


def test_batches_are_pinned_and_copied_without_blocking_on_cuda(tokens, monkeypatch):
    from folio.data import WindowSampler

    copies = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: copies.append("pinned") or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, device, non_blocking=False:
                        copies.append(("to", str(device), non_blocking)) or self)
    WindowSampler(tokens[1], 16, 4, seed=0).batch(0, device="cuda")
    assert copies == ["pinned", ("to", "cuda", True)] * 2
