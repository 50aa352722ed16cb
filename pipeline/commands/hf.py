"""`folio import-gpt2` and `folio export-hf`: Hugging Face GPT-2 checkpoints in and out.

import-gpt2 — in: a Hugging Face GPT-2 directory (config.json + model.safetensors or
pytorch_model.bin) — out: a folio checkpoint (default checkpoints/gpt2.pt) whose tokenizer is
`tiktoken:gpt2`; fine-tune it with `train.init_from` (or name the directory: `gpt2:<dir>`).
export-hf — in: a folio checkpoint of GPT-2's architecture (default models/best.pt) — out: a
directory that `GPT2LMHeadModel.from_pretrained` loads (config.json, model.safetensors), plus
GPT-2's tokenizer files when the model uses `tiktoken:gpt2` and tiktoken's cache holds them.
Nothing is downloaded. The conversion itself is folio.hf_gpt2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from folio import checkpoint, hf_gpt2
from folio.model import GPTConfig
from pipeline.console import log

DEFAULT_IMPORT = Path("checkpoints/gpt2.pt")
# tiktoken's gpt2 encoding is built from OpenAI's original files, which are Hugging Face's
# GPT-2 tokenizer files under other names: encoder.json = vocab.json, vocab.bpe = merges.txt.
GPT2_TOKENIZER_FILES = {
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json": "vocab.json",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe": "merges.txt",
}
END_OF_TEXT = "<|endoftext|>"


def import_gpt2(directory: Path, out: Path = DEFAULT_IMPORT) -> Path:
    """Convert the Hugging Face GPT-2 in `directory` into the folio checkpoint `out`."""
    state = hf_gpt2.import_checkpoint(directory)
    checkpoint.save(out, state)
    config = GPTConfig(**state["model_config"])
    n_params = sum({t.data_ptr(): t.numel() for t in state["model"].values()}.values())  # tied once
    log(f"imported {directory}: {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, "
        f"context {config.block_size}, {n_params:,} parameters, tokenizer tiktoken:gpt2 -> {out}")
    return out


def write_gpt2_tokenizer(out_dir: Path, block_size: int) -> bool:
    """Copy GPT-2's tokenizer files from tiktoken's cache (verified by loading the encoding
    first) as vocab.json + merges.txt + tokenizer_config.json; False if the cache lacks them."""
    from folio.tokenizers import PretrainedFilesMissing, train_tokenizer
    from folio.tokenizers.pretrained import cache_path

    try:
        train_tokenizer("tiktoken:gpt2", "", 0)  # tiktoken checks the cached files' sha256
    except PretrainedFilesMissing:
        return False
    for url, name in GPT2_TOKENIZER_FILES.items():
        shutil.copyfile(cache_path(url), out_dir / name)
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": block_size, "add_prefix_space": False,
        "bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT,
    }, indent=2) + "\n", encoding="utf-8")
    return True


def export_hf(out_dir: Path, checkpoint_path: Path = Path("models/best.pt")) -> Path:
    """Write the folio checkpoint as a Hugging Face GPT-2 directory `out_dir`."""
    state = checkpoint.load(checkpoint_path)
    config = GPTConfig(**state["model_config"])
    gpt2_vocab = state["tokenizer"]["kind"] == "tiktoken:gpt2"
    hf_gpt2.save_gpt2(out_dir, checkpoint.clean_state_dict(state["model"]), config,
                      eos_token_id=hf_gpt2.END_OF_TEXT_ID if gpt2_vocab else None)
    log(f"wrote {out_dir}/ (config.json, model.safetensors) from {checkpoint_path} "
        f"(step {state.get('step', 0)})")
    if gpt2_vocab:
        if write_gpt2_tokenizer(Path(out_dir), config.block_size):
            log("with GPT-2's tokenizer files (vocab.json, merges.txt) from tiktoken's cache")
        else:
            log("GPT-2's tokenizer files are not in tiktoken's cache: load the tokenizer with "
                "AutoTokenizer.from_pretrained('gpt2') (the same vocabulary)")
    else:
        log(f"its tokenizer ({state['tokenizer']['kind']}) has no Hugging Face form: "
            "encode with folio (data/tokenizer/) and pass token ids")
    return Path(out_dir)
