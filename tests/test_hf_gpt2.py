"""GPT-2 in and out (folio.hf_gpt2, pipeline/commands/hf.py, pipeline/init_from.py), against a tiny random
`GPT2LMHeadModel` built here with transformers (a dev dependency; nothing is downloaded): imported
logits match to 1e-5 from safetensors, pytorch_model.bin and sharded directories, greedy generation
matches token for token, exports load in `from_pretrained` with no missing keys and matching
logits (tied and untied heads), configs folio can't represent are refused by key and value, the
gpt2 tokenizer digest is known without tiktoken's files, a few fine-tuning steps run from an
import, and `train.init_from` resolves a gpt2 directory, a checkpoint file and a registered model
(the train stage itself runs from a folio checkpoint: tiktoken's gpt2 files are offline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from folio import checkpoint, hf_gpt2
from folio.generate import GenerationConfig, generate_ids
from folio.model import GPT, GPTConfig
from folio.tokenizers.pretrained import pretrained_digest
from folio.train import TrainConfig, train
from pipeline import artifacts, init_from
from pipeline.commands import hf
from pipeline.cli import app
from pipeline.params import ParamsError, validate

transformers = pytest.importorskip("transformers", reason="transformers is a dev dependency (pip install -e .[dev])")

TINY_HF = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64)
runner = CliRunner()


def _hf_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**{**TINY_HF, **overrides})
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def hf_model():
    return _hf_model()


@pytest.fixture(scope="module")
def hf_dirs(hf_model, tmp_path_factory) -> dict:
    """The same model as save_pretrained writes it, sharded, and as an old pytorch_model.bin
    (with the causal-mask buffers older transformers saved)."""
    root = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(root / "safetensors")
    hf_model.save_pretrained(root / "sharded", max_shard_size="2MB")
    old = root / "bin"
    old.mkdir()
    shutil.copyfile(root / "safetensors" / "config.json", old / "config.json")
    state = dict(hf_model.state_dict())
    for i in range(TINY_HF["n_layer"]):
        state[f"transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, old / "pytorch_model.bin")
    return {"safetensors": root / "safetensors", "sharded": root / "sharded", "bin": old}


def _ids(vocab_size: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 48), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _assert_same_logits(hf_model, folio_model, vocab_size: int = 50257):
    ids = _ids(vocab_size)
    expected = hf_model(ids).logits
    got, _ = folio_model.eval()(ids)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# ---- import -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["safetensors", "sharded", "bin"])
def test_imported_logits_match_hugging_face(hf_model, hf_dirs, layout):
    if layout == "sharded":
        assert (hf_dirs[layout] / "model.safetensors.index.json").exists()
    state = hf_gpt2.import_checkpoint(hf_dirs[layout])
    assert state["tokenizer"] == {"kind": "tiktoken:gpt2", "vocab_size": 50257,
                                  "digest": pretrained_digest("gpt2", 50257)}
    config = GPTConfig(**state["model_config"])
    assert (config.mlp, config.norm_eps, config.block_size, config.tie_weights) == ("gelu_tanh", 1e-5, 64, True)
    _assert_same_logits(hf_model, checkpoint.build_model(state, pretrained_digest("gpt2", 50257)))


def test_greedy_generation_matches_hugging_face_token_for_token(hf_model, hf_dirs):
    model = checkpoint.build_model(hf_gpt2.import_checkpoint(hf_dirs["safetensors"]))
    prompt = _ids(50257)[0, :8].tolist()
    expected = hf_model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20,
                                 min_new_tokens=20, pad_token_id=50256)[0, 8:].tolist()
    for use_cache in (True, False):
        config = GenerationConfig(max_new_tokens=20, temperature=0.0)
        got = [ids[0] for ids in generate_ids(model, [prompt], config, use_cache)]
        assert got == expected


def test_any_vocabulary_converts_but_only_gpt2s_imports_as_tiktoken_gpt2(tmp_path):
    """load_gpt2 works for any GPT2Config; import_checkpoint records tiktoken:gpt2, so refuses
    another vocabulary rather than mislabel it."""
    small = _hf_model(seed=3, vocab_size=101, activation_function="gelu", layer_norm_epsilon=1e-6)
    small.save_pretrained(tmp_path)
    config, state = hf_gpt2.load_gpt2(tmp_path)
    assert (config.vocab_size, config.mlp, config.norm_eps) == (101, "gelu", 1e-6)
    model = GPT(config)
    model.load_state_dict(state)
    _assert_same_logits(small, model, vocab_size=101)
    with pytest.raises(hf_gpt2.UnsupportedConfig, match="vocab_size=101"):
        hf_gpt2.import_checkpoint(tmp_path)


def test_unrepresentable_configs_are_refused_naming_key_and_value():
    with pytest.raises(hf_gpt2.UnsupportedConfig) as err:
        hf_gpt2.folio_config({"activation_function": "relu", "n_inner": 100, "n_embd": 32, "n_head": 2,
                              "scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True,
                              "add_cross_attention": True, "scale_attn_weights": False})
    message = str(err.value)
    for shown in ("activation_function='relu'", "n_inner=100", "scale_attn_by_inverse_layer_idx=True",
                  "reorder_and_upcast_attn=True", "add_cross_attention=True", "scale_attn_weights=False"):
        assert shown in message
    with pytest.raises(hf_gpt2.UnsupportedConfig, match="model_type='llama'"):
        hf_gpt2.folio_config({"model_type": "llama"})


def test_missing_files_and_foreign_weights_are_named(tmp_path, hf_dirs):
    with pytest.raises(FileNotFoundError, match="config.json"):
        hf_gpt2.import_checkpoint(tmp_path)
    shutil.copyfile(hf_dirs["safetensors"] / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        hf_gpt2.import_checkpoint(tmp_path)
    weights = hf_gpt2.read_weights(hf_dirs["safetensors"])
    weights["score.weight"] = torch.zeros(2, 32)  # a classification head
    del weights["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(hf_gpt2.ConversionError, match=r"missing \['h.1.mlp.c_fc.bias'\].*score.weight"):
        hf_gpt2.from_hf_state(weights, hf_gpt2.folio_config(hf_gpt2.read_config(hf_dirs["safetensors"])))


# ---- export -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mlp,tie_weights", [("gelu_tanh", True), ("gelu", False)])
def test_export_loads_in_transformers_with_matching_logits(tmp_path, mlp, tie_weights):
    torch.manual_seed(5)
    config = GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=2, n_embd=32, mlp=mlp,
                       tie_weights=tie_weights, norm_eps=1e-6)
    model = GPT(config).eval()
    for p in model.parameters():  # non-zero biases and norms: every tensor must land in place
        torch.nn.init.normal_(p, std=0.1)
    checkpoint.save(tmp_path / "best.pt", {
        "model": model.state_dict(), "model_config": config.to_dict(), "step": 7,
        "tokenizer": {"kind": "char", "vocab_size": 97, "digest": "x"}})
    out = hf.export_hf(tmp_path / "hf", tmp_path / "best.pt")
    loaded, info = transformers.GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert loaded.config.tie_word_embeddings == tie_weights
    _assert_same_logits(loaded.eval(), model, vocab_size=97)
    back_config, back_state = hf_gpt2.load_gpt2(out)  # and back again, exactly
    assert back_config == config
    for key, value in model.state_dict().items():
        assert torch.equal(back_state[key], value), key


def test_export_of_an_imported_gpt2_round_trips(hf_model, hf_dirs, tmp_path):
    checkpoint.save(tmp_path / "gpt2.pt", hf_gpt2.import_checkpoint(hf_dirs["safetensors"]))
    out = hf.export_hf(tmp_path / "hf", tmp_path / "gpt2.pt")
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == 50256
    ids = _ids(50257)
    with torch.no_grad():
        torch.testing.assert_close(transformers.GPT2LMHeadModel.from_pretrained(out).eval()(ids).logits,
                                   hf_model(ids).logits, atol=1e-5, rtol=0)


def test_export_writes_a_tiktoken_encodings_tokenizer_from_tiktokens_cache(hf_dirs, tmp_path, monkeypatch):
    """A tiktoken:gpt2 model gets tokenizer.json built from the encoding tiktoken's cache holds
    (here a stand-in with GPT-2's split pattern and the gpt2 record: the real files are offline),
    which AutoTokenizer loads with the same ids and GPT-2's end-of-text token."""
    import tiktoken

    import folio.tokenizers
    from folio.tokenizers.bpe import TiktokenTokenizer
    from folio.tokenizers.pretrained import _identity

    gpt2_pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 256, b" ab": 257}
    encoding = tiktoken.Encoding("gpt2", pat_str=gpt2_pattern, mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": 258})
    stand_in = TiktokenTokenizer("tiktoken:gpt2", encoding, _identity("gpt2", 50257))
    monkeypatch.setattr(folio.tokenizers, "train_tokenizer", lambda *args: stand_in)
    checkpoint.save(tmp_path / "gpt2.pt", hf_gpt2.import_checkpoint(hf_dirs["safetensors"]))
    out = hf.export_hf(tmp_path / "hf", tmp_path / "gpt2.pt")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("abab ab!")["input_ids"] == stand_in.encode("abab ab!") == [256, 256, 257, 33]
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 258


def test_export_refuses_other_architectures_naming_each_option():
    config = GPTConfig(vocab_size=11, pos_emb="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                       qk_norm=True)
    with pytest.raises(hf_gpt2.UnsupportedConfig) as err:
        hf_gpt2.hf_config(config)
    for shown in ("pos_emb='rope'", "norm='rmsnorm'", "mlp='swiglu'", "bias=False", "qk_norm=True"):
        assert shown in str(err.value)


def test_cli_import_and_export(hf_dirs, tmp_path):
    result = runner.invoke(app, ["import-gpt2", str(hf_dirs["bin"]), "--out", str(tmp_path / "g.pt")])
    assert result.exit_code == 0, result.output
    assert checkpoint.load(tmp_path / "g.pt")["tokenizer"]["kind"] == "tiktoken:gpt2"
    rope = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8, pos_emb="rope")
    checkpoint.save(tmp_path / "rope.pt", {"model": GPT(rope).state_dict(), "model_config": rope.to_dict(),
                                           "tokenizer": {"kind": "char", "vocab_size": 11, "digest": "x"}})
    result = runner.invoke(app, ["export-hf", str(tmp_path / "out"), "-c", str(tmp_path / "rope.pt")])
    assert result.exit_code == 1 and "pos_emb='rope'" in result.output


# ---- the gpt2 tokenizer's digest --------------------------------------------------------------

def test_pretrained_digest_is_the_loaded_encodings_digest(monkeypatch):
    """Without gpt2's files, a stand-in encoding under the name gpt2 goes through load_pretrained;
    with them (TIKTOKEN_CACHE_DIR), the real one must accept an imported checkpoint."""
    import tiktoken

    from folio.tokenizers import PretrainedFilesMissing, train_tokenizer

    try:
        real = train_tokenizer("tiktoken:gpt2", "", 0)
    except PretrainedFilesMissing:
        real = None
    if real is not None:
        assert real.digest == hf_gpt2.gpt2_tokenizer_info()["digest"]
    stand_in = tiktoken.Encoding("gpt2", pat_str=r"\S+|\s+", special_tokens={},
                                 mergeable_ranks={bytes([b]): b for b in range(256)})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: stand_in)
    loaded = train_tokenizer("tiktoken:gpt2", "", 0)
    assert loaded.digest == pretrained_digest("gpt2", 256) != pretrained_digest("gpt2", 50257)
    assert pretrained_digest("gpt2", 256) != pretrained_digest("r50k_base", 256)


