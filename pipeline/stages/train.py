"""Stage train — in: data/prepared/, data/tokenizer/, data/raw/<name>.json,
reports/validation/tokens/tokens.json (training runs only on tokens that passed the token gate, and
were encoded by the tokenizer it loads: both checked before any work) —
params: model.*, train.* — out: models/ (persist: last.pt, best.pt, step-*.pt, run.json,
previous/), reports/train/ (steps.csv, evals.csv, loss.png).

models/ holds one run: a rerun of the same config (and world size) resumes it, another config moves
it aside to models/previous/ (pipeline/resume.py), and so does changed training code unless
train.on_code_change is resume. One MLflow run per trained model, continued on resume
(pipeline/tracking/training_run.py). train.init_from picks the starting weights
(pipeline/init_from.py); train.nproc > 1 runs the stage as DDP processes (pipeline/launch.py).
"""

from __future__ import annotations

import os

from folio import distributed
from folio.device import DeviceUnavailable, pick_device
from folio.train import OutOfMemory, train
from pipeline import artifacts, init_from, launch, resume
from pipeline.artifacts import corpus, models, prepared, reports, tokenizer as tokenizer_files
from pipeline.console import Progress, log
from pipeline.errors import StageError
from pipeline.params import Params, train_config
from pipeline.tracking import lineage, store
from pipeline.tracking.training_run import TrainingRun, checkpoint_backed_up


class StageCallback:
    """Sends metrics to the MLflow run and shows progress on the terminal."""

    def __init__(self, run: TrainingRun, bar: Progress):
        self.run, self.bar = run, bar

    def on_start(self, info: dict) -> None:
        self.run.on_start(info)
        log(f"device {info['device']} ({info['device_reason']}), {info['dtype']} "
            f"({info['dtype_reason']}), {info['world_size']} process(es); {info['num_params']:,} "
            f"parameters = {info['size_fp32_mb']:.1f} MB fp32 / {info['size_bf16_mb']:.1f} MB bf16")
        if info["resumed_from_step"] is not None:
            log(f"resuming from step {info['resumed_from_step']} ({artifacts.LAST_CKPT})")

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.run.on_step(step, metrics)
        self.bar.update(step, info=f"loss {metrics['train_loss']:.3f}")

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
    device = check_device(params.train.device).device
    identity = resume.identity(params, tokenizer.digest, record["sha256"], prepared.digest(meta), world_size(params))
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
    rank = distributed.init(device)
    if rank.is_main:
        store.setup()  # a tracking server that does not answer fails here, before any work
        the_claim = claim(params, identity, code, new_run_name)
    distributed.barrier(rank)  # rank 0 has set models/ up
    if not rank.is_main:
        the_claim = resume.Claim(models.read_run_info(),
                                 resume.newest_checkpoint(resume.fingerprint(identity), log))
    model = init_from.start_model(params, tokenizer, the_claim.resume, source)
    if rank.is_main:
        train_tracked(params, tokenizer, record, the_claim, model, splits)
    else:  # other DDP ranks train silently; rank 0 logs, evaluates and saves
        fit(params, the_claim, model, splits, tokenizer, callback=None)
    distributed.shutdown()


def claim(params: Params, identity: dict, code: str, new_run_name: str) -> resume.Claim:
    return resume.claim(identity, code, new_run_name, params.train.keep_previous,
                        params.train.on_code_change, log, backed_up=checkpoint_backed_up)


def fit(params: Params, claim: resume.Claim, model, splits: dict, tokenizer, callback):
    try:
        return train(
            model, splits["train"], splits["val"], train_config(params), artifacts.MODELS,
            callback=callback, resume=claim.resume, meta={"fingerprint": claim.info["fingerprint"]},
            log=log, tokenizer_info={"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                                     "digest": tokenizer.digest})
    except OutOfMemory as err:
        raise StageError(f"{err.device} ran out of memory at step {err.step} ({err.detail}); lower "
                         "train.batch_size (raise train.grad_accum_steps to keep the global batch), "
                         "model.block_size or the model's size, or set train.grad_checkpointing=true, "
                         "then rerun: training resumes from the last checkpoint") from None


def train_tracked(params: Params, tokenizer, record: dict, claim: resume.Claim, model, splits) -> None:
    """Train inside an MLflow run: a new one, or the one of the run being resumed."""
    run = TrainingRun(params, claim.info, record, prepared.read_meta(), tokenizer, log)
    run_id = run.start()
    models.write_run_info({**claim.info, "run_id": run_id})
    try:
        with Progress("train", total=params.train.max_iters) as bar:
            result = fit(params, claim, model, splits, tokenizer, StageCallback(run, bar))
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
