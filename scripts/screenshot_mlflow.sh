#!/usr/bin/env bash
# Redo the README's MLflow pictures, rendered by headless Chromium (apt-get install -y chromium)
# from the two latest runs of the experiment `folio`:
#   docs/mlflow-run.png      the newest run's Model metrics: its eval and train curves
#   docs/mlflow-compare.png  the compare page of both runs
# (The System metrics tab is left out: headless Chromium leaves its time-axis charts loading.)
#
#   scripts/screenshot_mlflow.sh            # the project's store (what `make ui` serves)
#   scripts/screenshot_mlflow.sh URI        # another store, e.g. sqlite:////tmp/mlflow.db
#   scripts/screenshot_mlflow.sh --demo     # first train two small real runs in a throwaway copy
#                                           # (`dvc exp run`, corpus from ../shared/data)
#   OUT_DIR=/tmp/shots scripts/screenshot_mlflow.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
BIN=$PROJECT/.venv/bin
OUT_DIR=${OUT_DIR:-$PROJECT/docs}
command -v chromium >/dev/null || { echo "error: chromium is not installed; apt-get install -y chromium" >&2; exit 1; }
# the demo's runs are short: sample the machine every 2 s rather than MLflow's 10
export PATH=$BIN:$PATH MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1 \
       GX_ANALYTICS_ENABLED=false MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
       MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL=${MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL:-2}
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

STORE=${1:-sqlite:///$PROJECT/mlflow.db}
if [ "${1:-}" = "--demo" ]; then
  # Two real runs that differ in width and length, each with its DVC experiment name.
  mkdir -p "$WORK/folio/.dvc"
  cp -r pyproject.toml params.yaml dvc.yaml .dvcignore .gitignore src pipeline "$WORK/folio/"
  cp .dvc/config .dvc/.gitignore "$WORK/folio/.dvc/"
  cd "$WORK/folio"
  git init -q -b main && git add -A
  git -c user.name=folio -c user.email=folio@localhost commit -qm demo
  export FOLIO_DATA_MIRROR=$PROJECT/../shared/data
  small=(-S model.n_layer=2 -S model.n_head=2 -S model.block_size=64 -S train.batch_size=16
         -S train.eval_interval=100 -S train.warmup_iters=20 -S sample.max_new_tokens=200)
  dvc exp run -n narrow "${small[@]}" -S model.n_embd=64 -S train.max_iters=300
  dvc exp run -n wide "${small[@]}" -S model.n_embd=128 -S train.max_iters=500
  STORE=sqlite:///$WORK/folio/mlflow.db
  cd "$PROJECT"
fi

# 127.0.0.2 is loopback too, but not "localhost" to the UI, which then keeps its assistant panel
# closed; the server must accept that host and origin.
HOST=127.0.0.2
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0)); print(s.getsockname()[1])')
mlflow server --backend-store-uri "$STORE" --host $HOST --port "$PORT" --workers 1 \
  --allowed-hosts "$HOST:$PORT" --cors-allowed-origins "http://$HOST:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 120); do
  curl -sf "http://$HOST:$PORT/health" >/dev/null && break
  sleep 0.5
done

# One "name URL" line per picture: the newest run's metrics tab, then
# /#/compare-runs?runs=[...]&experiments=[...] for both runs
PAGES=$(MLFLOW_TRACKING_URI=http://$HOST:$PORT "$BIN/python" - <<'PY'
import json, os
from urllib.parse import quote
import mlflow

experiment = mlflow.get_experiment_by_name("folio")
runs = mlflow.MlflowClient().search_runs([experiment.experiment_id], max_results=2,
                                         order_by=["attributes.start_time DESC"])
if len(runs) < 2:
    raise SystemExit("error: the store needs two runs of the experiment 'folio' (or use --demo)")
base, eid = os.environ["MLFLOW_TRACKING_URI"], experiment.experiment_id
run = f"{base}/#/experiments/{eid}/runs/{runs[0].info.run_id}"
ids = json.dumps([r.info.run_id for r in runs]).replace(" ", "")
view = "workflowType=machine_learning"  # the UI's "Model training" side, whatever it showed last
print(f"mlflow-run {run}/model-metrics?{view}")
print(f"mlflow-compare {base}/#/compare-runs?runs={quote(ids)}&experiments={quote(json.dumps([eid]))}&{view}")
PY
)
mkdir -p "$OUT_DIR"
while read -r name url; do
  out=$OUT_DIR/$name.png
  echo "screenshot of $url"
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --user-data-dir="$WORK/chromium" --window-size=1600,1400 --virtual-time-budget=60000 \
    --screenshot="$out" "$url" 2>/dev/null
  # 256 colours are plenty for a UI: a third of the size
  "$BIN/python" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").quantize(256).save(sys.argv[1], optimize=True)' "$out"
  echo "wrote $out"
done <<<"$PAGES"