# ---- fine-tuning ------------------------------------------------------------------------------

def test_a_few_fine_tuning_steps_from_an_import(hf_dirs, tmp_path):
    state = hf_gpt2.import_checkpoint(hf_dirs["safetensors"])
    model = checkpoint.build_model(state)
    ids = torch.randint(0, 50257, (4000,), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(max_iters=3, batch_size=2, grad_accum_steps=2, learning_rate=3e-5, min_lr=3e-5,
                      warmup_iters=0, weight_decay=0.0, eval_interval=3, eval_iters=1, device="cpu")
    before = model.tok_emb.weight.detach().clone()
    result = train(model, ids[:3000], ids[3000:], cfg, tmp_path, tokenizer_info=state["tokenizer"],
                   log=lambda m: None)
    assert result.step == 3 and all(torch.isfinite(torch.tensor(loss)) for _, loss, _ in result.history["steps"])
    assert not torch.equal(model.tok_emb.weight, before)
    saved = checkpoint.load(tmp_path / "last.pt")
    assert saved["tokenizer"]["kind"] == "tiktoken:gpt2" and saved["model_config"] == state["model_config"]


# ---- train.init_from --------------------------------------------------------------------------

def _params(**train):
    return validate({
        "data": {"name": "t", "url": "file:///unused", "sha256": "0" * 64, "val_fraction": 0.1},
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "dropout": 0.1},
        "train": {"max_iters": 4, "batch_size": 4, "eval_interval": 2, "eval_iters": 1,
                  "warmup_iters": 1, "device": "cpu", **train},
    })


