"""The typed schema of params.yaml, validated once before any stage does work.

Every error is reported together, each naming the key and the offending value: an unknown key
(a typo) with the known keys closest to it, a value of the wrong type with the type its key takes.
`--set key.path=value` overrides are applied before validation (values parse as YAML).

One place for each default: model.* and train.* take theirs from the library's GPTConfig and
TrainConfig, the other sections' are here; params.yaml states every key with those same values
(tests/test_params.py checks), so DVC sees each one.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from folio.config import GPTConfig, TrainConfig
from pipeline import artifacts
from pipeline.errors import StageError
from pipeline.measures import Measure, parse as parse_measure

# Keys params.yaml sets for its corpus (Tiny Shakespeare), not defaults: data.* has none, and the
# prompts name its speakers. Every other key in params.yaml holds its default.
CORPUS_KEYS = ("data.name", "data.url", "data.sha256", "data.val_fraction", "sample.prompts",
               "sample.attention_prompt")

_GPT = {f.name: f.default for f in dataclasses.fields(GPTConfig) if f.default is not dataclasses.MISSING}
_TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() not in ("http", "https", "file"):
        raise ValueError(f"unsupported scheme {scheme!r}: use http(s)://, file:// or a plain path")
    return url


def _distinct_names(items: list, what: str) -> list:
    names = [item.name for item in items]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"two {what}s are named {twice[0]!r}; give each {what} its own name")
    return items


class SourceParams(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the source's name; its files go to data/raw/<data.name>/<name>/")
    url: str = Field(min_length=1, description="where the source comes from, as data.url: a file, a directory, a glob or an http(s) URL")
    weight: float = Field(gt=0, description="the source's share of the training windows drawn each epoch, relative to the other weights")
    sha256: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="expected digest of the source (as data.sha256 for a corpus of its own); empty: recorded, not checked")

    _scheme = field_validator("url")(classmethod(lambda cls, url: _known_scheme(url)))


class DataParams(Section):
    name: str = Field("tinyshakespeare", pattern=r"^[A-Za-z0-9_.-]+$", description="corpus name; its files go to data/raw/<name>/, its manifest to data/raw/<name>.json")
    url: str = Field(min_length=1, description="where the corpus comes from: an http(s):// or file:// URL or a path naming one file, a directory (every file of a known format inside, recursively) or a glob")
    sha256: str = Field(pattern=r"^([0-9a-f]{64})?$", description="expected sha256 of the corpus (of the file; for several files, of the manifest); empty: computed and recorded in data/raw/<name>.json")
    format: Literal["auto", "txt", "jsonl", "parquet"] = Field("auto", description="auto = from each file's suffix (.txt, .jsonl, .parquet, each maybe .gz or .zst; a single file of another suffix is text)")
    text_field: str = Field("text", min_length=1, description="the JSONL field or Parquet column holding each document's text")
    split: Literal["auto", "tail", "documents"] = Field("auto", description="tail: the last val_fraction of the characters is val; documents: a seeded val_fraction of the documents; auto: documents when there are at least 10 / val_fraction of them, else tail")
    seed: int = Field(1337, description="seeds which documents are val and the tokenizer's training sample")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="share of the corpus kept for validation (see data.split)")
    sources: list[SourceParams] = Field(default_factory=list, description="a weighted mixture: [{name, url, weight, sha256}], each source downloaded, gated and split on its own, its training windows drawn in proportion to its weight; empty = data.url is the one source (data.url and data.sha256 are unused when set)")

    @field_validator("url")
    @classmethod
    def known_scheme(cls, url: str) -> str:
        return _known_scheme(url)

    @field_validator("sources")
    @classmethod
    def distinct_source_names(cls, sources: list) -> list:
        return _distinct_names(sources, "source")


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
    max_distinct_chars: int = Field(1000, ge=1, description="most distinct characters, for tokenizer.kind=char only (its vocabulary); bpe, word and tiktoken are not limited")

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
    max_train_chars: int = Field(100_000_000, ge=1, description="bpe and word learn from at most this many characters of the train split, a sample drawn with data.seed (char reads every character)")

    @model_validator(mode="after")
    def bpe_needs_the_bytes(self):
        if self.kind == "bpe" and self.vocab_size < 258:
            raise ValueError(f"tokenizer.vocab_size={self.vocab_size} is too small for bpe "
                             "(256 byte tokens + merges + <|endoftext|>: at least 258)")
        return self


class ModelParams(Section):
    kind: Literal["gpt", "bigram"] = Field(_GPT["kind"], description="gpt, or the bigram baseline (a next-token lookup table)")
    n_layer: int = Field(_GPT["n_layer"], ge=1, description="transformer blocks")
    n_head: int = Field(_GPT["n_head"], ge=1, description="attention heads per block")
    n_embd: int = Field(_GPT["n_embd"], ge=1, description="width of the residual stream")
    block_size: int = Field(_GPT["block_size"], ge=2, description="context length in tokens")
    dropout: float = Field(_GPT["dropout"], ge=0.0, lt=1.0)
    bias: bool = Field(_GPT["bias"], description="biases in linear layers and LayerNorms")
    pos_emb: Literal["learned", "rope"] = Field(_GPT["pos_emb"], description="learned absolute position embeddings, or rotary")
    norm: Literal["layernorm", "rmsnorm"] = Field(_GPT["norm"])
    qk_norm: bool = Field(_GPT["qk_norm"], description="RMS-normalise queries and keys")
    mlp: Literal["gelu", "gelu_tanh", "relu2", "swiglu"] = Field(_GPT["mlp"], description="MLP activation")
    tie_weights: bool = Field(_GPT["tie_weights"], description="share the token embedding with the output head")

    @model_validator(mode="after")
    def heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}")
        return self


class TrainParams(Section):
    init_from: str = Field("scratch", min_length=1, description="scratch, a folio checkpoint path, gpt2:<Hugging Face GPT-2 dir> or models:/<name>@<alias>; the model config then comes from there (model.* ignored but dropout)")
    max_iters: int = Field(_TRAIN["max_iters"], ge=1, description="optimizer steps (the step budget)")
    max_seconds: float | None = Field(_TRAIN["max_seconds"], gt=0, description="optimisation time budget in seconds; training stops at whichever budget runs out first, and the schedule follows it (wall time: such a run is not reproducible)")
    batch_size: int = Field(_TRAIN["batch_size"], ge=1, description="sequences per micro-batch (per process)")
    grad_accum_steps: int = Field(_TRAIN["grad_accum_steps"], ge=1, description="micro-batches accumulated per optimizer step")
    learning_rate: float = Field(_TRAIN["learning_rate"], gt=0, description="peak AdamW learning rate")
    min_lr: float = Field(_TRAIN["min_lr"], ge=0, description="learning rate at the end of the cosine decay (at most learning_rate)")
    warmup_iters: int = Field(_TRAIN["warmup_iters"], ge=0, description="steps of linear warmup")
    weight_decay: float = Field(_TRAIN["weight_decay"], ge=0, description="decoupled weight decay on 2-D weights")
    beta1: float = Field(_TRAIN["beta1"], gt=0, lt=1)
    beta2: float = Field(_TRAIN["beta2"], gt=0, lt=1)
    grad_clip: float = Field(_TRAIN["grad_clip"], ge=0, description="max gradient norm; 0 disables clipping")
    optimizer: Literal["adamw", "muon"] = Field(_TRAIN["optimizer"], description="muon: torch.optim.Muon for the 2-D block weights, AdamW for the rest")
    muon_lr: float = Field(_TRAIN["muon_lr"], gt=0, description="peak Muon learning rate (optimizer: muon)")
    eval_interval: int = Field(_TRAIN["eval_interval"], ge=1, description="steps between evaluations on both splits")
    log_interval: int = Field(_TRAIN["log_interval"], ge=1, description="steps between reads of the loss from the device (each one a host sync); every step is still logged")
    eval_iters: int = Field(_TRAIN["eval_iters"], ge=1, description="batches per split in each evaluation")
    checkpoint_every: int | None = Field(_TRAIN["checkpoint_every"], ge=1, description="steps between checkpoints; null = every evaluation")
    keep_checkpoints: int = Field(_TRAIN["keep_checkpoints"], ge=1, description="step checkpoints kept (plus best.pt)")
    keep_previous: int = Field(3, ge=0, description="runs moved aside to models/previous/ kept; past that the oldest finished ones are deleted (unfinished ones never)")
    patience: int | None = Field(_TRAIN["patience"], ge=1, description="stop after this many evaluations without a better val loss; null = off")
    seed: int = Field(_TRAIN["seed"], description="seeds the initial weights, the batches and dropout")
    device: str = Field(_TRAIN["device"], pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto = cuda, then mps, then cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(_TRAIN["dtype"], description="auto = bf16 autocast where bf16 is fast (CUDA that supports it, CPUs with AMX or AVX512-BF16), float32 elsewhere")
    compile: Literal["auto"] | bool = Field("auto", description="torch.compile: true, false, or auto = on CUDA only; a failure at the first step falls back to eager")
    grad_checkpointing: bool = Field(_TRAIN["grad_checkpointing"], description="recompute block activations in the backward pass to save memory")
    deterministic: bool = Field(_TRAIN["deterministic"], description="CUDA's deterministic kernels (CPU kernels already are)")
    nproc: int = Field(1, ge=1, description="processes per node; > 1 launches the stage through torchrun (DDP)")
    collective_timeout_s: float = Field(300, gt=0, description="seconds a DDP rank waits in a collective for the others (a lost node, a hung peer) before it stops with one line; torch's own default is 30 minutes")
    on_code_change: Literal["restart", "resume"] = Field("restart", description="a run whose training code changed since its last checkpoint: restart = move it aside and train anew (the same code gives the same model); resume = continue it from its checkpoint, the change recorded in models/run.json and on its MLflow run")

    @field_validator("compile", mode="before")
    @classmethod
    def compile_from_text(cls, value):
        """YAML booleans, or the strings true/false/auto (any case), from a file, --set or `dvc exp run -S`."""
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "auto"):
            return {"true": True, "false": False, "auto": "auto"}[value.strip().lower()]
        return value

    @field_validator("init_from")
    @classmethod
    def init_from_form(cls, value: str) -> str:
        if value.startswith("models:") and not re.fullmatch(r"models:/[^/@]+(@[\w-]+|/\d+)", value):
            raise ValueError(f"{value!r} is not a registry URI: use models:/<name>@<alias> or models:/<name>/<version>")
        if value.startswith("gpt2:") and not value.removeprefix("gpt2:").strip():
            raise ValueError("gpt2: needs a directory, e.g. gpt2:/path/to/hf/gpt2")
        return value

    @model_validator(mode="after")
    def schedule_is_sane(self):
        if self.min_lr > self.learning_rate:
            raise ValueError(f"train.min_lr={self.min_lr:g} exceeds train.learning_rate={self.learning_rate:g}: "
                             "the schedule decays from learning_rate down to min_lr")
        return self


class PrepareParams(Section):
    workers: int = Field(0, ge=0, description="encoding processes; 0 = one per CPU core")
    shard_tokens: int = Field(100_000_000, ge=1024, description="tokens per shard file (data/prepared/<split>-NNNNN.bin)")


class HarnessParams(Section):
    tasks: list[str] = Field(default_factory=list, description="lm-evaluation-harness tasks the evaluate stage also scores, e.g. [hellaswag] (the eval extra; docs/evaluation.md); empty = none")
    include_path: str | None = Field(None, min_length=1, description="a folder of task YAMLs of your own (relative to the project root)")
    limit: int | None = Field(None, ge=1, description="score only the first N documents of each task; null = all")


SUITES_DIR = artifacts.SUITES_DIR.as_posix()  # as a suite's url is written


class SuiteParams(Section):
    """A fixed held-out text the evaluate stage scores besides the val split (pipeline/suites.py)."""
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="the suite's name: its metrics are suite.<name>.<metric> (letters, digits, _ and -; no dot)")
    url: str = Field(min_length=1, description=f"its text under {SUITES_DIR}/ (a DVC dep of evaluate): a path relative to the project root naming one file, a directory (every file of a known format inside, recursively) or a glob; read as data.url is")
    sha256: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="expected digest of its files (as the corpus manifest's: one file's sha256, else over the sorted `path sha256` lines); empty: computed and recorded in metrics.json, not checked")
    format: Literal["auto", "txt", "jsonl", "parquet"] = Field("auto", description="as data.format: auto = from each file's suffix")
    text_field: str = Field("text", min_length=1, description="the JSONL field or Parquet column holding each document's text")

    @field_validator("url")
    @classmethod
    def local_under_suites(cls, url: str) -> str:
        """A path below data/suites/, relative to the project root: the evaluate stage's dep there
        is what makes DVC rescore when a suite's files change."""
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url):  # http(s)://, file://, s3://
            raise ValueError(f"a suite is read from a local file, not a URL; download it into {SUITES_DIR}/ "
                             f"and set the url to its path there (DVC then sees it change)")
        parts = Path(url).as_posix().split("/")
        if Path(url).is_absolute() or ".." in parts or not url.startswith(f"{SUITES_DIR}/"):
            raise ValueError(f"a suite's files must be under {SUITES_DIR}/ (a path relative to the project "
                             f"root, e.g. {SUITES_DIR}/wiki.txt); move or copy them there so DVC sees them "
                             "change as a dep of evaluate")
        return url


