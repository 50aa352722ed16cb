"""What a run came from and what it is called: the git commit, the DVC experiment, the corpus as
the run's dataset input, and the run's name."""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from pathlib import Path

from pipeline.tracking.store import mlflow


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_tags() -> dict[str, str]:
    tags = {}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    if exp_name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp_name
    return tags


def run_name(flat_params: dict) -> str:
    return (
        f"{flat_params['data.name']}-{flat_params['tokenizer.kind']}"
        f"-L{flat_params['model.n_layer']}d{flat_params['model.n_embd']}"
        f"-{time.strftime('%Y%m%d-%H%M%S')}"
    )


def log_corpus_dataset(name: str, manifest: dict) -> None:
    """Record the corpus as the run's one dataset input: name, the manifest's digest, source, size,
    files and documents."""
    url, sha256 = manifest["source"], manifest["sha256"]
    ml = mlflow()
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    if url.startswith(("http://", "https://")):
        source = HTTPDatasetSource(url)
    else:  # a local file: MLflow registers the same local source class twice and warns about it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(Path(url.removeprefix("file://")).resolve()))
    dataset = MetaDataset(source=source, name=name, digest=sha256[:16])
    tags = {"sha256": sha256, "size_bytes": str(manifest["bytes"]),
            "files": str(len(manifest["files"])), "documents": str(manifest["documents"])}
    ml.log_input(dataset, context="training", tags=tags)


