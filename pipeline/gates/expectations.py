"""Great Expectations mechanics shared by the validate and validate_tokens stages.

A stage describes its suite as a list of `Expectation`s: a GX expectation over one of the stage's
DataFrames, plus what a reader needs (what is observed, the threshold, how to explain a failure).
`validate()` runs them in an ephemeral GX context (no gx/ folder is scaffolded), builds the Data
Docs, writes the JSON report, prints a one-screen summary (expectation, observed, threshold,
pass/fail) and raises if any failed. GX is imported only inside `run()`: the import takes seconds.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from folio.fileio import write_json
from pipeline import artifacts
from pipeline.console import console, log
from pipeline.errors import StageError


def percent(value: float) -> str:
    return f"{value:.2%}" if value >= 1e-4 or value == 0 else f"{value * 100:.2g}%"


def clip(text: str, width: int = 60) -> str:
    """A line or window quoted in a failure message, cut at `width` characters."""
    return repr(text[:width] + ("…" if len(text) > width else ""))


def number(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


FROM_GX = object()  # an Expectation's observed value is read from GX's result


@dataclass
class Expectation:
    name: str  # the check's name in the summary, the JSON report and error messages
    frame: str  # which of the stage's DataFrames it runs on
    gx: Any  # the GX expectation
    description: str  # what is observed
    threshold: str  # the bound, as shown: "≥ 10,000", "≤ 0.10%"
    failure: str  # the failure message, formatted with o=observed (the raw value) and s=show(observed)
    observed: Any = FROM_GX  # computed in Python (one-row stats frames), or read from GX's result
    example: Callable[[], str | None] = lambda: None  # where it first fails; called only on failure
    show: Callable[[Any], str] = number  # how the summary shows the observed value
    hint: str = ""  # what fits better, said after the example on failure: "this looks like …: see presets/…"


@dataclass
class Check:
    """The outcome of one expectation, as written to the JSON report."""

    name: str
    description: str
    observed: Any
    threshold: str
    passed: bool
    example: str | None = None
    message: str | None = None  # for a failed check: what failed, the observed value and the key to change


class ValidationFailed(StageError):
    """Some expectations failed; the message names each with its observed value, threshold and an example."""


def _gx_error(result) -> str:
    info = result.exception_info or {}
    first = info if "exception_message" in info else next(iter(info.values()), {})
    return first.get("exception_message") or "no result"


def _observed(result) -> Any:
    """Aggregate expectations report `observed_value`; map expectations the fraction of rows that fail."""
    if "observed_value" in result.result:
        return result.result["observed_value"]
    return round(result.result.get("unexpected_count", 0) / max(result.result.get("element_count", 0), 1), 6)


def _context(docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")  # all in memory: no gx/ folder
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in the logs
    site = {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())}
    context.add_data_docs_site(site_name="folio", site_config={
        "class_name": "SiteBuilder", "store_backend": site,
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    return context


@dataclass(frozen=True)
class Suite:
    """A suite's results go to reports/validation/<name>/: <name>.json and Data Docs in docs/."""

    name: str  # GX suites and validation results are named `<name>_<frame>`
    title: str  # of the terminal summary
    error: type[ValidationFailed]  # raised when an expectation fails

    @property
    def report(self) -> Path:
        return artifacts.validation_report(self.name)

    @property
    def docs(self) -> Path:
        return artifacts.validation_dir(self.name) / "docs"

    @property
    def index(self) -> Path:
        return self.docs / "index.html"


def validate(suite: Suite, frames: dict, expectations: list[Expectation], subject: str, extra: dict) -> list[Check]:
    """Run the expectations, write the JSON report and the Data Docs, print the summary; raise
    `suite.error` naming every failed check (after writing the reports, so they can be read)."""
    checks = run(suite, frames, expectations)
    failed = [c for c in checks if not c.passed]
    write_json(suite.report, {"success": not failed, "expectations": [asdict(c) for c in checks], **extra,
                              "docs": str(suite.index)})
    print_summary(suite.title, expectations, checks)
    log(f"wrote {suite.report} and {suite.index}")
    if failed:  # the non-zero exit stops `dvc repro` here
        raise suite.error(f"{subject} failed {len(failed)} of {len(checks)} expectations (details: {suite.index}):\n"
                          + "\n".join(f"  - {c.message}" for c in failed))
    return checks


def run(suite: Suite, frames: dict, expectations: list[Expectation]) -> list[Check]:
    """Validate each DataFrame in `frames` against its expectations in an ephemeral GX context
    (one GX suite per frame) and build the Data Docs; one Check per expectation, in order."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # else GX sends usage data on import
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = _context(suite.docs)
    source = context.data_sources.add_pandas(suite.name)
    run_id = RunIdentifier(run_name=suite.name)
    for e in expectations:
        e.gx.meta = {"check": e.name}  # to tell which check a result belongs to
    results = {}
    for frame_name, frame in frames.items():
        name = f"{suite.name}_{frame_name}"
        batch = source.add_dataframe_asset(frame_name).add_batch_definition_whole_dataframe(frame_name)
        gx_suite = context.suites.add(gx.ExpectationSuite(
            name=name, expectations=[e.gx for e in expectations if e.frame == frame_name]))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))
        # run() also keeps the result in the context's store, where build_data_docs finds it
        outcome = definition.run(batch_parameters={"dataframe": frame}, run_id=run_id,
                                 result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
        results |= {r.expectation_config.meta["check"]: r for r in outcome.results}
    shutil.rmtree(suite.docs, ignore_errors=True)  # drop the pages of earlier runs
    context.build_data_docs(site_names=["folio"])  # not the context's default site in a temp dir
    return [_check(e, results[e.name]) for e in expectations]


def _check(e: Expectation, result) -> Check:
    if not result.success and not result.result:  # GX raised: a bug here, not bad data
        raise RuntimeError(f"Great Expectations could not evaluate check {e.name}: {_gx_error(result)}")
    observed = _observed(result) if e.observed is FROM_GX else e.observed
    check = Check(e.name, e.description, observed, e.threshold, bool(result.success))
    if not check.passed:
        check.example = e.example()
        check.message = f"{e.name}: " + e.failure.format(o=observed, s=e.show(observed))
        if check.example:
            check.message += f" ({check.example})"
        if e.hint:
            check.message += f"; {e.hint}"
    return check


def print_summary(title: str, expectations: list[Expectation], checks: list[Check]) -> None:
    from rich.table import Table

    table = Table("expectation", "observed", "threshold", "result", title=title)
    for e, c in zip(expectations, checks):
        result = "[green]pass[/]" if c.passed else "[bold red]FAIL[/]"
        table.add_row(c.name, e.show(c.observed), c.threshold, result)
    console.print(table)
