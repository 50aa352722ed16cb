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


# names the sweep a run belongs to (README: Sweeps); under `dvc exp run` without it, the sweep is
# the commit the experiments branched from
SWEEP_ENV = "FOLIO_SWEEP"


def run_tags(environ=os.environ) -> dict[str, str]:
    """The git commit; under `dvc exp run` the experiment's name and baseline commit; and `sweep`:
    $FOLIO_SWEEP, else the baseline commit's first 7 digits, so every point of one sweep shares it
    (MLflow: `tags.sweep = '...'`)."""
    tags = {}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    if exp_name := environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp_name
    baseline = environ.get("DVC_EXP_BASELINE_REV", "")
    if baseline:
        tags["dvc.baseline_rev"] = baseline
    if sweep := environ.get(SWEEP_ENV, "").strip() or baseline[:7]:
        tags["sweep"] = sweep
    return tags


def run_name(flat_params: dict) -> str:
    return (
        f"{flat_params['data.name']}-{flat_params['tokenizer.kind']}"
        f"-L{flat_params['model.n_layer']}d{flat_params['model.n_embd']}"
        f"-{time.strftime('%Y%m%d-%H%M%S')}"
    )


def _dataset_source(url: str):
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if url.startswith(("http://", "https://")):
        return HTTPDatasetSource(url)
    # a local file: MLflow registers the same local source class twice and warns about it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(Path(url.removeprefix("file://")).resolve()))


def mixture_params(manifest: dict) -> dict[str, str]:
    """A mixture's sources as run params: `data.source.<name>.url`, `.sha256`, `.weight`, `.bytes`."""
    return {f"data.source.{s['name']}.{key}": str(s[key])
            for s in manifest.get("sources", []) for key in ("url", "sha256", "weight", "bytes")}


def log_corpus_dataset(name: str, manifest: dict) -> None:
    """Record the corpus as the run's one dataset input: name, the manifest's digest, source, size,
    files and documents. A mixture is one dataset input per source (named <name>/<source>, with its
    url, digest and weight) and its sources as params (mixture_params), the mixture's digest a tag."""
    ml = mlflow()
    from mlflow.data.meta_dataset import MetaDataset

    if manifest.get("sources"):
        for s in manifest["sources"]:
            dataset = MetaDataset(source=_dataset_source(s["url"]), name=f"{name}/{s['name']}", digest=s["sha256"][:16])
            ml.log_input(dataset, context="training", tags={
                "sha256": s["sha256"], "weight": f"{s['weight']:g}", "size_bytes": str(s["bytes"]),
                "files": str(s["files"]), "documents": str(s["documents"]), "mixture": name})
        ml.log_params(mixture_params(manifest))
        ml.set_tags({"data.sha256": manifest["sha256"],
                     "data.sources": ", ".join(f"{s['name']}:{s['weight']:g}" for s in manifest["sources"])})
        return
    url, sha256 = manifest["source"], manifest["sha256"]
    dataset = MetaDataset(source=_dataset_source(url), name=name, digest=sha256[:16])
    tags = {"sha256": sha256, "size_bytes": str(manifest["bytes"]),
            "files": str(len(manifest["files"])), "documents": str(manifest["documents"])}
    ml.log_input(dataset, context="training", tags=tags)


