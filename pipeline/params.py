"""The typed schema of params.yaml, validated once before any stage does work.

Every error is reported together, each naming the key and the offending value.
`--set key.path=value` overrides are applied before validation (values parse as YAML).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline import paths


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    name: str = Field("tinyshakespeare", pattern=r"^[A-Za-z0-9_.-]+$", description="corpus name; the file is data/raw/<name>.txt")
    url: str = Field(min_length=1, description="where the corpus is downloaded from: http(s)://, file:///abs/path or a path")
    sha256: str = Field(pattern=r"^([0-9a-f]{64})?$", description="expected sha256 of the corpus; empty: computed and recorded in data/raw/<name>.json")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="tail fraction of the text kept for validation")

    @field_validator("url")
    @classmethod
    def known_scheme(cls, url: str) -> str:
        scheme, sep, _ = url.partition("://")
        if sep and scheme.lower() not in ("http", "https", "file"):
            raise ValueError(f"unsupported scheme {scheme!r}: use http(s)://, file:// or a plain path")
        return url


class ValidateParams(Section):
    min_bytes: int = Field(10_000, ge=1, description="smallest acceptable corpus, in bytes")
    max_line_length: int = Field(5_000, ge=1, description="lines longer than this, in characters, count as long (prose may hold a paragraph per line)")
    max_long_line_fraction: float = Field(0.001, ge=0.0, le=1.0, description="fraction of lines allowed over max_line_length")
    max_control_char_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of lines allowed to hold control characters (tab, CR, form feed aside)")
    max_markup_line_fraction: float = Field(0.01, ge=0.0, le=1.0, description="fraction of lines allowed to look like HTML/XML tags")
    min_printable_fraction: float = Field(0.999, ge=0.0, le=1.0, description="fraction of characters that must be printable or whitespace (not control, private-use, unassigned or U+FFFD)")
    min_lines: int = Field(100, ge=0, description="fewest lines; the per-line fractions mean little over fewer")
    min_mean_line_length: float = Field(5.0, ge=0.0, description="shortest acceptable mean line length, in characters (one word or character per line is shredded text)")
    max_duplicate_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of the text, by characters of non-blank stripped lines, allowed in lines repeating an earlier line")
    min_distinct_chars: int = Field(10, ge=1, description="fewest distinct characters (the character vocabulary)")
    max_distinct_chars: int = Field(1000, ge=1, description="most distinct characters; more suits a bpe tokenizer, not char")

    @model_validator(mode="after")
    def distinct_chars_range(self):
        if self.min_distinct_chars > self.max_distinct_chars:
            raise ValueError(f"validate.min_distinct_chars={self.min_distinct_chars} exceeds "
                             f"validate.max_distinct_chars={self.max_distinct_chars}")
        return self


class ValidateTokensParams(Section):
    max_unseen_val_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of val tokens allowed whose id never occurs in the train split (the model never learns them)")
    val_fraction_tolerance: float = Field(0.25, gt=0.0, lt=1.0, description="allowed relative deviation of the val split's share of tokens from data.val_fraction")
    max_round_trip_failures: float = Field(0.0, ge=0.0, le=1.0, description="fraction of sampled corpus windows allowed to decode differently from the text (word's <unk> needs > 0)")


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
    kind: Literal["gpt", "bigram"] = Field("gpt", description="gpt, or the bigram baseline (a next-token lookup table)")
    n_layer: int = Field(4, ge=1, description="transformer blocks")
    n_head: int = Field(4, ge=1, description="attention heads per block")
    n_embd: int = Field(128, ge=1, description="width of the residual stream")
    block_size: int = Field(128, ge=2, description="context length in tokens")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bias: bool = Field(True, description="biases in linear layers and LayerNorms")
    pos_emb: Literal["learned", "rope"] = Field("learned", description="learned absolute position embeddings, or rotary")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm")
    qk_norm: bool = Field(False, description="RMS-normalise queries and keys")
    mlp: Literal["gelu", "gelu_tanh", "relu2", "swiglu"] = Field("gelu", description="MLP activation")
    tie_weights: bool = Field(True, description="share the token embedding with the output head")

    @model_validator(mode="after")
    def heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}")
        return self


class TrainParams(Section):
    init_from: str = Field("scratch", min_length=1, description="scratch, a folio checkpoint path, gpt2:<Hugging Face GPT-2 dir> or models:/<name>@<alias>; the model config then comes from there (model.* ignored but dropout)")
    max_iters: int = Field(2000, ge=1, description="optimizer steps (the step budget)")
    max_seconds: float | None = Field(None, gt=0, description="optimisation time budget in seconds; training stops at whichever budget runs out first, and the schedule follows it")
    batch_size: int = Field(16, ge=1, description="sequences per micro-batch (per process)")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches accumulated per optimizer step")
    learning_rate: float = Field(2e-3, gt=0, description="peak AdamW learning rate")
    min_lr: float = Field(1e-4, ge=0, description="learning rate at the end of the cosine decay")
    warmup_iters: int = Field(50, ge=0, description="steps of linear warmup")
    weight_decay: float = Field(0.1, ge=0, description="decoupled weight decay on 2-D weights")
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.99, gt=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    optimizer: Literal["adamw", "muon"] = Field("adamw", description="muon: torch.optim.Muon for the 2-D block weights, AdamW for the rest")
    muon_lr: float = Field(0.02, gt=0, description="peak Muon learning rate (optimizer: muon)")
    eval_interval: int = Field(250, ge=1, description="steps between evaluations on both splits")
    eval_iters: int = Field(20, ge=1, description="batches per split in each evaluation")
    checkpoint_every: int | None = Field(None, ge=1, description="steps between checkpoints; null = every evaluation")
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints kept (plus best.pt)")
    patience: int | None = Field(None, ge=1, description="stop after this many evaluations without a better val loss; null = off")
    seed: int = 1337
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto = cuda, then mps, then cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto = bf16 autocast on CUDA that supports it, float32 elsewhere")
    compile: Literal["auto", "true", "false"] = Field("auto", description="torch.compile; auto = on CUDA only")
    grad_checkpointing: bool = Field(False, description="recompute block activations in the backward pass to save memory")
    nproc: int = Field(1, ge=1, description="processes per node; > 1 launches the stage through torchrun (DDP)")

    @field_validator("init_from")
    @classmethod
    def init_from_form(cls, value: str) -> str:
        if value.startswith("models:") and not re.fullmatch(r"models:/[^/@]+(@[\w-]+|/\d+)", value):
            raise ValueError(f"{value!r} is not a registry URI: use models:/<name>@<alias> or models:/<name>/<version>")
        if value.startswith("gpt2:") and not value.removeprefix("gpt2:").strip():
            raise ValueError("gpt2: needs a directory, e.g. gpt2:/path/to/hf/gpt2")
        return value


class EvaluateParams(Section):
    batch_size: int = Field(32, ge=1, description="windows per forward pass over the val split")


class SampleParams(Section):
    prompts: list[str] = Field(default_factory=lambda: ["\n"], min_length=1)
    max_new_tokens: int = Field(500, ge=1)
    temperature: float = Field(0.8, ge=0, description="0 = greedy")
    top_k: int | None = Field(200, ge=1)
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus: sample among the likeliest tokens holding this much probability")
    repetition_penalty: float = Field(1.0, gt=0, description="> 1 makes tokens already in the text less likely (1 = off)")
    stop: list[str] = Field(default_factory=list, description="end a sample before the first of these strings")
    seed: int = 1337
    attention_prompt: str | None = Field(None, min_length=1, description="prompt drawn to reports/attention.png; default: the first prompt")

    @field_validator("prompts")
    @classmethod
    def prompts_not_empty(cls, prompts: list[str]) -> list[str]:
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise ValueError(f"prompt {i} is empty")
        return prompts


class RegistryParams(Section):
    model_name: str = Field("", pattern=r"^([A-Za-z0-9_.-]+)?$",
                            description="registered model name; empty = folio-<data.name>")
    metric: Literal["loss", "bits_per_token", "bits_per_byte", "bits_per_char", "perplexity"] = Field(
        "bits_per_byte", description="val metric (lower is better) a version must beat to take the alias")
    alias: str = Field("champion", pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$",
                       description="the alias `folio promote` moves and `folio generate --model` names")

    @field_validator("alias")
    @classmethod
    def alias_not_reserved(cls, alias: str) -> str:
        if alias == "latest" or (alias[0] == "v" and alias[1:].isdigit()):
            raise ValueError(f"alias {alias!r} is reserved by MLflow (latest, v<number>)")
        return alias


class Params(Section):
    data: DataParams
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    validate_tokens: ValidateTokensParams = ValidateTokensParams()
    tokenizer: TokenizerParams = TokenizerParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    sample: SampleParams = SampleParams()
    registry: RegistryParams = RegistryParams()

    def registered_model_name(self) -> str:
        """registry.model_name, or `folio-<data.name>` when it is empty."""
        return self.registry.model_name or f"folio-{self.data.name}"

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
            key = ".".join("validate" if p == "validate_" else str(p) for p in e["loc"])
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
