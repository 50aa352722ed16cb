"""Stage train — in: data/prepared/, data/tokenizer/, data/raw/<name>.json, reports/validation/
(logged to the MLflow run) — params: model.*, train.* —
out: models/ (last.pt, best.pt, run.json; persist), reports/train/ (steps.csv, evals.csv, loss.png).

One MLflow run per trained model. A re-run after a crash resumes from models/last.pt and
continues the same MLflow run, but only if the checkpoint belongs to the same configuration
(its fingerprint matches); otherwise models/ is cleared and training starts fresh.
train.init_from picks the starting weights: scratch, or a checkpoint, a Hugging Face GPT-2
directory or a registered model, whose config then replaces model.* (pipeline/init_from.py).
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

from folio import checkpoint, distributed
from folio.device import pick_device
from folio.fileio import atomic_path, write_json
from folio.model import GPTConfig, create_model
from folio.train import TrainConfig, train
from pipeline import download, init_from, paths, prepare, tokenize, tracking
from pipeline.console import Progress, log
from pipeline.params import Params


def model_config(params: Params, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, **params.model.model_dump())


def train_config(params: Params) -> TrainConfig:
    settings = params.train.model_dump(exclude={"nproc", "init_from"})  # how to launch / where from
    settings["compile"] = {"auto": None, "true": True, "false": False}[settings["compile"]]
    return TrainConfig(**settings)


def fingerprint(params: Params, tokenizer_digest: str) -> str:
    """What makes two training runs the same run: resume only within one fingerprint."""
    identity = {
        "model": params.model.model_dump(),
        "train": params.train.model_dump(),
        "tokenizer": tokenizer_digest,
        "data": [download.corpus_record(params.data)["sha256"], params.data.val_fraction],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def resumable_run(run_fingerprint: str) -> tuple[dict, str] | None:
    """(checkpoint, run id) of an interrupted run of this configuration, else None."""
    if not (paths.LAST_CKPT.exists() and paths.RUN_INFO.exists()):
        return None
    info = json.loads(paths.RUN_INFO.read_text())
    if info.get("fingerprint") != run_fingerprint:
        return None
    state = checkpoint.load(paths.LAST_CKPT)
    if state.get("meta", {}).get("fingerprint") != run_fingerprint:
        return None
    return state, info["run_id"]


def clear_models_dir() -> None:
    for path in (paths.LAST_CKPT, paths.BEST_CKPT, paths.RUN_INFO, *paths.MODELS.glob("step-*.pt")):
        path.unlink(missing_ok=True)


class StageCallback:
    """Sends metrics to MLflow and shows progress on the terminal."""

    def __init__(self, mlflow_cb: tracking.MlflowCallback, bar: Progress):
        self.mlflow_cb, self.bar = mlflow_cb, bar

    def on_start(self, info: dict) -> None:
        self.mlflow_cb.on_start(info)
        log(f"device {info['device']} ({info['device_reason']}), {info['dtype']} "
            f"({info['dtype_reason']}), {info['world_size']} process(es); {info['num_params']:,} "
            f"parameters = {info['size_fp32_mb']:.1f} MB fp32 / {info['size_bf16_mb']:.1f} MB bf16")
        if info["resumed_from_step"] is not None:
            log(f"resuming from step {info['resumed_from_step']} ({paths.LAST_CKPT})")

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.mlflow_cb.on_step(step, metrics)
        self.bar.update(step, info=f"loss {metrics['train_loss']:.3f}")

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.mlflow_cb.on_eval(step, metrics)
        log(f"step {step}: train {metrics['train_loss']:.4f}, val {metrics['val_loss']:.4f}")


def write_history(history: dict) -> None:
    """Per-step and per-evaluation CSVs (DVC plots) and the loss-curve PNG."""
    for path, header, rows in (
        (paths.TRAIN_STEPS, ["step", "train_loss", "lr"], history["steps"]),
        (paths.TRAIN_EVALS, ["step", "train_loss", "val_loss", "train_seconds"], history["evals"]),
    ):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    plot_losses(history)


def plot_losses(history: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps, losses, _ = zip(*history["steps"]) if history["steps"] else ((), (), ())
    ax.plot(steps, losses, lw=0.6, alpha=0.5, label="train (batch)")
    eval_steps, eval_train, eval_val, _ = zip(*history["evals"])
    ax.plot(eval_steps, eval_train, "o-", label="train (eval)")
    ax.plot(eval_steps, eval_val, "o-", label="val (eval)")
    ax.set(xlabel="step", ylabel="cross-entropy loss (nats/token)", title="folio training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(paths.LOSS_PLOT) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def launch_torchrun(nproc: int) -> None:
    """Run this same `folio train ...` command as `nproc` DDP processes on this node."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "pipeline.cli", *sys.argv[1:]]
    log(f"launching {nproc} processes: {' '.join(command)}")
    subprocess.run(command, check=True)


