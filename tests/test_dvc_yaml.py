"""dvc.yaml and the code agree: stage commands are folio commands, declared paths are the ones
pipeline/artifacts/ writes, every declared param key exists in the schema, and each stage's code
deps are exactly the project modules it executes — its import closure — so DVC reruns a stage
whenever code it runs changes, and only then."""

import yaml

from pipeline import artifacts, code_deps, params
from pipeline.stages import STAGES
from tests.conftest import PROJECT

DVC = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((PROJECT / "params.yaml").read_text())


def _paths(entries):
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def _resolve(path):
    return path.replace("${data.name}", PARAMS["data"]["name"])


def _resolve_deps(name: str) -> set[str]:
    return {_resolve(d) for d in DVC[name]["deps"]}


def _code_deps(stage: dict) -> set[str]:
    return {d for d in stage["deps"] if d.startswith(("pipeline/", "src/"))}


def test_stages_are_folio_commands_in_order():
    assert list(DVC) == list(STAGES)
    for name, stage in DVC.items():
        assert stage["cmd"] == f"folio {name}"
        assert f"pipeline/stages/{name}.py" in stage["deps"]


def test_each_stage_depends_on_exactly_the_code_it_executes():
    for name, stage in DVC.items():
        closure = set(code_deps.relative(code_deps.closure(code_deps.stage_module(name))))
        missing, extra = closure - _code_deps(stage), _code_deps(stage) - closure
        assert not missing and not extra, (
            f"dvc.yaml stage {name}: missing deps {sorted(missing)}, deps it never runs {sorted(extra)}; "
            f"`python -m pipeline.code_deps {name}` prints the right list")


def test_the_closure_follows_every_import():
    """Lazy imports inside functions count, package __init__ files count, and the library's
    modules are found under src/."""
    train = set(code_deps.relative(code_deps.closure("pipeline.stages.train")))
    assert {"src/folio/optim.py", "src/folio/data.py", "src/folio/device.py", "src/folio/checkpoint.py",
            "src/folio/distributed.py", "src/folio/hf_gpt2.py", "pipeline/tracking/registry.py",
            "pipeline/__init__.py", "src/folio/__init__.py"} <= train
    assert "pipeline/stages/evaluate.py" not in train  # stages never import each other
    download = set(code_deps.relative(code_deps.closure("pipeline.stages.download")))
    assert "src/folio/model.py" not in download and "src/folio/train.py" not in download


def test_stages_never_import_each_other():
    for name in STAGES:
        others = {f"pipeline/stages/{o}.py" for o in STAGES if o != name}
        closure = set(code_deps.relative(code_deps.closure(code_deps.stage_module(name))))
        assert not closure & others, (name, closure & others)


def test_declared_outputs_are_the_paths_the_code_writes():
    outs = {name: {_resolve(p) for p in _paths(s.get("outs", []) + s.get("metrics", []) + s.get("plots", []))}
            for name, s in DVC.items()}
    name = PARAMS["data"]["name"]
    assert outs["download"] == {str(artifacts.raw_dir(name)), str(artifacts.raw_record(name))}
    assert outs["validate"] == {str(artifacts.validation_dir("corpus"))}
    assert outs["tokenize"] == {str(artifacts.TOKENIZER_DIR)}
    assert outs["prepare"] == {str(artifacts.PREPARED_DIR)}
    assert outs["validate_tokens"] == {str(artifacts.validation_dir("tokens"))}
    assert outs["train"] == {str(artifacts.MODELS), str(artifacts.LOSS_PLOT), str(artifacts.TRAIN_STEPS),
                             str(artifacts.TRAIN_EVALS)}
    assert outs["evaluate"] == {str(artifacts.METRICS)}
    assert outs["sample"] == {str(artifacts.SAMPLES), str(artifacts.ATTENTION)}
    assert outs["register"] == {str(artifacts.MODEL_CARD), str(artifacts.REGISTERED_MODEL)}
    for out in (artifacts.LAST_CKPT, artifacts.BEST_CKPT, artifacts.RUN_INFO, artifacts.PREVIOUS_RUNS):
        assert out.parent == artifacts.MODELS
    for suite in ("corpus", "tokens"):
        assert artifacts.validation_report(suite).parent == artifacts.validation_dir(suite)


def test_data_deps_are_artifacts_of_earlier_stages():
    """Or the suites' folder, data/suites/, which the user fills (in git, or `dvc add`-ed)."""
    assert _resolve_deps("evaluate") >= {str(artifacts.SUITES_DIR), str(artifacts.raw_dir(PARAMS["data"]["name"]))}
    produced = {}
    for name, stage in DVC.items():
        for out in _paths(stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", [])):
            produced[_resolve(out)] = name
    order = list(DVC)
    for name, stage in DVC.items():
        for dep in set(stage["deps"]) - _code_deps(stage):
            dep = _resolve(dep)
            if dep == str(artifacts.SUITES_DIR):
                continue
            maker = next((m for out, m in produced.items() if dep == out or dep.startswith(out + "/")), None)
            assert maker is not None and order.index(maker) < order.index(name), (name, dep)


def test_each_gate_guards_the_stage_after_it():
    """tokenize needs the corpus report, train the token report: a failed gate stops DVC before them."""
    assert str(artifacts.validation_report("corpus")) in DVC["tokenize"]["deps"]
    assert str(artifacts.validation_report("tokens")) in DVC["train"]["deps"]
    assert str(artifacts.raw_record(PARAMS["data"]["name"])) in {_resolve(d) for d in DVC["train"]["deps"]}


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


def _inside(path: str, outs: set[str]) -> bool:
    """Is `path` an output, or a file inside an output folder (a fresh clone has neither)?"""
    return any(path == out or path.startswith(out.rstrip("/") + "/") for out in outs)


def test_the_committed_lock_names_the_deps_dvc_yaml_declares_and_they_exist():
    """dvc.lock is what the release step (docs/release.md) commits after `make repro`: it must
    name exactly the deps dvc.yaml declares now, and every dep that is not an earlier stage's
    output must exist — else `dvc status` on a fresh clone, and `dvc metrics diff`, speak of other
    code. A stale lock fails here: run `make repro` and commit dvc.lock with the reports it wrote."""
    lock = yaml.safe_load((PROJECT / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(DVC), "dvc.lock and dvc.yaml list other stages: run `make repro`"
    produced = {_resolve(out) for stage in DVC.values()
                for out in _paths(stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []))}
    for name, stage in lock.items():
        locked = {dep["path"] for dep in stage.get("deps", [])}
        declared = {_resolve(dep) for dep in DVC[name]["deps"]}
        assert locked == declared, (f"dvc.lock's {name} names deps dvc.yaml does not: {sorted(locked - declared)}, "
                                    f"and misses {sorted(declared - locked)}; run `make repro` and commit dvc.lock")
        missing = [dep for dep in locked if not _inside(dep, produced) and not (PROJECT / dep).exists()]
        assert not missing, f"dvc.lock's {name} names deps that do not exist: {missing}"
