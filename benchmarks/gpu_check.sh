#!/usr/bin/env bash
# nanoGPT's Shakespeare GPU recipe on one GPU, folio (presets/gpu-shakespeare.yaml) beside
# nanoGPT's own train.py from ../shared/anchors/nanoGPT: tokens/s, MFU against the GPU's bf16
# matmul peak, whole-process wall time, and the whole-val loss of each side's best checkpoint,
# both scored by one function on the same val text. Sized for under 8 minutes on one H100/H200
# (nanoGPT: ~3 min on an A100 by its README); not yet run on a GPU.
#
#   benchmarks/gpu_check.sh             # on a CUDA machine, in the project's environment
#   benchmarks/gpu_check.sh --dry-run   # a few steps of a small model on the CPU (tested)
#
# PYTHON picks the interpreter (default: .venv/bin/python, else python3); folio must be
# installed in it (make setup TORCH=... with a CUDA build of torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# an absolute path: the benchmark runs `folio` from temporary workspaces, where a relative PATH
# entry such as .venv/bin finds nothing
case "$PYTHON" in
  */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
  *) PYTHON="$(command -v "$PYTHON")" ;;
esac
export PATH="$(dirname "$PYTHON"):$PATH"
export GX_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1
exec "$PYTHON" benchmarks/bench_nanogpt.py gpu "$@"
