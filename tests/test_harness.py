"""lm-evaluation-harness over folio models (pipeline/harness.py, `folio harness`), with the real
lm-eval (the eval extra) and no network: a 20-item multiple-choice task in HellaSwag's format
(context + 4 endings, hellaswag's own process_docs, a task YAML with `dataset_path: json` and
`data_files`) built here scores the same acc and acc_norm through folio's adapter as through
lm-eval's own Hugging Face backend (`hf`) pointed at the `folio export-hf` directory of the same
tiny random GPT-2-shaped model (bpe tokenizer); the log-likelihoods of every request agree to 1e-4,
and so do rolling log-likelihoods of texts longer than the context and greedy generate_until
outputs. The command prints the table and logs metrics + results.json to the model's MLflow run;
an unknown task, a task whose data is not cached, and --log without a run are one line each."""

from __future__ import annotations

import json
import random
import textwrap

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.commands import hf
from tests import tiny_exports

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is the eval extra (pip install -e .[eval])")
pytest.importorskip("transformers", reason="transformers is a dev dependency (pip install -e .[dev])")

from lm_eval.api.instance import Instance  # noqa: E402

TASK = "folio_hellaswag_mini"
N_ITEMS = 20
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf-datasets"))


def _items(n: int) -> list[dict]:
    """HellaSwag-shaped rows (activity_label, ctx_a, ctx_b, endings, label) from the words of the
    tiny corpus, with HellaSwag's WikiHow artifacts (" [title]", brackets) for process_docs."""
    words = tiny_exports.TEXT.split()
    rng = random.Random(7)
    phrase = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
    return [{"ind": i, "activity_label": phrase(2).capitalize(), "ctx_a": phrase(8) + " [title] " + phrase(3),
             "ctx_b": phrase(4), "endings": [phrase(rng.randint(3, 9)) + (" [step]" if j == 1 else "")
                                             for j in range(4)],
             "label": str(rng.randrange(4)), "split": "val"} for i in range(n)]