@pytest.mark.parametrize("value", ["scratch", "checkpoints/base.pt", "gpt2:/hf/gpt2",
                                   "models:/folio-t@champion", "models:/folio-t/3"])
def test_init_from_forms_are_accepted(value):
    assert _params(init_from=value).train.init_from == value


@pytest.mark.parametrize("value", ["models:/folio-t", "models:/a@b/c", "gpt2:", ""])
def test_malformed_init_from_is_named(value):
    with pytest.raises(ParamsError, match="train.init_from"):
        _params(init_from=value)


class _Tok:
    def __init__(self, kind, vocab_size, digest):
        self.kind, self.vocab_size, self.digest = kind, vocab_size, digest


def test_init_from_a_gpt2_directory(hf_model, hf_dirs):
    params = _params(init_from=f"gpt2:{hf_dirs['safetensors']}")
    gpt2 = _Tok("tiktoken:gpt2", 50257, pretrained_digest("gpt2", 50257))
    model = init_from.start_model(params, gpt2, None, init_from.source(params, gpt2))
    assert model.config.n_embd == 32 and model.config.dropout == 0.1  # from the source; dropout from params
    _assert_same_logits(hf_model, model)
    with pytest.raises(init_from.InitFromError, match="set tokenizer.kind: tiktoken:gpt2"):
        init_from.source(params, _Tok("char", 65, "abc"))
    assert init_from.source(_params(), gpt2) is None  # scratch: the model comes from model.*




