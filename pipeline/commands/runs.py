"""`folio runs`: the recent runs of the `folio` experiment side by side — the params that differ
between them, val loss, bits per byte, training tokens/s, duration, and the model versions
registered from each, named (`folio-tinyshakespeare v3 @champion`).

The table fits the terminal (120 columns in a pipe), one line per run: the run is named by when
it started (the MLflow run name holds the same timestamp), digests are cut to 8 digits, URLs and
paths to their last part, long values and model names cut with `…`; params that still do not
fit are left out (digests and paths first, then the widest) and named in a line below.
`--wide` shows everything whole, with the run names.

Every run logs the same metric keys (`final_val_loss`, `final_val_bits_per_byte`,
`tokens_per_sec`, ...) and the `dvc.exp_name` and `sweep` tags, so the MLflow UI's compare view
lines the same runs up the same way.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import time
from dataclasses import dataclass, field

from pipeline.console import duration_text
from pipeline.errors import StageError
from pipeline.tracking import store

METRICS = (("val loss", "final_val_loss", "{:.4f}"), ("bits/byte", "final_val_bits_per_byte", "{:.4f}"),
           ("tokens/s", "tokens_per_sec", "{:,.0f}"))
PIPE_WIDTH = 120  # the width of the table in a pipe or a file, without --wide
DIGEST = re.compile(r"\b[0-9a-f]{16,}\b")  # a hex digest, shown by its first DIGEST_SHOWN digits
DIGEST_SHOWN = 8
LONG_VALUE = 24  # a longer URL or path is shown by its last part
MODEL_MIN_WIDTH = 26  # the model column is cut to no less: `folio-tinyshakespeare v12 …`
PARAM_MIN_WIDTH = 10  # a param column is cut to no less than this or its header
GAP = 2  # spaces between two columns


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    params: list[str] = field(default_factory=list)  # the param keys among the header
    shortened: frozenset[str] = frozenset()  # the params with a digest or path shortened


def recent_runs(limit: int, sweep: str | None = None) -> list:
    """The experiment's last `limit` runs, newest first; with `sweep`, only those tagged with it
    (pipeline/tracking/lineage.py: $FOLIO_SWEEP, or the commit `dvc exp run` started from)."""
    ml = store.mlflow()
    experiment = ml.get_experiment_by_name(store.EXPERIMENT)
    if experiment is None:
        return []
    where = ""
    if sweep:
        quote = next((q for q in "'\"" if q not in sweep), None)
        if quote is None:
            raise StageError(f"--sweep {sweep}: a sweep name with both kinds of quote cannot be searched "
                             "for; name sweeps without quotes (FOLIO_SWEEP)")
        where = f"tags.sweep = {quote}{sweep}{quote}"
    return ml.MlflowClient().search_runs([experiment.experiment_id], where, max_results=limit,
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
    return duration_text((run.info.end_time - run.info.start_time) / 1000)


def _metric(run, key: str, fmt: str) -> str:
    value = tokens_per_sec(run) if key == "tokens_per_sec" else run.data.metrics.get(key)
    return "-" if value is None else fmt.format(value)


def short_value(value: str) -> str:
    """A param value made narrow: digests to their first 8 digits, a long URL or path to `…/` and
    its last part."""
    value = DIGEST.sub(lambda m: m.group()[:DIGEST_SHOWN], value)
    if len(value) > LONG_VALUE and "/" in value.rstrip("/"):
        value = "…/" + value.rstrip("/").rsplit("/", 1)[1]
    return value


def model_versions(registered: list) -> str:
    """The versions registered from a run, each named: `folio-tinyshakespeare v3 @champion`."""
    return ", ".join(f"{v.name} v{v.version}" + "".join(f" @{alias}" for alias in v.aliases)
                     for v in registered) or "-"


def table(runs: list, versions: dict[str, list], wide: bool = False) -> Table:
    """One row per run: with `wide` the run's name first and every value whole; else the run
    named by when it started, values shortened (`short_value`)."""
    params = differing_params(runs) if len(runs) > 1 else []
    header = [*(["run"] if wide else []), "started", *params, *(label for label, _, _ in METRICS),
              "duration", "model"]
    value = (lambda v: v) if wide else short_value
    rows = []
    for run in runs:
        started = time.localtime(run.info.start_time / 1000)
        rows.append([
            *([run.info.run_name] if wide else []),
            time.strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M", started),
            *(value(run.data.params.get(key, "-")) for key in params),
            *(_metric(run, key, fmt) for _, key, fmt in METRICS),
            duration(run),
            model_versions(versions.get(run.info.run_id, [])),
        ])
    shortened = frozenset() if wide else frozenset(
        key for key in params if any(short_value(run.data.params.get(key, "-")) != run.data.params.get(key, "-")
                                     for run in runs))
    return Table(header, rows, params, shortened)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def rendered_width(widths) -> int:
    """The width of a table of these column widths: GAP spaces between columns."""
    widths = list(widths)
    return sum(widths) + GAP * (len(widths) - 1)


def fit(result: Table, width: int) -> tuple[Table, list[str]]:
    """`result` narrowed to `width` columns: param headers by their last part (where that names
    one param); the model and param columns cut with `…`, widest first, down to MODEL_MIN_WIDTH
    and PARAM_MIN_WIDTH (or the param's header); then params left out until it fits: those with
    a shortened digest or path first, then the widest. Returns the table and the params left out."""
    parts = {key: key.rsplit(".", 1)[-1] for key in result.params}
    header = [parts[name] if list(parts.values()).count(parts.get(name)) == 1 else name
              for name in result.header]
    natural = [max(len(cell) for cell in column) for column in zip(header, *result.rows)]
    least = [min(natural[i], MODEL_MIN_WIDTH if name == "model" else
                 max(PARAM_MIN_WIDTH, len(header[i])) if name in parts else natural[i])
             for i, name in enumerate(result.header)]
    widths = dict(enumerate(natural))
    shown = list(range(len(header)))
    params = [result.header.index(key) for key in result.params]

    def cut_to_fit() -> None:
        for i in shown:
            widths[i] = natural[i]
        while rendered_width(widths[i] for i in shown) > width:
            cuttable = [i for i in shown if widths[i] > least[i]]
            if not cuttable:
                return
            widths[max(cuttable, key=lambda i: (widths[i], i))] -= 1

    cut_to_fit()
    while rendered_width(widths[i] for i in shown) > width and params:
        left_out = max(params, key=lambda i: (result.header[i] in result.shortened, widths[i], i))
        params.remove(left_out)
        shown.remove(left_out)
        cut_to_fit()
    dropped = [key for key in result.params if result.header.index(key) not in shown]
    return Table([_cut(header[i], widths[i]) for i in shown],
                 [[_cut(row[i], widths[i]) for i in shown] for row in result.rows],
                 [key for key in result.params if key not in dropped],
                 result.shortened - set(dropped)), dropped


def render(result: Table, title: str, width: int | None, wide: bool = False) -> str:
    """The table as text: fitted to `width` columns, or with `wide` every cell whole."""
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    dropped: list[str] = []
    if wide:
        width = rendered_width(max(len(cell) for cell in column) for column in zip(result.header, *result.rows))
    else:
        result, dropped = fit(result, width)
    out = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, GAP // 2),
                    collapse_padding=True)
    for column in result.header:
        out.add_column(column, no_wrap=True, overflow="ellipsis")
    for row in result.rows:
        out.add_row(*(Text(cell) for cell in row))  # values are data, never rich markup
    buffer = io.StringIO()
    console = Console(file=buffer, width=max(width, 40), highlight=False)
    console.print(Text(title), soft_wrap=True)
    console.print(out)
    if dropped:
        console.print(Text(f"{len(dropped)} more params differ: {', '.join(dropped)} "
                           "(`folio runs --wide` shows them)"))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def show(limit: int, wide: bool = False, sweep: str | None = None) -> Table:
    """Print the table of the last `limit` runs (of `sweep`) and return it: as wide as the
    terminal (in a pipe, PIPE_WIDTH columns), or with `wide` every column whole."""
    store.setup()
    runs = recent_runs(limit, sweep)
    result = table(runs, versions_by_run([run.info.run_id for run in runs]), wide)
    width = shutil.get_terminal_size((PIPE_WIDTH, 24)).columns if sys.stdout.isatty() else PIPE_WIDTH
    what = f"runs of sweep {sweep}" if sweep else "runs"
    sys.stdout.write(render(result, f"last {len(runs)} {what} in {store.tracking_uri()}", width, wide))
    return result