class EvaluateParams(Section):
    batch_size: int = Field(32, ge=1, description="windows per forward pass over the val split")
    max_tokens: int | None = Field(200_000, ge=1, description="evaluate at most this many val tokens, in windows evenly spaced over the split (the same ones every run); null or a larger value = the whole split")
    harness: HarnessParams = Field(default_factory=HarnessParams)
    suites: list[SuiteParams] = Field(default_factory=list, description=f"fixed held-out texts scored besides val, each [{{name, url, sha256, format, text_field}}] with its files under {SUITES_DIR}/ (docs/evaluation.md); empty = none")

    @field_validator("suites")
    @classmethod
    def distinct_suite_names(cls, suites: list) -> list:
        return _distinct_names(suites, "suite")


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
    metric: str = Field("bits_per_byte", description="the measure a version must beat the holder on, over the same text, to take the alias: a val metric (loss, bits_per_token, bits_per_byte, bits_per_char, perplexity), suite:<name>.<metric> or harness:<task>.<metric> (docs/evaluation.md)")
    direction: Literal["auto", "lower", "higher"] = Field("auto", description="which way registry.metric is better; auto = known from its name (val and suite metrics: lower; lm-eval's acc, acc_norm, exact_match...: higher)")
    alias: str = Field("champion", pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$",
                       description="the alias `folio promote` moves and `folio generate --model` names")

    @model_validator(mode="after")
    def known_measure(self):
        self.measure()
        return self

    def measure(self) -> Measure:
        """registry.metric as a pipeline.measures.Measure, with its direction."""
        return parse_measure(self.metric, self.direction)

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
    prepare: PrepareParams = PrepareParams()
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


