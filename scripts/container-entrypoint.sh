#!/bin/sh
# The container image's entrypoint (Containerfile; docs/container.md). It runs
#   - the image's CMD:          `folio serve` on 0.0.0.0:8000 (no arguments at all: `folio --help`)
#   - a program on PATH:        that program (`folio ...`, `dvc repro`, `mlflow ...`, `bash`)
#   - anything else:            a folio command (`doctor` is `folio doctor`, `--help` is `folio --help`)
# in /app, the project, with the volumes /app/data, /app/models and /app/mlflow (the MLflow store:
# sqlite:////app/mlflow/mlflow.db, its artifacts in /app/mlflow/artifacts, which /app/mlartifacts
# links to). Before that, a volume mounted read-write that this user cannot write stops it with one
# line (the usual cause: a bind mount of a host folder owned by someone else).
set -eu

# FOLIO_VOLUMES: the mount points checked (a test may point it elsewhere)
for dir in ${FOLIO_VOLUMES:-/app/data /app/models /app/mlflow}; do
    options=$(awk -v d="$dir" '$2 == d { o = $4 } END { print o }' /proc/mounts)
    case ",$options," in
        ,,|*,ro,*) ;;  # not a mount point (the image's own folder), or mounted read-only on purpose
        *)
            if [ ! -w "$dir" ]; then
                echo "error: the volume at $dir is not writable by uid $(id -u) ($(id -un 2>/dev/null || echo '?')): use a named volume, chown the host folder to $(id -u):$(id -g), or mount it read-only (:ro) for a command that only reads it" >&2
                exit 2
            fi
            ;;
    esac
done
# a fresh volume at /app/mlflow has no artifacts folder yet: MLflow writes through /app/mlartifacts
if [ -w /app/mlflow ] && [ ! -d /app/mlflow/artifacts ]; then
    mkdir /app/mlflow/artifacts
fi
# a fresh volume at /app/data has no data/suites/, a dep of the evaluate stage (evaluate.suites'
# files go there: docs/evaluation.md); without it `dvc repro` stops on a missing dependency
if [ -w /app/data ] && [ ! -d /app/data/suites ]; then
    mkdir /app/data/suites
fi

if [ "$#" -eq 0 ]; then
    set -- folio --help
elif [ "${1#-}" != "$1" ] || ! command -v -- "$1" >/dev/null 2>&1; then
    set -- folio "$@"
fi
exec "$@"
