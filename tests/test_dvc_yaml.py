"""dvc.yaml and the code agree: stage commands are folio commands, declared paths are the ones
pipeline/paths.py writes, and every declared param key exists in the schema."""

import yaml

from pipeline import params, paths
from pipeline.cli import STAGES
from tests.conftest import PROJECT

DVC = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((PROJECT / "params.yaml").read_text())


def _paths(entries):
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def _resolve(path):
    return path.replace("${data.name}", PARAMS["data"]["name"])


def test_stages_are_folio_commands_in_order():
    assert list(DVC) == list(STAGES)
    for name, stage in DVC.items():
        assert stage["cmd"] == f"folio {name}"
        assert f"pipeline/{name}.py" in stage["deps"]


def test_declared_outputs_are_the_paths_the_code_writes():
    outs = {name: {_resolve(p) for p in _paths(s.get("outs", []) + s.get("metrics", []) + s.get("plots", []))}
            for name, s in DVC.items()}
    name = PARAMS["data"]["name"]
    assert outs["download"] == {str(paths.raw_corpus(name)), str(paths.raw_record(name))}
    assert outs["validate"] == {str(paths.validation_dir("corpus"))}
    assert outs["tokenize"] == {str(paths.TOKENIZER_DIR)}
    assert outs["prepare"] == {str(paths.PREPARED_DIR)}
    assert outs["validate_tokens"] == {str(paths.validation_dir("tokens"))}
    assert outs["train"] == {str(paths.MODELS), str(paths.LOSS_PLOT), str(paths.TRAIN_STEPS),
                             str(paths.TRAIN_EVALS)}
    assert outs["evaluate"] == {str(paths.METRICS)}
    assert outs["sample"] == {str(paths.SAMPLES), str(paths.ATTENTION)}
    assert outs["register"] == {str(paths.MODEL_CARD), str(paths.REGISTERED_MODEL)}
    for out in (paths.LAST_CKPT, paths.BEST_CKPT, paths.RUN_INFO):
        assert out.parent == paths.MODELS
    for suite in ("corpus", "tokens"):
        assert paths.validation_report(suite).parent == paths.validation_dir(suite)


def test_each_gate_guards_the_stage_after_it():
    """tokenize needs the corpus report, train the token report: a failed gate stops DVC before them."""
    assert str(paths.validation_report("corpus")) in DVC["tokenize"]["deps"]
    assert str(paths.validation_report("tokens")) in DVC["train"]["deps"]
    assert str(paths.raw_record(PARAMS["data"]["name"])) in {_resolve(d) for d in DVC["train"]["deps"]}


def test_checkpoint_folder_persists_across_runs():
    (models,) = [o for o in DVC["train"]["outs"] if isinstance(o, dict) and "models" in o]
    assert models["models"]["persist"] is True


def test_declared_param_keys_exist_in_the_schema():
    flat = params.load(PROJECT / "params.yaml").flat()
    for name, stage in DVC.items():
        for key in stage.get("params", []):
            assert key in flat or any(k.startswith(key + ".") for k in flat), (name, key)


def test_plots_use_an_explicit_step_axis():
    for plot in DVC["train"]["plots"]:
        (options,) = plot.values()
        assert options["x"] == "step"
