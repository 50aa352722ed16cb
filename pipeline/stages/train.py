"""Stage train — in: data/prepared/, data/tokenizer/, data/raw/<name>.json,
reports/validation/tokens/tokens.json (training runs only on tokens that passed the token gate, and
were encoded by the tokenizer it loads: both checked before any work) —
params: model.*, train.*, data.sources (a mixture's weights, which the batches are drawn by) — out:
models/ (persist: last.pt, best.pt, step-*.pt, run.json, previous/), reports/train/ (steps.csv,
evals.csv, loss.png).

models/ holds one run: a rerun of the same config (and world size) resumes it, another config moves
it aside to models/previous/ (pipeline/resume.py), and so does changed training code unless
train.on_code_change is resume. One MLflow run per trained model, continued on resume
(pipeline/tracking/training_run.py). train.init_from picks the starting weights
(pipeline/init_from.py); train.nproc > 1 runs the stage as DDP processes (pipeline/launch.py).
"""

from __future__ import annotations

import contextlib
import os
import re

from folio import distributed, flops
from folio.device import DeviceUnavailable, NotDeterministic, pick_device, pick_dtype
from folio.errors import first_line
from folio.train import OutOfMemory, train
from pipeline import artifacts, init_from, launch, resume
from pipeline.artifacts import corpus, models, prepared, reports, tokenizer as tokenizer_files
from pipeline.console import Progress, log
from pipeline.errors import StageError
from pipeline.params import Params, train_config
from pipeline.tracking import lineage, store
from pipeline.tracking.training_run import TrainingRun, checkpoint_backed_up


def step_info(metrics: dict[str, float], flops_per_token: float | None, peak_tflops: float | None) -> str:
    """What the progress line says about a step besides step/total and time: the loss, tokens/s
    and, where the GPUs' peak is published (folio.flops), the model FLOPs utilisation."""
    parts = [f"loss {metrics['train_loss']:.3f}", f"{metrics['tokens_per_sec']:,.0f} tok/s"]
    if flops_per_token and peak_tflops:
        parts.append(f"MFU {flops.mfu(metrics['tokens_per_sec'], flops_per_token, peak_tflops):.0%}")
    return " · ".join(parts)


def gpus_peak_tflops(info: dict) -> float | None:
    """The published peak of all the GPUs training (on_start's info), or None where unknown."""
    if not info["device"].startswith("cuda"):
        return None
    import torch

    peak = flops.peak_tflops(torch.cuda.get_device_name(info["device"]), info["dtype"])
    return peak * info["world_size"] if peak else None


class StageCallback:
    """Sends metrics to the MLflow run and shows progress: step/total, loss, tokens/s, MFU where
    the peak is known, time spent and a smoothed ETA (pipeline/console.py)."""

    def __init__(self, run: TrainingRun, bar: Progress, model):
        self.run, self.bar, self.model = run, bar, model
        self.flops_per_token: float | None = None
        self.peak_tflops: float | None = None

    def on_start(self, info: dict) -> None:
        self.run.on_start(info)
        log(f"device {info['device']} ({info['device_reason']}), {info['dtype']} "
            f"({info['dtype_reason']}), {info['world_size']} process(es); {info['num_params']:,} "
            f"parameters = {info['size_fp32_mb']:.1f} MB fp32 / {info['size_bf16_mb']:.1f} MB bf16")
        if info["resumed_from_step"] is not None:
            log(f"resuming from step {info['resumed_from_step']} ({artifacts.LAST_CKPT})")
        c = self.model.config
        self.flops_per_token = flops.flops_per_token(info["num_params"], c.n_layer, c.n_head, c.n_embd,
                                                     c.block_size)
        self.peak_tflops = gpus_peak_tflops(info)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.run.on_step(step, metrics)
        self.bar.update(step, info=step_info(metrics, self.flops_per_token, self.peak_tflops))

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.run.on_eval(step, metrics)
        log(f"step {step}: train {metrics['train_loss']:.4f}, val {metrics['val_loss']:.4f}")


def check_device(requested: str):
    try:
        return pick_device(requested)
    except DeviceUnavailable as err:
        raise StageError(f"train.device={requested}: {err}") from None


