"""Fixed yardsticks, evaluate.suites (pipeline/suites.py): a suite's files are found (a file, a
directory of known formats, a glob; under data/suites/ only, no URL), read by the corpus reader,
digested as the corpus manifest is (pinnable: a changed file is one line naming both digests) and
by their text; bad input is one line naming the suite; contamination counts the suite's lines of
MIN_LINE_CHARS or more found verbatim as lines of the train split, across pieces; scores carry
both digests; measures turn them into version tags, run tags and run metrics.

One real pipeline (tests/pipeline_project.py, TINY params, `dvc repro` after the data stages) with
two suites, a txt file and a directory of jsonl.gz, one partly made of training text: evaluate
warns about that one, metrics.json holds both with the digests of their text, the training run
their metrics and digest tags, the registered version their tags; editing a suite makes evaluate
stale to DVC, and a pin that does not match fails `dvc repro` in one line. There, too, the val
split's documents rescored with folio.evaluate.score_text give evaluate's whole-split bits per
byte and prepare's val text digest: a holder rescored on a val split is measured the same way."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from folio.evaluate import text_digest
from folio.splits import BOUNDARY
from pipeline import artifacts, measures, suites
from pipeline.params import ParamsError, SuiteParams, validate
from tests import pipeline_project as pp

HELD = ("The lighthouse keeper counted ships until the fog came in at noon.\n"
        "Nobody in the harbour town could remember a quieter winter than this one.\n"
        "short line\n") * 20


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonl_gz(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts))


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    artifacts.SUITES_DIR.mkdir(parents=True)
    return tmp_path


# ---- params ------------------------------------------------------------------------------

def _params(*suites: dict):
    return validate({"data": {"url": "file:///unused", "sha256": ""}, "evaluate": {"suites": list(suites)}})


def test_suites_default_to_none_and_take_name_url_sha256_format_text_field():
    assert _params().evaluate.suites == []
    (suite,) = _params({"name": "wiki-1", "url": "data/suites/wiki/*.jsonl", "format": "jsonl",
                        "text_field": "body"}).evaluate.suites
    assert (suite.name, suite.sha256, suite.format, suite.text_field) == ("wiki-1", "", "jsonl", "body")


@pytest.mark.parametrize("suite, expected", [
    ({"name": "w", "url": "https://example.invalid/w.txt"}, "download it into data/suites/"),
    ({"name": "w", "url": "file:///tmp/w.txt"}, "download it into data/suites/"),
    ({"name": "w", "url": "corpora/w.txt"}, "move or copy them there"),
    ({"name": "w", "url": "/abs/data/suites/w.txt"}, "move or copy them there"),
    ({"name": "w", "url": "data/suites/../w.txt"}, "move or copy them there"),
    ({"name": "w.x", "url": "data/suites/w.txt"}, "evaluate.suites[0].name"),
    ({"name": "w", "url": "data/suites/w.txt", "sha256": "abc"}, "evaluate.suites[0].sha256"),
])
def test_a_suite_outside_data_suites_or_misnamed_is_one_line(suite, expected):
    with pytest.raises(ParamsError) as err:
        _params(suite)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_two_suites_of_one_name_are_refused():
    with pytest.raises(ParamsError, match="two suites are named 'w'"):
        _params({"name": "w", "url": "data/suites/a.txt"}, {"name": "w", "url": "data/suites/b.txt"})


# ---- loading -----------------------------------------------------------------------------

def test_a_text_file_is_one_document_with_its_files_and_text_digests(in_project):
    path = artifacts.SUITES_DIR / "held.txt"
    path.write_text(HELD, encoding="utf-8")
    text = suites.load(SuiteParams(name="held", url="data/suites/held.txt"))
    assert (text.name, text.documents) == ("held", [HELD])
    assert text.sha256 == _sha(path)  # one file: its sha256, as data.sha256 pins a corpus of one file
    assert text.text_digest == text_digest([HELD])
    pinned = suites.load(SuiteParams(name="held", url="data/suites/held.txt", sha256=_sha(path)))
    assert pinned == text


def test_a_directory_reads_its_known_formats_and_digests_like_the_corpus_manifest(in_project):
    folder = artifacts.SUITES_DIR / "news"
    _jsonl_gz(folder / "a" / "part-1.jsonl.gz", ["first story", "second story"])
    (folder / "b.txt").write_text("third story\n", encoding="utf-8")
    (folder / "README.md").write_text("not part of the suite")
    (folder / ".hidden.txt").write_text("not part of the suite")
    text = suites.load(SuiteParams(name="news", url="data/suites/news/"))
    assert text.documents == ["first story", "second story", "third story\n"]
    lines = sorted(f"{p} {_sha(folder / p)}\n" for p in ("a/part-1.jsonl.gz", "b.txt"))
    assert text.sha256 == hashlib.sha256("".join(lines).encode()).hexdigest()
    assert text.text_digest == text_digest(text.documents)
    globbed = suites.load(SuiteParams(name="news", url="data/suites/news/**/*.jsonl.gz"))
    assert globbed.documents == ["first story", "second story"]


def test_bad_suites_are_one_line_naming_the_suite_and_what_to_do(in_project):
    held = artifacts.SUITES_DIR / "held.txt"
    held.write_text(HELD, encoding="utf-8")
    (artifacts.SUITES_DIR / "empty.txt").write_text("")
    (artifacts.SUITES_DIR / "docs").mkdir()
    (artifacts.SUITES_DIR / "docs" / "notes.md").write_text("no known format")
    (artifacts.SUITES_DIR / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    (artifacts.SUITES_DIR / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    cases = {
        ("gone", "data/suites/gone.txt", ""): "suite 'gone': data/suites/gone.txt does not exist",
        ("none", "data/suites/*.parquet", ""): "suite 'none': data/suites/*.parquet matches no file",
        ("empty", "data/suites/empty.txt", ""): "suite 'empty': data/suites/empty.txt holds no text",
        ("docs", "data/suites/docs", ""): "suite 'docs': the directory data/suites/docs holds no .txt",
        ("broken", "data/suites/broken.jsonl.gz", ""): "suite 'broken': data/suites/broken.jsonl.gz: cannot decompress",
        ("bad", "data/suites/bad.jsonl", ""): "suite 'bad': data/suites/bad.jsonl line 2: no field 'text'",
        ("held", "data/suites/held.txt", "0" * 64): (f"suite 'held': its files (data/suites/held.txt) have sha256 "
                                                     f"{_sha(held)}, but evaluate.suites pins {'0' * 64}; restore "
                                                     f"the files, or if they changed on purpose set its sha256 to {_sha(held)}"),
    }
    for (name, url, sha256), expected in cases.items():
        with pytest.raises(suites.SuiteError) as err:
            suites.load(SuiteParams(name=name, url=url, sha256=sha256))
        assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


# ---- contamination -----------------------------------------------------------------------

def test_contamination_counts_long_lines_found_in_train_across_pieces():
    leaked = "A line of the training text, long enough to count."
    also = "Another training line that the suite copied verbatim"
    suite = suites.SuiteText("s", [f"  {leaked}  \nshort\n{also}\nA line of the suite's own, never seen in training.\n",
                                   f"{leaked}\nval only: a line that is only in the val split"], "0" * 64, "d")
    other = suites.SuiteText("o", ["Nothing here occurs in the training split at all.\n"], "1" * 64, "e")
    cut = len(also) // 2
    pieces = [("train", f"intro\n{leaked}\nmore text "), ("train", f"follows\n{also[:cut]}"),
              ("train", f"{also[cut:]}\nend"), ("train", BOUNDARY), ("train", "short\n"),
              ("val", "val only: a line that is only in the val split\n")]
    found = suites.contamination([suite, other], pieces)
    # counted lines: leaked (twice), also, the suite's own, the val line; `short` is under MIN_LINE_CHARS
    assert found["s"] == {"lines": 5, "in_train": 3, "share": 3 / 5}
    assert found["o"] == {"lines": 1, "in_train": 0, "share": 0.0}
    assert suites.contamination([suite], [("train", leaked)])["s"]["in_train"] == 2  # the last line, unended


def test_a_suite_scores_as_score_text_with_its_files_digest(in_project):
    from folio.evaluate import score_text
    from tests import tiny_exports

    _, _, model, tokenizer = tiny_exports.save_model(in_project / "model", "char", seed=1)
    path = artifacts.SUITES_DIR / "held.txt"
    path.write_text(tiny_exports.TEXT, encoding="utf-8")
    text = suites.load(SuiteParams(name="held", url="data/suites/held.txt"))
    scored = suites.score(model, tokenizer, text, batch_size=4)
    assert scored == {**score_text(model, tokenizer, [tiny_exports.TEXT], 4), "sha256": _sha(path)}
    assert scored["text_digest"] == text.text_digest
    path.write_text(HELD.upper() + "\u00a7", encoding="utf-8")  # a character the char vocabulary lacks
    with pytest.raises(suites.SuiteError, match=r"^suite 'held' cannot be scored by this model: character"):
        suites.score(model, tokenizer, suites.load(SuiteParams(name="held", url="data/suites/held.txt")), 4)


def test_suite_scores_become_version_tags_run_tags_and_run_metrics():
    metrics = {"val": {"loss": 1.0, "bits_per_byte": 2.0, "tokens": 10, "subset": False, "text_digest": "v" * 16},
               "suites": {"held": {"loss": 1.5, "bits_per_token": 2.1, "bits_per_byte": 2.5, "perplexity": 4.4,
                                   "tokens": 99, "bytes": 120, "text_digest": "h" * 16, "sha256": "f" * 64,
                                   "contamination": {"lines": 3, "in_train": 0, "share": 0.0}}}}
    tags = measures.version_tags(metrics)
    assert tags["suite.held.bits_per_byte"] == "2.5" and tags["suite.held.loss"] == "1.5"
    assert tags["suite.held.digest"] == "h" * 16 and tags["val.digest"] == "v" * 16
    assert not any(k.startswith("suite.held.") and k.split(".")[-1] in ("tokens", "bytes", "sha256") for k in tags)
    assert measures.run_tags(metrics) == {"val.digest": "v" * 16, "suite.held.digest": "h" * 16}
    assert measures.run_metrics(metrics) == {"suite.held.loss": 1.5, "suite.held.bits_per_token": 2.1,
                                             "suite.held.bits_per_byte": 2.5, "suite.held.perplexity": 4.4}
    scores = measures.version_scores(tags)
    held = measures.parse("suite:held.bits_per_byte")
    assert measures.value_on(scores, held, "h" * 16) == 2.5 and not held.higher_is_better


def test_vals_digest_is_the_splits_when_whole_else_names_the_windows_the_tokenizer_and_context():
    from pipeline.stages.evaluate import val_digest

    meta = {"val_text_digest": "a" * 16}
    assert val_digest(meta, True, None, 64, "t" * 16) == "a" * 16
    subset = f"{'a' * 16} windows max_tokens=1000 block_size=64 tokenizer={'t' * 16}"
    assert val_digest(meta, False, 1000, 64, "t" * 16) == hashlib.sha256(subset.encode()).hexdigest()[:16]
    assert len({val_digest(meta, False, n, b, "t" * 16) for n, b in ((1000, 64), (2000, 64), (1000, 32))}) == 3
    assert val_digest({}, True, None, 64, "t" * 16) is None  # prepared by an older folio: no digest


# ---- the real pipeline -------------------------------------------------------------------

@pytest.fixture(scope="module")
def suites_project(prepared_project, tmp_path_factory, shared_corpus):
    """The prepared project, trained and evaluated by `dvc repro` with two suites: `held` (a txt
    file of text of its own) and `leaky` (a directory of jsonl.gz, two of its four documents
    lines from the start of Tiny Shakespeare, its train split)."""
    root = pp.clone(prepared_project, tmp_path_factory.mktemp("suites") / "folio")
    (root / "data/suites/held.txt").write_text(HELD, encoding="utf-8")
    train_lines = [line for line in shared_corpus.read_text(encoding="utf-8").splitlines()[:400]
                   if len(line.strip()) >= suites.MIN_LINE_CHARS]
    leaky = ["\n".join(train_lines[:4]), "A made-up sentence that Shakespeare never wrote, to be sure.",
             "\n".join(train_lines[10:13]), "Another invented line for the yardstick, of our own making."]
    _jsonl_gz(root / "data/suites/leaky/part-1.jsonl.gz", leaky[:2])
    _jsonl_gz(root / "data/suites/leaky/z/part-2.jsonl.gz", leaky[2:])
    pp.set_params(root, {"evaluate": {"suites": [{"name": "held", "url": "data/suites/held.txt"},
                                                 {"name": "leaky", "url": "data/suites/leaky/"}]}})
    output = pp.run(root, "dvc", "repro")
    return root, output, {"held": [HELD], "leaky": leaky}


def test_evaluate_scores_the_suites_warns_of_training_text_and_logs_and_tags_them(suites_project):
    import mlflow

    root, output, documents = suites_project
    assert {"train", "evaluate", "register"} <= pp.ran(output)
    warnings = [line for line in output.splitlines() if line.startswith("warning: suite")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: suite leaky: 77.8% of its lines of 20+ characters (7 of 9) occur "
                                  "verbatim in the train split"), warnings
    assert any(line.startswith("suite held: ") and "bits/byte" in line for line in output.splitlines())

    metrics = json.loads((root / "reports/metrics.json").read_text())
    for name in ("held", "leaky"):
        suite = metrics["suites"][name]
        assert suite["text_digest"] == text_digest(documents[name]) and suite["bits_per_byte"] > 0
    assert metrics["suites"]["held"]["sha256"] == _sha(root / "data/suites/held.txt")
    assert metrics["suites"]["held"]["contamination"] == {"lines": 40, "in_train": 0, "share": 0.0}
    assert metrics["suites"]["leaky"]["contamination"] == {"lines": 9, "in_train": 7, "share": 7 / 9}
    meta = json.loads((root / "data/prepared/meta.json").read_text())
    assert metrics["val"]["text_digest"] == meta["val_text_digest"] and not metrics["val"]["subset"]

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(json.loads((root / "models/run.json").read_text())["run_id"]).data
    assert run.metrics["suite.held.bits_per_byte"] == metrics["suites"]["held"]["bits_per_byte"]
    assert run.tags["suite.leaky.digest"] == metrics["suites"]["leaky"]["text_digest"]
    assert run.tags["val.digest"] == meta["val_text_digest"]
    registered = json.loads((root / "reports/registered_model.json").read_text())
    tags = client.get_model_version(registered["name"], str(registered["version"])).tags
    assert tags["suite.leaky.bits_per_byte"] == str(metrics["suites"]["leaky"]["bits_per_byte"])
    assert tags["suite.held.digest"] == metrics["suites"]["held"]["text_digest"]
    assert tags["val.digest"] == meta["val_text_digest"] and "val_text_digest" not in tags
    card = (root / "reports/model_card.md").read_text()
    assert "## Suites" in card and f"`{metrics['suites']['held']['text_digest']}`" in card


def test_rescoring_the_val_split_with_score_text_is_evaluates_measure(suites_project, monkeypatch):
    """What promote rescores a holder with: the val split's documents, as corpus.split_pieces gives
    them, through score_text, equal evaluate's whole-split score and name the same text."""
    from folio.evaluate import score_text
    from pipeline import params as params_module
    from pipeline.artifacts import corpus, models, tokenizer as tokenizer_files

    root, _, _ = suites_project
    monkeypatch.chdir(root)
    params = params_module.load()
    documents, current = [], []
    for split, text in corpus.split_pieces(params.data):
        if split == "val" and text is BOUNDARY and current:
            documents, current = documents + ["".join(current)], []
        elif split == "val" and text is not BOUNDARY:
            current.append(text)
    documents += ["".join(current)] if current else []
    tokenizer = tokenizer_files.load()
    _, model = models.load_model(tokenizer, device="cpu")
    scored = score_text(model, tokenizer, documents, params.evaluate.batch_size)
    val = json.loads(artifacts.METRICS.read_text())["val"]
    assert scored["bits_per_byte"] == pytest.approx(val["bits_per_byte"], abs=1e-6)
    assert scored["tokens"] == val["tokens"]
    meta = json.loads(artifacts.PREPARED_META.read_text())
    assert scored["text_digest"] == val["text_digest"] == meta["val_text_digest"]


def test_an_edited_suite_makes_evaluate_stale_and_a_broken_pin_fails_in_one_line(suites_project):
    root, _, _ = suites_project
    assert "evaluate" not in pp.run(root, "dvc", "status")
    with open(root / "data/suites/held.txt", "a", encoding="utf-8") as f:
        f.write("One more line, added after the suite was scored.\n")
    status = pp.run(root, "dvc", "status")
    assert "evaluate:" in status and "data/suites" in status, status
    pp.set_params(root, {"evaluate": {"suites": [{"name": "held", "url": "data/suites/held.txt", "sha256": "0" * 64}]}})
    output = pp.run(root, "dvc", "repro", "evaluate", check=False)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "suite 'held'" in errors[0] and "pins" in errors[0], output
    assert "Traceback" not in output
