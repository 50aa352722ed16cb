"""The params schema: the real params.yaml validates; errors name key and value, all at once;
--set overrides parse as YAML; flattened keys are what DVC and MLflow see."""

import re

import pytest
import yaml

from pipeline import params
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
    assert "\n" not in str(err.value) and str(err.value).endswith("fix them in the params file or the --set overrides")


def test_a_params_file_that_is_not_yaml_is_one_line_naming_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  batch_size: [\n")
    with pytest.raises(params.ParamsError, match=rf"^{re.escape(str(path))} is not valid YAML at line 3 "):
        params.load(path)
