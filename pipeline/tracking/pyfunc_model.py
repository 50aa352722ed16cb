"""The registered MLflow model: a pyfunc that rebuilds folio's GPT from its artifacts and continues
prompts with folio's own sampling.

It is logged as code (MLflow's models-from-code): MLflow stores this file, not a pickle, and runs
it on load, so loading needs folio and torch installed and nothing else — it imports only the
library, never the rest of `pipeline`.

Artifacts: `checkpoint` (weights-only: model, model_config, tokenizer info, step) and `tokenizer`
(a folio tokenizer directory). Input: prompt strings — MLflow hands them over as a one-column
DataFrame (the DataFrame type hint keeps MLflow on the logged signature instead of inferring one).
Params, declared in the signature that pipeline/tracking/registry.py writes with sample.*'s values
as defaults: max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop (a list of
strings), seed. A param left at None uses folio.generate's default. The output is each prompt
followed by its continuation, which ends before the first stop string.

Device: model_config's `device` (`mlflow.pyfunc.load_model(uri, model_config={"device": "cpu"})`),
default auto: CUDA when present (folio.device.pick_device), the weights in that device's
inference dtype (folio.generate.for_generation).
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

SAMPLING_PARAMS = ("temperature", "top_k", "top_p", "repetition_penalty", "stop", "seed")
FALLBACK_MAX_NEW_TOKENS = 200  # when predict is called without the signature's defaults


def prompts_of(model_input) -> list[str]:
    """A list of prompt strings from a one-column DataFrame (or a list, array or str)."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):  # a pandas DataFrame: the first column holds the prompts
        model_input = model_input.iloc[:, 0]
    prompts = list(model_input.tolist() if hasattr(model_input, "tolist") else model_input)
    bad = [p for p in prompts if not isinstance(p, str) or not p]
    if bad:
        raise ValueError(f"every input must be a non-empty prompt string, got {bad[0]!r}")
    return prompts


class FolioGPT(PythonModel):
    def load_context(self, context) -> None:
        from folio import checkpoint
        from folio.device import pick_device
        from folio.generate import for_generation
        from folio.tokenizers import load_tokenizer

        self.tokenizer = load_tokenizer(context.artifacts["tokenizer"])
        device = pick_device((getattr(context, "model_config", None) or {}).get("device", "auto")).device
        _, model = checkpoint.load_model(context.artifacts["checkpoint"], device, self.tokenizer.digest)
        self.model = for_generation(model)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[str]:
        from folio.generate import generate_text

        params = params or {}
        max_new_tokens = params.get("max_new_tokens")
        max_new_tokens = FALLBACK_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
        sampling = {key: params[key] for key in SAMPLING_PARAMS if params.get(key) is not None}
        if "stop" in sampling:
            sampling["stop"] = tuple(str(s) for s in sampling["stop"])
        return [generate_text(self.model, self.tokenizer, prompt, int(max_new_tokens), **sampling)
                for prompt in prompts_of(model_input)]


mlflow.models.set_model(FolioGPT())
