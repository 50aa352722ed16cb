"""Stage sample — in: models/best.pt, data/tokenizer/ — params: sample.* —
out: reports/samples.md, reports/attention.png (both also logged to the training run)."""

from __future__ import annotations

from folio import checkpoint
from folio.attention import save_attention_png
from folio.fileio import write_text
from folio.generate import GenerationConfig, complete
from pipeline import paths, tokenize, tracking
from pipeline.console import log
from pipeline.evaluate import training_run_id
from pipeline.params import Params, SampleParams


def generation_config(s: SampleParams, seed: int) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                            top_p=s.top_p, repetition_penalty=s.repetition_penalty,
                            stop=tuple(s.stop), seed=seed)


def main(params: Params) -> None:
    s = params.sample
    tokenizer = tokenize.load()
    state = checkpoint.load(paths.BEST_CKPT)
    model = checkpoint.build_model(state, tokenizer.digest)
    sections = [
        "# Samples\n",
        f"Checkpoint step {state['step']}; temperature {s.temperature}, top-k {s.top_k}, "
        f"top-p {s.top_p}, repetition penalty {s.repetition_penalty}, stop {s.stop}, "
        f"seed {s.seed} + prompt number, at most {s.max_new_tokens} new tokens per prompt.\n",
    ]
    for i, prompt in enumerate(s.prompts, 1):
        (completion,) = complete(model, tokenizer, [prompt], generation_config(s, s.seed + i))
        sections.append(f"## Prompt {i}: {prompt!r}\n\n```text\n{prompt}{completion.text}\n```\n")
        log(f"sampled prompt {i}/{len(s.prompts)}")
    write_text(paths.SAMPLES, "\n".join(sections))
    save_attention_png(model, tokenizer, s.attention_prompt or s.prompts[0], paths.ATTENTION)
    tracking.setup()
    for path in (paths.SAMPLES, paths.ATTENTION):
        tracking.log_artifact(training_run_id(), path, "samples")
    log(f"wrote {paths.SAMPLES} and {paths.ATTENTION}")
