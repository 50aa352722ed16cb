"""folio's tokenizers as Hugging Face tokenizer files (folio.hf_tokenizer, `folio export-hf`): for
each kind — char, bpe, word and tiktoken:<name> (a stand-in encoding with GPT-2's split pattern:
the real files are offline) — trained here on a small text, the Hugging Face tokenizer gives
folio's ids on a varied text (accents, CJK, emoji, digits, tabs, CRLF, contractions, runs of
spaces) and decodes them to folio's text; and an exported tiny random GPT-2-shaped model with its
tokenizer loads in a subprocess that cannot import folio (a clean environment, transformers only)
through AutoTokenizer, AutoModelForCausalLM and pipeline("text-generation"), whose greedy
continuation is folio's, token for token. Export refusals are one line each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from folio.generate import GenerationConfig, complete
from folio.hf_tokenizer import hf_tokenizer
from folio.tokenizers import END_OF_TEXT, end_of_text_id
from pipeline.cli import app
from pipeline.commands import hf
from tests import tiny_exports

pytest.importorskip("transformers", reason="transformers is a dev dependency (pip install -e .[dev])")

VARIED = ("Hello, World! It's 2026: ça va? Ünïcödé naïve café — 日本語のテキスト 😀😀 x²+y³=42\t\ttab\n\n"
          "  leading   spaces and\r\nCRLF don't WE'LL they've 1234567 3.14159 ~~~ <tag a='1'> ∑αβγ e\u0301 ")
PROMPTS = ["First Citizen:\n", "Speak, speak", "we'll"]
NEW_TOKENS = 12

# Runs with no folio on sys.path and folio's modules blocked: only transformers loads the export.
CLEAN_SCRIPT = r"""
import json, sys
sys.modules["folio"] = sys.modules["pipeline"] = None  # importing either now fails
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
out = {}
for kind, directory in json.loads(sys.argv[1]).items():
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    generate = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
    rows = []
    for prompt in json.loads(sys.argv[2]):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        greedy = model.generate(ids, do_sample=False, max_new_tokens=int(sys.argv[3]))[0, ids.shape[1]:]
        text = generate(prompt, do_sample=False, max_new_tokens=int(sys.argv[3]),
                        return_full_text=False)[0]["generated_text"]
        rows.append({"prompt_ids": ids[0].tolist(), "ids": greedy.tolist(), "text": text})
    out[kind] = {"class": type(tokenizer).__name__, "rows": rows,
                 "folio_loaded": any(m.split(".")[0] in ("folio", "pipeline") and sys.modules[m] is not None
                                     for m in sys.modules)}
print(json.dumps(out))
"""


def _stand_in_cache(monkeypatch, tokenizer) -> None:
    """tiktoken's cache, for the stand-in encoding: export loads `tiktoken:<name>` through
    folio.tokenizers.train_tokenizer."""
    import folio.tokenizers

    real = folio.tokenizers.train_tokenizer
    monkeypatch.setattr(folio.tokenizers, "train_tokenizer",
                        lambda kind, *args: tokenizer if kind == tokenizer.kind else real(kind, *args))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """kind -> (export dir, model, tokenizer), every kind exported by `folio export-hf`'s code."""
    root = tmp_path_factory.mktemp("exports")
    found = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for kind in tiny_exports.KINDS:
            path, tokenizer_dir, model, tokenizer = tiny_exports.save_model(root / kind, kind)
            if kind == "tiktoken":
                _stand_in_cache(monkeypatch, tokenizer)
            found[kind] = (hf.export_hf(root / kind / "hf", path, tokenizer_dir), model, tokenizer)
    return found


@pytest.fixture(scope="module")
def clean_run(exports, tmp_path_factory):
    """The clean subprocess's greedy continuations for every kind (one process: transformers
    imports once)."""
    home = tmp_path_factory.mktemp("home")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "HF_HOME": str(home / "hf"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    dirs = {kind: str(directory) for kind, (directory, _, _) in exports.items()}
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_SCRIPT, json.dumps(dirs), json.dumps(PROMPTS),
                           str(NEW_TOKENS)], env=env, cwd=home, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _varied_for(tokenizer) -> str:
    """VARIED as far as a char vocabulary can encode it (folio refuses an unknown character)."""
    if tokenizer.kind == "char":
        return "".join(c for c in VARIED if c in tokenizer.stoi)
    return VARIED


@pytest.mark.parametrize("kind", tiny_exports.KINDS)
def test_hugging_face_ids_are_folios(kind):
    tokenizer = tiny_exports.tokenizer_of(kind)
    text = _varied_for(tokenizer)
    ids = tokenizer.encode(text)
    converted = hf_tokenizer(tokenizer)
    assert converted.encode(text).ids == ids
    assert converted.decode(ids, skip_special_tokens=False) == tokenizer.decode(ids)
    if kind == "word":
        assert 0 in ids  # the text holds words the vocabulary lacks: <unk> both ways
    if kind in ("bpe", "tiktoken"):
        assert max(ids) > 255  # merges were used, not bytes alone
        assert converted.token_to_id(END_OF_TEXT) == end_of_text_id(tokenizer)


@pytest.mark.parametrize("kind", tiny_exports.KINDS)
def test_export_loads_without_folio_and_generates_folios_greedy_text(kind, exports, clean_run):
    directory, model, tokenizer = exports[kind]
    result = clean_run[kind]
    assert not result["folio_loaded"] and result["class"] in ("TokenizersBackend", "PreTrainedTokenizerFast")
    eot = end_of_text_id(tokenizer)
    for prompt, row in zip(PROMPTS, result["rows"]):
        assert row["prompt_ids"] == tokenizer.encode(prompt)
        (completion,) = complete(model, tokenizer, [prompt], GenerationConfig(max_new_tokens=NEW_TOKENS,
                                                                              temperature=0))
        ids = completion.token_ids
        if eot in ids:  # transformers stops at the end-of-text token (config.json's eos_token_id)
            ids = ids[: ids.index(eot) + 1]
        assert row["ids"] == ids
        assert row["text"] == tokenizer.decode([i for i in ids if i != eot])


def test_export_config_names_the_end_of_text_token(exports):
    for kind, (directory, _, tokenizer) in exports.items():
        config = json.loads((Path(directory) / "config.json").read_text())
        assert config["eos_token_id"] == end_of_text_id(tokenizer), kind
        assert (Path(directory) / "tokenizer.json").is_file() and (Path(directory) / "tokenizer_config.json").is_file()


def test_export_refuses_a_missing_or_foreign_tokenizer_in_one_line(tmp_path):
    path, tokenizer_dir, _, _ = tiny_exports.save_model(tmp_path / "char", "char")
    _, other_dir, _, _ = tiny_exports.save_model(tmp_path / "word", "word")
    runner = CliRunner()
    missing = runner.invoke(app, ["export-hf", str(tmp_path / "a"), "-c", str(path), "--tokenizer",
                                  str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "holds none; pass --tokenizer DIR" in missing.output
    foreign = runner.invoke(app, ["export-hf", str(tmp_path / "b"), "-c", str(path), "--tokenizer", str(other_dir)])
    assert foreign.exit_code == 1 and "is not the one" in foreign.output and "word" in foreign.output
    for result in (missing, foreign):
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before writing
    ok = runner.invoke(app, ["export-hf", str(tmp_path / "c"), "-c", str(path), "--tokenizer", str(tokenizer_dir)])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "c" / "tokenizer.json").is_file()
