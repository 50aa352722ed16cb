"""`folio generate` and `folio attention` on a tiny checkpoint: streamed text, --json (with
several samples, beams, stop strings, int8), settings and prompts refused with a one-line error,
the attention PNG, and benchmarks/bench_generate.py --options timing `folio generate` processes."""

import json

import pytest
import torch
from typer.testing import CliRunner

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer, save_tokenizer
from pipeline.cli import app

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    tok = CharTokenizer.train("abcdefgh \n")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16))
    ckpt = tmp_path / "best.pt"
    tokenizer_info = {"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest}
    checkpoint.save(ckpt, {"model": model.state_dict(), "model_config": model.config.to_dict(),
                           "step": 1, "tokenizer": tokenizer_info})
    save_tokenizer(tok, tmp_path / "tokenizer")
    return ["--checkpoint", str(ckpt), "--tokenizer", str(tmp_path / "tokenizer")]


def _generate(files, *args):
    return runner.invoke(app, ["generate", "abc", *files, "--max-new-tokens", "20", *args])


def test_streamed_text_starts_with_the_prompt(files):
    result = _generate(files, "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("abc") and len(result.output) == len("abc") + 20 + 1  # + "\n"


def test_json_is_one_object_with_every_sample(files):
    result = _generate(files, "--json", "--num-samples", "3", "--seed", "1", "--top-p", "0.9",
                       "--repetition-penalty", "1.2")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["prompt"] == "abc" and len(out["completions"]) == 3
    assert all(c["new_tokens"] == 20 and c["finish_reason"] == "length" for c in out["completions"])
    assert out["settings"]["top_p"] == 0.9 and out["settings"]["repetition_penalty"] == 1.2


def test_json_is_reproducible_with_a_seed(files):
    runs = [json.loads(_generate(files, "--json", "--seed", "4").output) for _ in range(2)]
    assert runs[0]["completions"] == runs[1]["completions"]


def test_json_with_beams_stop_strings_and_int8(files):
    result = _generate(files, "--json", "--beams", "3", "--num-samples", "2", "--stop", "a",
                       "--stop", "b", "--quantize", "int8", "--length-penalty", "0.5")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    scores = [c["score"] for c in out["completions"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    assert all("a" not in c["text"] and "b" not in c["text"] for c in out["completions"])
    assert out["settings"]["quantize"] == "int8" and out["settings"]["stop"] == ["a", "b"]


def test_compiled_decoding_prints_the_same_text(files):
    eager = json.loads(_generate(files, "--json", "--seed", "2").output)
    result = _generate(files, "--json", "--seed", "2", "--compile")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["settings"]["compile"] is True and out["completions"] == eager["completions"]


def test_several_samples_print_under_headers(files):
    result = _generate(files, "--num-samples", "2", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert result.output.count("--- ") == 2 and result.output.count("\nabc") == 2


@pytest.mark.parametrize("args, message", [
    (["--beams", "2", "--num-samples", "3"], "at most beams=2"),
    (["--top-p", "0"], "top_p"),
])
def test_bad_settings_are_one_line_errors(files, args, message):
    result = _generate(files, *args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_a_prompt_outside_the_vocabulary_is_an_error(files):
    result = runner.invoke(app, ["generate", "xyz", *files])
    assert result.exit_code == 1 and "'x' is not in the 10-character vocabulary" in result.output


def test_attention_writes_the_png(files, tmp_path):
    out = tmp_path / "maps.png"
    result = runner.invoke(app, ["attention", "abc def", "--out", str(out), *files])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG" and str(out) in result.output


def test_the_options_benchmark_times_real_folio_generate_processes(files, monkeypatch):
    """bench_generate --options runs `folio generate --json` as its own process per cell and reads
    the seconds it reports; each row's ratio is against plain on the same model and length."""
    from tests.conftest import PROJECT

    monkeypatch.syspath_prepend(str(PROJECT / "benchmarks"))
    import bench_generate

    checkpoint_path, tokenizer_dir = files[1], files[3]
    monkeypatch.setattr(bench_generate, "TOKENIZER_DIR", tokenizer_dir)
    monkeypatch.setattr(bench_generate, "OPTIONS_PROMPT", "abc")
    run = bench_generate.folio_generate_seconds(checkpoint_path, 7, ["--quantize", "int8"], threads=1)
    assert run["new_tokens"] == 7 and 0 < run["generate_s"] < run["wall_s"] and run["cpu_s"] > 0
    rows = [{"model": "m", "new_tokens": 7, "option": option, "generate_s": seconds, "wall_s": 2.0, "cpu_s": 1.0}
            for option, seconds in (("plain", 1.0), ("int8", 0.5))]
    table = bench_generate.options_markdown({"cpu": "x", "cores": 2, "threads": 2, "torch": "t", "load_before": 0.0,
                                             "load_after": 0.0}, rows, repeats=1)
    assert "| m | 7 | int8 | 0.50 s | 2.00 s | 1.00 s | 2.00x |" in table
