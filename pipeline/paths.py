"""Every path the pipeline reads or writes, relative to the project root.

dvc.yaml names the same paths; tests/test_dvc_yaml.py checks the two agree.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")

DATA = Path("data")
RAW_DIR = DATA / "raw"
TOKENIZER_DIR = DATA / "tokenizer"
PREPARED_DIR = DATA / "prepared"
PREPARED_META = PREPARED_DIR / "meta.json"

MODELS = Path("models")
LAST_CKPT = MODELS / "last.pt"
BEST_CKPT = MODELS / "best.pt"
RUN_INFO = MODELS / "run.json"  # MLflow run id + the fingerprint of the run that owns models/

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


def raw_corpus(name: str) -> Path:
    return RAW_DIR / f"{name}.txt"


def raw_record(name: str) -> Path:
    """data/raw/<name>.json: the sha256, size and source of the downloaded corpus."""
    return RAW_DIR / f"{name}.json"


def validation_dir(suite: str) -> Path:
    """reports/validation/<suite>/: the suite's <suite>.json and its GX Data Docs in docs/."""
    return VALIDATION_DIR / suite


def validation_report(suite: str) -> Path:
    return validation_dir(suite) / f"{suite}.json"


def prepared_split(split: str) -> Path:
    """data/prepared/train.bin or val.bin."""
    return PREPARED_DIR / f"{split}.bin"
