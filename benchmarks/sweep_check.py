"""Does a DVC sweep work here, and does each point land in MLflow tagged with its sweep?

Builds a throwaway copy of the project (tests/pipeline_project.py: tiny model, 30 steps) under a
temporary directory, runs the pipeline once and commits it as the baseline, then runs a two-point
learning-rate grid:

- queue (`--queue-rounds N`, each with MLFLOW_TRACKING_URI pointing at the copy's own store):
  `dvc exp run --queue -S 'train.learning_rate=1e-3,3e-3'` then `dvc queue start -j 1` (DVC's
  celery worker runs each point in a temporary copy under .dvc/tmp/exps/), waiting until
  `dvc queue status` shows nothing queued or running, or QUEUE_TIMEOUT_S;
- `--stop-between`: `dvc queue stop` after the first queued sweep, with no worker alive (as a
  user tidying up would), before the next;
- `--queue-default-uri`: one queued sweep without MLFLOW_TRACKING_URI, to show where its runs go
  (the store defaults to the working directory's mlflow.db: the worker's temporary copy);
- `--sequential`: `FOLIO_SWEEP=seq dvc exp run -S train.learning_rate=...` once per point, in the
  workspace.

For each it prints the wall time, the experiments DVC made, the points still queued, and the
MLflow runs in the copy's sqlite:///mlflow.db with their `sweep` and `dvc.exp_name` tags; at the
end `dvc exp show --only-changed` trimmed to the val metrics and the param that differs.

    .venv/bin/python benchmarks/sweep_check.py --queue-rounds 2 --queue-default-uri --sequential [--keep]

Measured on 2026-12-06 (2 shared CPU cores): README.md, "Sweeps".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import pipeline_project as pp  # noqa: E402
from tests.conftest import SHARED_CORPUS  # noqa: E402

GRID = "train.learning_rate=1e-3,3e-3"
POINTS = ["train.learning_rate=1e-3", "train.learning_rate=3e-3"]
QUEUE_TIMEOUT_S = 900


def sh(project: Path, *args: str, env: dict | None = None, check: bool = True) -> tuple[int, str]:
    proc = subprocess.run(args, cwd=project, env=env or pp.env(), capture_output=True, text=True,
                          timeout=QUEUE_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    if check and proc.returncode:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{out[-3000:]}")
    return proc.returncode, out


def mlflow_runs(db: Path) -> list[dict]:
    """Every run in the sqlite store at `db`: name, status, learning rate, sweep and DVC tags."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT run_uuid, name, status FROM runs ORDER BY start_time").fetchall()
    result = []
    for run_id, name, status in rows:
        tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
        params = dict(con.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))
        result.append({"name": name, "status": status, "lr": params.get("train.learning_rate"),
                       "sweep": tags.get("sweep"), "exp": tags.get("dvc.exp_name")})
    con.close()
    return result


def exp_names(project: Path) -> list[str]:
    _, out = sh(project, "dvc", "exp", "ls", "--name-only", check=False)
    return [line.strip() for line in out.splitlines() if line.strip()]


def queue_sweep(project: Path, tracking_uri: str | None) -> dict:
    env = pp.env(tracking_uri)
    before_runs, before_exps = len(mlflow_runs(project / "mlflow.db")), set(exp_names(project))
    started, started_at = time.monotonic(), time.time()
    sh(project, "dvc", "exp", "run", "--queue", "-S", GRID, env=env)
    sh(project, "dvc", "queue", "start", "-j", "1", env=env)
    status = ""
    while time.monotonic() - started < QUEUE_TIMEOUT_S:
        time.sleep(5)
        _, status = sh(project, "dvc", "queue", "status", check=False)
        if not any(word in status for word in ("Queued", "Running")):
            break
    seconds = time.monotonic() - started
    stuck = [line for line in status.splitlines() if "Queued" in line or "Running" in line]
    if stuck:  # remove them, so that the next sweep starts from an empty queue
        sh(project, "dvc", "queue", "remove", "--queued", check=False)
        sh(project, "dvc", "queue", "kill", *(line.split()[0] for line in stuck if "Running" in line), check=False)
    new_exps = sorted(set(exp_names(project)) - before_exps)
    new_runs = mlflow_runs(project / "mlflow.db")[before_runs:]
    # where each point's training said it logged (the temporary copies are gone by now)
    elsewhere = sorted({line.split(" in ", 1)[1].split(" (experiment")[0]
                        for out in (project / ".dvc" / "tmp" / "exps" / "run").glob("*/*.out")
                        if out.stat().st_mtime >= started_at
                        for line in out.read_text(errors="replace").splitlines()
                        if line.startswith("MLflow run ") and " in " in line} - {tracking_uri})
    return {"how": "queue", "tracking_uri": tracking_uri or "(unset: the worker's working directory)",
            "seconds": round(seconds), "still_queued_or_running": stuck,
            "queue_status": status.strip().splitlines(), "new_experiments": new_exps,
            "mlflow_runs_in_project": new_runs, "logged_elsewhere": elsewhere}


def sequential_sweep(project: Path) -> dict:
    before_runs, before_exps = len(mlflow_runs(project / "mlflow.db")), set(exp_names(project))
    started, codes = time.monotonic(), []
    for point in POINTS:
        code, out = sh(project, "dvc", "exp", "run", "-S", point, check=False,
                       env={**pp.env(), "FOLIO_SWEEP": "seq"})
        codes.append(code)
        if code:
            print(out[-2000:])
    seconds = time.monotonic() - started
    return {"how": "sequential", "seconds": round(seconds), "exit_codes": codes,
            "new_experiments": sorted(set(exp_names(project)) - before_exps),
            "mlflow_runs_in_project": mlflow_runs(project / "mlflow.db")[before_runs:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue-rounds", type=int, default=1)
    parser.add_argument("--stop-between", action="store_true", help="`dvc queue stop` after the first round")
    parser.add_argument("--queue-default-uri", action="store_true")
    parser.add_argument("--sequential", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the project copy")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="folio-sweep-"))
    project = pp.make_project(workdir / "folio", str(SHARED_CORPUS))
    try:
        started = time.monotonic()
        sh(project, "dvc", "repro")
        pp.git(project, "add", "-A")
        pp.git(project, "commit", "-q", "-m", "baseline")
        print(json.dumps({"baseline_repro_seconds": round(time.monotonic() - started),
                          "baseline": pp.git(project, "rev-parse", "--short=7", "HEAD").strip()}), flush=True)
        uri = f"sqlite:///{project / 'mlflow.db'}"
        for round_ in range(args.queue_rounds):
            print(json.dumps(queue_sweep(project, uri), indent=1), flush=True)
            if round_ == 0 and args.stop_between:
                print(sh(project, "dvc", "queue", "stop", check=False)[1].strip(), flush=True)
        if args.queue_default_uri:
            print(json.dumps(queue_sweep(project, None), indent=1), flush=True)
        if args.sequential:
            print(json.dumps(sequential_sweep(project), indent=1), flush=True)
        _, shown = sh(project, "dvc", "exp", "show", "--only-changed", "--no-pager", "--drop",
                      r".*/|Created|Executor|checkpoint|tokenizer|val\.(?!loss|bits_per_byte)", check=False,
                      env={**pp.env(), "COLUMNS": "120"})
        print(shown)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    main()
