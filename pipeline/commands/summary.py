"""`folio summary`: what the pipeline made, in a few lines — the registered version, its val loss
and bits per byte, how long it trained, and the commands to look at it, sample from it and
promote it. The register stage prints it as its last output (so `dvc repro` ends with it, before
DVC's own notes), and `make repro` runs `folio summary` after `dvc repro`, so that the summary is
the last thing it prints even when nothing had to rerun.

Reads reports/metrics.json and reports/registered_model.json, and the training run in MLflow for
how long it trained.
"""

from __future__ import annotations

import shlex

from pipeline.artifacts import reports
from pipeline.console import duration_text, log
from pipeline.params import Params

RULE = "─" * 12


def training_seconds(run) -> float | None:
    """How long the MLflow run of the training took; None while it has not ended."""
    if not run.info.end_time:
        return None
    return (run.info.end_time - run.info.start_time) / 1000


def lines(metrics: dict, registered: dict, seconds: float | None, params: Params) -> list[str]:
    """The summary: what was made, how good, how long; then what to run next."""
    val, name, version = metrics["val"], registered["name"], registered["version"]
    took = f"trained in {duration_text(seconds)}" if seconds is not None else "training still running"
    prompt = next((p for p in params.sample.prompts if p.strip() and "\n" not in p), "ROMEO:")
    commands = [
        ("make ui", "MLflow: the run, its curves, the version"),
        (f"folio generate --model {registered['uri']} {shlex.quote(prompt)}", "text from it"),
        (f"folio promote {version}", f"@{params.registry.alias}, if it beats the holder on {params.registry.metric}"),
        ("folio runs", "beside the earlier runs"),
    ]
    width = max(len(command) for command, _ in commands)
    return [
        f"{RULE} done: {name} v{version} ({registered['uri']}) {RULE}",
        f"val loss {val['loss']:.4f} · {val['bits_per_byte']:.4f} bits/byte · checkpoint of step "
        f"{metrics['checkpoint']['step']:,} · {took}",
        "next:",
        *(f"  {command.ljust(width)}  # {what}" for command, what in commands),
    ]


def show(params: Params) -> list[str]:
    """Print the summary of the workspace's last registered version; return its lines."""
    from pipeline.tracking import registry, store

    metrics, registered = reports.read_metrics(), reports.read_registered_model()
    store.setup()
    run = registry.client().get_run(registered["run_id"])
    result = lines(metrics, registered, training_seconds(run), params)
    for line in result:
        log(line)
    return result
