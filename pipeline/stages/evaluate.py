"""Stage evaluate — in: models/best.pt, data/prepared/ (val.bin, meta.json), data/tokenizer/ —
params: evaluate.batch_size — out: reports/metrics.json (also logged to the training run).

Beside the loss per token it reports bits per byte (total bits over the UTF-8 bytes of the
predicted val text), which compares runs across tokenizers, and bits per character.
"""

from __future__ import annotations

import math

from folio.evaluate import split_loss
from pipeline import artifacts, tracking
from pipeline.artifacts import models, prepared, reports, tokenizer as tokenizer_files
from pipeline.console import log
from pipeline.params import Params


def main(params: Params) -> None:
    tokenizer = tokenizer_files.load()
    state, model = models.load_model(tokenizer)
    val_tokens = prepared.load_split("val")
    meta = prepared.read_meta()
    result = split_loss(model, val_tokens, params.evaluate.batch_size)
    # every val token but the first is predicted: leave its text out of the byte and char counts
    first = tokenizer.decode(val_tokens[:1].tolist())
    predicted_bytes = meta["val_bytes"] - len(first.encode("utf-8"))
    predicted_chars = meta["val_chars"] - len(first)
    total_bits = result["loss"] * result["n_tokens"] / math.log(2)
    metrics = {
        "val": {
            "loss": result["loss"],
            "bits_per_token": result["bits_per_token"],
            "bits_per_byte": total_bits / predicted_bytes,
            "bits_per_char": total_bits / predicted_chars,
            "perplexity": result["perplexity"],
            "tokens": result["n_tokens"],
        },
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                      "bytes_per_token": meta["bytes_per_token"]},
        "checkpoint_step": state["step"],
    }
    reports.write_metrics(metrics)
    val = metrics["val"]
    log(f"val loss {val['loss']:.4f} nats/token, {val['bits_per_byte']:.4f} bits/byte, "
        f"{val['bits_per_char']:.4f} bits/char, perplexity {val['perplexity']:.2f} "
        f"over {result['n_tokens']:,} tokens")
    tracking.setup()
    run_id = models.training_run_id()
    tracking.log_metrics(run_id, {f"final_val_{key}": value for key, value in val.items()
                                  if key != "tokens"})
    tracking.log_artifact(run_id, artifacts.METRICS, "evaluate")
