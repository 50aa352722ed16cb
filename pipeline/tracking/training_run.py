"""The MLflow run of one training: started, or continued when resuming; its params, tags, the
corpus as its dataset and the reports of the gates its data passed; step metrics batched through
the outage spool (spool.py); MLflow's own system metrics (CPU, memory, disk, network, and GPUs
where NVML sees them) while it trains; at the end the final metrics and the artifacts.

It is the train stage's TrainingCallback for MLflow (on_start, on_step, on_eval).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from folio.download import sha256_of
from folio.errors import first_line
from folio.evaluate import bits_per_byte
from pipeline import artifacts
from pipeline.artifacts.models import read_run_info
from pipeline.errors import StageError
from pipeline.params import Params
from pipeline.tracking import access, lineage, store
from pipeline.tracking.spool import RunLog, replay

FLUSH_EVERY_STEPS = 50
CHECKPOINT_ARTIFACTS = "checkpoint"  # where best.pt goes among the run's artifacts


def checkpoint_backed_up(folder: Path) -> str | None:
    """None if the MLflow run that trained the run in `folder` (models/previous/<name>/) holds its
    best.pt byte for byte; else why not, in a few words. Downloaded and compared, not assumed: a
    run whose logging failed (an outage, a refusal, another tracking store) has no copy."""
    info = read_run_info(folder / artifacts.RUN_INFO.name) or {}
    best = folder / artifacts.BEST_CKPT.name
    if not info.get("run_id"):
        return "its run.json names no MLflow run"
    if not best.exists():
        return f"it holds no {best.name} to compare"
    try:
        artifacts.STATE_DIR.mkdir(parents=True, exist_ok=True)  # the workspace's disk, not models/
        with tempfile.TemporaryDirectory(dir=artifacts.STATE_DIR, prefix="verify-") as tmp:
            copy = store.mlflow().artifacts.download_artifacts(
                run_id=info["run_id"], artifact_path=f"{CHECKPOINT_ARTIFACTS}/{best.name}", dst_path=tmp)
            same = sha256_of(Path(copy)) == sha256_of(best)
    except Exception as err:  # no such run or artifact, the server away or refusing us
        why = access.refusal(err) or first_line(err)
        return f"run {info['run_id']} in {store.tracking_uri()} has no copy of it: {why}"
    return None if same else f"the copy in run {info['run_id']} differs from it"


class TrainingRun:
    def __init__(self, params: Params, run_info: dict, corpus: dict, prepared_meta: dict, tokenizer, log):
        self.params, self.info, self.corpus, self.meta = params, run_info, corpus, prepared_meta
        self.tokenizer, self.log = tokenizer, log

    def start(self) -> str:
        """Start the run (or continue the one run.json names); returns its id."""
        ml = store.mlflow()
        replay(self.log)  # metrics earlier runs could not send
        run_id = self.info.get("run_id")
        if run_id and not self._exists(run_id):
            self.log(f"warning: MLflow run {run_id} of {artifacts.RUN_INFO} is not in "
                     f"{store.tracking_uri()}; the resumed training logs to a new run")
            run_id = None
        run = ml.start_run(run_id=run_id, run_name=None if run_id else self.info["run_name"],
                           log_system_metrics=False)  # started after the first evaluation
        self.run_id, self.resumed, self.system_metrics = run.info.run_id, run_id is not None, None
        self.runlog = RunLog(self.run_id, self.log)
        store.announce(self.run_id)
        if run_id is None:
            self._log_inputs()
        else:  # its metrics are in place already: sample the machine from now on
            self._start_system_metrics()
        ml.set_tags(self.code_tags(self.info))
        return self.run_id

    @staticmethod
    def code_tags(info: dict) -> dict[str, str]:
        """The training code's digest, and each change of it the run was resumed across
        (train.on_code_change: resume)."""
        tags = {"training_code": str(info.get("code"))}
        if changes := info.get("code_changes"):
            tags["training_code.changes"] = "; ".join(
                f"{c['from']} -> {c['to']} at step {c['step']} ({c['at']})" for c in changes)
        return tags

    @staticmethod
    def _exists(run_id: str) -> bool:
        try:
            store.mlflow().MlflowClient().get_run(run_id)
        except Exception as err:
            if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def _log_inputs(self) -> None:
        ml, p = store.mlflow(), self.params
        ml.log_params(p.flat())
        ml.set_tags({**lineage.run_tags(), "fingerprint": self.info["fingerprint"]})
        lineage.log_corpus_dataset(p.data.name, self.corpus)
        if artifacts.raw_record(p.data.name).exists():  # the manifest: every file and its digest
            ml.log_artifact(str(artifacts.raw_record(p.data.name)), "data")
        for suite in ("corpus", "tokens"):  # the reports of the gates this data passed
            if artifacts.validation_dir(suite).exists():
                ml.log_artifacts(str(artifacts.validation_dir(suite)), f"validation/{suite}")
        # facts about the run, not measurements over it: params, so no single-point metric charts
        ml.log_params({"tokenizer.n_vocab": self.tokenizer.vocab_size,
                       "tokenizer.bytes_per_token": round(self.meta["bytes_per_token"], 4)})

    # -- TrainingCallback ---------------------------------------------------------------------

    def on_start(self, info: dict) -> None:
        self.runlog.tags({key: info[key] for key in ("device", "dtype", "world_size", "num_params", "determinism")}
                         | {key: f"{info[key]:.2f}" for key in ("size_fp32_mb", "size_bf16_mb")}
                         | {"torch_threads": torch.get_num_threads()})
        self.runlog.flush()

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.runlog.metrics(step, metrics)
        if step % FLUSH_EVERY_STEPS == 0:
            self.runlog.flush()

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        # Bits per byte first: MLflow's compare page plots the first metric a run logged, and this
        # is the curve that final_val_bits_per_byte ends, comparable across tokenizers.
        self.runlog.metrics(step, self.eval_bits_per_byte(metrics) | {f"eval_{k}": v for k, v in metrics.items()})
        self.runlog.flush()
        if self.system_metrics is None:
            self._start_system_metrics()

    def eval_bits_per_byte(self, losses: dict[str, float]) -> dict[str, float]:
        """Each split's eval loss (nats/token) in bits per byte, at the split's bytes per token."""
        out = {}
        for split in ("val", "train"):
            tokens, size = self.meta[f"{split}_tokens"], self.meta[f"{split}_bytes"]
            out[f"eval_{split}_bits_per_byte"] = bits_per_byte(losses[f"{split}_loss"], tokens, size)
        return out

    def _start_system_metrics(self) -> None:
        """MLflow's own sampler of the machine (CPU, memory, disk, network; GPUs through NVML),
        every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds (default 10) in a thread of its own.
        On unless MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING is false. A new run starts it after its
        first eval, so the eval curves are the run's first metrics; a resumed run, at once. They observe the machine, not the model:
        while the server is away MLflow stops sampling (the training metrics spool instead)."""
        from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING as switch

        if switch.defined and not switch.get():
            self.system_metrics = False
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no INFO lines
        try:
            self.system_metrics = SystemMetricsMonitor(self.run_id, resume_logging=self.resumed,
                                                       tracking_uri=store.tracking_uri())
            self.system_metrics.start()
        except Exception as err:  # the server went away, or psutil is missing: train without them
            self.log(f"warning: no system metrics for this run ({first_line(err)})")
            self.system_metrics = False

    def _stop_system_metrics(self) -> None:
        if self.system_metrics:
            self.system_metrics.finish()  # its last samples, sent
        self.system_metrics = False

    # -- the end ------------------------------------------------------------------------------

    def finish(self, result) -> None:
        """Final metrics and artifacts, then the run ends. With the server still away, raise: the
        checkpoints are saved, and the next `folio train` sends the rest without training again."""
        self.runlog.metrics(result.step, {"best_val_loss": result.best_val_loss,
                                          "train_seconds": result.seconds})
        self.runlog.tags({"stop_reason": result.stop_reason})
        if not self.runlog.flush(now=True):
            raise StageError(
                f"training finished ({artifacts.BEST_CKPT} is saved), but MLflow at "
                f"{store.tracking_uri()} still does not answer: {self.runlog.spooled:,} metrics "
                f"wait in {self.runlog.spool}; rerun `folio train` (or `dvc repro`) once it answers "
                "— it sends them and the artifacts without training again")
        ml = store.mlflow()
        try:
            ml.log_artifacts(str(artifacts.TOKENIZER_DIR), "tokenizer")
            for path in (artifacts.LOSS_PLOT, artifacts.TRAIN_STEPS, artifacts.TRAIN_EVALS):
                ml.log_artifact(str(path), "train")
            ml.log_artifact(str(artifacts.BEST_CKPT), CHECKPOINT_ARTIFACTS)
            self._stop_system_metrics()
            ml.end_run()
        except Exception as err:  # the server went away again, or refuses this user
            why = access.refusal(err) or first_line(err)
            raise StageError(
                f"training finished ({artifacts.BEST_CKPT} is saved), but its artifacts could not "
                f"be logged to MLflow at {store.tracking_uri()} ({why}); rerun "
                "`folio train` (or `dvc repro`) once it answers — it logs them without training "
                "again") from None

    def abort(self, status: str = "FAILED") -> None:
        """Keep what was logged (spooled if need be) and mark the run, as far as the server allows."""
        self.runlog.flush()
        try:
            self._stop_system_metrics()
            store.mlflow().end_run(status=status)
        except Exception:  # the server is away: the next run continues this one anyway
            pass
