#!/usr/bin/env bash
# Redo docs/mlflow-compare.png: the MLflow UI's compare view of the two latest runs of the
# experiment `folio`, rendered by headless Chromium (apt-get install -y chromium).
#
#   scripts/screenshot_compare.sh            # the project's store (what `make ui` serves)
#   scripts/screenshot_compare.sh URI        # another store, e.g. sqlite:////tmp/mlflow.db
#   scripts/screenshot_compare.sh --demo     # first train two small real runs in a throwaway copy
#                                            # (`dvc exp run`, corpus from ../shared/data)
#   OUT=/tmp/x.png scripts/screenshot_compare.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
BIN=$PROJECT/.venv/bin
OUT=${OUT:-$PROJECT/docs/mlflow-compare.png}
export PATH=$BIN:$PATH MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1 \
       GX_ANALYTICS_ENABLED=false MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
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
  dvc exp run -q -n narrow "${small[@]}" -S model.n_embd=64 -S train.max_iters=300
  dvc exp run -q -n wide "${small[@]}" -S model.n_embd=128 -S train.max_iters=500
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

# The compare page of the two latest runs: /#/compare-runs?runs=[...]&experiments=[...]
URL=$(MLFLOW_TRACKING_URI=http://$HOST:$PORT "$BIN/python" - <<'EOF'
import json, os
from urllib.parse import quote
import mlflow

experiment = mlflow.get_experiment_by_name("folio")
runs = mlflow.MlflowClient().search_runs([experiment.experiment_id], max_results=2,
                                         order_by=["attributes.start_time DESC"])
if len(runs) < 2:
    raise SystemExit("the store needs two runs of the experiment 'folio' (or use --demo)")
ids = json.dumps([r.info.run_id for r in runs]).replace(" ", "")
base = os.environ["MLFLOW_TRACKING_URI"]
print(f"{base}/#/compare-runs?runs={quote(ids)}&experiments={quote(json.dumps([experiment.experiment_id]))}")
EOF
)
echo "screenshot of $URL"
mkdir -p "$(dirname "$OUT")"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$WORK/chromium" --window-size=1600,2000 --virtual-time-budget=20000 \
  --screenshot="$OUT" "$URL" 2>/dev/null
# 256 colours are plenty for a UI: a third of the size
"$BIN/python" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").quantize(256).save(sys.argv[1], optimize=True)' "$OUT"
echo "wrote $OUT"
