"""Stage sample — in: models/best.pt, data/tokenizer/ — params: sample.*, train.device —
out: reports/samples.md, reports/attention.png (both also logged to the training run).

It runs on train.device (auto: CUDA when present, folio.device.pick_device), with the weights in
folio.device.inference_dtype there (folio.generate.for_generation: bfloat16 on a CUDA GPU that has
it, float32 on a CPU)."""

from __future__ import annotations

from folio.attention import save_attention_png
from folio.device import pick_device
from folio.generate import GenerationConfig, complete, for_generation
from pipeline import artifacts
from pipeline.tracking import store
from pipeline.artifacts import models, reports, tokenizer as tokenizer_files
from pipeline.console import log
from pipeline.errors import StageError
from pipeline.params import Params, SampleParams


def generation_config(s: SampleParams, seed: int) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                            top_p=s.top_p, repetition_penalty=s.repetition_penalty,
                            stop=tuple(s.stop), seed=seed)


def check_prompts(tokenizer, prompts: list[str]) -> None:
    """Every prompt must encode: fail before sampling anything, naming the prompt."""
    for key, prompt in prompts:
        try:
            tokenizer.encode(prompt)
        except ValueError as err:
            raise StageError(f"{key}={prompt!r}: {err}; change the prompt, or train a tokenizer "
                             "that covers it (tokenizer.kind: bpe encodes any text)") from None


def main(params: Params) -> None:
    s = params.sample
    tokenizer = tokenizer_files.load()
    attention_prompt = s.attention_prompt or s.prompts[0]
    check_prompts(tokenizer, [*((f"sample.prompts[{i}]", p) for i, p in enumerate(s.prompts)),
                              ("sample.attention_prompt", attention_prompt)])
    device = pick_device(params.train.device)
    log(f"sampling on {device.device} ({device.reason})")
    state, model = models.load_model(tokenizer, device=device.device)
    model = for_generation(model)
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
    reports.write_samples("\n".join(sections))
    save_attention_png(model, tokenizer, attention_prompt, artifacts.ATTENTION)
    store.setup()
    for path in (artifacts.SAMPLES, artifacts.ATTENTION):
        store.log_artifact(models.training_run_id(), path, "samples")
    log(f"wrote {artifacts.SAMPLES} and {artifacts.ATTENTION}")
