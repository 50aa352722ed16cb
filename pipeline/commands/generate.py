"""`folio generate` and `folio attention` (not dvc.yaml stages) — in: a checkpoint and its
tokenizer — out: text on stdout (streamed, or one JSON object), or an attention-map PNG.

Both run on `--device` (auto: CUDA when present, by folio.device.pick_device's rule), with the
weights in that device's inference dtype (folio.generate.for_generation). int8 (`--quantize int8`)
is a CPU path: with `--device auto` it runs on the CPU, saying so on stderr; with a GPU named it
is refused.

pipeline/cli.py keeps the commands thin and imports this module only when one of them runs.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from folio import checkpoint
from folio.attention import save_attention_png
from folio.device import pick_device
from folio.generate import GenerationConfig, complete, for_generation, stream
from folio.quantize import quantize
from folio.tokenizers import META_FILE as TOKENIZER_FILE, load_tokenizer
from pipeline.errors import StageError


class GenerateError(StageError, ValueError):
    """A setting, prompt or model the user can fix: reported as a message, not a traceback."""


DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"  # train.device's


def inference_device(requested: str, quantization: str | None = None) -> torch.device:
    """The device to run on: `requested` (auto: CUDA, then MPS, then the CPU; folio.device.pick_device,
    which refuses a device this machine lacks). int8 runs on the CPU only: asked with auto, the
    CPU (saying so on stderr when auto would have taken a GPU); asked with a GPU, refused."""
    if not re.fullmatch(DEVICE_PATTERN, requested):
        raise GenerateError(f"--device {requested!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if quantization and requested not in ("auto", "cpu"):
        raise GenerateError(f"--quantize {quantization} runs on the CPU only, not on {requested}; "
                            "pass --device cpu, or drop --quantize to run on the GPU")
    choice = pick_device(requested)
    if quantization and choice.type != "cpu":
        print(f"note: --quantize {quantization} runs on the CPU only: generating on the CPU, not on "
              f"{choice.device} ({choice.reason}); drop --quantize to use it", file=sys.stderr)
        return torch.device("cpu")
    return choice.device


def load(checkpoint_path: Path, tokenizer_dir: Path, model_uri: str | None = None,
         quantization: str | None = None, device: str = "auto"):
    """(model, tokenizer) from a checkpoint and its tokenizer, or from a registered model URI, on
    `device` (`inference_device`); refuses a checkpoint trained with another tokenizer."""
    on = inference_device(device, quantization)
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

            model, tokenizer = load_generator(model_uri, on)
        else:
            tokenizer = load_tokenizer(tokenizer_dir)
            _, model = checkpoint.load_model(checkpoint_path, on, tokenizer.digest)
        return quantize(for_generation(model), quantization), tokenizer
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
             use_cache: bool = True, threads: int | None = None, device: str = "auto") -> None:
    """Print the prompt and its continuation as it is sampled (one sample, no beams), each
    completion under a header (several samples or beams), or one JSON object (`as_json`).
    `settings`: GenerationConfig fields."""
    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = load(checkpoint_path, tokenizer_dir, model_uri, quantization, device)
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
                         "device": str(next(model.parameters()).device),
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


def attention(prompt: str, out: Path, checkpoint_path: Path, tokenizer_dir: Path,
              device: str = "auto", force: bool = False) -> Path:
    """Draw PROMPT's attention maps to `out`; a file a dvc.yaml stage declares as its output
    (reports/attention.png is the sample stage's) only with `force`."""
    from pipeline.commands.dvc_outputs import stage_writing

    if not force and (stage := stage_writing(out)) is not None:
        raise GenerateError(f"{out} is an output of the dvc.yaml stage {stage}: writing it would make DVC "
                            f"see {stage} as changed; write elsewhere with --out (default attention.png), "
                            "or pass --force to overwrite it")
    model, tokenizer = load(checkpoint_path, tokenizer_dir, device=device)
    try:
        return save_attention_png(model, tokenizer, prompt, out)
    except ValueError as err:  # an empty prompt, or one the tokenizer cannot encode
        raise GenerateError(str(err)) from None
