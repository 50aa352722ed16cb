"""reports/: the training curves (train/steps.csv, evals.csv, loss.png), metrics.json, samples.md,
model_card.md and registered_model.json."""

from __future__ import annotations

import csv
import json

from folio.fileio import atomic_path, write_json, write_text
from pipeline.artifacts import (LOSS_PLOT, METRICS, MODEL_CARD, REGISTERED_MODEL, SAMPLES,
                                TRAIN_EVALS, TRAIN_STEPS, require)

STEPS_HEADER = ["step", "train_loss", "lr"]
EVALS_HEADER = ["step", "train_loss", "val_loss"]


def write_history(history: dict) -> None:
    """Per-step and per-evaluation CSVs (DVC plots) and the loss-curve PNG. None of them holds a
    wall time, so one config trains to the same bytes every time."""
    for path, header, rows in ((TRAIN_STEPS, STEPS_HEADER, history["steps"]),
                               (TRAIN_EVALS, EVALS_HEADER, history["evals"])):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(row[:len(header)] for row in rows)
    _plot_losses(history)


def read_evals() -> list[list]:
    """[step, train_loss, val_loss] per evaluation, from the train stage's evals.csv."""
    with open(require(TRAIN_EVALS, "train"), newline="") as f:
        return [[int(row["step"]), float(row["train_loss"]), float(row["val_loss"])]
                for row in csv.DictReader(f)]


def _plot_losses(history: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps, losses = zip(*(row[:2] for row in history["steps"])) if history["steps"] else ((), ())
    ax.plot(steps, losses, lw=0.6, alpha=0.5, label="train (batch)")
    eval_steps, eval_train, eval_val = zip(*(row[:3] for row in history["evals"]))
    ax.plot(eval_steps, eval_train, "o-", label="train (eval)")
    ax.plot(eval_steps, eval_val, "o-", label="val (eval)")
    ax.set(xlabel="step", ylabel="cross-entropy loss (nats/token)", title="folio training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(LOSS_PLOT) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})  # no version stamp
    plt.close(fig)


def write_metrics(metrics: dict) -> None:
    write_json(METRICS, metrics)


def read_metrics() -> dict:
    return json.loads(require(METRICS, "evaluate").read_text(encoding="utf-8"))


def write_samples(markdown: str) -> None:
    write_text(SAMPLES, markdown)


def read_samples() -> str:
    return require(SAMPLES, "sample").read_text(encoding="utf-8")


def write_model_card(markdown: str) -> None:
    write_text(MODEL_CARD, markdown)


def write_registered_model(info: dict) -> None:
    write_json(REGISTERED_MODEL, info)


def read_registered_model() -> dict:
    return json.loads(require(REGISTERED_MODEL, "register").read_text(encoding="utf-8"))
