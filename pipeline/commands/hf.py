"""`folio import-gpt2` and `folio export-hf`: Hugging Face GPT-2 checkpoints in and out.

import-gpt2 — in: a Hugging Face GPT-2 directory (config.json + model.safetensors or
pytorch_model.bin) — out: a folio checkpoint (default checkpoints/gpt2.pt) whose tokenizer is
`tiktoken:gpt2`; fine-tune it with `train.init_from` (or name the directory: `gpt2:<dir>`).
export-hf — in: a folio checkpoint of GPT-2's architecture (default models/best.pt) and its
tokenizer (data/tokenizer/; a tiktoken:<name> encoding from tiktoken's cache) — out: a directory
that `AutoModelForCausalLM`/`GPT2LMHeadModel.from_pretrained` and `AutoTokenizer.from_pretrained`
load (config.json, model.safetensors, tokenizer.json, tokenizer_config.json). A model of another
architecture is refused by name. Nothing is downloaded. The conversions are folio.hf_gpt2 and
folio.hf_tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from folio import checkpoint, hf_gpt2
from folio.model import GPTConfig
from folio.tokenizers import META_FILE as TOKENIZER_META
from pipeline.console import log
from pipeline.errors import StageError

DEFAULT_IMPORT = Path("checkpoints/gpt2.pt")


def import_gpt2(directory: Path, out: Path = DEFAULT_IMPORT) -> Path:
    """Convert the Hugging Face GPT-2 in `directory` into the folio checkpoint `out`."""
    state = hf_gpt2.import_checkpoint(directory)
    checkpoint.save(out, state)
    config = GPTConfig(**state["model_config"])
    n_params = sum({t.data_ptr(): t.numel() for t in state["model"].values()}.values())  # tied once
    log(f"imported {directory}: {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, "
        f"context {config.block_size}, {n_params:,} parameters, tokenizer tiktoken:gpt2 -> {out}")
    return out


class ExportError(StageError, ValueError):
    """A tokenizer that is missing or is not the one the checkpoint was trained with."""


def export_tokenizer(info: dict, checkpoint_path: Path, tokenizer_dir: Path | None):
    """The folio tokenizer to export beside the weights (`info`: the checkpoint's tokenizer record):
    a tiktoken encoding from tiktoken's cache (None, with a note, when the cache lacks its files),
    else the one in `tokenizer_dir` (None: weights only), refused unless it has the checkpoint's
    digest."""
    from folio.tokenizers import PRETRAINED_PREFIX, PretrainedFilesMissing, load_tokenizer, train_tokenizer

    kind = info["kind"]
    if kind.startswith(PRETRAINED_PREFIX):
        try:
            tokenizer, source = train_tokenizer(kind, "", 0), "tiktoken's cache"  # sha256-checked files
        except PretrainedFilesMissing as missing:
            log(f"no tokenizer files written: {missing}")
            return None
    elif tokenizer_dir is None:
        return None
    elif not (Path(tokenizer_dir) / TOKENIZER_META).is_file():
        raise ExportError(f"{checkpoint_path} was trained with a {kind} tokenizer, which export-hf writes "
                          f"from its directory, and {tokenizer_dir} holds none; pass --tokenizer DIR "
                          "(the data/tokenizer/ the model was trained with)")
    else:
        tokenizer, source = load_tokenizer(tokenizer_dir), str(tokenizer_dir)
    if tokenizer.digest != info["digest"]:
        raise ExportError(f"the tokenizer in {source} ({tokenizer.kind}, digest {tokenizer.digest}) is "
                          f"not the one {checkpoint_path} was trained with ({kind}, digest {info['digest']}); "
                          "pass --tokenizer DIR with that one")
    return tokenizer


def export_hf(out_dir: Path, checkpoint_path: Path = Path("models/best.pt"),
              tokenizer_dir: Path | None = None) -> Path:
    """Write the folio checkpoint as a Hugging Face GPT-2 directory `out_dir`, with its tokenizer
    as Hugging Face tokenizer files (folio.hf_tokenizer): a tiktoken encoding's from tiktoken's
    cache, any other kind's from `tokenizer_dir` (None: weights only). A model that is not
    GPT-2's architecture is refused before anything is written."""
    from folio.hf_tokenizer import save_hf_tokenizer
    from folio.tokenizers import end_of_text_id

    state = checkpoint.load(checkpoint_path)
    config = GPTConfig(**state["model_config"])
    hf_gpt2.check_exportable(config)
    tokenizer = export_tokenizer(state["tokenizer"], checkpoint_path, tokenizer_dir)
    gpt2_vocab = state["tokenizer"]["kind"] == "tiktoken:gpt2"
    eos = end_of_text_id(tokenizer) if tokenizer is not None else (
        hf_gpt2.END_OF_TEXT_ID if gpt2_vocab else None)
    hf_gpt2.save_gpt2(out_dir, checkpoint.clean_state_dict(state["model"]), config, eos_token_id=eos)
    log(f"wrote {out_dir}/ (config.json, model.safetensors) from {checkpoint_path} "
        f"(step {state.get('step', 0)})")
    if tokenizer is not None:
        written = save_hf_tokenizer(tokenizer, out_dir, config.block_size)
        log(f"with its {tokenizer.kind} tokenizer as Hugging Face files ({', '.join(written)}): "
            "AutoTokenizer.from_pretrained loads it, no folio needed")
    elif not state["tokenizer"]["kind"].startswith("tiktoken:"):
        log(f"no tokenizer written ({state['tokenizer']['kind']}): pass its directory to write it")
    return Path(out_dir)
