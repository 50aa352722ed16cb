"""The params schema: the real params.yaml validates; errors name key and value, all at once, an
unknown key with the keys it likely meant and a wrong type with the type the key takes, through
--set, a params file and the CLI; --set overrides parse as YAML; flattened keys are what DVC and
MLflow see."""

import re

import pytest
import yaml
from typer.testing import CliRunner

from pipeline import params
from pipeline.cli import app
from tests.conftest import PROJECT


def _tree():
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


def test_project_params_are_valid():
    p = params.load(PROJECT / "params.yaml")
    assert p.data.name == "tinyshakespeare" and p.tokenizer.kind == "char"


def test_all_errors_are_reported_with_key_and_value():
    tree = _tree()
    tree["train"]["learning_rate"] = -1
    tree["model"]["n_layer"] = "four"
    with pytest.raises(params.ParamsError) as err:
        params.validate(tree)
    message = str(err.value)
    assert "train.learning_rate" in message and "-1" in message
    assert "model.n_layer" in message and "'four'" in message


def test_unknown_keys_are_refused():
    tree = _tree()
    tree["train"]["max_iter"] = 5  # typo of max_iters
    with pytest.raises(params.ParamsError, match="train.max_iter"):
        params.validate(tree)


def test_heads_must_divide_width():
    tree = _tree()
    tree["model"]["n_head"] = 5
    with pytest.raises(params.ParamsError, match="not divisible"):
        params.validate(tree)


def test_overrides_parse_as_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT / "params.yaml").read_text())
    p = params.load(path, ["train.max_iters=7", "train.device=cpu", "sample.prompts=[a, b]"])
    assert p.train.max_iters == 7 and p.train.device == "cpu" and p.sample.prompts == ["a", "b"]


def test_malformed_override_is_named():
    with pytest.raises(params.ParamsError, match="key.path=value"):
        params.apply_override({}, "train.max_iters")


def test_flat_keys_match_dvc_exp_run_names():
    flat = params.load(PROJECT / "params.yaml").flat()
    assert flat["model.n_layer"] == _tree()["model"]["n_layer"]
    assert "validate.min_bytes" in flat


def test_an_empty_sha256_is_allowed_and_a_malformed_one_is_named():
    tree = _tree()
    tree["data"]["sha256"] = ""
    assert params.validate(tree).data.sha256 == ""
    tree["data"]["sha256"] = "abc"
    with pytest.raises(params.ParamsError, match=r"data.sha256: .*\(value 'abc'\)"):
        params.validate(tree)


@pytest.mark.parametrize("url", ["https://example.org/c.txt", "file:///srv/c.txt", "corpora/c.txt", "/srv/c.txt"])
def test_corpus_urls_are_http_file_or_paths(url):
    tree = _tree()
    tree["data"]["url"] = url
    assert params.validate(tree).data.url == url
    tree["data"]["url"] = "s3://bucket/c.txt"
    with pytest.raises(params.ParamsError, match="data.url: .*unsupported scheme 's3'"):
        params.validate(tree)


def test_gate_thresholds_are_named_by_their_own_section():
    tree = _tree()
    tree["validate_tokens"]["val_fraction_tolerance"] = 2
    tree["validate"]["min_lines"] = -1
    with pytest.raises(params.ParamsError) as err:
        params.validate(tree)
    assert "validate_tokens.val_fraction_tolerance" in str(err.value)
    assert "validate.min_lines" in str(err.value)


def test_params_yaml_states_every_default_and_nothing_else():
    """One place for each default: the schema (model.* and train.* from the library's configs);
    params.yaml lists every key with exactly that value, so DVC sees each one — but the keys that
    belong to its corpus (params.CORPUS_KEYS)."""
    from folio.config import GPTConfig, TrainConfig

    flat = params.load(PROJECT / "params.yaml").flat()
    defaults = params.Params.model_validate({"data": _tree()["data"]}).flat()
    assert set(flat) == set(defaults)
    assert {k: v for k, v in flat.items() if k not in params.CORPUS_KEYS} == \
           {k: v for k, v in defaults.items() if k not in params.CORPUS_KEYS}
    tree = _tree()
    gpt, train = GPTConfig(vocab_size=2), TrainConfig()
    for key, value in tree["model"].items():
        assert getattr(gpt, key) == value, key
    for key, value in tree["train"].items():
        if hasattr(train, key):
            assert getattr(train, key) == (None if value == "auto" and key == "compile" else value), key


@pytest.mark.parametrize("given, expected", [(True, True), (False, False), ("true", True), ("False", False),
                                             ("auto", "auto"), ("AUTO", "auto")])
def test_compile_takes_yaml_booleans_and_strings(tmp_path, given, expected):
    tree = _tree()
    tree["train"]["compile"] = given
    assert params.validate(tree).train.compile == expected
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT / "params.yaml").read_text())
    text = str(given).lower() if isinstance(given, bool) else given
    assert params.load(path, [f"train.compile={text}"]).train.compile == expected  # as --set / dvc exp run -S write it
    config = params.train_config(params.validate(tree))
    assert config.compile == (None if expected == "auto" else expected)


def test_compile_refuses_other_values():
    tree = _tree()
    tree["train"]["compile"] = "sometimes"
    with pytest.raises(params.ParamsError, match="train.compile"):
        params.validate(tree)


