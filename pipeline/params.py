"""The typed schema of params.yaml, validated once before any stage does work.

Every error is reported together, each naming the key and the offending value.
`--set key.path=value` overrides are applied before validation (values parse as YAML).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline import paths


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    name: str = Field("tinyshakespeare", pattern=r"^[A-Za-z0-9_.-]+$", description="corpus name; the file is data/raw/<name>.txt")
    url: str = Field(description="where the corpus is downloaded from (http(s), file:// or a path)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="expected sha256 of the corpus")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="tail fraction of tokens kept for validation")


class ValidateParams(Section):
    min_bytes: int = Field(10_000, ge=1, description="smallest acceptable corpus, in bytes")
    max_line_length: int = Field(5_000, ge=1, description="lines longer than this, in characters, count as long (prose may hold a paragraph per line)")
    max_long_line_fraction: float = Field(0.001, ge=0.0, le=1.0, description="fraction of lines allowed over max_line_length")
    max_control_char_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of lines allowed to hold control characters (tab, CR, form feed aside)")
    max_markup_line_fraction: float = Field(0.01, ge=0.0, le=1.0, description="fraction of lines allowed to look like HTML/XML tags")


class TokenizerParams(Section):
    kind: str = Field("char", pattern=r"^(char|bpe|word|tiktoken:[\w.-]+)$",
                      description="char, bpe, word or tiktoken:<encoding name>")
    vocab_size: int = Field(1024, ge=2, description="vocabulary size for bpe and word (char and tiktoken have their own)")

    @model_validator(mode="after")
    def bpe_needs_the_bytes(self):
        if self.kind == "bpe" and self.vocab_size < 258:
            raise ValueError(f"tokenizer.vocab_size={self.vocab_size} is too small for bpe "
                             "(256 byte tokens + merges + <|endoftext|>: at least 258)")
        return self


class ModelParams(Section):
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=1)
    block_size: int = Field(128, ge=2, description="context length in tokens")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bias: bool = True

    @model_validator(mode="after")
    def heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}")
        return self


class TrainParams(Section):
    max_iters: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    warmup_iters: int = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.99, gt=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    eval_interval: int = Field(250, ge=1, description="steps between evaluations and `last` checkpoints")
    eval_iters: int = Field(20, ge=1, description="batches per split in each evaluation")
    seed: int = 1337
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    compile: Literal["auto", "true", "false"] = Field("auto", description="torch.compile; auto = on CUDA only")


class EvaluateParams(Section):
    batch_size: int = Field(32, ge=1, description="windows per forward pass over the val split")


class SampleParams(Section):
    prompts: list[str] = Field(default_factory=lambda: ["\n"], min_length=1)
    max_new_tokens: int = Field(500, ge=1)
    temperature: float = Field(0.8, ge=0, description="0 = greedy")
    top_k: int | None = Field(200, ge=1)
    seed: int = 1337

    @field_validator("prompts")
    @classmethod
    def prompts_not_empty(cls, prompts: list[str]) -> list[str]:
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise ValueError(f"prompt {i} is empty")
        return prompts


class Params(Section):
    data: DataParams
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    tokenizer: TokenizerParams = TokenizerParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    sample: SampleParams = SampleParams()

    def flat(self) -> dict[str, object]:
        """`{"model.n_layer": 4, ...}` — the form MLflow logs and `dvc exp run -S` takes."""
        return dict(_flatten(self.model_dump(by_alias=True)))


class ParamsError(ValueError):
    pass


def _flatten(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def apply_override(tree: dict, assignment: str) -> None:
    """Apply `a.b.c=value` to a nested dict; the value is parsed as YAML (`3`, `true`, `[a, b]`)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ParamsError(f"override {assignment!r} is not of the form key.path=value")
    *parents, leaf = key.strip().split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"override {assignment!r}: {part!r} is not a section")
    node[leaf] = yaml.safe_load(raw) if raw.strip() else ""


def validate(tree: dict) -> Params:
    try:
        return Params.model_validate(tree)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]).replace("validate_", "validate")
            value = e.get("input")
            shown = "missing" if e["type"] == "missing" else f"value {value!r}"
            lines.append(f"  {key}: {e['msg']} ({shown})")
        raise ParamsError("invalid params:\n" + "\n".join(lines)) from None


def load(path: str | Path = paths.PARAMS, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found (run folio from the project root)")
    tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(tree, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(tree, assignment)
    return validate(tree)
