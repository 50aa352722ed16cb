"""End to end: the real `dvc repro` in a throwaway git copy of the project, with tiny params and
the corpus served over loopback HTTP. Checks outputs, metrics, the MLflow run, that a second
repro runs nothing, that a second clone at another path reproduces every output (metrics.json,
the curves, the samples, the weights, every cached output's digest), that touching code a stage
runs makes `dvc status` show exactly the stages that run it, that one param change reruns exactly
its stages, `dvc exp run -S` (train.compile among them), and that a training run killed with
SIGKILL resumes (same MLflow run) on the next repro."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipeline.stages import STAGES
from tests.pipeline_project import env as _env
from tests.pipeline_project import git as _git
from tests.pipeline_project import make_project, serve_directory
from tests.pipeline_project import ran as _ran
from tests.pipeline_project import run as _run
from tests.pipeline_project import set_params as _set_params

pytestmark = pytest.mark.e2e


REPRODUCED = ["reports/metrics.json", "reports/train/steps.csv", "reports/train/evals.csv",
              "reports/train/loss.png", "reports/samples.md", "reports/attention.png",
              "reports/validation/corpus/corpus.json", "reports/validation/tokens/tokens.json"]
# Outputs that name what differs by design: the MLflow run, version and registration time
# (models/run.json, the model card, registered_model.json) and when a validation ran (Data Docs).
RUN_RECORDS = {"models", "reports/model_card.md", "reports/registered_model.json",
               "reports/validation/corpus", "reports/validation/tokens"}


@pytest.fixture(scope="module")
def corpus_url(shared_corpus):
    with serve_directory(shared_corpus.parent) as base_url:
        yield f"{base_url}/{shared_corpus.name}"


@pytest.fixture(scope="module")
def project(tmp_path_factory, corpus_url):
    """A git repo holding a copy of the project whose params point at a loopback server."""
    return make_project(tmp_path_factory.mktemp("e2e") / "folio", corpus_url)


def _outputs(project: Path) -> dict:
    """What one repro made: report bytes, the best weights, and the digest of every other output
    (RUN_RECORDS aside)."""
    from folio import checkpoint

    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    digests = {(stage, out["path"]): out["md5"] for stage, entry in lock.items()
               for out in entry.get("outs", []) if out["path"] not in RUN_RECORDS}
    return {"files": {name: (project / name).read_bytes() for name in REPRODUCED},
            "weights": checkpoint.load(project / "models/best.pt")["model"], "digests": digests}


@pytest.fixture(scope="module")
def first_repro(project):
    output = _run(project, "dvc", "repro")
    return {"output": output, **_outputs(project)}


def _client(project: Path):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def _run_id(project: Path) -> str:
    return json.loads((project / "models" / "run.json").read_text())["run_id"]


def test_repro_runs_every_stage_and_writes_every_output(project, first_repro):
    assert _ran(first_repro["output"]) == set(STAGES)
    for out in ["data/raw/tinyshakespeare/tinyshakespeare.txt", "data/raw/tinyshakespeare.json",
                "reports/validation/corpus/corpus.json", "reports/validation/tokens/tokens.json",
                "data/tokenizer/tokenizer.json", "data/prepared/train-00000.bin", "data/prepared/val-00000.bin",
                "data/prepared/meta.json", "models/best.pt", "models/last.pt", "models/run.json",
                "reports/train/steps.csv", "reports/train/evals.csv", "reports/train/loss.png",
                "reports/metrics.json", "reports/samples.md", "reports/model_card.md",
                "reports/registered_model.json"]:
        assert (project / out).exists(), out
    metrics = json.loads((project / "reports/metrics.json").read_text())
    for key in ("loss", "bits_per_char", "perplexity"):
        assert math.isfinite(metrics["val"][key]), key
    assert metrics["val"]["loss"] < math.log(65)  # better than a uniform guess


def test_mlflow_run_holds_params_history_dataset_and_artifacts(project, first_repro):
    client = _client(project)
    run = client.get_run(_run_id(project))
    assert run.info.status == "FINISHED"
    assert run.data.params["model.n_layer"] == "1" and run.data.params["train.max_iters"] == "30"
    assert run.data.tags["mlflow.source.git.commit"] == _git(project, "rev-parse", "HEAD").strip()
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 31))
    assert len(client.get_metric_history(run.info.run_id, "lr")) == 30
    assert "final_val_bits_per_char" in run.data.metrics
    # static facts are params and tags, not single-point metrics
    assert {"num_params", "size_fp32_mb", "size_bf16_mb", "tokenizer_vocab_size"}.isdisjoint(run.data.metrics)
    assert int(run.data.tags["num_params"]) > 0 and float(run.data.tags["size_fp32_mb"]) > 0
    assert run.data.params["tokenizer.n_vocab"] == "65"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the training view
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "tinyshakespeare"
    tags = {t.key: t.value for t in dataset.tags}
    assert tags["size_bytes"] == "1115394" and tags["sha256"].startswith("86c4e6aa")
    artifacts = {a.path for d in ("tokenizer", "train", "checkpoint", "evaluate", "samples",
                                  "validation/corpus", "validation/tokens")
                 for a in client.list_artifacts(run.info.run_id, d)}
    assert {"tokenizer/tokenizer.json", "train/loss.png", "checkpoint/best.pt",
            "evaluate/metrics.json", "samples/samples.md", "validation/corpus/corpus.json",
            "validation/corpus/docs", "validation/tokens/tokens.json"} <= artifacts


def test_second_repro_runs_nothing(project, first_repro):
    assert _ran(_run(project, "dvc", "repro")) == set()


def test_a_second_clone_elsewhere_reproduces_every_output(first_repro, corpus_url, tmp_path_factory):
    import torch

    other = make_project(tmp_path_factory.mktemp("elsewhere") / "deeper" / "copy", corpus_url)
    assert _ran(_run(other, "dvc", "repro")) == set(STAGES)
    again = _outputs(other)
    for name in REPRODUCED:
        assert again["files"][name] == first_repro["files"][name], name
    assert again["weights"].keys() == first_repro["weights"].keys()
    assert all(torch.equal(again["weights"][k], v) for k, v in first_repro["weights"].items())
    assert again["digests"] == first_repro["digests"]


def test_touching_code_shows_exactly_the_stages_that_run_it(project, first_repro):
    optim = project / "src/folio/optim.py"
    original = optim.read_text()
    try:
        optim.write_text(original + "# a change DVC must see\n")
        status = _run(project, "dvc", "status")
        changed = {line.strip().rstrip(":") for line in status.splitlines()
                   if line and not line.startswith((" ", "\t"))}
        assert changed == {"train"}, status  # the training loop's schedule lives there; nothing else runs it
        assert "src/folio/optim.py" in status
    finally:
        optim.write_text(original)
    assert "up to date" in _run(project, "dvc", "status")


def test_one_param_reruns_exactly_its_stages(project, first_repro):
    _set_params(project, {"sample": {"temperature": 0.5}})
    assert _ran(_run(project, "dvc", "repro")) == {"sample", "register"}
    _set_params(project, {"evaluate": {"batch_size": 16}})
    assert _ran(_run(project, "dvc", "repro")) == {"evaluate", "register"}
    _git(project, "commit", "-qam", "params")


def test_dvc_exp_run_with_a_param(project, first_repro):
    before = _run_id(project)
    output = _run(project, "dvc", "exp", "run", "-n", "longer", "-S", "train.max_iters=40",
                  "-S", "train.compile=false")
    assert _ran(output) == {"train", "evaluate", "sample", "register"}
    run = _client(project).get_run(_run_id(project))
    assert run.info.run_id != before
    assert run.data.params["train.max_iters"] == "40" and run.data.tags["dvc.exp_name"] == "longer"
    assert run.data.params["train.compile"] == "False"  # a YAML boolean, as -S wrote it
    registered = json.loads((project / "reports/registered_model.json").read_text())
    version = _client(project).get_model_version(registered["name"], str(registered["version"]))
    assert version.run_id == run.info.run_id and version.tags["dvc.exp_name"] == "longer"


def _new_run_checkpoint_step(project: Path, previous_run: str) -> int:
    """Step of models/last.pt once it belongs to a run other than `previous_run`, else -1."""
    from folio import checkpoint

    info_path, last = project / "models/run.json", project / "models/last.pt"
    if not (info_path.exists() and last.exists()):
        return -1
    info = json.loads(info_path.read_text())
    state = checkpoint.load(last)
    if info["run_id"] == previous_run or state["meta"]["fingerprint"] != info["fingerprint"]:
        return -1
    return state["step"]


def test_killed_training_resumes_on_the_next_repro(project, first_repro):
    _set_params(project, {"train": {"max_iters": 400, "eval_interval": 20}})
    previous_run = _run_id(project)
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if _new_run_checkpoint_step(project, previous_run) >= 40:
                break
            assert proc.poll() is None, "training finished before it could be killed"
            time.sleep(0.5)
        run_before = _run_id(project)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    output = _run(project, "dvc", "repro")
    assert "resuming from step" in output, output
    assert _run_id(project) == run_before
    run = _client(project).get_run(run_before)
    assert run.info.status == "FINISHED"
    assert max(m.step for m in _client(project).get_metric_history(run_before, "train_loss")) == 400
