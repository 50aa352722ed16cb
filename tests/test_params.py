"""The params schema: the real params.yaml validates; errors name key and value, all at once;
--set overrides parse as YAML; flattened keys are what DVC and MLflow see."""

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
