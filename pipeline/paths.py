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
VALIDATION_DIR = REPORTS / "validation"
VALIDATION_RESULT = VALIDATION_DIR / "corpus.json"
TRAIN_REPORTS = REPORTS / "train"
TRAIN_STEPS = TRAIN_REPORTS / "steps.csv"
TRAIN_EVALS = TRAIN_REPORTS / "evals.csv"
LOSS_PLOT = TRAIN_REPORTS / "loss.png"
METRICS = REPORTS / "metrics.json"
SAMPLES = REPORTS / "samples.md"


def raw_corpus(name: str) -> Path:
    return RAW_DIR / f"{name}.txt"


def prepared_split(split: str) -> Path:
    """data/prepared/train.bin or val.bin."""
    return PREPARED_DIR / f"{split}.bin"