class ParamsError(StageError, ValueError):
    """params.yaml or an override is not valid: every problem, each naming its key and value."""


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
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ParamsError(f"override {assignment!r}: the value is not valid YAML "
                          f"({getattr(err, 'problem', None) or 'cannot parse'}); quote it, or fix the brackets") from None
    _assign(tree, key.strip(), value, f"override {assignment!r}")


def _assign(tree: dict, key: str, value, source: str) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ParamsError(f"{source}: {part!r} is not a section")
    node[leaf] = value


def _yaml_value(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def validate(tree: dict) -> Params:
    """`tree` as Params, or one ParamsError naming every problem: an unknown key with the known
    keys closest to it, a value of the wrong type with the type its key takes."""
    try:
        return Params.model_validate(tree)
    except ValidationError as err:
        problems: list[str] = []
        for e in err.errors():
            problem = _describe_error(e)
            if problem not in problems:  # a union reports one error per member
                problems.append(problem)
        fix = ("fix it in the params file or the --set override" if len(problems) == 1
               else "fix them in the params file or the --set overrides")
        raise ParamsError("invalid params: " + "; ".join(problems) + f"; {fix}") from None


# pydantic error types that mean "a value of another type": the message names the type the key takes
_TYPE_ERRORS = {"int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "bool_parsing",
                "bool_type", "string_type", "list_type", "literal_error", "model_type", "model_attributes_type",
                "dict_type", "none_required"}


def schema_keys(model: type[BaseModel] | None = None, prefix: str = "") -> dict[str, object]:
    """Every key of the schema, sections and leaves, by its params.yaml name: its type."""
    keys: dict[str, object] = {}
    for name, field in (model or Params).model_fields.items():
        key = prefix + (field.alias or name)
        keys[key] = field.annotation
        if _is_section(field.annotation):
            keys.update(schema_keys(field.annotation, key + "."))
    return keys


def closest_keys(key: str) -> list[str]:
    """The schema keys a typo of `key` most likely meant, best first (at most three): the same
    depth, names compared by difflib, a key of another section a little less likely."""
    section, _, leaf = key.rpartition(".")
    scores = {}
    for known in schema_keys():
        known_section, _, known_leaf = known.rpartition(".")
        if known.count(".") == key.count("."):
            ratio = difflib.SequenceMatcher(None, leaf, known_leaf).ratio()
            scores[known] = ratio - (0.1 if known_section != section else 0.0)
    best = max(scores.values(), default=0.0)
    close = [k for k in sorted(scores, key=scores.get, reverse=True) if scores[k] >= max(0.6, best - 0.1)]
    return close[:3]


def _describe_error(e: dict) -> str:
    key, annotation = _key_of(e["loc"])
    value = e.get("input")
    if e["type"] == "extra_forbidden":
        what = "section" if "." not in key else "key"
        close = closest_keys(key)
        hint = (f"did you mean {' or '.join(close)}?" if close
                else f"params.yaml lists every {what}")
        return f"{key} is not a params {what} ({hint})"
    if e["type"] in _TYPE_ERRORS and annotation is not None:
        return f"{key}: expected {_type_name(annotation)}, got {value!r}"
    message = e["msg"].removeprefix("Value error, ")
    if isinstance(value, dict) and e["type"] != "missing":  # a section's own check: its message names the keys
        return message
    shown = "missing" if e["type"] == "missing" else f"value {value!r}"
    return f"{key}: {message} ({shown})"


def _key_of(loc: tuple) -> tuple[str, object]:
    """The params.yaml key an error's location names (`sample.prompts[0]`), and the type it takes
    (None for a key the schema does not have). Union members in the location are left out."""
    key, annotation = "", Params
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
        elif _is_section(annotation):
            name = "validate" if part == "validate_" else str(part)
            field = next((f for n, f in annotation.model_fields.items() if name in (n, f.alias)), None)
            key = f"{key}.{name}" if key else name
            annotation = field.annotation if field else None
        elif annotation is None:  # inside a key the schema does not have
            key += f".{part}"
        # else: a union member's tag (`bool`, `literal['auto']`), not a key
    return key, (annotation if key else None)


def _is_section(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_name(annotation) -> str:
    """A type as a user reads it: `an integer or null`, `auto, true or false`."""
    names: list[str] = []

    def add(tp) -> None:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(tp):
                add(arg)
        elif origin is Literal:
            names.extend(_yaml_value(v) for v in typing.get_args(tp))
        elif origin is list:
            (item,) = typing.get_args(tp) or (None,)
            names.append("a list" + (f" of {_PLURAL.get(item, 'values')}" if item else ""))
        elif _is_section(tp):
            names.append("a section of keys")
        else:
            names.extend(_SINGULAR.get(tp, getattr(tp, "__name__", str(tp))).split(" or "))

    add(annotation)
    names = list(dict.fromkeys(names))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


_SINGULAR = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def read_tree(path: str | Path, _extending: tuple[Path, ...] = ()) -> dict:
    """A params file as a nested dict. A preset names the file it builds on with `extends:`
    (relative to the preset): that file is read first and the preset's keys are laid over it."""
    path = Path(path)
    if path.resolve() in _extending:
        chain = " -> ".join(str(p) for p in (*_extending, path.resolve()))
        raise ParamsError(f"{path}: `extends` goes round in a circle ({chain}); end the chain at params.yaml")
    if not path.exists():
        raise ParamsError(f"{path} not found; run folio from the project root (or pass --params)")
    if not path.is_file():
        raise ParamsError(f"{path} is a directory, not a params file; pass --params <file>.yaml")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ParamsError(f"{path} is not valid YAML{at} ({getattr(err, 'problem', None) or err}); "
                          "fix it and rerun") from None
    if not isinstance(tree, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    base = tree.pop("extends", None)
    if base is None:
        return tree
    merged = read_tree(path.parent / base, (*_extending, path.resolve()))
    for key, value in _flatten(tree):
        _assign(merged, key, value, str(path))
    return merged


def preset_assignments(path: str | Path) -> list[str]:
    """A preset's own keys as `key=value` (what `dvc exp run -S` takes), less `extends`."""
    tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    tree.pop("extends", None)
    return [f"{key}={_yaml_value(value)}" for key, value in _flatten(tree)]


def load(path: str | Path = artifacts.PARAMS, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    tree = read_tree(path)
    for assignment in overrides:
        apply_override(tree, assignment)
    return validate(tree)


def model_config(params: Params, vocab_size: int) -> GPTConfig:
    """The library's model config for params' model.* and a vocabulary."""
    return GPTConfig(vocab_size=vocab_size, **params.model.model_dump())


def train_config(params: Params) -> TrainConfig:
    """The library's training config for params' train.* (less what the stage itself handles)."""
    settings = params.train.model_dump(exclude={"nproc", "collective_timeout_s", "init_from", "keep_previous",
                                                  "on_code_change"})
    settings["compile"] = None if settings["compile"] == "auto" else settings["compile"]
    return TrainConfig(**settings)
