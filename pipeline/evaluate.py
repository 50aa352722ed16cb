"""Stage evaluate — in: models/best.pt, data/prepared/val.bin, data/tokenizer/ —
params: evaluate.batch_size — out: reports/metrics.json (also logged to the training run)."""

from __future__ import annotations

import json
import math

from folio import checkpoint
from folio.data import read_tokens
from folio.evaluate import split_loss
from folio.fileio import write_json
from pipeline import paths, tracking
from pipeline.console import log
from pipeline.params import Params
from pipeline.tokenize import load_tokenizer


def training_run_id() -> str:
    return json.loads(paths.RUN_INFO.read_text())["run_id"]


def main(params: Params) -> None:
    tokenizer = load_tokenizer()
    state = checkpoint.load(paths.BEST_CKPT)
    model = checkpoint.build_model(state, tokenizer.digest)
    val_tokens = read_tokens(paths.VAL_BIN)
    result = split_loss(model, val_tokens, params.evaluate.batch_size)
    n_chars = len(tokenizer.decode(val_tokens[1:].tolist()))  # the characters that were predicted
    total_bits = result["loss"] * result["n_tokens"] / math.log(2)
    metrics = {
        "val": {
            "loss": result["loss"],
            "bits_per_char": total_bits / n_chars,
            "perplexity": result["perplexity"],
            "tokens": result["n_tokens"],
        },
        "checkpoint_step": state["step"],
    }
    write_json(paths.METRICS, metrics)
    log(
        f"val loss {metrics['val']['loss']:.4f}, {metrics['val']['bits_per_char']:.4f} bits/char, "
        f"perplexity {metrics['val']['perplexity']:.2f} over {result['n_tokens']:,} tokens"
    )
    tracking.setup()
    tracking.log_metrics(
        training_run_id(),
        {f"final_val_{key}": value for key, value in metrics["val"].items() if key != "tokens"},
    )
    tracking.log_artifact(training_run_id(), paths.METRICS, "evaluate")
