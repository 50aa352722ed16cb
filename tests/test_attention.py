"""Attention maps: they are the weights the model really uses (they reproduce its attention
output), causal, rows summing to 1; the PNG holds an n_layer x n_head grid; long prompts keep
their last block_size tokens."""

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
