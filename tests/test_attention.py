"""Attention maps: they are the weights the model really uses (they reproduce its attention
output), causal, rows summing to 1; the PNG holds an n_layer x n_head grid; long prompts keep
their last block_size tokens; `folio attention` writes attention.png by default and refuses, in
one line, a path a dvc.yaml stage declares as its output unless --force."""

import matplotlib
import pytest
import torch

from folio.attention import attention_figure, save_attention_png, token_labels
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer

matplotlib.use("Agg")

CFG = GPTConfig(vocab_size=6, block_size=16, n_layer=3, n_head=2, n_embd=8)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(CFG).eval()


def test_maps_reproduce_the_attention_output(model):
    idx = torch.randint(6, (2, 10))
    maps = model.attention_maps(idx)
    assert maps.shape == (3, 2, 2, 10, 10)  # (n_layer, B, n_head, T, T)
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(10))
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            _, _, v = attn._heads(block.ln_1(x))
            y = (maps[layer] @ v).transpose(1, 2).reshape(2, 10, 8)  # (B, T, C)
            torch.testing.assert_close(attn.proj(y), attn(block.ln_1(x)), atol=1e-5, rtol=1e-4)
            x = block(x)


def test_maps_are_causal_distributions(model):
    maps = model.attention_maps(torch.randint(6, (1, 7)))
    torch.testing.assert_close(maps.sum(-1), torch.ones(3, 1, 2, 7))
    assert maps.triu(diagonal=1).abs().max() == 0  # nothing attends to a later token


def test_figure_is_a_layer_by_head_grid():
    fig = attention_figure(torch.rand(3, 2, 5, 5), list("abcde"))
    grids = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert grids == {(3, 2)} and len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["layer 0 head 0", "layer 0 head 1", "layer 1 head 0"]


def test_png_is_written_for_the_last_block_of_a_long_prompt(model, tmp_path):
    tok = CharTokenizer.train("abc \n!")
    path = save_attention_png(model, tok, "abc " * 10, tmp_path / "maps" / "attention.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = matplotlib.image.imread(path).shape[1::-1]
    assert width > 300 and height > 400  # 2 heads wide, 3 layers tall
    assert token_labels(tok, tok.encode("a \n")) == ["a", "␣", "⏎"]


def test_the_attention_command_writes_no_dvc_output_unless_forced(tmp_path, monkeypatch):
    """reports/attention.png is the sample stage's output (and data/raw/<data.name>/ the download
    stage's, `${data.name}` read from params.yaml): `folio attention` leaves them alone, in one
    line naming the stage, unless --force; by default it writes attention.png."""
    import shutil

    from typer.testing import CliRunner

    from folio import checkpoint
    from folio.tokenizers import save_tokenizer
    from pipeline.cli import app
    from tests.conftest import PROJECT

    monkeypatch.chdir(tmp_path)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copyfile(PROJECT / name, tmp_path / name)
    tok = CharTokenizer.train("abcdefgh \n")
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16))
    checkpoint.save(tmp_path / "ckpt.pt", {"model": gpt.state_dict(), "model_config": gpt.config.to_dict(), "step": 1,
                                           "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size,
                                                         "digest": tok.digest}})
    save_tokenizer(tok, tmp_path / "tok")
    files = ["--checkpoint", "ckpt.pt", "--tokenizer", "tok"]
    runner = CliRunner()

    result = runner.invoke(app, ["attention", "abc", *files])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "attention.png").read_bytes()[:4] == b"\x89PNG" and "wrote attention.png" in result.output

    stage_output = tmp_path / "reports" / "attention.png"
    stage_output.parent.mkdir()
    stage_output.write_bytes(b"the sample stage's maps")
    result = runner.invoke(app, ["attention", "abc", "--out", "reports/attention.png", *files])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: attention: reports/attention.png is an output of the dvc.yaml stage sample: writing it would "
        "make DVC see sample as changed; write elsewhere with --out (default attention.png), or pass --force "
        "to overwrite it"]
    assert stage_output.read_bytes() == b"the sample stage's maps"

    result = runner.invoke(app, ["attention", "abc", "--out", "data/raw/tinyshakespeare/maps.png", *files])
    assert result.exit_code == 1 and "of the dvc.yaml stage download" in result.output
    assert not (tmp_path / "data").exists()

    result = runner.invoke(app, ["attention", "abc", "--out", "reports/attention.png", "--force", *files])
    assert result.exit_code == 0, result.output
    assert stage_output.read_bytes()[:4] == b"\x89PNG"
