"""pipeline/measures.py: what `registry.metric` may name, which way each measure is better, and
how scores travel with the digest of their text — metrics.json -> version tags -> scores, a
rescored score, a run's metrics and tags — so two versions are compared only on text of one digest."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from pipeline import measures
from pipeline.cli import app
from pipeline.measures import MeasureError, Score, parse
from tests.conftest import PROJECT

METRICS = {
    "val": {"loss": 1.5, "bits_per_byte": 2.2, "tokens": 100, "subset": False, "text_digest": "v" * 16},
    "suites": {"later": {"loss": 1.7, "bits_per_byte": 2.4, "tokens": 40, "bytes": 41, "sha256": "f" * 64,
                         "contamination": {"lines": 3, "in_train": 0, "share": 0.0}, "text_digest": "s" * 16}},
    "harness": {"mc": {"acc": 0.25, "exact_match.strict-match": 0.5, "text_digest": "h" * 64}},
    "tokenizer": {"kind": "char"}, "checkpoint": {"step": 1},
}


@pytest.mark.parametrize("spec, key, higher", [
    ("bits_per_byte", "val.bits_per_byte", False),
    ("perplexity", "val.perplexity", False),
    ("suite:later.bits_per_byte", "suite.later.bits_per_byte", False),
    ("harness:hellaswag.acc_norm", "harness.hellaswag.acc_norm", True),
    ("harness:gsm8k.exact_match.strict-match", "harness.gsm8k.exact_match.strict-match", True),
    ("harness:wikitext.word_perplexity", "harness.wikitext.word_perplexity", False),
])
def test_a_measure_is_parsed_with_its_direction(spec, key, higher):
    measure = parse(spec)
    assert (measure.key, measure.higher_is_better, measure.name) == (key, higher, spec)
    assert measures.measure_of_key(key) == measure


@pytest.mark.parametrize("spec, direction, says", [
    ("bogus", "auto", "'bogus' is not a val metric"),
    ("suite:later.acc", "auto", "'acc' is not a metric of suite 'later'"),
    ("suite:a.b.bits_per_byte", "auto", "is not a metric of suite"),
    ("harness:mc.novel_score", "auto", "does not know whether higher or lower is better"),
    ("harness:mc.acc_stderr", "auto", "does not know whether higher or lower is better"),
    ("bits_per_byte", "higher", "contradicts bits_per_byte, for which lower is better"),
])
def test_a_wrong_measure_is_one_line_saying_what_to_write(spec, direction, says):
    with pytest.raises(MeasureError, match=says) as caught:
        parse(spec, direction)
    assert "\n" not in str(caught.value)


def test_a_metric_of_unknown_direction_takes_one_from_registry_direction():
    assert parse("harness:mc.novel_score", "higher").higher_is_better
    assert not parse("harness:mc.novel_score", "lower").better(0.5, 0.4)


def test_promote_with_a_metric_of_unknown_direction_fails_in_one_line(tmp_path):
    tree = yaml.safe_load((PROJECT / "params.yaml").read_text())
    tree["registry"]["metric"] = "harness:mc.novel_score"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree))
    result = CliRunner().invoke(app, ["promote", "1", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "registry.metric 'harness:mc.novel_score'" in result.output and "registry.direction" in result.output


def test_scores_travel_with_their_text_from_metrics_to_version_tags_and_back():
    tags = measures.version_tags(METRICS)
    assert tags["val_bits_per_byte"] == "2.2" and tags["val.digest"] == "v" * 16
    assert tags["suite.later.bits_per_byte"] == "2.4" and tags["suite.later.digest"] == "s" * 16
    assert tags["harness.mc.exact_match.strict-match"] == "0.5" and tags["harness.mc.digest"] == "h" * 64
    assert "suite.later.tokens" not in tags and "val_tokens" not in tags  # counts, not measures
    scores = measures.version_scores({**tags, "rescored.val.bits_per_byte.wwwwwwwwwwwwwwww": "2.9"})
    assert Score("val.bits_per_byte", "v" * 16, 2.2) in scores
    assert Score("val.bits_per_byte", "w" * 16, 2.9) in scores  # measured on another text, later
    assert Score("harness.mc.exact_match.strict-match", "h" * 64, 0.5) in scores
    measure = parse("bits_per_byte")
    assert measures.own(scores, measure, tags) == Score("val.bits_per_byte", "v" * 16, 2.2)
    assert measures.value_on(scores, measure, "w" * 16) == 2.9
    assert measures.value_on(scores, measure, "x" * 16) is None


def test_a_score_without_the_digest_of_its_text_is_no_score():
    """A version registered before digests: its val_bits_per_byte has no text, so nothing compares to it."""
    assert measures.version_scores({"val_bits_per_byte": "2.2"}) == []
    assert measures.scores_from_metrics({"val": {"bits_per_byte": 2.2}}) == []


def test_a_runs_scores_are_its_metrics_with_its_digest_tags():
    metrics = {"final_val_bits_per_byte": 2.2, "suite.later.loss": 1.7, "tokens_per_sec": 9.0}
    tags = measures.run_tags(METRICS)
    assert tags == {"val.digest": "v" * 16, "suite.later.digest": "s" * 16, "harness.mc.digest": "h" * 64}
    assert set(measures.run_scores(metrics, tags)) == {
        Score("val.bits_per_byte", "v" * 16, 2.2), Score("suite.later.loss", "s" * 16, 1.7)}
    assert set(measures.run_metrics(METRICS)) == {"suite.later.loss", "suite.later.bits_per_byte", "harness.mc.acc",
                                                  "harness.mc.exact_match.strict-match"}


def test_shared_pairs_only_scores_over_one_text():
    a = [Score("val.loss", "1" * 16, 1.0), Score("suite.x.loss", "2" * 16, 2.0)]
    b = [Score("val.loss", "3" * 16, 0.5), Score("suite.x.loss", "2" * 16, 2.5)]
    assert measures.shared(a, b) == [(a[1], b[1])]


def test_a_val_score_over_a_subset_is_not_rescored_but_refused_in_one_line():
    """evaluate.max_tokens capped the challenger's val split: its windows of its own tokens are no
    text another model can be scored on; promote says so before reading any corpus."""
    from types import SimpleNamespace

    from pipeline.commands.promote import val_documents
    from pipeline.params import load
    from pipeline.tracking.registry import RegistryError

    challenger = SimpleNamespace(version="2", tags={"val_subset": "True", "val.digest": "d" * 16})
    with pytest.raises(RegistryError, match=r"scored on a subset of its val split \(evaluate.max_tokens; "
                                            r"digest d{16}\).*evaluate.max_tokens empty.*suite") as caught:
        val_documents(load(PROJECT / "params.yaml"), parse("bits_per_byte"), "d" * 16, challenger)
    assert "\n" not in str(caught.value)
