"""The OpenAI completions API as `folio serve` speaks it: the request, checked field by field, and
the response, chunk and error bodies (https://platform.openai.com/docs/api-reference/completions).

Accepted: model, prompt (a string, or a list of strings), max_tokens, temperature, top_p, n, stop,
seed, stream, stream_options.include_usage, user, and top_k (an extension, as vLLM has). OpenAI
fields folio does not implement (echo, logprobs, best_of > n, penalties, logit_bias, suffix) are
accepted only at their no-op values; any other field is refused, naming it.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_TOKENS_LIMIT = 4096  # per request; a larger max_tokens is refused
DEFAULT_MAX_TOKENS = 16  # OpenAI's, when max_tokens is left out or null
MAX_N = 16
MAX_STOP = 4  # as OpenAI


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | list[str]
    max_tokens: int | None = Field(DEFAULT_MAX_TOKENS, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1 - MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # OpenAI fields folio does not implement: only their no-op values
    echo: Literal[False] = False
    logprobs: None = None
    best_of: int | None = None
    frequency_penalty: Literal[0, 0.0] = 0
    presence_penalty: Literal[0, 0.0] = 0
    logit_bias: dict | None = None
    suffix: None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, prompt):
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not prompts or any(not p for p in prompts):
            raise ValueError("prompt must be a non-empty string (or a list of them)")
        return prompt

    @field_validator("stop")
    @classmethod
    def _stop(cls, stop):
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"stop must be at most {MAX_STOP} non-empty strings")
        return stop

    @model_validator(mode="after")
    def _no_ops(self):
        if self.best_of not in (None, self.n):
            raise ValueError("best_of is not supported (leave it out, or equal to n)")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        if len(self.prompts()) * self.n > MAX_N:
            raise ValueError(f"prompts x n must be at most {MAX_N}")
        return self

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


def new_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def choice(index: int, text: str, finish_reason: str | None) -> dict:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def completion(id_: str, model: str, choices: list[dict], usage: dict | None, created: int | None = None,
               object_: str = "text_completion") -> dict:
    body = {"id": id_, "object": object_, "created": created or int(time.time()), "model": model,
            "choices": choices, "system_fingerprint": None}
    if usage is not None:
        body["usage"] = usage
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