def _write_task(directory, name: str, dataset: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "utils.py").write_text("from lm_eval.tasks.hellaswag.utils import process_docs  # noqa: F401\n")
    (directory / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        task: {name}
        dataset_path: {dataset}
        output_type: multiple_choice
        training_split: null
        validation_split: validation
        test_split: null
        process_docs: !function utils.process_docs
        doc_to_text: "{{{{query}}}}"
        doc_to_target: "{{{{label}}}}"
        doc_to_choice: "choices"
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
          - metric: acc_norm
            aggregation: mean
            higher_is_better: true
        metadata:
          version: 1.0
        """))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny bpe model (checkpoint + tokenizer), its export-hf directory, and a folder holding the
    local HellaSwag-format task."""
    root = tmp_path_factory.mktemp("harness")
    path, tokenizer_dir, model, tokenizer = tiny_exports.save_model(root / "model", "bpe", seed=3)
    exported = hf.export_hf(root / "hf", path, tokenizer_dir)
    data = root / "mini.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in _items(N_ITEMS)))
    tasks = root / "tasks"
    _write_task(tasks, TASK, "json")
    with open(tasks / f"{TASK}.yaml", "a") as f:
        f.write(f"dataset_kwargs:\n  data_files:\n    validation: {data}\n")
    return {"checkpoint": path, "tokenizer": tokenizer_dir, "hf": exported, "tasks": tasks, "root": root}


@pytest.fixture(scope="module")
def lms(setup):
    from lm_eval.models.huggingface import HFLM

    from pipeline.harness import FolioLM

    folio = FolioLM(model=str(setup["checkpoint"]), tokenizer=str(setup["tokenizer"]), batch_size=4, device="cpu")
    reference = HFLM(pretrained=str(setup["hf"]), batch_size=1, device="cpu")
    return folio, reference


def _requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_multiple_choice_scores_equal_lm_evals_hugging_face_backend(setup, lms):
    from pipeline.harness import evaluate

    folio, reference = lms
    ours = evaluate(folio, [TASK], setup["tasks"])
    theirs = evaluate(reference, [TASK], setup["tasks"])
    assert ours["n-samples"][TASK]["effective"] == theirs["n-samples"][TASK]["effective"] == N_ITEMS
    for metric in ("acc,none", "acc_norm,none"):
        print(f"{metric}: folio {ours['results'][TASK][metric]!r}, hf {theirs['results'][TASK][metric]!r}")
        assert abs(ours["results"][TASK][metric] - theirs["results"][TASK][metric]) < 1e-4, metric
    assert ours["higher_is_better"][TASK] == {"acc": True, "acc_norm": True}


def test_every_request_scores_as_the_hugging_face_backend(lms):
    """Log-likelihoods (with an empty context too), rolling log-likelihoods of texts longer than
    the 64-token context, and greedy generation up to a stop string."""
    folio, reference = lms
    pairs = [("First Citizen:", " Speak, speak."), ("Café crème,", " naïve façade"), ("", "All:\nSpeak"),
             ("You are all resolved ", "rather to die")]
    for (a, a_greedy), (b, b_greedy) in zip(folio.loglikelihood(_requests("loglikelihood", pairs)),
                                            reference.loglikelihood(_requests("loglikelihood", pairs))):
        assert abs(a - b) < 1e-4 and a_greedy == b_greedy
    texts = [(tiny_exports.TEXT[:700],), ("Resolved. resolved.",)]
    ours = folio.loglikelihood_rolling(_requests("loglikelihood_rolling", texts))
    theirs = reference.loglikelihood_rolling(_requests("loglikelihood_rolling", texts))
    assert len(folio.tok_encode(texts[0][0])) > 2 * folio.max_length
    assert ours == pytest.approx(theirs, abs=1e-3) and all(isinstance(x, float) for x in ours)
    asks = [("First Citizen:\n", {"until": ["\n\n"], "max_gen_toks": 10, "do_sample": False}),
            ("It's we'll", {"until": ["."], "max_gen_toks": 8})]
    assert folio.generate_until(_requests("generate_until", asks)) == reference.generate_until(
        _requests("generate_until", asks))


def test_command_prints_the_table_and_logs_to_the_models_run(setup, tmp_path, monkeypatch):
    import mlflow

    from folio import checkpoint
    from folio.fileio import write_json

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from pipeline.tracking import store

    store.setup()
    run_id = mlflow.MlflowClient().create_run(mlflow.get_experiment_by_name(store.EXPERIMENT).experiment_id).info.run_id
    (tmp_path / "models").mkdir()
    state = checkpoint.load(setup["checkpoint"])
    checkpoint.save(tmp_path / "models" / "best.pt", {**state, "meta": {"fingerprint": "f1"}})
    write_json(tmp_path / "models" / "run.json", {"run_id": run_id, "fingerprint": "f1"})
    result = CliRunner().invoke(app, ["harness", "--tasks", TASK, "--include-path", str(setup["tasks"]),
                                      "--tokenizer", str(setup["tokenizer"]), "--limit", "5", "--log",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert TASK in result.output and "acc_norm" in result.output  # lm-eval's table
    logged = mlflow.MlflowClient().get_run(run_id).data.metrics
    assert set(logged) == {f"harness.{TASK}.{m}" for m in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")}
    artifact = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="harness/results.json",
                                                   dst_path=str(tmp_path / "dl"))
    saved = json.loads(open(artifact).read())
    assert saved["results"][TASK]["acc,none"] == logged[f"harness.{TASK}.acc"]
    assert saved["n-samples"][TASK]["effective"] == 5

    # the same weights registered: models:/name@alias brings its own tokenizer and logs to its run
    from pipeline.commands.harness import show
    from pipeline.params import SampleParams
    from pipeline.tracking import registry

    model = registry.log_model(run_id, tmp_path / "models" / "best.pt", setup["tokenizer"], SampleParams())
    registry.register(model.model_uri, "folio-harness", {})
    registry.promote("folio-harness", 1, "champion", "bits_per_byte", force=True)
    results = show("models:/folio-harness@champion", [TASK], tmp_path / "no-tokenizer-needed",
                   setup["tasks"], limit=5, device="cpu", log=True)
    assert results["results"][TASK] == saved["results"][TASK]
    assert len(mlflow.MlflowClient().get_metric_history(run_id, f"harness.{TASK}.acc")) == 2


def test_user_errors_are_one_line(setup, tmp_path):
    _write_task(tmp_path / "hub", "needs_the_hub", "Rowan/hellaswag")  # not cached, offline
    runner = CliRunner()
    base = ["harness", "-m", str(setup["checkpoint"]), "--tokenizer", str(setup["tokenizer"]), "--device", "cpu"]
    cases = {
        "not an lm-eval task": base + ["--tasks", "no_such_task", "--include-path", str(setup["tasks"])],
        "'needs_the_hub': its data is not available offline": base + ["--tasks", "needs_the_hub",
                                                                      "--include-path", str(tmp_path / "hub")],
        "has no MLflow run to log to": base + ["--tasks", TASK, "--include-path", str(setup["tasks"]), "--log"],
        "is not a device": base + ["--tasks", TASK, "--device", "gpu0"],
        "holds no tokenizer": ["harness", "-m", str(setup["checkpoint"]), "--tokenizer", str(tmp_path),
                               "--tasks", TASK, "--include-path", str(setup["tasks"])],
    }
    for expected, args in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (expected, result.output)
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output, result.output


def _trained_and_evaluated(setup, extra: dict | None = None):
    """The stages tokenize to evaluate, in-process in `stage_project`, on tiny params with the
    harness task in evaluate.harness (and `extra`); the params."""
    from pipeline.params import validate
    from pipeline.stages import evaluate, train
    from tests.conftest import tokenized_and_prepared

    params = validate({
        "data": {"name": "t", "url": "file:///unused", "sha256": "0" * 64, "val_fraction": 0.1},
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 64},
        "train": {"max_iters": 2, "batch_size": 4, "eval_interval": 2, "eval_iters": 1, "warmup_iters": 1,
                  "device": "cpu"},
        "evaluate": {"batch_size": 8, "harness": {"tasks": [TASK], "include_path": str(setup["tasks"]), "limit": 4}},
        **(extra or {}),
    })
    tokenized_and_prepared(params)
    train.main(params)
    evaluate.main(params)
    return params


def test_the_evaluate_stage_scores_the_harness_tasks_in_params(stage_project, setup):
    """evaluate.harness.tasks: the stage adds lm-eval's scores to metrics.json and the run."""
    import mlflow

    from pipeline import artifacts
    from pipeline.artifacts import models

    _trained_and_evaluated(setup)
    scores = json.loads(artifacts.METRICS.read_text())["harness"][TASK]
    digest = scores.pop("text_digest")  # lm-eval's hash of the task's documents, as its tracker writes it
    assert set(scores) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    assert all(0 <= v <= 1 for v in scores.values())
    assert len(digest) == 64 and int(digest, 16) >= 0
    run = mlflow.MlflowClient().get_run(models.training_run_id()).data
    assert run.metrics[f"harness.{TASK}.acc_norm"] == scores["acc_norm"]
    assert run.tags[f"harness.{TASK}.digest"] == digest


def test_lm_eval_builds_the_folio_model_type_by_name(setup, lms):
    """`simple_evaluate(model="folio", model_args=...)` path: the registry's class, built from
    model args with lm-eval's batch_size/max_batch_size/device (None when not given)."""
    from lm_eval.api.registry import get_model

    made = get_model("folio").create_from_arg_obj(
        {"model": str(setup["checkpoint"]), "tokenizer": str(setup["tokenizer"])},
        {"batch_size": None, "max_batch_size": None, "device": None})
    pairs = _requests("loglikelihood", [("First Citizen:", " Speak")])
    assert made.batch_size == 8 and made.loglikelihood(pairs) == lms[0].loglikelihood(pairs)


def test_promote_on_a_harness_metric_scores_the_holder_on_the_same_documents(stage_project, setup):
    """registry.metric: harness:<task>.acc_norm. The holder, registered with no harness score, is
    scored by the real lm-eval on the challenger's task at promote time; its task hash is the
    challenger's (the same documents), and the same weights score the very same acc_norm — so the
    challenger does not beat it (a tie keeps the alias)."""
    import mlflow

    from pipeline import artifacts, measures
    from pipeline.artifacts import models
    from pipeline.commands.promote import rescorer
    from pipeline.params import SampleParams
    from pipeline.tracking import registry

    params = _trained_and_evaluated(setup, {"registry": {"metric": f"harness:{TASK}.acc_norm"}})
    metrics = json.loads(artifacts.METRICS.read_text())
    name = "folio-harness-gate"
    with mlflow.start_run(run_name="scored-before-the-task") as earlier:  # its run holds no harness score
        pass
    for run_id, tags in ((earlier.info.run_id, {}), (models.training_run_id(), measures.version_tags(metrics))):
        logged = registry.log_model(run_id, artifacts.BEST_CKPT, artifacts.TOKENIZER_DIR, SampleParams())
        registry.register(logged.model_uri, name, tags)  # version 1 never scored on the task, version 2 scored
    registry.promote(name, 1, "champion", params.registry.measure(), force=True)
    digest = metrics["harness"][TASK]["text_digest"]
    with pytest.raises(registry.RegistryError, match=rf"version 2 does not beat version 1 \(@champion\) on "
                       rf"harness:{TASK}.acc_norm \(higher is better\) over text {digest}.*version 1 rescored on it"):
        registry.promote(name, 2, "champion", params.registry.measure(),
                         rescore=rescorer(params, name, "champion"))
    holder = mlflow.MlflowClient().get_model_version(name, "1").tags
    assert float(holder[f"rescored.harness.{TASK}.acc_norm.{digest}"]) == metrics["harness"][TASK]["acc_norm"]
