"""`folio runs`: the recent runs of the `folio` experiment side by side — the params that differ
between them, val loss, bits per byte, training tokens/s, duration, and the registered versions
with their aliases.

Every run logs the same metric keys (`final_val_loss`, `final_val_bits_per_byte`,
`tokens_per_sec`, ...) and the `dvc.exp_name` tag, so the MLflow UI's compare view lines
the same runs up the same way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from pipeline.tracking import store
METRICS = (("val loss", "final_val_loss", "{:.4f}"), ("bits/byte", "final_val_bits_per_byte", "{:.4f}"),
           ("tokens/s", "tokens_per_sec", "{:,.0f}"))


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


def recent_runs(limit: int) -> list:
    """The experiment's last `limit` runs, newest first."""
    ml = store.mlflow()
    experiment = ml.get_experiment_by_name(store.EXPERIMENT)
    if experiment is None:
        return []
    return ml.MlflowClient().search_runs([experiment.experiment_id], max_results=limit,
                                         order_by=["attributes.start_time DESC"])


def differing_params(runs: list) -> list[str]:
    """Param keys whose values (or presence) are not the same in every run."""
    keys = sorted(set().union(*(run.data.params for run in runs)))
    return [key for key in keys if len({run.data.params.get(key) for run in runs}) > 1]


def versions_by_run(run_ids: list[str]) -> dict[str, list]:
    """run id -> the model versions registered from it, each with its aliases filled in."""
    if not run_ids:
        return {}
    client = store.mlflow().MlflowClient()
    quoted = ", ".join(f"'{run_id}'" for run_id in run_ids)
    found = client.search_model_versions(f"run_id IN ({quoted})")
    aliases = {}
    for name in {v.name for v in found}:
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault((name, str(version)), []).append(alias)
    by_run = {}
    for v in sorted(found, key=lambda v: int(v.version)):
        v.aliases = sorted(aliases.get((v.name, str(v.version)), []))
        by_run.setdefault(v.run_id, []).append(v)
    return by_run


def tokens_per_sec(run) -> float | None:
    """Training throughput: every step trains the same number of tokens, so total tokens over
    total step time is the harmonic mean of the logged per-step `tokens_per_sec`."""
    history = store.mlflow().MlflowClient().get_metric_history(run.info.run_id, "tokens_per_sec")
    rates = [m.value for m in history if m.value > 0]
    return len(rates) / sum(1 / r for r in rates) if rates else None


def duration(run) -> str:
    if not run.info.end_time:
        return run.info.status.lower()
    seconds = round((run.info.end_time - run.info.start_time) / 1000)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _metric(run, key: str, fmt: str) -> str:
    value = tokens_per_sec(run) if key == "tokens_per_sec" else run.data.metrics.get(key)
    return "-" if value is None else fmt.format(value)


def table(runs: list, versions: dict[str, list]) -> Table:
    params = differing_params(runs) if len(runs) > 1 else []
    header = ["run", "started", *params, *(label for label, _, _ in METRICS), "duration",
              "version", "alias"]
    rows = []
    for run in runs:
        registered = versions.get(run.info.run_id, [])
        rows.append([
            run.info.run_name,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000)),
            *(run.data.params.get(key, "-") for key in params),
            *(_metric(run, key, fmt) for _, key, fmt in METRICS),
            duration(run),
            ", ".join(str(v.version) for v in registered) or "-",
            ", ".join(f"@{a} (v{v.version})" for v in registered for a in v.aliases) or "-",
        ])
    return Table(header, rows)


def show(limit: int) -> Table:
    """Print the table of the last `limit` runs (rich) and return it."""
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    store.setup()
    runs = recent_runs(limit)
    result = table(runs, versions_by_run([run.info.run_id for run in runs]))
    out = RichTable(title=f"last {len(runs)} runs in {store.tracking_uri()}", title_justify="left")
    for column in result.header:
        out.add_column(column, overflow="fold")
    for row in result.rows:
        out.add_row(*(Text(cell) for cell in row))  # values are data, never rich markup
    # a pipe gets the whole table, a terminal gets its own width
    Console(width=None if sys.stdout.isatty() else 240).print(out)
    return result
