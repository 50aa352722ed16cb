"""Stage validate — in: data/raw/<data.name>.txt — params: validate.* — out: reports/validation/.

Checks with a Great Expectations suite that the raw corpus is plain text worth training on:
  utf8         the file decodes as UTF-8 (observed: byte offset of the first invalid byte)
  min_bytes    the file holds at least validate.min_bytes bytes
  control      few lines hold control characters other than tab, CR and form feed
  not_binary   the file holds no NUL bytes
  markup       few lines look like HTML/XML tags (<!DOCTYPE, <div class="...">, </p>, ...)
  line_length  few lines are longer than validate.max_line_length characters

GX has no text expectations, so the corpus becomes two DataFrames: one row per line, and one row of
file statistics computed in plain Python (size, NUL bytes, first invalid UTF-8 byte).

Writes reports/validation/corpus.json (success; per check the observed value, threshold and result;
corpus stats) and GX Data Docs in reports/validation/docs/ (open index.html). On failure both are
written first, then CorpusValidationError names every failed check, so `dvc repro` stops here.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from folio.fileio import write_json
from pipeline import paths
from pipeline.console import console, log
from pipeline.params import Params, ValidateParams

DOCS_DIR = paths.VALIDATION_DIR / "docs"
DOCS_INDEX = DOCS_DIR / "index.html"

# C0 and C1 control characters except \t \n \f \r, which occur in plain text and source code.
CONTROL = r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]"
# Document prologues and comments, any closing tag, any tag with a quoted attribute, bare common HTML
# tags. Comparisons (`a < b`, `x<a && a>y`) and generics (`List<String>`) in code do not match.
MARKUP = (
    r"(?i)<!doctype\b|<!--|<\?xml\b|</[a-z][\w:.-]*\s*>"
    r"|<[a-z][\w:.-]*(?:\s+[\w:.-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))+\s*/?>"
    r"|<(?:html|head|body|div|span|p|a|b|i|br|hr|img|table|tr|td|ul|ol|li|h[1-6]|script|style|meta)\s*/?>"
)

# name -> (what is observed, the failure message); both are formatted with o=observed, p=ValidateParams.
CHECKS = {
    "utf8": ("byte offset of the first invalid UTF-8 sequence (null: the file decodes)",
             "not valid UTF-8: first invalid byte at offset {o:,}"),
    "min_bytes": ("size of the corpus in bytes",
                  "the corpus is {o:,} bytes, fewer than validate.min_bytes={p.min_bytes:,}"),
    "control": ("fraction of lines holding control characters other than tab, CR and form feed",
                "{o:.2%} of lines hold control characters, more than "
                "validate.max_control_char_fraction={p.max_control_char_fraction}"),
    "not_binary": ("NUL bytes in the file",
                   "{o:,} NUL bytes (none allowed): binary data or UTF-16/32, not UTF-8 text"),
    "markup": ("fraction of lines that look like HTML/XML tags",
               "{o:.2%} of lines look like HTML/XML tags, more than "
               "validate.max_markup_line_fraction={p.max_markup_line_fraction}"),
    "line_length": ("fraction of lines longer than {p.max_line_length:,} characters",
                    "{o:.2%} of lines are longer than validate.max_line_length={p.max_line_length:,} "
                    "characters, more than validate.max_long_line_fraction={p.max_long_line_fraction}"),
}


class CorpusValidationError(RuntimeError):
    """The corpus failed checks; the message names each with its observed value, threshold and an example."""


@dataclass
class Check:
    name: str
    description: str
    observed: Any
    threshold: Any
    passed: bool
    example: str | None = None  # where a failed check first fails


def profile(raw: bytes):
    """The corpus as a DataFrame with one row per line, and a dict of file statistics."""
    import pandas as pd

    try:
        text, bad_offset = raw.decode("utf-8"), None
    except UnicodeDecodeError as err:  # check the rest anyway, with U+FFFD for the bad bytes
        text, bad_offset = raw.decode("utf-8", errors="replace"), err.start
    # split("\n"), not splitlines(): that also splits at \v \f \x1c.. and so would hide them
    lines = pd.DataFrame({"line": text.removesuffix("\n").split("\n")})
    lengths = lines["line"].str.len()
    stats = {
        "bytes": len(raw),
        "characters": len(text),
        "lines": len(lines),
        "distinct_characters": len(set(text)),
        "longest_line": int(lengths.max()),
        "mean_line_length": round(float(lengths.mean()), 1),
        "nul_bytes": raw.count(b"\0"),
        "first_invalid_utf8_byte": bad_offset,
    }
    return lines, stats


def build_suite(p: ValidateParams) -> dict[str, tuple[str, Any, Any]]:
    """Check name -> (the frame it runs on, its GX expectation, its threshold)."""
    import great_expectations.expectations as gxe

    def at_most(fraction: float) -> float:  # GX's `mostly`: the fraction of rows that must pass
        return 1.0 - fraction

    return {
        "utf8": ("stats", gxe.ExpectColumnValuesToBeNull(column="first_invalid_utf8_byte"), None),
        "min_bytes": ("stats", gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=p.min_bytes),
                      p.min_bytes),
        "control": ("lines", gxe.ExpectColumnValuesToNotMatchRegex(
            column="line", regex=CONTROL, mostly=at_most(p.max_control_char_fraction)),
            p.max_control_char_fraction),
        "not_binary": ("stats", gxe.ExpectColumnValuesToBeBetween(column="nul_bytes", max_value=0), 0),
        "markup": ("lines", gxe.ExpectColumnValuesToNotMatchRegex(
            column="line", regex=MARKUP, mostly=at_most(p.max_markup_line_fraction)),
            p.max_markup_line_fraction),
        "line_length": ("lines", gxe.ExpectColumnValueLengthsToBeBetween(
            column="line", max_value=p.max_line_length, mostly=at_most(p.max_long_line_fraction)),
            p.max_long_line_fraction),
    }


def run_suite(lines, stats: dict, suite: dict[str, tuple[str, Any, Any]], docs_dir: Path) -> dict:
    """Validate the lines and a one-row stats frame in an ephemeral GX context; build Data Docs in docs_dir.

    Returns check name -> GX ExpectationValidationResult.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # else GX sends usage data on import
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")  # all in memory: no gx/ folder
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in the logs
    site = {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())}
    context.add_data_docs_site(site_name="folio", site_config={
        "class_name": "SiteBuilder", "store_backend": site,
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    source = context.data_sources.add_pandas("corpus")
    run_id = RunIdentifier(run_name="validate")
    results = {}
    for frame_name, frame in {"lines": lines, "stats": pd.DataFrame([stats])}.items():
        expectations = []
        for name, (on, expectation, _) in suite.items():
            if on == frame_name:
                expectation.meta = {"check": name}  # to tell which check a result belongs to
                expectations.append(expectation)
        batch = source.add_dataframe_asset(frame_name).add_batch_definition_whole_dataframe(frame_name)
        suite_name = f"corpus_{frame_name}"
        gx_suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=gx_suite))
        # run() also keeps the result in the context's store, where build_data_docs finds it
        outcome = definition.run(batch_parameters={"dataframe": frame}, run_id=run_id,
                                 result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
        results |= {r.expectation_config.meta["check"]: r for r in outcome.results}
    shutil.rmtree(docs_dir, ignore_errors=True)  # drop the pages of earlier runs
    context.build_data_docs(site_names=["folio"])  # not the context's default site in a temp dir
    return results


def _gx_error(result) -> str:
    info = result.exception_info or {}
    first = info if "exception_message" in info else next(iter(info.values()), {})
    return first.get("exception_message") or "no result"


def _clip(text: str, width: int = 60) -> str:
    return repr(text[:width] + ("…" if len(text) > width else ""))


def find_example(name: str, raw: bytes, lines, stats: dict, p: ValidateParams) -> str | None:
    """Where a failed check first fails, found in plain Python (GX lists only some unexpected values)."""
    if name in ("utf8", "not_binary"):
        offset = stats["first_invalid_utf8_byte"] if name == "utf8" else raw.find(b"\0")
        line = raw.count(b"\n", 0, offset) + 1
        where = f"line {line}: {raw[offset:offset + 8]!r}"
        return where if name == "utf8" else f"first at byte {offset:,}, {where}"
    if name in ("control", "markup"):
        regex = re.compile(CONTROL if name == "control" else MARKUP)
        for number, line in enumerate(lines["line"], 1):
            if match := regex.search(line):
                column = match.start()
                return f"first at line {number}, column {column + 1}: {_clip(line[max(0, column - 20):])}"
    if name == "line_length":
        for number, line in enumerate(lines["line"], 1):
            if len(line) > p.max_line_length:
                return f"first: line {number}, {len(line):,} characters: {_clip(line, 40)}"
    return None


def to_checks(results: dict, suite: dict, raw: bytes, lines, stats: dict, p: ValidateParams) -> list[Check]:
    """One Check per expectation, with the observed value in the units of its threshold."""
    checks = []
    for name, (on, expectation, threshold) in suite.items():
        result = results[name]
        if not result.success and not result.result:  # GX raised: a bug here, not a bad corpus
            raise RuntimeError(f"Great Expectations could not evaluate check {name}: {_gx_error(result)}")
        if on == "stats":
            observed = stats[expectation.column]
        else:  # the fraction of lines GX found unexpected
            observed = round(result.result["unexpected_count"] / max(len(lines), 1), 6)
        passed = bool(result.success)
        example = None if passed else find_example(name, raw, lines, stats, p)
        checks.append(Check(name, CHECKS[name][0].format(p=p), observed, threshold, passed, example))
    return checks


def explain(check: Check, p: ValidateParams) -> str:
    message = f"{check.name}: " + CHECKS[check.name][1].format(o=check.observed, p=p)
    return f"{message} ({check.example})" if check.example else message


def print_summary(checks: list[Check]) -> None:
    from rich.table import Table

    table = Table("check", "observed", "threshold", "result", title="corpus validation")
    for c in checks:
        if c.name == "utf8":
            observed, threshold = "valid" if c.observed is None else f"bad byte at {c.observed:,}", "valid"
        else:
            bound = "≥" if c.name == "min_bytes" else "≤"
            observed, threshold = f"{c.observed:,}", f"{bound} {c.threshold:,}"
        table.add_row(c.name, observed, threshold, "[green]pass[/]" if c.passed else "[bold red]FAIL[/]")
    console.print(table)


def main(params: Params) -> None:
    p = params.validate_
    corpus = paths.raw_corpus(params.data.name)
    if not corpus.exists():
        raise FileNotFoundError(f"{corpus} not found: run the download stage first")
    raw = corpus.read_bytes()
    lines, stats = profile(raw)
    suite = build_suite(p)
    checks = to_checks(run_suite(lines, stats, suite, DOCS_DIR), suite, raw, lines, stats, p)
    failed = [c for c in checks if not c.passed]
    write_json(paths.VALIDATION_RESULT, {
        "corpus": str(corpus),
        "success": not failed,
        "expectations": [asdict(c) for c in checks],
        "stats": stats,
        "docs": str(DOCS_INDEX),
    })
    print_summary(checks)
    log(f"wrote {paths.VALIDATION_RESULT} and {DOCS_INDEX}")
    if failed:  # after writing both reports, so they can be read; the non-zero exit stops `dvc repro`
        raise CorpusValidationError(
            f"{corpus} failed {len(failed)} of {len(checks)} checks (details: {DOCS_INDEX}):\n"
            + "\n".join(f"  - {explain(c, p)}" for c in failed))
