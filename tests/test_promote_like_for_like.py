"""Promotion decided on equal text, on the real pipeline, MLflow and DVC: two versions trained on
different `data.seed`s were scored on different val splits; `folio promote` scores the holder on
the challenger's val text (loading it by alias), keeps that score on the holder's version, decides
on it and records which measure, which digest and both values. The holder's rescored number is
the evaluate stage's own measure of those weights on that text (checked through the val shards,
the way evaluate scores them)."""

from __future__ import annotations

import json

import pytest

from folio.evaluate import bits_per_byte, split_loss, text_bytes
from folio.data import TokenSplit
from tests import pipeline_project as pp
from tests.servers import tracking_at

pytestmark = pytest.mark.e2e
NAME = "folio-plays"


def _plays_jsonl(shared_corpus, path, documents: int = 600) -> None:
    """Tiny Shakespeare's speeches as JSONL documents: enough of them for a `documents` split."""
    speeches = [s for s in shared_corpus.read_text(encoding="utf-8").split("\n\n") if s.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in speeches[:documents]), encoding="utf-8")


def _version(project, version: int) -> dict:
    out = pp.run(project, "python", "-c", (
        "import json, mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
        f"print(json.dumps(mlflow.MlflowClient().get_model_version('{NAME}', '{version}').tags))"))
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_versions(shared_corpus, tmp_path_factory):
    """Version 1 trained with data.seed 1337 and holding @champion; version 2 with data.seed 7 and
    twice the steps (so that it wins: the test is of the decision's text, not of its outcome), and
    scored on a suite that did not exist when version 1 was."""
    root = pp.make_project(tmp_path_factory.mktemp("promote") / "folio", "corpora/plays.jsonl",
                           {"data": {"name": "plays", "sha256": ""}, "registry": {"model_name": NAME}})
    _plays_jsonl(shared_corpus, root / "corpora/plays.jsonl")
    pp.git(root, "add", "-A")
    pp.git(root, "commit", "-q", "-m", "corpus")
    pp.run(root, "dvc", "repro")
    first = json.loads((root / "reports/metrics.json").read_text())
    assert "moved to version 1" in pp.run(root, "folio", "promote", "1")
    speeches = [s for s in shared_corpus.read_text(encoding="utf-8").split("\n\n") if s.strip()]
    known = set("".join(speeches[:600]))  # a char model knows the corpus's characters only
    later = [s for s in speeches[-200:] if set(s) <= known]
    (root / "data/suites/later.txt").write_text("\n\n".join(later), encoding="utf-8")
    pp.set_params(root, {"data": {"seed": 7}, "train": {"max_iters": 60},
                         "evaluate": {"suites": [{"name": "later", "url": "data/suites/later.txt"}]}})
    pp.run(root, "dvc", "repro")
    return root, first, json.loads((root / "reports/metrics.json").read_text())


def test_promote_scores_the_holder_on_the_challengers_val_text_and_decides_on_it(two_versions):
    root, first, second = two_versions
    assert first["val"]["text_digest"] != second["val"]["text_digest"]  # other documents are val
    digest = second["val"]["text_digest"]

    refused = pp.run(root, "folio", "promote", "2", "--no-rescore", check=False)
    assert "error: promote:" in refused and digest in refused and first["val"]["text_digest"] in refused
    assert "Traceback" not in refused

    output = pp.run(root, "folio", "promote", "2")
    holder, challenger = _version(root, 1), _version(root, 2)
    rescored = float(holder[f"rescored.val.bits_per_byte.{digest}"])
    assert f"moved to version 2 from version 1 (val bits_per_byte {second['val']['bits_per_byte']:.4f} vs " \
           f"{rescored:.4f}" in output and f"on text {digest}; version 1 rescored on it)" in output
    assert challenger["val.digest"] == digest and holder["val.digest"] == first["val"]["text_digest"]
    assert rescored != pytest.approx(first["val"]["bits_per_byte"], abs=1e-6)  # not its own val's number
    assert challenger["alias.champion.measure"] == "bits_per_byte"
    assert challenger["alias.champion.digest"] == digest and challenger["alias.champion.rescored"] == "true"
    assert float(challenger["alias.champion.previous_value"]) == pytest.approx(rescored, abs=1e-6)
    assert float(challenger["alias.champion.value"]) == pytest.approx(second["val"]["bits_per_byte"], abs=1e-6)
    assert "side by side with version 1: reports/compare/v2-vs-v1.html (attached to version 2)" in output
    assert (root / "reports/compare/v2-vs-v1.html").is_file() and (root / "reports/compare/v2-vs-v1.md").is_file()
    attached = pp.run(root, "python", "-c", (
        "import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); c = mlflow.MlflowClient(); "
        f"v = c.get_model_version('{NAME}', '2'); "
        "loc = c.get_logged_model(v.model_id or v.source.removeprefix('models:/')).artifact_location; "
        "print(sorted(f.path.split('/')[-1] for f in mlflow.artifacts.list_artifacts(artifact_uri=loc + '/compare')))"))
    assert "v2-vs-v1.html" in attached and "v2-vs-v1.md" in attached

    # the rescored number is evaluate's measure of version 1's weights on version 2's val split
    from pipeline.tracking import registry, store

    with tracking_at(f"sqlite:///{root / 'mlflow.db'}"):
        store.setup()
        model, tokenizer = registry.load_generator(f"models:/{NAME}/1", "cpu")
    meta = json.loads((root / "data/prepared/meta.json").read_text())
    assert meta["val_text_digest"] == digest
    assert tokenizer.digest == meta["tokenizer_digest"]  # one character set: the shards are its ids
    val = TokenSplit.open(sorted((root / "data/prepared").glob("val-*.bin")), meta["dtype"])
    result = split_loss(model.float(), val, 32)
    firsts = sum(text_bytes(tokenizer)(val.read(s, 0, 1).tolist()) for s in range(len(val.lengths)))
    expected = bits_per_byte(result["loss"], result["n_tokens"], meta["val_bytes"] - firsts)
    assert rescored == pytest.approx(expected, abs=1e-5)


def test_a_score_kept_from_rescoring_is_used_again(two_versions):
    """Version 1, forced back to @champion, holds its score on version 2's val text already:
    promote compares on it without scoring again, even with --no-rescore."""
    root, _, _ = two_versions
    pp.run(root, "folio", "promote", "1", "--force", "--no-report")
    output = pp.run(root, "folio", "promote", "2", "--no-rescore", "--no-report")
    assert "moved to version 2 from version 1" in output and "rescored" not in output


def test_a_promotion_on_a_suite_the_holder_never_saw_scores_it_on_the_suite(two_versions):
    root, _, second = two_versions
    suite = second["suites"]["later"]
    pp.run(root, "folio", "promote", "1", "--force", "--no-report")
    pp.set_params(root, {"registry": {"metric": "suite:later.bits_per_byte"}})
    output = pp.run(root, "folio", "promote", "2", "--no-report")
    holder, challenger = _version(root, 1), _version(root, 2)
    rescored = float(holder[f"rescored.suite.later.bits_per_byte.{suite['text_digest']}"])
    assert "suite.later.digest" not in holder  # version 1 was never evaluated on it
    assert f"(suite:later.bits_per_byte {suite['bits_per_byte']:.4f} vs {rescored:.4f}" in output
    assert f"on text {suite['text_digest']}; version 1 rescored on it)" in output
    assert challenger["alias.champion.measure"] == "suite:later.bits_per_byte"
    assert challenger["alias.champion.digest"] == suite["text_digest"] == challenger["suite.later.digest"]
