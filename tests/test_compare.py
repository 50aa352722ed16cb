"""`folio compare` against a real sqlite MLflow store, with two tiny GPTs built here registered as
versions 1 and 2 (tags from measures.version_tags on hand-made metrics, so that some measures are
shared on the same text and some are not) and runs with eval curves: both report files are written;
the shared table holds the values, difference, direction and better side (unknown direction said,
not guessed); the unshared table names both digests; each sample is what `folio generate --seed`
prints for that version; a run id works as a side (its version's model, its logged model, or "no
model logged"), and so does its name; the same sides give the same bytes; a bad side is one line and
exit 1; the files attach under compare/ of a version's logged model. In headless Chromium
(Playwright, the system's Chromium; skipped without them) the page loads with no request outside the
file, the figure drawn and both sample columns shown; its screenshot is docs/images/compare.png
(`FOLIO_SCREENSHOTS=docs/images pytest tests/test_compare.py -k chromium` redoes it)."""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer, save_tokenizer
from pipeline import measures
from pipeline.cli import app
from pipeline.commands import compare
from pipeline.params import SampleParams, load
from pipeline.tracking import registry
from pipeline.tracking import store as tracking
from tests.conftest import PROJECT
from tests.servers import tracking_at

TEXT = "ROMEO: the quick brown fox jumps over the lazy dog.\nJULIET: PACK MY BOX WITH FIVE DOZEN JUGS!\n" * 20
NAME = "folio-compare"
PARAMS_FILE = str(PROJECT / "params.yaml")
PARAMS = load(PARAMS_FILE)  # sample.prompts ROMEO: and a newline, seed 1337, temperature 0.8, top_k 200
TOKENS = 40
VAL, SHAKESPEARE, WIKI_A, WIKI_B, CODE, HELLASWAG, MYSTERY = (
    "a1a1a1a1a1a1a1a1", "5e5e5e5e5e5e5e5e", "0a0a0a0a0a0a0a0a", "0b0b0b0b0b0b0b0b", "c0dec0dec0dec0de",
    "4e114e114e114e11", "3f3f3f3f3f3f3f3f")
METRICS = (  # version 1, version 2
    {"val": {"loss": 2.0, "bits_per_byte": 3.0, "tokens": 100, "text_digest": VAL},
     "suites": {"shakespeare": {"bits_per_byte": 2.9, "loss": 2.1, "text_digest": SHAKESPEARE},
                "wiki": {"bits_per_byte": 4.0, "text_digest": WIKI_A}},
     "harness": {"hellaswag": {"acc": 0.25, "text_digest": HELLASWAG},
                 "mystery": {"odd": 1.0, "text_digest": MYSTERY}}},
    {"val": {"loss": 1.75, "bits_per_byte": 2.5, "tokens": 100, "text_digest": VAL},
     "suites": {"shakespeare": {"bits_per_byte": 3.1, "text_digest": SHAKESPEARE},
                "wiki": {"bits_per_byte": 3.5, "text_digest": WIKI_B},
                "code": {"bits_per_byte": 2.0, "text_digest": CODE}},
     "harness": {"hellaswag": {"acc": 0.3, "text_digest": HELLASWAG},
                 "mystery": {"odd": 1.5, "text_digest": MYSTERY}}},
)
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch, tracking_at(f"sqlite:///{root / 'mlflow.db'}"):
        patch.chdir(root)
        tracking.setup()
        yield root