def check_splits(splits: dict, params: Params, source: dict | None) -> None:
    """Each split must hold one window of the model that will train (the source's, from a checkpoint)."""
    block_size = source["model_config"]["block_size"] if source else params.model.block_size
    for name, tokens in splits.items():
        longest = max(tokens.lengths, default=0)  # a window never spans two shards
        if longest < block_size + 1:
            raise StageError(f"the {name} split holds {longest:,} tokens in its longest shard, fewer than "
                             f"block_size + 1 = {block_size + 1:,}; lower model.block_size, or use a longer corpus")


def world_size(params: Params) -> int:
    """The processes that will train together: torchrun's WORLD_SIZE when it launched this one (by
    hand too), else train.nproc (this stage launches that many)."""
    return int(os.environ.get("WORLD_SIZE") or params.train.nproc)


def main(params: Params) -> None:
    tokenizer = tokenizer_files.load()
    record = corpus.record(params.data)
    meta = prepared.read_meta()
    prepared.require_validated(meta, tokenizer)
    sources = prepared.mixture_ranges(meta, params.data)  # tokens of other sources or weights fail here
    device = check_device(params.train.device).device
    compute = f"{device.type} {str(pick_dtype(params.train.dtype, device)[0]).removeprefix('torch.')}"
    identity = resume.identity(params, tokenizer.digest, record["sha256"], prepared.digest(meta),
                               world_size(params), compute)
    code = resume.code_digest()
    new_run_name = lineage.run_name(params.flat())
    # everything that can be wrong is checked before models/ is touched
    source = init_from.source(params, tokenizer)  # a source the run can't start from fails here
    splits = {name: prepared.load_split(name, meta) for name in ("train", "val")}
    check_splits(splits, params, source)
    if params.train.nproc > 1 and not distributed.launched_by_torchrun():
        store.setup()
        claim(params, identity, code, new_run_name)
        launch.torchrun(params.train.nproc)  # the ranks run this main() again
        return
    # the start allows rank 0 its setup; the steps, train.collective_timeout_s (`start_steps`)
    rank = distributed.init(device, max(distributed.SETUP_TIMEOUT_S, params.train.collective_timeout_s))
    with peer_lost_as_one_line(params):  # a lost node or peer: one line, not a traceback
        check_same_run(rank, {**identity, "training code": code})  # before rank 0 touches models/
        if rank.is_main:
            store.setup()  # a tracking server that does not answer fails here, before any work
            the_claim = claim(params, identity, code, new_run_name)
        distributed.barrier(rank)  # rank 0 has set models/ up
        if not rank.is_main:
            the_claim = resume.Claim(models.read_run_info(),
                                     resume.newest_checkpoint(resume.fingerprint(identity), log))
        check_same_start(rank, the_claim)
        model = init_from.start_model(params, tokenizer, the_claim.resume, source)
        if rank.is_main:
            train_tracked(params, tokenizer, record, the_claim, model, splits, rank, sources)
        else:  # other DDP ranks train silently; rank 0 logs, evaluates and saves
            start_steps(rank, params)
            fit(params, the_claim, model, splits, tokenizer, callback=None, sources=sources)
    distributed.shutdown()


def start_steps(rank, params: Params) -> None:
    """Every rank waits here until rank 0 has started its MLflow run, under the start's long
    timeout; from then on a collective waits at most train.collective_timeout_s."""
    distributed.barrier(rank)
    distributed.set_timeout(rank, params.train.collective_timeout_s)


def check_same_run(rank, run_identity: dict) -> None:
    """Every rank (on every node) must train the same run: the first key whose value differs from
    rank 0's stops them all, named (a different params.yaml, --set, data or code on one node)."""
    identities = distributed.gather(run_identity, rank)
    for other, theirs in enumerate(identities[1:], start=1):
        for key in sorted(set(identities[0]) | set(theirs)):
            if identities[0].get(key) != theirs.get(key):
                raise StageError(f"the ranks disagree on {key}: rank 0 has {identities[0].get(key)!r}, "
                                 f"rank {other} has {theirs.get(key)!r}; start every node with the same "
                                 "params.yaml, --set options, data and code")


