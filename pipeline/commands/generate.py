"""`folio generate` and `folio attention` (not dvc.yaml stages) — in: a checkpoint and its
tokenizer — out: text on stdout (streamed, or one JSON object), or an attention-map PNG.

pipeline/cli.py keeps the commands thin and imports this module only when one of them runs.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from folio import checkpoint
from folio.attention import save_attention_png
from folio.generate import GenerationConfig, complete, stream
from folio.quantize import quantize
from folio.tokenizers import META_FILE as TOKENIZER_FILE, load_tokenizer
from pipeline.errors import StageError


class GenerateError(StageError, ValueError):
    """A setting, prompt or model the user can fix: reported as a message, not a traceback."""


def load(checkpoint_path: Path, tokenizer_dir: Path, model_uri: str | None = None,
         quantization: str | None = None):
    """(model, tokenizer) from a checkpoint and its tokenizer, or from a registered model URI;
    refuses a checkpoint trained with another tokenizer."""
    if not model_uri:
        if not (Path(tokenizer_dir) / TOKENIZER_FILE).is_file():
            raise GenerateError(f"{tokenizer_dir} holds no tokenizer; run `folio tokenize` (or `dvc repro`) "
                                "first, or pass --tokenizer DIR")
        if not Path(checkpoint_path).is_file():
            raise GenerateError(f"no checkpoint at {checkpoint_path}; run `folio train` (or `dvc repro`) "
                                "first, or pass --checkpoint FILE (or --model models:/<name>@<alias>)")
    try:
        if model_uri:
            from pipeline.tracking.registry import load_generator

            model, tokenizer = load_generator(model_uri)
        else:
            tokenizer = load_tokenizer(tokenizer_dir)
            model = checkpoint.build_model(checkpoint.load(checkpoint_path), tokenizer.digest)
        return quantize(model.eval(), quantization), tokenizer
    except ValueError as err:
        raise GenerateError(str(err)) from None


def _checked(settings: dict, tokenizer, prompt: str) -> GenerationConfig:
    try:
        tokenizer.encode(prompt)
        return GenerationConfig(**settings)
    except ValueError as err:
        raise GenerateError(str(err)) from None


def generate(prompt: str, settings: dict, checkpoint_path: Path, tokenizer_dir: Path,
             model_uri: str | None = None, quantization: str | None = None, as_json: bool = False,
             use_cache: bool = True, threads: int | None = None) -> None:
    """Print the prompt and its continuation as it is sampled (one sample, no beams), each
    completion under a header (several samples or beams), or one JSON object (`as_json`).
    `settings`: GenerationConfig fields."""
    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = load(checkpoint_path, tokenizer_dir, model_uri, quantization)
    config = _checked(settings, tokenizer, prompt)  # fail before any output
    started = time.perf_counter()
    if as_json:
        completions = complete(model, tokenizer, [prompt], config, use_cache)
        print(json.dumps({
            "prompt": prompt,
            "completions": [{"text": c.text, "new_tokens": len(c.token_ids),
                             "finish_reason": c.finish_reason, "score": c.score} for c in completions],
            "settings": {**asdict(config), "model": model_uri or str(checkpoint_path),
                         "quantize": quantization, "cache": use_cache,
                         "threads": torch.get_num_threads()},
            "seconds": round(time.perf_counter() - started, 3),
        }, ensure_ascii=False))
    elif config.beams == 1 and config.num_samples == 1:
        sys.stdout.write(prompt)
        for piece in stream(model, tokenizer, prompt, config, use_cache):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        for i, c in enumerate(complete(model, tokenizer, [prompt], config, use_cache), 1):
            score = "" if c.score is None else f", score {c.score:.4f}"
            print(f"--- {i}/{config.num_samples} ({c.finish_reason}{score})\n{prompt}{c.text}")


def attention(prompt: str, out: Path, checkpoint_path: Path, tokenizer_dir: Path) -> Path:
    model, tokenizer = load(checkpoint_path, tokenizer_dir)
    try:
        return save_attention_png(model, tokenizer, prompt, out)
    except ValueError as err:  # an empty prompt, or one the tokenizer cannot encode
        raise GenerateError(str(err)) from None