def main(params: Params) -> None:
    tokenizer = tokenize.load()
    run_fingerprint = fingerprint(params, tokenizer.digest)
    resume = resumable_run(run_fingerprint)
    if params.train.nproc > 1 and not distributed.launched_by_torchrun():
        if resume is None:
            clear_models_dir()  # here, before the ranks start, so they all see the same folder
        launch_torchrun(params.train.nproc)
        return
    rank = distributed.init(pick_device(params.train.device).device)
    # train.init_from: a source with another tokenizer fails here, before models/ is cleared
    model = init_from.source_model(params, tokenizer, resume[0] if resume else None)
    if rank.is_main and resume is None:
        clear_models_dir()
    if rank.is_main:
        train_tracked(params, tokenizer, run_fingerprint, resume, model)
    else:  # other DDP ranks train silently; rank 0 logs, evaluates and saves
        run_training(params, tokenizer, run_fingerprint, resume, callback=None, model=model)
    distributed.shutdown()


def run_training(params: Params, tokenizer, run_fingerprint: str, resume, callback, model=None):
    """Train `model` (None: a new one from model.*), or resume it from `resume`'s checkpoint."""
    state = resume[0] if resume else None
    if model is None:
        model = create_model(model_config(params, tokenizer.vocab_size))
    return train(
        model, prepare.load_split("train"), prepare.load_split("val"), train_config(params),
        paths.MODELS, callback=callback, resume=state, meta={"fingerprint": run_fingerprint}, log=log,
        tokenizer_info={"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                        "digest": tokenizer.digest},
    )


def train_tracked(params: Params, tokenizer, run_fingerprint: str, resume, model=None) -> None:
    """Train inside an MLflow run: a new one, or the interrupted run being resumed."""
    meta = json.loads(paths.PREPARED_META.read_text())
    run_id = resume[1] if resume else None
    tracking.setup()
    ml = tracking.mlflow()
    flat = params.flat()
    with ml.start_run(run_id=run_id, run_name=None if run_id else tracking.run_name(flat)) as run:
        tracking.announce(run.info.run_id)
        if run_id is None:
            ml.log_params(flat)
            ml.set_tags(tracking.run_tags())
            corpus = download.corpus_record(params.data)  # the digest of the file, even with data.sha256 empty
            tracking.log_corpus_dataset(params.data.name, corpus["source"], corpus["sha256"], corpus["bytes"])
            for suite in ("corpus", "tokens"):  # the reports of the gates this data passed
                if paths.validation_dir(suite).exists():
                    ml.log_artifacts(str(paths.validation_dir(suite)), f"validation/{suite}")
            ml.log_metrics({"tokenizer_vocab_size": tokenizer.vocab_size,
                            "tokenizer_bytes_per_token": meta["bytes_per_token"]})
            write_json(paths.RUN_INFO, {"run_id": run.info.run_id, "fingerprint": run_fingerprint})
        mlflow_cb = tracking.MlflowCallback(run.info.run_id)
        with Progress("train", total=params.train.max_iters) as bar:
            try:
                result = run_training(params, tokenizer, run_fingerprint, resume,
                                      StageCallback(mlflow_cb, bar), model)
            finally:
                mlflow_cb.flush()
        write_history(result.history)
        ml.log_metrics({"best_val_loss": result.best_val_loss, "train_seconds": result.seconds})
        ml.set_tag("stop_reason", result.stop_reason)
        ml.log_artifacts(str(paths.TOKENIZER_DIR), "tokenizer")
        for path in (paths.LOSS_PLOT, paths.TRAIN_STEPS, paths.TRAIN_EVALS):
            ml.log_artifact(str(path), "train")
        ml.log_artifact(str(paths.BEST_CKPT), "checkpoint")
    log(f"trained {result.step} steps in {result.seconds:.0f}s ({result.stop_reason}); "
        f"best val loss {result.best_val_loss:.4f}")
