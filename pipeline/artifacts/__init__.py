"""The artifact layer: every file the pipeline reads or writes under data/, models/ and reports/.

This package holds every path; one module per kind of artifact reads and writes it — corpus
(data/raw/), tokenizer (data/tokenizer/), prepared (data/prepared/), models (models/: checkpoints
and the run that owns them), reports (reports/). Stages call these and never each other, so a
stage's deps are its module, the artifact modules it uses and the library they call.

dvc.yaml names the same paths; tests/test_dvc_yaml.py checks the two agree. Reading an artifact
that is not there raises `MissingArtifact`, naming the stage that makes it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import StageError

PARAMS = Path("params.yaml")

DATA = Path("data")
RAW_DIR = DATA / "raw"
TOKENIZER_DIR = DATA / "tokenizer"
TOKENIZER_FILE = TOKENIZER_DIR / "tokenizer.json"
PREPARED_DIR = DATA / "prepared"
PREPARED_META = PREPARED_DIR / "meta.json"
SUITES_DIR = DATA / "suites"  # evaluate.suites' files: in git (or `dvc add`-ed), no stage's output

MODELS = Path("models")
LAST_CKPT = MODELS / "last.pt"
BEST_CKPT = MODELS / "best.pt"
RUN_INFO = MODELS / "run.json"  # MLflow run id, name and fingerprint of the run that owns models/
PREVIOUS_RUNS = MODELS / "previous"  # runs moved aside when the config changed: previous/<run name>/

REPORTS = Path("reports")
VALIDATION_DIR = REPORTS / "validation"  # one folder per suite: corpus/ (validate), tokens/ (validate_tokens)
TRAIN_REPORTS = REPORTS / "train"
TRAIN_STEPS = TRAIN_REPORTS / "steps.csv"
TRAIN_EVALS = TRAIN_REPORTS / "evals.csv"
LOSS_PLOT = TRAIN_REPORTS / "loss.png"
METRICS = REPORTS / "metrics.json"
SAMPLES = REPORTS / "samples.md"
ATTENTION = REPORTS / "attention.png"  # attention maps of sample.attention_prompt
MODEL_CARD = REPORTS / "model_card.md"
REGISTERED_MODEL = REPORTS / "registered_model.json"  # name, version, uri of the last registration

# Workspace state that is no stage's output (git-ignored): the lock and the MLflow outage spool.
STATE_DIR = Path(".folio")
LOCK_FILE = STATE_DIR / "lock"
SPOOL_DIR = STATE_DIR / "spool"


class MissingArtifact(StageError):
    """An input is not there: its stage has not run (or its output was removed)."""


def require(path: Path, made_by: str) -> Path:
    if not Path(path).exists():
        raise MissingArtifact(f"{path} not found; run `folio {made_by}` (or `dvc repro`) first")
    return Path(path)


def raw_dir(name: str) -> Path:
    """data/raw/<name>/: the corpus files, as download copied them (their paths below the source)."""
    return RAW_DIR / name


def raw_record(name: str) -> Path:
    """data/raw/<name>.json: the corpus manifest (each file's path, bytes, sha256, documents; the
    digest over them; the source)."""
    return RAW_DIR / f"{name}.json"


def prepared_shard(file: str) -> Path:
    """data/prepared/<split>-NNNNN.bin, named in meta.json."""
    return PREPARED_DIR / file


def validation_dir(suite: str) -> Path:
    """reports/validation/<suite>/: the suite's <suite>.json and its GX Data Docs in docs/."""
    return VALIDATION_DIR / suite


def validation_report(suite: str) -> Path:
    return validation_dir(suite) / f"{suite}.json"