def test_train_stage_fine_tunes_from_a_checkpoint_and_a_registered_model(stage_project):
    from pipeline import resume
    from pipeline.artifacts import tokenizer as tokenizer_files
    from pipeline.stages import prepare, tokenize
    from pipeline.stages import train as train_stage
    from pipeline.tracking import registry
    from tests.conftest import record_gate_passes
    from pipeline.params import SampleParams

    base_params = _params()
    record_gate_passes(base_params)
    tokenize.main(base_params)
    prepare.main(base_params)
    record_gate_passes(base_params)
    train_stage.main(base_params)
    (stage_project / "checkpoints").mkdir()
    shutil.copyfile(artifacts.BEST_CKPT, stage_project / "checkpoints" / "base.pt")
    base = checkpoint.load(stage_project / "checkpoints" / "base.pt")

    # model.* differ from the source's: ignored; the run starts from the base's weights
    params = _params(init_from="checkpoints/base.pt", max_iters=2, learning_rate=1e-4)
    params = params.model_copy(update={"model": params.model.model_copy(update={"n_layer": 3})})
    assert resume.fingerprint(resume.identity(params, "d", "s")) != resume.fingerprint(resume.identity(base_params, "d", "s"))
    train_stage.main(params)
    tuned = checkpoint.load(artifacts.LAST_CKPT)
    assert tuned["model_config"] == {**base["model_config"], "dropout": 0.1}
    assert tuned["step"] == 2 and tuned["history"]["evals"][0][2] == pytest.approx(base["best_val_loss"])
    resumed = init_from.start_model(params, tokenizer_files.load(), tuned, None)  # resuming: the run's own config
    assert resumed.config == GPTConfig(**tuned["model_config"])

    with pytest.raises(init_from.InitFromError, match="inside models/"):
        init_from.load_source("models/best.pt")
    with pytest.raises(init_from.InitFromError, match="no such checkpoint"):
        init_from.load_source("checkpoints/nope.pt")
    other = dict(base, tokenizer={**base["tokenizer"], "digest": "0" * 16})
    checkpoint.save(stage_project / "checkpoints" / "other.pt", other)
    with pytest.raises(init_from.InitFromError, match="rebuild data/tokenizer/"):
        train_stage.main(_params(init_from="checkpoints/other.pt"))

    # a registered model's checkpoint: models:/<name>@<alias>
    from pipeline.tracking import store
    store.setup()
    run_id = json.loads(artifacts.RUN_INFO.read_text())["run_id"]
    info = registry.log_model(run_id, stage_project / "checkpoints" / "base.pt", artifacts.TOKENIZER_DIR,
                              SampleParams(prompts=["Line"], max_new_tokens=4))
    version = registry.register(info.model_uri, "folio-t", tags={})
    registry.client().set_registered_model_alias("folio-t", "champion", version.version)
    source = init_from.load_source("models:/folio-t@champion")
    assert source["model_config"] == base["model_config"]
    for key, value in base["model"].items():
        assert torch.equal(source["model"][key], value), key
    with pytest.raises(registry.RegistryError, match="no version with alias @nope"):
        init_from.load_source("models:/folio-t@nope")
