"""The MLflow run of one training: started, or continued when resuming; its params, tags, the
corpus as its dataset and the reports of the gates its data passed; step metrics batched through
the outage spool (spool.py); at the end the final metrics and the artifacts.

It is the train stage's TrainingCallback for MLflow (on_start, on_step, on_eval).
"""

from __future__ import annotations

import torch

from pipeline import artifacts, tracking
from pipeline.errors import StageError
from pipeline.params import Params
from folio.errors import first_line
from pipeline.tracking.spool import RunLog, replay

FLUSH_EVERY_STEPS = 50


class TrainingRun:
    def __init__(self, params: Params, run_info: dict, corpus: dict, prepared_meta: dict, tokenizer, log):
        self.params, self.info, self.corpus, self.meta = params, run_info, corpus, prepared_meta
        self.tokenizer, self.log = tokenizer, log

    def start(self) -> str:
        """Start the run (or continue the one run.json names); returns its id."""
        ml = tracking.mlflow()
        replay(self.log)  # metrics earlier runs could not send
        run_id = self.info.get("run_id")
        if run_id and not self._exists(run_id):
            self.log(f"warning: MLflow run {run_id} of {artifacts.RUN_INFO} is not in "
                     f"{tracking.tracking_uri()}; the resumed training logs to a new run")
            run_id = None
        run = ml.start_run(run_id=run_id, run_name=None if run_id else self.info["run_name"])
        self.run_id = run.info.run_id
        self.runlog = RunLog(self.run_id, self.log)
        tracking.announce(self.run_id)
        if run_id is None:
            self._log_inputs()
        return self.run_id

    @staticmethod
    def _exists(run_id: str) -> bool:
        try:
            tracking.mlflow().MlflowClient().get_run(run_id)
        except Exception as err:
            if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def _log_inputs(self) -> None:
        ml, p = tracking.mlflow(), self.params
        ml.log_params(p.flat())
        ml.set_tags({**tracking.run_tags(), "fingerprint": self.info["fingerprint"]})
        tracking.log_corpus_dataset(p.data.name, self.corpus)
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
        self.runlog.tags({key: info[key] for key in ("device", "dtype", "world_size", "num_params")}
                         | {key: f"{info[key]:.2f}" for key in ("size_fp32_mb", "size_bf16_mb")}
                         | {"torch_threads": torch.get_num_threads()})
        self.runlog.flush()

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.runlog.metrics(step, metrics)
        if step % FLUSH_EVERY_STEPS == 0:
            self.runlog.flush()

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.runlog.metrics(step, {f"eval_{k}": v for k, v in metrics.items()})
        self.runlog.flush()

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
                f"{tracking.tracking_uri()} still does not answer: {self.runlog.spooled:,} metrics "
                f"wait in {self.runlog.spool}; rerun `folio train` (or `dvc repro`) once it answers "
                "— it sends them and the artifacts without training again")
        ml = tracking.mlflow()
        try:
            ml.log_artifacts(str(artifacts.TOKENIZER_DIR), "tokenizer")
            for path in (artifacts.LOSS_PLOT, artifacts.TRAIN_STEPS, artifacts.TRAIN_EVALS):
                ml.log_artifact(str(path), "train")
            ml.log_artifact(str(artifacts.BEST_CKPT), "checkpoint")
            ml.end_run()
        except Exception as err:  # the server went away again
            raise StageError(
                f"training finished ({artifacts.BEST_CKPT} is saved), but its artifacts could not "
                f"be logged to MLflow at {tracking.tracking_uri()} ({first_line(err)}); rerun "
                "`folio train` (or `dvc repro`) once it answers — it logs them without training "
                "again") from None

    def abort(self, status: str = "FAILED") -> None:
        """Keep what was logged (spooled if need be) and mark the run, as far as the server allows."""
        self.runlog.flush()
        try:
            tracking.mlflow().end_run(status=status)
        except Exception:  # the server is away: the next run continues this one anyway
            pass