def test_min_lr_cannot_exceed_learning_rate():
    tree = _tree()
    tree["train"]["min_lr"] = 0.01
    with pytest.raises(params.ParamsError, match=r"train.min_lr=0.01 exceeds train.learning_rate=0.002"):
        params.validate(tree)


def test_errors_are_one_line_naming_what_to_do():
    tree = _tree()
    tree["train"]["batch_size"] = 0
    with pytest.raises(params.ParamsError) as err:
        params.validate(tree)
    assert "\n" not in str(err.value) and str(err.value).endswith("fix it in the params file or the --set override")
    tree["train"]["warmup_iters"] = -1
    with pytest.raises(params.ParamsError) as err:
        params.validate(tree)
    assert "\n" not in str(err.value) and str(err.value).endswith("fix them in the params file or the --set overrides")


def test_a_params_file_that_is_not_yaml_is_one_line_naming_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  batch_size: [\n")
    with pytest.raises(params.ParamsError, match=rf"^{re.escape(str(path))} is not valid YAML at line 3 "):
        params.load(path)


@pytest.mark.parametrize("typo, meant", [
    ("train.max_iter", "train.max_iters"), ("model.n_layers", "model.n_layer"),
    ("train.learningrate", "train.learning_rate"), ("train.evals_iters", "train.eval_iters"),
    ("sample.prompt", "sample.prompts"), ("train.dropout", "model.dropout"),  # another section's key
    ("trian", "train"), ("validate_token", "validate_tokens"),  # a section
])
def test_an_unknown_key_names_the_key_it_likely_meant(tmp_path, typo, meant):
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT / "params.yaml").read_text())
    what = "section" if "." not in typo else "key"
    expected = f"invalid params: {typo} is not a params {what} (did you mean {meant}?); fix it in "
    value = "{x: 1}" if what == "section" else "1"
    with pytest.raises(params.ParamsError) as err:  # a --set override
        params.load(path, [f"{typo}={value}"])
    assert str(err.value).startswith(expected), str(err.value)
    tree = params.read_tree(path)
    params.apply_override(tree, f"{typo}={value}")
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(params.ParamsError) as err:  # in the params file, as `dvc exp run -S +key=...` writes it
        params.load(path)
    assert str(err.value).startswith(expected), str(err.value)


def test_an_unknown_key_names_at_most_three_likely_keys_and_otherwise_where_they_are():
    assert params.closest_keys("train.batchsize") == ["train.batch_size", "evaluate.batch_size"]
    assert params.closest_keys("model.n_heads")[0] == "model.n_head"
    assert len(params.closest_keys("train.e")) <= 3
    tree = _tree()
    tree["train"]["zzz"] = 1
    with pytest.raises(params.ParamsError, match=r"train.zzz is not a params key \(params.yaml lists every key\)"):
        params.validate(tree)


def test_closest_keys_come_from_the_schema():
    keys = params.schema_keys()
    assert set(params.Params.model_validate({"data": _tree()["data"]}).flat()) <= set(keys)
    assert {"train", "validate", "validate_tokens"} <= set(keys) and "validate_" not in keys
    assert params.closest_keys("validate.min_line") == ["validate.min_lines"]


def test_a_preset_with_a_typo_names_the_key_it_meant(tmp_path):
    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    preset = tmp_path / "preset.yaml"
    preset.write_text("extends: params.yaml\nmodel:\n  n_embed: 64\n")
    with pytest.raises(params.ParamsError, match=r"model.n_embed is not a params key \(did you mean model.n_embd\?\)"):
        params.load(preset)


@pytest.mark.parametrize("assignment, expected", [
    ("train.max_iters=abc", "train.max_iters: expected an integer, got 'abc'"),
    ("train.max_iters=1.5", "train.max_iters: expected an integer, got 1.5"),
    ("train.max_seconds=soon", "train.max_seconds: expected a number or null, got 'soon'"),
    ("train.compile=maybe", "train.compile: expected auto, true or false, got 'maybe'"),
    ("model.bias=often", "model.bias: expected true or false, got 'often'"),
    ("data.format=csv", "data.format: expected auto, txt, jsonl or parquet, got 'csv'"),
    ("sample.prompts=3", "sample.prompts: expected a list of strings, got 3"),
    ("sample.prompts=[a, 1]", "sample.prompts[1]: expected a string, got 1"),
    ("sample.top_k=[1]", "sample.top_k: expected an integer or null, got [1]"),
    ("model=3", "model: expected a section of keys, got 3"),
])
def test_a_value_of_the_wrong_type_names_the_key_and_the_type_it_takes(tmp_path, assignment, expected):
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT / "params.yaml").read_text())
    with pytest.raises(params.ParamsError) as err:
        params.load(path, [assignment])
    assert str(err.value) == f"invalid params: {expected}; fix it in the params file or the --set override"


def test_the_cli_prints_the_likely_key_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    result = CliRunner().invoke(app, ["train", "--params", str(tmp_path / "params.yaml"),
                                      "--set", "train.max_iter=100", "--set", "model.n_layer=two"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == (
        "error: train: invalid params: model.n_layer: expected an integer, got 'two'; train.max_iter is not "
        "a params key (did you mean train.max_iters?); fix them in the params file or the --set overrides")
