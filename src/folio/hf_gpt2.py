"""Hugging Face GPT-2 checkpoints in and out: pure torch, safetensors and json (no transformers).

In: a directory holding `config.json` and the weights — `model.safetensors`, else
`pytorch_model.bin` (read with `weights_only=True`), or either one sharded behind its
`*.index.json` — as `save_pretrained` writes it or the Hugging Face cache holds it. Out: the same
layout, which `GPT2LMHeadModel.from_pretrained` loads.

GPT-2 in folio's terms: learned positions, pre-LayerNorm blocks with biases, a fused QKV
projection, tanh-GELU (`gelu_new`; plain `gelu` maps to folio's `gelu`), a 4C MLP and a head tied
to the token embedding (or untied: `tie_word_embeddings: false`). Hugging Face's `Conv1D` stores
weights as (in, out), the transpose of `nn.Linear`: `h.N.attn.c_attn.weight` (C, 3C) is folio's
`blocks.N.attn.qkv.weight` (3C, C) transposed; the q, k, v order and the head split are the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from folio.errors import FolioError, MissingFile
from folio.model import GPTConfig

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"
GPT2_VOCAB_SIZE = 50257  # tiktoken's gpt2 encoding; <|endoftext|> is the last id
END_OF_TEXT_ID = 50256

# GPT2Config's defaults: save_pretrained may leave out any key that holds its default.
HF_DEFAULTS = {
    "vocab_size": GPT2_VOCAB_SIZE, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
    "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False, "add_cross_attention": False, "tie_word_embeddings": True,
}
# Hugging Face activation -> folio's MLP; gelu_new and gelu_pytorch_tanh are the same function.
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
EXPORTED_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
# What a GPT-2 (or any config folio can't represent) must hold: key -> (required value, why)
REQUIRED = {
    "scale_attn_weights": (True, "folio always scales attention by 1/sqrt(head size)"),
    "scale_attn_by_inverse_layer_idx": (False, "folio does not scale attention by layer"),
    "reorder_and_upcast_attn": (False, "folio does not reorder/upcast attention"),
    "add_cross_attention": (False, "folio is decoder-only: no cross-attention"),
}
# folio GPTConfig field -> the value GPT-2 needs (export refuses anything else)
GPT2_ARCHITECTURE = {"kind": "gpt", "pos_emb": "learned", "norm": "layernorm", "bias": True,
                     "qk_norm": False}

# Per-block names: Hugging Face -> folio. Conv1D weights are transposed on the way.
_BLOCK_NAMES = {"ln_1": "ln_1", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
                "ln_2": "ln_2", "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj"}
_CONV1D = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
# Causal-mask buffers older transformers saved with every block: not weights.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


class ConversionError(FolioError, ValueError):
    """Weights or a config that don't convert: reported as a message, not a traceback."""


class UnsupportedConfig(ConversionError):
    """A Hugging Face config folio can't represent, or a folio model GPT-2 can't."""


# ---- configs -----------------------------------------------------------------------------------

