"""`folio harness` (not a dvc.yaml stage) — in: a checkpoint and its tokenizer directory, or a
registered model `models:/<name>@<alias>`; lm-eval task names (and a folder of task YAMLs) —
out: lm-eval's results table on stdout; with `--log`, the metrics (`harness.<task>.<metric>`) and
the harness's JSON (artifact `harness/results.json`) on the model's MLflow run: the registered
version's run, or for a checkpoint the run that models/run.json beside it names (the one that
trained it). The adapter and the runs are pipeline/harness.py (the `eval` extra).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import StageError


class HarnessLogError(StageError, ValueError):
    """--log without an MLflow run to log to."""


def model_run(model: str) -> str:
    """The MLflow run of a registered model URI, or of a checkpoint trained by this project's
    train stage (models/run.json beside it, whose fingerprint the checkpoint records)."""
    if model.startswith("models:/"):
        from pipeline.tracking import registry, store

        store.setup()
        version = registry.resolve(model)
        if not version.run_id:
            raise HarnessLogError(f"{model} (version {version.version}) has no MLflow run to log to; drop --log")
        return version.run_id
    from folio import checkpoint
    from pipeline.artifacts import models

    run = models.read_run_info(Path(model).parent / "run.json") or {}
    recorded = checkpoint.load(model).get("meta", {}).get("fingerprint")
    if not run.get("run_id") or recorded is None or run.get("fingerprint") != recorded:
        raise HarnessLogError(f"{model} has no MLflow run to log to (no run.json of its training run "
                              "beside it); pass --model models:/<name>@<alias>, a checkpoint in models/, "
                              "or drop --log")
    return run["run_id"]


def show(model: str, tasks: list[str], tokenizer_dir: Path, include_path: Path | None = None,
         limit: int | None = None, batch_size: int = 8, device: str = "auto",
         num_fewshot: int | None = None, log: bool = False) -> dict:
    """Score `model` on `tasks` with lm-eval, print the table, and log to the model's run if `log`."""
    from pipeline import harness
    from pipeline.console import log as say

    run_id = model_run(model) if log else None  # before any work: a run that is not there fails fast
    lm = harness.FolioLM(model=model, tokenizer=str(tokenizer_dir), batch_size=batch_size, device=device)
    results = harness.evaluate(lm, tasks, include_path, limit, num_fewshot)
    print(harness.table(results))
    if run_id is not None:
        harness.log_results(run_id, results)
        say(f"logged {len(harness.metrics(results))} metrics and harness/results.json to MLflow run {run_id}")
    return results
