"""`folio runs` (pipeline/commands/runs.py) fits a 120-column terminal: digests cut to 8 digits,
URLs to their last part, run names without their timestamp, the model named with its version,
each run on one line, params that do not fit left out and named; `--wide` shows every value
whole. And the `sweep` tag (pipeline/tracking/lineage.py) every training run of a sweep carries,
so that MLflow finds the sweep's runs together."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline import params as params_module
from pipeline.commands import runs
from pipeline.errors import StageError
from pipeline.tracking import lineage, store
from pipeline.tracking.training_run import TrainingRun

SHA = ["86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
       "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"]
URL = ["https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
       "/home/someone/corpora/my-own-corpus/all-the-plays.txt"]
STARTED = time.mktime((2026, 12, 6, 19, 0, 0, 0, 0, -1)) * 1000


def fake_run(i: int, **params) -> SimpleNamespace:
    start = STARTED + i * 600_000
    return SimpleNamespace(
        info=SimpleNamespace(run_id=f"run{i}", run_name=f"tinyshakespeare-char-L4d192-20261206-19{i:02d}00",
                             start_time=start, end_time=start + 298_000, status="FINISHED"),
        data=SimpleNamespace(params={"data.sha256": SHA[i % 2], "data.url": URL[i % 2], **params},
                             metrics={"final_val_loss": 1.5 + i / 100, "final_val_bits_per_byte": 2.2 + i / 100}))


def version(name: str, number: int, *aliases: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, version=str(number), aliases=list(aliases))


@pytest.fixture
def six_runs(monkeypatch):
    monkeypatch.setattr(runs, "tokens_per_sec", lambda run: 25_630.0)  # MLflow's metric history
    found = [fake_run(i, **{"train.learning_rate": str(0.001 * (i + 1)), "model.n_layer": str(2 + i % 3),
                            "train.max_iters": str(1000 * (i + 1))}) for i in range(6)]
    versions = {"run0": [version("folio-tinyshakespeare", 1)],
                "run3": [version("folio-tinyshakespeare", 2, "champion"), version("folio-other-corpus", 1)]}
    return found, versions


def rendered_lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def started(run) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(run.info.start_time / 1000))


def assert_one_line_per_run(text: str, found: list, notes: int = 0) -> list[str]:
    lines = rendered_lines(text)
    assert max(len(line) for line in lines) <= 120, text
    assert len(lines) == 1 + 2 + len(found) + notes, text  # the title, header and rule, the runs
    for i, run in enumerate(found):
        assert lines[3 + i].startswith(started(run)), text  # each row on its own line, in order
    return lines


def test_a_sweep_fits_120_columns_whole(monkeypatch):
    """Two points of a learning-rate sweep: nothing is cut, the model is named with its version."""
    monkeypatch.setattr(runs, "tokens_per_sec", lambda run: 25_630.0)  # MLflow's metric history
    found = [fake_run(i, **{"train.learning_rate": lr}) for i, lr in enumerate(["0.001", "0.003"])]
    for run in found:
        run.data.params["data.sha256"], run.data.params["data.url"] = SHA[0], URL[0]
    versions = {"run1": [version("folio-tinyshakespeare", 3, "champion")]}
    text = runs.render(runs.table(found, versions), "last 2 runs in sqlite:///mlflow.db", 120)
    lines = assert_one_line_per_run(text, found)
    assert lines[1].split() == ["started", "learning_rate", "val", "loss", "bits/byte", "tokens/s", "duration",
                                "model"]
    assert lines[4].split() == ["12-06", "19:10", "0.003", "1.5100", "2.2100", "25,630", "4m", "58s",
                                "folio-tinyshakespeare", "v3", "@champion"]
    assert "…" not in text


def test_digests_urls_and_long_models_are_cut_and_params_that_do_not_fit_named(six_runs):
    found, versions = six_runs
    text = runs.render(runs.table(found, versions), "last 6 runs in sqlite:///mlflow.db", 120)
    lines = assert_one_line_per_run(text, found, notes=1)
    header = lines[1].split()
    assert header[:4] == ["started", "n_layer", "learning_rate", "max_iters"]
    assert lines[-1] == "2 more params differ: data.sha256, data.url (`folio runs --wide` shows them)"
    assert "folio-tinyshakespeare v2 @c" in lines[6] and lines[6].endswith("…")  # cut, on one line
    assert all(name in lines[1] for name in ("val loss", "bits/byte", "tokens/s", "duration", "model"))
    assert "4m 58s" in text and "25,630" in text and "1.5300" in text


def test_digests_and_urls_are_shortened_where_they_fit(six_runs):
    found, versions = six_runs
    for run in found:
        for key in ("train.learning_rate", "model.n_layer", "train.max_iters"):
            del run.data.params[key]
    text = runs.render(runs.table(found, versions), "last 6 runs", 120)
    assert_one_line_per_run(text, found)
    assert SHA[0][:8] in text and SHA[0] not in text
    assert "…/input.txt" in text and "githubusercontent" not in text


def test_many_params_are_left_out_widest_first_and_the_note_fits(six_runs):
    found, versions = six_runs
    for i, run in enumerate(found):
        run.data.params |= {f"train.knob_{k}": f"value-{i}-{k}" for k in range(8)}
    text = runs.render(runs.table(found, versions), "last 6 runs", 120)
    lines = rendered_lines(text)
    assert max(len(line) for line in lines) <= 120, text
    note = " ".join(lines[3 + len(found):])  # the note, wrapped at 120
    kept = len(lines[1].split()) - len(["started", "val", "loss", "bits/byte", "tokens/s", "duration", "model"])
    assert kept >= 2 and note.startswith(f"{13 - kept} more params differ: data.sha256, data.url, "), text
    assert note.endswith("(`folio runs --wide` shows them)")
    assert "val loss" in lines[1] and "model" in lines[1]  # metrics and the model are never left out


def test_wide_shows_every_value_whole(six_runs):
    found, versions = six_runs
    text = runs.render(runs.table(found, versions, wide=True), "last 6 runs", None, wide=True)
    lines = rendered_lines(text)
    assert len(lines) == 1 + 2 + len(found)
    assert SHA[1] in text and URL[0] in text and "tinyshakespeare-char-L4d192-20261206-190300" in text
    assert "folio-tinyshakespeare v2 @champion, folio-other-corpus v1" in text
    assert lines[1].split()[:4] == ["run", "started", "data.sha256", "data.url"]


def test_the_model_column_names_each_version_with_its_aliases():
    assert runs.model_versions([version("shakespeare-char", 3, "champion", "staging")]) == \
        "shakespeare-char v3 @champion @staging"
    assert runs.model_versions([]) == "-"


def test_sweep_tag_is_folio_sweep_else_the_dvc_baseline_commit(monkeypatch):
    monkeypatch.setattr(lineage, "git_commit", lambda: None)
    assert lineage.run_tags({}) == {}
    exp = {"DVC_EXP_NAME": "kacha-weft", "DVC_EXP_BASELINE_REV": "1839027" + "a" * 33}
    assert lineage.run_tags(exp) == {"dvc.exp_name": "kacha-weft", "dvc.baseline_rev": exp["DVC_EXP_BASELINE_REV"],
                                     "sweep": "1839027"}
    assert lineage.run_tags({**exp, "FOLIO_SWEEP": "lr-grid"})["sweep"] == "lr-grid"
    assert lineage.run_tags({"FOLIO_SWEEP": "lr-grid"}) == {"sweep": "lr-grid"}  # sequential runs, named


def test_each_training_run_of_a_sweep_is_found_by_its_tag(tmp_path, monkeypatch):
    """Two sweep points, as `dvc exp run` starts them: TrainingRun tags each, and MLflow's search
    (the UI's filter `tags.sweep = '...'`) finds both and nothing else."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "corpus.txt").write_text("to be or not to be\n")
    manifest = {"source": str(tmp_path / "corpus.txt"), "sha256": "ab" * 32, "bytes": 19,
                "files": [{}], "documents": 1}
    meta = {"train_tokens": 900, "train_bytes": 1800, "val_tokens": 100, "val_bytes": 250, "bytes_per_token": 2.05}
    params = params_module.load(Path(__file__).resolve().parents[1] / "params.yaml")
    store.setup()
    ml = store.mlflow()
    started = []
    for i, exp_name in enumerate(["kacha-weft", "alive-tiff", None]):
        if exp_name:
            monkeypatch.setenv("DVC_EXP_NAME", exp_name)
            monkeypatch.setenv("DVC_EXP_BASELINE_REV", "1839027" + "b" * 33)
        else:  # a plain `folio train` afterwards: in no sweep
            monkeypatch.delenv("DVC_EXP_NAME")
            monkeypatch.delenv("DVC_EXP_BASELINE_REV")
        run = TrainingRun(params, {"run_name": f"point-{i}", "fingerprint": f"{i}" * 16}, manifest, meta,
                          SimpleNamespace(vocab_size=65), lambda line: None)
        started.append(run.start())
        ml.end_run()
    found = runs.recent_runs(10, sweep="1839027")  # `folio runs --sweep 1839027`: MLflow's tags.sweep = '...'
    assert sorted(r.info.run_id for r in found) == sorted(started[:2])
    assert {r.data.tags["dvc.exp_name"] for r in found} == {"kacha-weft", "alive-tiff"}
    assert len(runs.recent_runs(10)) == 3 and runs.recent_runs(10, sweep="it's") == []
    with pytest.raises(StageError, match="both kinds of quote"):
        runs.recent_runs(10, sweep="it's \"x\"")
