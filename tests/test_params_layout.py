"""params.yaml survives `dvc exp run -S`: DVC rewrites the file with ruamel.yaml's round-trip
writer (`dvc.utils.hydra.apply_overrides`, what `exp run -S` calls before it runs anything), and
params.yaml is laid out the way that writer writes it, so setting a key changes that key's line and
nothing else — comments, quotes, nulls and the long URL included.
tests/test_failed_stage_keeps_reports.py runs the real `dvc exp run -S` on it."""

import re

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from dvc.utils.serialize import modify_yaml

from pipeline import params
from tests.conftest import PROJECT

ORIGINAL = (PROJECT / "params.yaml").read_text(encoding="utf-8")
FLAT = params.load(PROJECT / "params.yaml").flat()
SCALAR_KEYS = sorted(k for k, v in FLAT.items() if not isinstance(v, list))
COMMENT = re.compile(r"(?:^\s*|\s)(#.*)$")


def _other_value(value) -> str:
    """A value unlike `value`, as `dvc exp run -S key=<this>` is typed."""
    if isinstance(value, bool):
        return str(not value).lower()
    if isinstance(value, (int, float)):
        return repr(value + 7)
    if value is None:
        return "7"
    return "x" if value else "other"


def _set(tmp_path, *assignments: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    apply_overrides(path, list(assignments))
    return path.read_text(encoding="utf-8")


def _value(text: str, key: str):
    """The value of dotted `key` (`evaluate.harness.limit`) in YAML `text`."""
    tree = yaml.safe_load(text)
    for part in key.split("."):
        tree = tree[part]
    return tree


def _comments(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := COMMENT.search(line))]


def test_dvcs_writer_leaves_params_yaml_as_it_is(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    with modify_yaml(path):
        pass
    assert path.read_text(encoding="utf-8") == ORIGINAL


def test_every_scalar_key_is_checked():
    assert len(SCALAR_KEYS) > 60 and {"data.url", "train.max_iters", "train.max_seconds",
                                      "registry.model_name", "sample.attention_prompt"} <= set(SCALAR_KEYS)


@pytest.mark.parametrize("key", SCALAR_KEYS)
def test_setting_a_key_changes_its_line_only(tmp_path, key):
    value = _other_value(FLAT[key])
    after = _set(tmp_path, f"{key}={value}").splitlines()
    before = ORIGINAL.splitlines()
    assert len(after) == len(before), "\n".join(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(changed) == 1, [(before[i], after[i]) for i in changed]
    (i,) = changed
    leaf = key.rsplit(".", 1)[1]
    block = before[i - 1].lstrip().startswith(f"{leaf}: |-")  # the value is the line under its key
    assert block or after[i].lstrip().startswith(f"{leaf}:"), after[i]
    assert _comments(after[i]) == _comments(before[i])
    assert _value("\n".join(after), key) == yaml.safe_load(value)


def test_a_long_value_stays_one_line(tmp_path):
    """The default URL is a `|-` block: DVC's writer would move a plain value that long onto a line
    of its own, after `url: ` (a trailing blank). The block keeps a new value set by -S, too."""
    url = "https://example.org/corpora/a-corpus-whose-address-runs-well-past-eighty-columns/input.txt"
    after = _set(tmp_path, f"data.url={url}")
    assert yaml.safe_load(after)["data"]["url"] == url
    changed = [(a, b) for a, b in zip(ORIGINAL.splitlines(), after.splitlines()) if a != b]
    assert changed == [(f"    {FLAT['data.url']}", f"    {url}")]
    assert not [line for line in ORIGINAL.splitlines() if line.endswith(" ")]


def test_setting_a_list_changes_its_items_only(tmp_path):
    after = _set(tmp_path, "sample.prompts=[JULIET:,HAMLET:]").splitlines()
    changed = [(a, b) for a, b in zip(ORIGINAL.splitlines(), after) if a != b]
    assert changed == [("  - 'ROMEO:'", "  - 'JULIET:'"), ('  - "\\n"', "  - 'HAMLET:'")]


def test_every_comment_survives_setting_every_key(tmp_path):
    comments = _comments(ORIGINAL)
    assert len(comments) > 50
    after = _set(tmp_path, *(f"{key}={_other_value(FLAT[key])}" for key in SCALAR_KEYS))
    assert all(_value(after, k) == yaml.safe_load(_other_value(FLAT[k])) for k in SCALAR_KEYS)
    assert _comments(after) == comments
    assert after.count("\n\n") == ORIGINAL.count("\n\n")  # the blank lines between sections
