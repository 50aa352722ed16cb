"""`train.init_from`: what the train stage starts from — `scratch` (model.* from params.yaml), a
folio checkpoint file, `gpt2:<dir>` (a Hugging Face GPT-2 directory, converted on the fly) or
`models:/<name>@<alias>` / `models:/<name>/<version>` (a registered model's checkpoint).
From scratch, the initial weights are a function of train.seed.

From anything but scratch, only the weights are taken: the model config comes from the source
(params' model.* are ignored, except model.dropout, which has no weights), the optimizer starts
fresh, and the project's tokenizer must be the source's (same digest), or training is refused.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


from folio import checkpoint
from folio.model import GPTConfig, create_model
from pipeline import artifacts
from pipeline.console import log
from pipeline.errors import StageError
from pipeline.params import Params, model_config

SCRATCH = "scratch"
GPT2_PREFIX = "gpt2:"
REGISTRY_PREFIX = "models:/"


class InitFromError(StageError, ValueError):
    """A source the train stage can't start from: reported as a message, not a traceback."""


def kind_of(init_from: str) -> str:
    """scratch, gpt2, registry or checkpoint."""
    if init_from == SCRATCH:
        return "scratch"
    if init_from.startswith(GPT2_PREFIX):
        return "gpt2"
    if init_from.startswith(REGISTRY_PREFIX):
        return "registry"
    return "checkpoint"


def registered_checkpoint(uri: str, dst: str | Path) -> Path:
    """Download the checkpoint artifact of the registered folio model `uri` into `dst`."""
    import yaml

    from pipeline.tracking import store
    from pipeline.tracking import registry

    store.setup()
    version = registry.resolve(uri)  # RegistryError (named versions and aliases) if it is not there
    ml = store.mlflow()
    base = f"models:/{version.name}/{version.version}"
    mlmodel = Path(ml.artifacts.download_artifacts(artifact_uri=f"{base}/MLmodel", dst_path=str(dst)))
    artifacts = yaml.safe_load(mlmodel.read_text())["flavors"]["python_function"].get("artifacts", {})
    if "checkpoint" not in artifacts:
        raise InitFromError(f"{uri} (version {version.version} of {version.name}) holds no folio "
                            "checkpoint artifact: was it registered by `folio register`?")
    return Path(ml.artifacts.download_artifacts(
        artifact_uri=f"{base}/{artifacts['checkpoint']['path']}", dst_path=str(dst)))


def _checked_path(init_from: str) -> Path:
    path = Path(init_from)
    if path.resolve().is_relative_to(artifacts.MODELS.resolve()):
        raise InitFromError(f"train.init_from={init_from!r} is inside {artifacts.MODELS}/, the train stage's "
                            "DVC output, which the stage moves aside when a new run starts: copy the "
                            f"checkpoint elsewhere first (e.g. cp {init_from} checkpoints/base.pt)")
    if not path.exists():
        raise InitFromError(f"train.init_from={init_from!r}: no such checkpoint file")
    return path


def load_source(init_from: str) -> dict:
    """The source as a checkpoint-format dict (model, model_config, tokenizer)."""
    kind = kind_of(init_from)
    if kind == "gpt2":
        from folio import hf_gpt2

        return hf_gpt2.import_checkpoint(init_from.removeprefix(GPT2_PREFIX))
    if kind == "registry":
        with tempfile.TemporaryDirectory() as tmp:
            return checkpoint.load(registered_checkpoint(init_from, tmp))
    if kind == "checkpoint":
        return checkpoint.load(_checked_path(init_from))
    raise ValueError("scratch has no source")


def check_tokenizer(init_from: str, source: dict, tokenizer) -> None:
    """Refuse a source trained with another tokenizer than the project's data/tokenizer/."""
    theirs = source["tokenizer"]
    if theirs["digest"] == tokenizer.digest:
        return
    hint = (f"set tokenizer.kind: {theirs['kind']} and rerun the pipeline from tokenize"
            if theirs["kind"] != tokenizer.kind else
            "rebuild data/tokenizer/ from the source's corpus and settings")
    raise InitFromError(
        f"train.init_from={init_from!r} was trained with tokenizer {theirs['kind']} "
        f"(vocab {theirs['vocab_size']}, digest {theirs['digest']}), but {artifacts.TOKENIZER_DIR}/ holds "
        f"{tokenizer.kind} (vocab {tokenizer.vocab_size}, digest {tokenizer.digest}): {hint}")


def source(params: Params, tokenizer) -> dict | None:
    """train.init_from as a checkpoint-format dict, its tokenizer checked; None for scratch."""
    init_from = params.train.init_from
    if init_from == SCRATCH:
        return None
    state = load_source(init_from)
    check_tokenizer(init_from, state, tokenizer)
    return state


def start_model(params: Params, tokenizer, resume_state: dict | None, source_state: dict | None):
    """The model the run starts from: resuming, the resumed checkpoint's architecture (the training
    loop restores its weights); from scratch (`source_state` None), model.* with initial weights
    drawn from train.seed; otherwise the source's weights."""
    if resume_state is not None:
        return create_model(GPTConfig(**resume_state["model_config"]))
    if source_state is None:
        return create_model(model_config(params, tokenizer.vocab_size), seed=params.train.seed)
    config = GPTConfig(**{**source_state["model_config"], "dropout": params.model.dropout})
    model = create_model(config)
    model.load_state_dict(checkpoint.clean_state_dict(source_state["model"]))
    log(f"starting from {params.train.init_from} (step {source_state.get('step', 0)}): the model "
        f"config comes from it ({config.n_layer} layers, width {config.n_embd}, block "
        f"{config.block_size}, vocab {config.vocab_size}); params' model.* are ignored but dropout "
        f"({config.dropout})")
    return model
