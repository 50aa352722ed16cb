"""Stage evaluate — in: models/best.pt, models/run.json, data/prepared/ (val shards, meta.json),
data/tokenizer/, reports/validation/tokens/tokens.json (tokens that passed, encoded by this
tokenizer: checked before any work), data/suites/ (evaluate.suites' files), data/raw/<name>/ and
its manifest (the train split, read for contamination) — params: evaluate.* (batch_size,
max_tokens, suites, harness), train.device — out: reports/metrics.json (also logged to the
training run: metrics and digest tags; with evaluate.harness.tasks, lm-eval's scores under
`harness`, pipeline/harness.py).

It runs on train.device (auto: CUDA when present, folio.device.pick_device), in
folio.device.inference_dtype there: bfloat16 autocast on a CUDA GPU that has it, float32 on a CPU
(so the CPU's metrics do not change with the device code).

metrics.json names what it scored: the checkpoint file, its step, the digest of its weights
(folio.checkpoint.weights_digest) and the fingerprint of the training run (models/run.json's, and
its MLflow run's `fingerprint` tag), so register can refuse metrics that belong to other weights.
Both are functions of the inputs, so metrics.json stays byte for byte the same in any clone.

The whole val split, or for a larger one a fixed subset of about evaluate.max_tokens tokens in
windows evenly spaced over it (the same windows in every run, so runs compare). Beside the loss per
token it reports bits per byte (total bits over the UTF-8 bytes of the predicted val text; the
end-of-text tokens between documents stand for no text), which compares runs across tokenizers,
and bits per character. val's `text_digest` names the text scored (pipeline/measures.py): the
split's (meta.json's val_text_digest) when it was scored whole, else the digest of that subset,
which only a model of the same tokenizer and context could score again.

Each of evaluate.suites (pipeline/suites.py: a fixed text under data/suites/) is scored whole after
val, under `suites.<name>` with the digest of its text (`text_digest`), of its files (`sha256`,
pinnable) and its `contamination`: the share of its lines found verbatim in the train split, a
warning when above 0. Suites are read and their pins checked before the model is loaded, so a bad
one fails the stage at once, in one line.
"""

from __future__ import annotations

import hashlib

from folio.checkpoint import weights_digest
from folio.device import pick_device
from folio.evaluate import bits_per_byte, split_loss, text_bytes
from pipeline import artifacts, measures, suites
from pipeline.tracking import store
from pipeline.artifacts import models, prepared, reports, tokenizer as tokenizer_files
from pipeline.console import log
from pipeline.params import Params


