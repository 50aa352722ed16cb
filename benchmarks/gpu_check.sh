#!/usr/bin/env bash
# nanoGPT's Shakespeare GPU recipe on one GPU, folio (presets/gpu-shakespeare.yaml) beside
# nanoGPT's own train.py from ../shared/anchors/nanoGPT, like for like: both sides get the dtype
# folio's rule picks for this GPU (nanoGPT through --dtype), both compile, neither uses
# deterministic kernels (folio: train.deterministic=false). It reports tokens/s, MFU against the
# matmul peak of the dtype the hardware runs (measured in the same run), whole-process wall time,
# and the whole-val loss of each side's best checkpoint, both scored by one function on the same
# val text, each ratio with the settings held equal beside it. Sized for under 8 minutes on one
# H100/H200 (nanoGPT: ~3 min on an A100 by its README); not yet run on a GPU.
#
#   benchmarks/gpu_check.sh             # on a CUDA machine, in the project's environment
#   benchmarks/gpu_check.sh --dry-run   # a few steps of a small model on the CPU (tested)
#
# PYTHON picks the interpreter (default: .venv/bin/python, else python3; a relative path is from
# the project root); folio must be installed in it (make setup TORCH=... with a CUDA build of torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# an absolute path: the benchmark runs `folio` from temporary workspaces, where a relative PATH
# entry such as .venv/bin finds nothing
case "$PYTHON" in
  */*) [ -x "$PYTHON" ] && [ ! -d "$PYTHON" ] || { echo "error: PYTHON=$PYTHON is not an executable file" >&2; exit 1; }
       PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
  *) found="$(command -v "$PYTHON")" ||
       { echo "error: no $PYTHON on PATH; set PYTHON to the interpreter that has folio installed" >&2; exit 1; }
     PYTHON="$found" ;;
esac
export PATH="$(dirname "$PYTHON"):$PATH"
export GX_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1
exec "$PYTHON" benchmarks/bench_nanogpt.py gpu "$@"