def read_config(directory: str | Path) -> dict:
    """config.json of a Hugging Face checkpoint directory, GPT2Config's defaults filled in."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise MissingFile(f"no {CONFIG_FILE} in {directory}; point to a Hugging Face GPT-2 checkpoint "
                          "directory (a save_pretrained output or a snapshot in the HF cache)")
    return {**HF_DEFAULTS, **json.loads(path.read_text(encoding="utf-8"))}


def folio_config(hf: dict) -> GPTConfig:
    """The folio GPTConfig of a Hugging Face GPT-2 config (dropout 0); UnsupportedConfig, naming
    every key and value folio can't represent."""
    hf = {**HF_DEFAULTS, **hf}
    problems = []
    if hf.get("model_type", "gpt2") != "gpt2":
        problems.append(f"model_type={hf['model_type']!r}: only gpt2 checkpoints convert")
    if hf["activation_function"] not in ACTIVATIONS:
        problems.append(f"activation_function={hf['activation_function']!r}: folio has "
                        f"{', '.join(ACTIVATIONS)}")
    if hf["n_inner"] is not None and hf["n_inner"] != 4 * hf["n_embd"]:
        problems.append(f"n_inner={hf['n_inner']}: folio's MLP is 4 * n_embd = {4 * hf['n_embd']} wide")
    for key, (wanted, why) in REQUIRED.items():
        if hf[key] != wanted:
            problems.append(f"{key}={hf[key]!r}: {why}")
    if hf["n_embd"] % hf["n_head"]:
        problems.append(f"n_embd={hf['n_embd']} is not divisible by n_head={hf['n_head']}")
    if problems:
        raise UnsupportedConfig("this Hugging Face config can't be represented in folio:\n  "
                                + "\n  ".join(problems))
    return GPTConfig(
        vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
        n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=0.0, bias=True, pos_emb="learned",
        norm="layernorm", qk_norm=False, mlp=ACTIVATIONS[hf["activation_function"]],
        tie_weights=bool(hf["tie_word_embeddings"]), norm_eps=hf["layer_norm_epsilon"],
    )


def check_exportable(config: GPTConfig) -> None:
    """UnsupportedConfig naming each option of `config` that GPT-2's architecture lacks."""
    problems = [f"{key}={getattr(config, key)!r} (GPT-2 needs {wanted!r})"
                for key, wanted in GPT2_ARCHITECTURE.items() if getattr(config, key) != wanted]
    if config.mlp not in EXPORTED_ACTIVATIONS:
        problems.append(f"mlp={config.mlp!r} (GPT-2 needs one of {', '.join(EXPORTED_ACTIVATIONS)})")
    if problems:
        raise UnsupportedConfig("this model is not GPT-2's architecture, so it can't be written as a "
                                "Hugging Face GPT-2: " + "; ".join(problems))


def hf_config(config: GPTConfig, eos_token_id: int | None = None) -> dict:
    """The config.json of `config` as a Hugging Face GPT2LMHeadModel."""
    check_exportable(config)
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_ctx": config.block_size,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
        "activation_function": EXPORTED_ACTIVATIONS[config.mlp],
        "layer_norm_epsilon": config.norm_eps, "initializer_range": 0.02,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": config.tie_weights,
        "use_cache": True, "bos_token_id": eos_token_id, "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }


# ---- weights -----------------------------------------------------------------------------------

def _read_index(index: Path) -> list[Path]:
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    return [index.parent / name for name in sorted(set(weight_map.values()))]


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.name.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code


def read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint directory: safetensors preferred, sharded or not."""
    directory = Path(directory)
    for name in (SAFETENSORS_FILE, TORCH_FILE):
        if (directory / name).exists():
            return _read_file(directory / name)
        index = directory / f"{name}.index.json"
        if index.exists():
            state = {}
            for shard in _read_index(index):
                state.update(_read_file(shard))
            return state
    raise MissingFile(f"no weights in {directory}; it needs {SAFETENSORS_FILE} or {TORCH_FILE} "
                      "(or a sharded *.index.json)")


def _names(n_layer: int) -> dict[str, str]:
    """Hugging Face parameter name -> folio's (the head is handled apart)."""
    names = {"wte.weight": "tok_emb.weight", "wpe.weight": "pos_emb.weight",
             "ln_f.weight": "ln_f.weight", "ln_f.bias": "ln_f.bias"}
    for i in range(n_layer):
        for hf, ours in _BLOCK_NAMES.items():
            for kind in ("weight", "bias"):
                names[f"h.{i}.{hf}.{kind}"] = f"blocks.{i}.{ours}.{kind}"
    return names


def _is_conv1d_weight(hf_name: str) -> bool:
    return hf_name.endswith(".weight") and hf_name.split(".", 2)[-1].removesuffix(".weight") in _CONV1D


