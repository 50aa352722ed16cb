"""Stage sample — in: models/best.pt, data/tokenizer/ — params: sample.* —
out: reports/samples.md (also logged to the training run)."""

from __future__ import annotations

from folio import checkpoint
from folio.fileio import write_text
from folio.generate import generate_text
from pipeline import paths, tokenize, tracking
from pipeline.console import log
from pipeline.evaluate import training_run_id
from pipeline.params import Params


def main(params: Params) -> None:
    s = params.sample
    tokenizer = tokenize.load()
    state = checkpoint.load(paths.BEST_CKPT)
    model = checkpoint.build_model(state, tokenizer.digest)
    sections = [
        "# Samples\n",
        f"Checkpoint step {state['step']}; temperature {s.temperature}, top-k {s.top_k}, "
        f"seed {s.seed} + prompt number, {s.max_new_tokens} new tokens per prompt.\n",
    ]
    for i, prompt in enumerate(s.prompts, 1):
        text = generate_text(
            model, tokenizer, prompt, s.max_new_tokens,
            temperature=s.temperature, top_k=s.top_k, seed=s.seed + i,
        )
        sections.append(f"## Prompt {i}: {prompt!r}\n\n```text\n{text}\n```\n")
        log(f"sampled prompt {i}/{len(s.prompts)}")
    write_text(paths.SAMPLES, "\n".join(sections))
    tracking.setup()
    tracking.log_artifact(training_run_id(), paths.SAMPLES, "samples")
    log(f"wrote {paths.SAMPLES}")
