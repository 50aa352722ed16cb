"""The dvc.yaml stages, one module each, named as in dvc.yaml and as `folio` commands.

A stage's `main(params)` reads its inputs through pipeline.artifacts, does its work with library
calls and writes its outputs through pipeline.artifacts; its docstring is its dvc.yaml entry. A
stage never imports another stage, so its deps are its own module, this package, the artifact
modules and what they import (tests/test_dvc_yaml.py derives that closure and checks dvc.yaml).
"""

from __future__ import annotations

import importlib
import os

# name -> one-line help; dvc.yaml runs `folio <name>` in this order.
STAGES = {
    "download": "Download the corpus (the FOLIO_DATA_MIRROR mirror first, if set) and verify or record its sha256.",
    "validate": "Check the corpus with a Great Expectations suite; write reports/validation/corpus/.",
    "tokenize": "Build the tokenizer from the corpus into data/tokenizer/.",
    "prepare": "Encode the corpus into data/prepared/: train and val token shards (<split>-NNNNN.bin) and meta.json.",
    "validate_tokens": "Check the prepared tokens with a Great Expectations suite; write reports/validation/tokens/.",
    "train": "Train the GPT (resuming an interrupted run of the same config), tracked in MLflow.",
    "evaluate": "Loss, bits per byte and per character, and perplexity of the best checkpoint over the val split (at most evaluate.max_tokens tokens, in evenly spaced windows; null = all of it), on train.device (auto: CUDA when present).",
    "sample": "Generate text from sample.prompts into reports/samples.md, on train.device (auto: CUDA when present).",
    "register": "Log the model to MLflow (pyfunc, as code) and register a new version with its model card.",
}


def run(name: str, params) -> None:
    """Run stage `name` with validated `params` while holding the workspace lock: one stage at a
    time per project (heavy modules load here, not when the CLI starts). Under torchrun, the
    node's first process holds it for the others."""
    from pipeline import artifacts, lock
    from pipeline.console import log

    lock.join_as_rank(artifacts.LOCK_FILE, f"folio {name}")  # a torchrun rank: dies with it, covered by the lock
    main = importlib.import_module(f"pipeline.stages.{name}").main
    if int(os.environ.get("LOCAL_RANK", "0")) > 0:
        return main(params)
    with lock.hold(artifacts.LOCK_FILE, f"folio {name}", log):
        main(params)