def from_hf_state(hf_state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """folio's state dict (float32) from a Hugging Face GPT-2 state dict, with or without the
    `transformer.` prefix; a missing or unknown weight is an error naming it."""
    weights = {}
    for key, value in hf_state.items():
        key = key.removeprefix("transformer.")
        if not key.endswith(_IGNORED_SUFFIXES):
            weights[key] = value
    head = weights.pop("lm_head.weight", None)
    names = _names(config.n_layer)
    missing = sorted(set(names) - set(weights))
    unknown = sorted(set(weights) - set(names))
    if missing or unknown:
        raise ConversionError(f"these weights do not match a {config.n_layer}-layer GPT-2: "
                         f"missing {missing[:8] or 'none'}, unexpected {unknown[:8] or 'none'}")
    state = {}
    for hf, ours in names.items():
        tensor = weights[hf].float()
        state[ours] = tensor.t().contiguous() if _is_conv1d_weight(hf) else tensor
    if config.tie_weights:
        state["lm_head.weight"] = state["tok_emb.weight"]
    elif head is None:
        raise ConversionError("tie_word_embeddings is false but the checkpoint holds no lm_head.weight")
    else:
        state["lm_head.weight"] = head.float()
    return state


def to_hf_state(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """A Hugging Face GPT2LMHeadModel state dict (`transformer.` keys, Conv1D layout) from folio's;
    a tied head is stored once, as `transformer.wte.weight`, which is what from_pretrained expects."""
    check_exportable(config)
    out = {}
    for hf, ours in _names(config.n_layer).items():
        tensor = state[ours].detach().float().cpu()
        out[f"transformer.{hf}"] = (tensor.t() if _is_conv1d_weight(hf) else tensor).contiguous()
    if not config.tie_weights:
        out["lm_head.weight"] = state["lm_head.weight"].detach().float().cpu().contiguous()
    return out


# ---- directories -------------------------------------------------------------------------------

def load_gpt2(directory: str | Path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """(folio config, folio state dict) of a Hugging Face GPT-2 checkpoint directory."""
    config = folio_config(read_config(directory))
    return config, from_hf_state(read_weights(directory), config)


def save_gpt2(directory: str | Path, state: dict[str, torch.Tensor], config: GPTConfig,
              eos_token_id: int | None = None) -> None:
    """Write `config.json` and `model.safetensors` for GPT2LMHeadModel.from_pretrained."""
    from safetensors.torch import save_file

    directory = Path(directory)
    hf = hf_config(config, eos_token_id)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(to_hf_state(state, config), directory / SAFETENSORS_FILE, metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")


# ---- folio checkpoints -------------------------------------------------------------------------

def gpt2_tokenizer_info() -> dict:
    """The checkpoint's tokenizer record of tiktoken's gpt2 encoding, known without its files."""
    from folio.tokenizers.pretrained import pretrained_digest

    return {"kind": "tiktoken:gpt2", "vocab_size": GPT2_VOCAB_SIZE,
            "digest": pretrained_digest("gpt2", GPT2_VOCAB_SIZE)}


def import_checkpoint(directory: str | Path) -> dict:
    """A folio checkpoint (folio.checkpoint's format, step 0) of a Hugging Face GPT-2 directory;
    its tokenizer is `tiktoken:gpt2`, so the vocabulary must be GPT-2's 50,257 tokens."""
    config, state = load_gpt2(directory)
    if config.vocab_size != GPT2_VOCAB_SIZE:
        raise UnsupportedConfig(
            f"vocab_size={config.vocab_size}: an imported GPT-2 uses tiktoken's gpt2 encoding "
            f"({GPT2_VOCAB_SIZE} tokens); this model was trained with another tokenizer")
    return {"model": state, "model_config": config.to_dict(), "tokenizer": gpt2_tokenizer_info(),
            "step": 0, "meta": {"imported_from": str(Path(directory).resolve())}}