def _checkpoint(root: Path, seed: int) -> tuple[Path, Path]:
    tokenizer = CharTokenizer.train(TEXT)
    save_tokenizer(tokenizer, root / "tokenizer")
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16))
    path = root / f"best-{seed}.pt"
    checkpoint.save(path, {"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 40,
                           "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                                         "digest": tokenizer.digest}, "best_val_loss": 2.0})
    return path, root / "tokenizer"


def _run(name: str, metrics: dict, shift: float) -> str:
    """A finished training run: eval curves, every step's train loss, final scores, digests."""
    ml = tracking.mlflow()
    with ml.start_run(run_name=name) as run:
        for step in range(0, 41, 10):
            ml.log_metrics({"eval_val_loss": 3.5 - step / 40 + shift, "eval_train_loss": 3.4 - step / 40}, step=step)
        for step in range(1, 41):
            ml.log_metric("train_loss", 3.6 - step / 35 + shift, step=step)
        ml.log_metrics({f"final_val_{k}": v for k, v in metrics["val"].items() if k in measures.VAL_METRICS}
                       | measures.run_metrics(metrics))
        ml.set_tags(measures.run_tags(metrics) | {"data.sha256": "d" * 64})
    return run.info.run_id


@pytest.fixture(scope="module")
def registered(store) -> dict[str, str]:
    """Versions 1 and 2 of NAME (different weights), each with its run; and a run with no model."""
    runs = {}
    for version, (seed, metrics) in enumerate(zip((0, 1), METRICS), 1):
        path, tokenizer_dir = _checkpoint(store, seed)
        run_id = _run(f"tiny-{version}", metrics, shift=0.1 * version)
        logged = registry.log_model(run_id, path, tokenizer_dir, SampleParams(prompts=["ROMEO:"]))
        tags = measures.version_tags(metrics) | {
            registry.DIGEST_TAG: checkpoint.weights_digest(checkpoint.load(path)), "data.sha256": "d" * 64}
        registry.register(logged.model_uri, NAME, tags)
        registry.client().set_tag(run_id, "registry.version", f"{NAME}/{version}")
        runs[f"v{version}"] = run_id
    bare = dict(METRICS[1], val={**METRICS[1]["val"], "bits_per_byte": 2.75})
    runs["bare"] = _run("tiny-bare", bare, shift=0.3)
    runs["unregistered"] = _run("tiny-unregistered", METRICS[0], shift=0.0)  # v1's weights, logged only
    registry.log_model(runs["unregistered"], *_checkpoint(store, 0), SampleParams(prompts=["ROMEO:"]))
    return runs


@pytest.fixture(scope="module")
def report(registered, tmp_path_factory) -> tuple[Path, Path]:
    return compare.write_report("1", "2", PARAMS, tmp_path_factory.mktemp("out"), TOKENS, NAME)


def _rows(markdown: str, section: str) -> list[list[str]]:
    body = markdown.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in body.splitlines()
            if line.startswith("| ") and not line.startswith("| measure")]


def _samples(page: str, side: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(rf'<pre class="sample {side}-sample">\n(.*?)</pre>', page, re.S)]


def test_both_files_are_written_self_contained(report):
    html_path, md_path = report
    assert (html_path.name, md_path.name) == ("v1-vs-v2.html", "v1-vs-v2.md")
    page, markdown = html_path.read_text(), md_path.read_text()
    assert compare.figure_of(md_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![val and train loss per step of v1 and v2](v1-vs-v2-curves.png)" in markdown
    assert 'src="data:image/png;base64,' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<script" not in page and "<link" not in page
    sides = dict((row[0], row[1:]) for row in (r for r in _rows(markdown, "What each side is")))
    assert sides["version"] == [f"{NAME} version 1", f"{NAME} version 2"]
    assert sides["data digest"] == ["d" * 64] * 2 and sides["val text digest"] == [VAL, VAL]
    assert sides["samples from"] == [f"models:/{NAME}/1", f"models:/{NAME}/2"]
    assert "Both val curves are over the same val text (digest a1a1a1a1a1a1a1a1)." in markdown


def test_shared_measures_give_values_difference_direction_and_the_better_side(report):
    shared = {row[0]: row[1:] for row in _rows(report[1].read_text(), "Measures both share")}
    assert shared == {
        "val.loss": [VAL, "2", "1.75", "-0.25", "lower", "v2"],
        "val.bits_per_byte": [VAL, "3", "2.5", "-0.5", "lower", "v2"],
        "suite.shakespeare.bits_per_byte": [SHAKESPEARE, "2.9", "3.1", "+0.2", "lower", "v1"],
        "harness.hellaswag.acc": [HELLASWAG, "0.25", "0.3", "+0.05", "higher", "v2"],
        "harness.mystery.odd": [MYSTERY, "1", "1.5", "+0.5", "unknown",
                                "not judged: folio does not know which way is better"],
    }


def test_measures_not_shared_name_both_digests(report):
    unshared = {row[0]: row[1:] for row in _rows(report[1].read_text(), "Measures they do not share")}
    assert unshared == {
        "suite.code.bits_per_byte": ["—", f"2 on {CODE}", "only v2 has it"],
        "suite.shakespeare.loss": [f"2.1 on {SHAKESPEARE}", "—", "only v1 has it"],
        "suite.wiki.bits_per_byte": [f"4 on {WIKI_A}", f"3.5 on {WIKI_B}", "not compared: different text"],
    }


def test_samples_are_what_folio_generate_prints_for_the_same_seed(report):
    page = report[0].read_text()
    samples = {side: _samples(page, side) for side in "ab"}
    assert [len(s) for s in samples.values()] == [len(PARAMS.sample.prompts)] * 2
    sample = PARAMS.sample
    for version, side in (("1", "a"), ("2", "b")):
        result = runner.invoke(app, ["generate", "--model", f"models:/{NAME}/{version}", "--seed", str(sample.seed),
                                     "--max-new-tokens", str(TOKENS), "--temperature", str(sample.temperature),
                                     "--top-k", str(sample.top_k), sample.prompts[0]])
        assert result.exit_code == 0, result.output
        assert result.output == samples[side][0] + "\n"
    assert samples["a"][0] != samples["b"][0]
    assert all(t.startswith(p) for side in "ab" for t, p in zip(samples[side], sample.prompts))


def test_a_run_id_is_a_side(registered, tmp_path):
    result = runner.invoke(app, ["compare", registered["v1"], registered["bare"], "--model", NAME,
                                 "--params", PARAMS_FILE, "--out", str(tmp_path), "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    stem = f"run-{registered['v1'][:8]}-vs-run-{registered['bare'][:8]}"
    markdown = (tmp_path / f"{stem}.md").read_text()
    assert (tmp_path / f"{stem}.html").is_file()
    sides = {row[0]: row[1:] for row in _rows(markdown, "What each side is")}
    assert sides["samples from"] == [f"models:/{NAME}/1", "no model logged for this run"]
    assert sides["version"] == [f"{NAME} version 1", "not registered"]
    shared = {row[0]: row[1:] for row in _rows(markdown, "Measures both share")}
    assert shared["val.bits_per_byte"][1:] == ["3", "2.75", "-0.25", "lower", f"run {registered['bare'][:8]}"]
    assert markdown.count("**run ") == len(PARAMS.sample.prompts)  # samples of the registered run only
    assert compare.resolve("tiny-bare", NAME).run.info.run_id == registered["bare"]  # a run's name will do


def test_the_same_sides_give_the_same_bytes(registered, report, tmp_path):
    again = compare.write_report("v1", f"models:/{NAME}/2", PARAMS, tmp_path, TOKENS, NAME)
    for first, second in zip((*report, compare.figure_of(report[1])), (*again, compare.figure_of(again[1]))):
        assert first.name == second.name and first.read_bytes() == second.read_bytes()


def test_a_run_with_a_logged_model_only_samples_from_it(registered, report, tmp_path):
    html_path, md_path = compare.write_report(registered["unregistered"], "v1", PARAMS, tmp_path, TOKENS, NAME)
    sides = {row[0]: row[1:] for row in _rows(md_path.read_text(), "What each side is")}
    model_id = sides["samples from"][0].removeprefix("models:/")
    assert sides["version"][0] == f"not registered (logged model {model_id})"
    assert sides["weights digest"][0] == sides["weights digest"][1]  # the same weights as v1
    page = html_path.read_text()
    assert _samples(page, "a") == _samples(page, "b") == _samples(report[0].read_text(), "a")


@pytest.mark.parametrize("side, says", [
    ("nonsense", "'nonsense' is neither a version of folio-compare, a registry URI nor a run"),
    ("9", "folio-compare has no version 9 (versions: 2, 1)"),
    ("models:/folio-compare@nobody", "folio-compare has no version with alias @nobody"),
])
def test_a_bad_side_is_one_line(registered, tmp_path, side, says):
    result = runner.invoke(app, ["compare", "1", side, "--model", NAME, "--params", PARAMS_FILE,
                                 "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("error: compare: ") and says in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_attach_adds_the_report_under_compare(report):
    compare.attach(NAME, 2, list(report))
    model_id = registry.model_id_of(registry.get_version(NAME, 2))
    location = registry.client().get_logged_model(model_id).artifact_location
    files = {f.path for f in tracking.mlflow().artifacts.list_artifacts(artifact_uri=f"{location}/compare")}
    assert {Path(f).name for f in files} == {"v1-vs-v2.html", "v1-vs-v2.md", "v1-vs-v2-curves.png"}


def test_the_page_in_headless_chromium(report, tmp_path):
    """Its screenshot goes to FOLIO_SCREENSHOTS (docs/images/ to redo the docs' compare.png), else
    to the test's temporary folder: a test run leaves the checkout as it was."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if chromium is None:
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium (.ci/run does it as root)")
    url, outside = report[0].resolve().as_uri(), []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})

            def only_the_file(route):
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_file)
            page.goto(url)
            expect = sync_api.expect
            for table in ("#sides-table", "#shared-table", "#unshared-table", "#curves-figure"):
                expect(page.locator(table)).to_be_visible()
            assert page.eval_on_selector("#curves-figure", "img => img.complete && img.naturalWidth") > 0
            for side in ("a", "b"):
                expect(page.locator(f"pre.{side}-sample")).to_have_count(len(PARAMS.sample.prompts))
                expect(page.locator(f"pre.{side}-sample").first).to_be_visible()
                assert page.locator(f"pre.{side}-sample").all_text_contents() == _samples(report[0].read_text(), side)
            boxes = [page.locator(f"pre.{side}-sample").first.bounding_box() for side in "ab"]
            assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"]  # side by side
            assert abs(boxes[0]["y"] - boxes[1]["y"]) < 1
            shots = Path(os.environ.get("FOLIO_SCREENSHOTS") or tmp_path)
            page.screenshot(path=str(shots / "compare.png"), full_page=True)
        finally:
            browser.close()
    assert outside == []