def main(params: Params) -> None:
    tokenizer = tokenizer_files.load()
    meta = prepared.read_meta()
    prepared.require_validated(meta, tokenizer)
    run_id = models.training_run_id()  # the run that trained best.pt: the metrics go to it
    texts = [suites.load(suite) for suite in params.evaluate.suites]  # a bad suite fails before any work
    if texts:
        log(f"suites {', '.join(t.name for t in texts)}: looking for their lines in the train split")
    overlap = suites.train_contamination(texts, params.data)
    device = pick_device(params.train.device)
    log(f"evaluating on {device.device} ({device.reason})")
    state, model = models.load_model(tokenizer, device=device.device)
    val_tokens = prepared.load_split("val", meta)
    whole = params.evaluate.max_tokens is None or params.evaluate.max_tokens >= len(val_tokens)
    result = split_loss(model, val_tokens, params.evaluate.batch_size, None if whole else params.evaluate.max_tokens,
                        target_bytes=None if whole else text_bytes(tokenizer))
    if whole:  # every val token but the first of each shard is predicted: leave their text out
        count = text_bytes(tokenizer)
        firsts = [val_tokens.read(shard, 0, 1).tolist() for shard, n in enumerate(val_tokens.lengths) if n]
        predicted_bytes = meta["val_bytes"] - sum(count(ids) for ids in firsts)
        predicted_chars = meta["val_chars"] - sum(len(tokenizer.decode(ids)) for ids in firsts if count(ids))
    else:  # the subset's chars, estimated from its bytes at the split's ratio
        predicted_bytes = result["n_bytes"]
        predicted_chars = predicted_bytes * meta["val_chars"] / max(meta["val_bytes"], 1)
    val_bits_per_byte = bits_per_byte(result["loss"], result["n_tokens"], predicted_bytes)
    metrics = {
        "val": {
            "loss": result["loss"],
            "bits_per_token": result["bits_per_token"],
            "bits_per_byte": val_bits_per_byte,
            "bits_per_char": val_bits_per_byte * predicted_bytes / max(predicted_chars, 1),
            "perplexity": result["perplexity"],
            "tokens": result["n_tokens"],
            "subset": not whole,  # evaluate.max_tokens capped the split
            "text_digest": val_digest(meta, whole, params.evaluate.max_tokens, model.config.block_size,
                                      tokenizer.digest),
        },
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                      "bytes_per_token": meta["bytes_per_token"]},
        # what was scored, deterministically: the weights, and the training run by its fingerprint
        # (run.json's, the MLflow run's `fingerprint` tag) — not its MLflow id, which differs by clone
        "checkpoint": {"file": str(artifacts.BEST_CKPT), "step": state["step"],
                       "weights_digest": weights_digest(state),
                       "run_fingerprint": (models.read_run_info() or {}).get("fingerprint")},
    }
    if texts:
        metrics["suites"] = {text.name: {**suites.score(model, tokenizer, text, params.evaluate.batch_size),
                                         "contamination": overlap[text.name]} for text in texts}
    if params.evaluate.harness.tasks:  # lm-eval tasks too (the eval extra), logged to the run
        from pipeline.harness import stage_scores

        metrics["harness"] = stage_scores(params.evaluate.harness, model, tokenizer, run_id)
    reports.write_metrics(metrics)
    val = metrics["val"]
    log(f"val loss {val['loss']:.4f} nats/token, {val['bits_per_byte']:.4f} bits/byte, "
        f"{val['bits_per_char']:.4f} bits/char, perplexity {val['perplexity']:.2f} "
        f"over {result['n_tokens']:,} tokens")
    for name, suite in metrics.get("suites", {}).items():
        log(f"suite {name}: {suite['bits_per_byte']:.4f} bits/byte, loss {suite['loss']:.4f} nats/token "
            f"over {suite['tokens']:,} tokens (text {suite['text_digest']}, files {suite['sha256'][:16]})")
        found = suite["contamination"]
        if found["in_train"]:
            log(f"warning: suite {name}: {found['share']:.1%} of its lines of {suites.MIN_LINE_CHARS}+ characters "
                f"({found['in_train']:,} of {found['lines']:,}) occur verbatim in the train split; its scores "
                "overstate how well the model does on text it never saw")
    store.setup()
    store.log_metrics(run_id, {f"final_val_{key}": value for key, value in val.items()
                                  if key in measures.VAL_METRICS})
    # the suites' scores (the harness's are logged by stage_scores) and every section's digest
    store.log_metrics(run_id, {key: value for key, value in measures.run_metrics(metrics).items()
                               if not key.startswith("harness.")})
    client = store.mlflow().MlflowClient()
    for key, value in measures.run_tags(metrics).items():
        client.set_tag(run_id, key, value)
    store.log_artifact(run_id, artifacts.METRICS, "evaluate")


def val_digest(meta: dict, whole: bool, max_tokens: int | None, block_size: int, tokenizer_digest: str) -> str | None:
    """The digest of the val text scored: the split's (prepare's val_text_digest) when it was
    scored whole, else of the windows of it evaluate.max_tokens chose, which depend on the tokens
    (the tokenizer) and the context too. None for a split prepared by an older folio."""
    split = meta.get("val_text_digest")
    if split is None or whole:
        return split
    subset = f"{split} windows max_tokens={max_tokens} block_size={block_size} tokenizer={tokenizer_digest}"
    return hashlib.sha256(subset.encode()).hexdigest()[:16]