def check_same_start(rank, the_claim: resume.Claim) -> None:
    """Every rank must resume from rank 0's checkpoint: a node that does not see rank 0's models/
    (no shared filesystem) would start from another step, so all stop, saying so."""
    steps = distributed.gather(the_claim.resume["step"] if the_claim.resume else 0, rank)
    for other, step in enumerate(steps):
        if step != steps[0]:
            raise StageError(f"rank {other} would start from step {step}, rank 0 from step {steps[0]}: "
                             f"the nodes do not see the same {artifacts.MODELS}/; put the project on a "
                             f"filesystem every node shares, or copy rank 0's {artifacts.MODELS}/ to every "
                             "node (dvc push there, dvc pull here) before starting")


def claim(params: Params, identity: dict, code: str, new_run_name: str) -> resume.Claim:
    return resume.claim(identity, code, new_run_name, params.train.keep_previous,
                        params.train.on_code_change, log, backed_up=checkpoint_backed_up)


def fit(params: Params, claim: resume.Claim, model, splits: dict, tokenizer, callback, sources=None):
    """Train; `sources`: a mixture's train ranges and weights (prepared.mixture_ranges), else None."""
    try:
        return train(
            model, splits["train"], splits["val"], train_config(params), artifacts.MODELS,
            callback=callback, resume=claim.resume, meta={"fingerprint": claim.info["fingerprint"]},
            sources=sources, log=log,
            tokenizer_info={"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "digest": tokenizer.digest})
    except OutOfMemory as err:
        raise StageError(f"{err.device} ran out of memory at step {err.step} ({err.detail}); lower "
                         "train.batch_size (raise train.grad_accum_steps to keep the global batch), "
                         "model.block_size or the model's size, or set train.grad_checkpointing=true, "
                         "then rerun: training resumes from the last checkpoint") from None
    except NotDeterministic as err:
        raise StageError(f"{err.op} has no deterministic kernel on {params.train.device}, and "
                         "train.deterministic is true; set train.deterministic=false to train with it "
                         "(the run is then not repeatable bit for bit)") from None


@contextlib.contextmanager
def peer_lost_as_one_line(params: Params):
    """A collective that failed because another rank went away becomes one line (`peer_lost`)."""
    try:
        yield
    except RuntimeError as err:
        if not (distributed.launched_by_torchrun() and distributed.is_peer_lost(err)):
            raise
        raise StageError(peer_lost(err, params.train.collective_timeout_s)) from None


def peer_lost(err: BaseException, timeout_s: float) -> str:
    """One line for a DDP rank whose collective failed: another rank stopped (its node lost, or
    killed) or did not answer within train.collective_timeout_s; the newest checkpoint is intact."""
    steps = sorted(artifacts.MODELS.glob("step-*.pt"))
    kept = f"the last checkpoint, {steps[-1]}, is intact" if steps else "no checkpoint was written yet"
    gist = re.sub(r"^\[[^\]]*\]\s*", "", first_line(err))  # gloo's "[.../pair.cc:553] " source location
    return (f"rank {os.environ.get('RANK', '?')} lost the other ranks ({gist}): a node or "
            f"process stopped, the network failed, or a rank waited over train.collective_timeout_s="
            f"{timeout_s:g}s; {kept}: start the job again on every node to resume from it")


def train_tracked(params: Params, tokenizer, record: dict, claim: resume.Claim, model, splits,
                  rank=distributed.Rank(), sources=None) -> None:
    """Train inside an MLflow run: a new one, or the one of the run being resumed."""
    run = TrainingRun(params, claim.info, record, prepared.read_meta(), tokenizer, log)
    run_id = run.start()
    models.write_run_info({**claim.info, "run_id": run_id})
    start_steps(rank, params)
    try:
        with Progress("train", total=params.train.max_iters) as bar:
            result = fit(params, claim, model, splits, tokenizer, StageCallback(run, bar, model), sources)
    except KeyboardInterrupt:
        run.abort("KILLED")
        raise
    except BaseException:
        run.abort("FAILED")
        raise
    reports.write_history(result.history)
    try:
        run.finish(result)
    except StageError:  # the server is away: keep what was logged, end the run as far as it can
        run.abort("FAILED")
        raise
    resume.mark_finished(run_id)
    log(f"trained {result.step} steps in {result.seconds:.0f}s ({result.stop_reason}); "
        f"best val loss {result.best_val_loss:.4f}")
