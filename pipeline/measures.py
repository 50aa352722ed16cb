"""What a model version is compared on: a measure, which way is better, and the digest of the text
it was scored on. Two versions are compared only on a measure both have over text of one digest.

A measure is named as `registry.metric` names it, and kept under a key in metrics, tags and reports:

  registry.metric              key                          the text's digest
  bits_per_byte (val metric)   val.bits_per_byte            metrics.json val.text_digest
  suite:<name>.<metric>        suite.<name>.<metric>        its suite's text_digest
  harness:<task>.<metric>      harness.<task>.<metric>      its task's text_digest (lm-eval's hash of its documents)

reports/metrics.json holds each score beside the digest of its text: `val`, each of `suites` and
each task of `harness` is a section of numbers and a `text_digest`. A registered version carries
them as tags (`version_tags`): the value under its key (val's as `val_<metric>`, as before) and the
digest under `<section>.digest`; a score measured later on another text, when `folio promote`
rescores a holder, is `rescored.<key>.<digest>`. A training run carries the same keys as metrics
(val's as `final_val_<metric>`) and the digests as tags (`run_tags`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import StageError

VAL_METRICS = ("loss", "bits_per_token", "bits_per_byte", "bits_per_char", "perplexity")  # all lower is better
SUITE_METRICS = ("loss", "bits_per_token", "bits_per_byte", "perplexity")  # all lower is better
# lm-eval's metrics by the direction lm-eval gives them (its tasks' higher_is_better)
HIGHER_IS_BETTER = {"acc", "acc_norm", "acc_mutual_info", "exact_match", "f1", "mcc", "em", "bleu",
                    "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "brier_score_inverse"}
LOWER_IS_BETTER = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "ter", "loss",
                   "bits_per_token", "bits_per_char"}
DIGEST = "text_digest"  # the key of a section's digest in metrics.json
NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # a suite's or a task's name: no dot, it separates a key's parts
SPEC = re.compile(r"^(?:(?P<kind>suite|harness):(?P<source>[^.\s]+)\.)?(?P<metric>[^\s]+)$")
DOCS = "docs/evaluation.md"


class MeasureError(StageError, ValueError):
    """A measure named wrongly, or of unknown direction: one line saying what to write instead."""


@dataclass(frozen=True)
class Measure:
    kind: str  # val | suite | harness
    source: str  # the suite's or the task's name; "" for val
    metric: str
    higher_is_better: bool

    @property
    def name(self) -> str:
        """As registry.metric names it."""
        return self.metric if self.kind == "val" else f"{self.kind}:{self.source}.{self.metric}"

    @property
    def section(self) -> str:
        """The text it is scored on: val, suite.<name> or harness.<task>."""
        return "val" if self.kind == "val" else f"{self.kind}.{self.source}"

    @property
    def key(self) -> str:
        return f"{self.section}.{self.metric}"

    @property
    def value_tag(self) -> str:
        """The version tag of its value on the version's own text."""
        return f"val_{self.metric}" if self.kind == "val" else self.key

    @property
    def digest_tag(self) -> str:
        """The version (and run) tag naming the version's own text for this measure."""
        return f"{self.section}.digest"

    def rescored_tag(self, digest: str) -> str:
        return f"rescored.{self.key}.{digest}"

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def better(self, value: float, than: float) -> bool:
        """Strictly better: an equal score does not take an alias."""
        return value > than if self.higher_is_better else value < than


def direction_of(kind: str, metric: str) -> bool | None:
    """True: higher is better; False: lower; None: unknown (a harness metric folio does not know)."""
    if kind in ("val", "suite"):
        return False
    base = metric.split(".")[0]  # without a filter: exact_match.strict-match
    if base.endswith("_stderr"):
        return None  # an error bar is no measure to promote on
    return True if base in HIGHER_IS_BETTER else False if base in LOWER_IS_BETTER else None


def parse(spec: str, direction: str = "auto") -> Measure:
    """The measure `registry.metric` names (`direction`: registry.direction, auto | lower | higher)."""
    match = SPEC.fullmatch(spec.strip())
    if match is None:
        raise MeasureError(f"registry.metric {spec!r} is not a measure; write a val metric "
                           f"({', '.join(VAL_METRICS)}), suite:<name>.<metric> or harness:<task>.<metric> ({DOCS})")
    kind, source, metric = match["kind"] or "val", match["source"] or "", match["metric"]
    known = {"val": VAL_METRICS, "suite": SUITE_METRICS}.get(kind)
    if known is not None and metric not in known:
        where = "val metric" if kind == "val" else f"metric of suite {source!r}"
        raise MeasureError(f"registry.metric {spec!r}: {metric!r} is not a {where}; use one of "
                           f"{', '.join(known)}")
    if kind != "val" and not NAME.fullmatch(source):
        raise MeasureError(f"registry.metric {spec!r}: {source!r} is not a {kind} name (letters, digits, _ and -)")
    higher = direction_of(kind, metric)
    if direction != "auto":
        wanted = direction == "higher"
        if higher is not None and higher != wanted:
            raise MeasureError(f"registry.direction={direction} contradicts {spec}, for which "
                               f"{'higher' if higher else 'lower'} is better; set registry.direction=auto")
        higher = wanted
    if higher is None:
        raise MeasureError(f"registry.metric {spec!r}: folio does not know whether higher or lower is "
                           "better for it; set registry.direction to higher or lower (the task's "
                           f"higher_is_better in lm-eval's results says which; {DOCS})")
    return Measure(kind, source, metric, higher)


@dataclass(frozen=True)
class Score:
    key: str  # a Measure's key: val.bits_per_byte, suite.<name>.<metric>, harness.<task>.<metric>
    digest: str  # of the text it was measured on
    value: float


def _numbers(section: dict) -> dict[str, float]:
    return {k: float(v) for k, v in section.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def sections(metrics: dict) -> dict[str, dict]:
    """metrics.json's scored sections by name: val, suite.<name>, harness.<task>."""
    out = {"val": metrics["val"]} if "val" in metrics else {}
    for kind, field in (("suite", "suites"), ("harness", "harness")):
        for source, section in (metrics.get(field) or {}).items():
            out[f"{kind}.{source}"] = section
    return out


def scores_from_metrics(metrics: dict) -> list[Score]:
    """Every score of reports/metrics.json with the digest of its text (sections without one, from
    an older folio, are left out: their text is unknown)."""
    out = []
    for name, section in sections(metrics).items():
        digest = section.get(DIGEST)
        if not digest:
            continue
        for metric, value in _numbers(section).items():
            if name == "val" and metric not in VAL_METRICS:
                continue  # counts (tokens), not measures
            if name.startswith("suite.") and metric not in SUITE_METRICS:
                continue
            out.append(Score(f"{name}.{metric}", digest, value))
    return out


def version_tags(metrics: dict) -> dict[str, str]:
    """The tags a registered version gets from metrics.json: each score under its key (val's under
    `val_<metric>`, as versions always had them) and each section's digest."""
    tags = {}
    for score in scores_from_metrics(metrics):
        section, metric = score.key.rsplit(".", 1)
        tags[f"val_{metric}" if section == "val" else score.key] = str(score.value)
        tags[f"{section}.digest"] = score.digest
    return tags


def run_tags(metrics: dict) -> dict[str, str]:
    """The digests of metrics.json's sections, as tags for the training run."""
    return {f"{name}.digest": section[DIGEST] for name, section in sections(metrics).items()
            if section.get(DIGEST)}


def run_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json's suite and harness scores as the training run's metrics (val's are logged as
    `final_val_<metric>` by the evaluate stage, as before)."""
    return {score.key: score.value for score in scores_from_metrics(metrics) if not score.key.startswith("val.")}


def version_scores(tags: dict[str, str]) -> list[Score]:
    """Every score a version's tags hold, each with its text's digest: its own (from register) and
    those measured when promote rescored it."""
    out = []
    for key, value in tags.items():
        if key.startswith("rescored."):
            measure_key, _, digest = key.removeprefix("rescored.").rpartition(".")
            out.append(Score(measure_key, digest, float(value)))
            continue
        section, metric = _section_of(key)
        if section is None or section + ".digest" not in tags:
            continue
        try:
            out.append(Score(f"{section}.{metric}", tags[section + ".digest"], float(value)))
        except ValueError:
            continue
    return out


def run_scores(metrics: dict[str, float], tags: dict[str, str]) -> list[Score]:
    """The scores of a training run (MLflow's latest value of each metric) with their digests."""
    out = []
    for key, value in metrics.items():
        section, metric = _section_of(key)
        if section is not None and section + ".digest" in tags:
            out.append(Score(f"{section}.{metric}", tags[section + ".digest"], float(value)))
    return out


def _section_of(key: str) -> tuple[str | None, str]:
    """(section, metric) of a value tag or run metric: val_<m> / final_val_<m>, suite.<s>.<m>,
    harness.<t>.<m> (a harness metric may hold a dot: exact_match.strict-match)."""
    for prefix in ("final_val_", "val_"):
        if key.startswith(prefix) and key.removeprefix(prefix) in VAL_METRICS:
            return "val", key.removeprefix(prefix)
    kind, _, rest = key.partition(".")
    source, _, metric = rest.partition(".")
    if kind in ("suite", "harness") and source and metric and metric != "digest":
        return f"{kind}.{source}", metric
    return None, ""


def value_on(scores: list[Score], measure: Measure, digest: str) -> float | None:
    """The value of `measure` on the text of `digest` among `scores`, or None."""
    found = [s.value for s in scores if s.key == measure.key and s.digest == digest]
    return found[0] if found else None


def own(scores: list[Score], measure: Measure, tags: dict[str, str]) -> Score | None:
    """A version's own score on `measure` (the one register tagged, on its own text), or None."""
    digest = tags.get(measure.digest_tag)
    value = value_on(scores, measure, digest) if digest else None
    return Score(measure.key, digest, value) if value is not None else None


def shared(a: list[Score], b: list[Score]) -> list[tuple[Score, Score]]:
    """The scores both have on text of one digest, as (a's, b's) pairs in a's order."""
    theirs = {(s.key, s.digest): s for s in b}
    return [(s, theirs[(s.key, s.digest)]) for s in a if (s.key, s.digest) in theirs]


def measure_of_key(key: str) -> Measure | None:
    """The Measure a score key stands for, with its direction (None: unknown direction)."""
    kind, _, rest = key.partition(".")
    source, metric = ("", rest) if kind == "val" else rest.partition(".")[::2]
    higher = direction_of(kind, metric)
    return None if higher is None or not metric else Measure(kind, source, metric, higher)
