#!/usr/bin/env bash
# The container image, checked end to end (.ci/run runs it after `make test`; docs/container.md):
# builds the cpu target, checks that nothing of this machine stayed in it and that its torch is the
# CPU build, then runs in it `folio doctor`, a short `dvc repro` (tiny params, the corpus from the
# offline mirror, no network) and `folio serve` with one completion over HTTP.
#
# Where this machine cannot build or run containers (no podman or docker and no apt-get to install
# podman, a container that does not start, no Debian mirror for the base image, no corpus) it says
# why in one line and exits 0; a build or a check that fails exits 1.
#
# Environment:
#   FOLIO_IMAGE_BASE   the BASE image to build on; unset, one is made from Debian's packages
#                      (mmdebstrap, the mirror apt uses) and kept as localhost/folio-base:bookworm
#   FOLIO_DATA_MIRROR  the folder holding tinyshakespeare.txt (default: ../shared/data)
#   IMAGE              the tag to build (default: localhost/folio:cpu)
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/folio:cpu}
BASE_TAG=localhost/folio-base:bookworm
SUITE=bookworm
MIRROR_DIR=${FOLIO_DATA_MIRROR:-../shared/data}
CORPUS=tinyshakespeare.txt

skip() { echo "image check skipped: $*"; exit 0; }
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_install() { { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >/dev/null 2>&1; }
fail() { echo "image check failed: $*" >&2; exit 1; }
step() { echo "== $*"; }

[ -f "$MIRROR_DIR/$CORPUS" ] || skip "no corpus at $MIRROR_DIR/$CORPUS (set FOLIO_DATA_MIRROR to its folder)"

# --- the container engine: podman (installed with apt-get if missing), else a docker that answers ---
if ! command -v podman >/dev/null; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif can_apt; then
    apt_install podman runc mmdebstrap || skip "neither podman nor a running docker, and apt-get could not install podman"
  else
    skip "neither podman nor a running docker, and this job cannot apt-get podman"
  fi
fi
ENGINE=${ENGINE:-podman}
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then "$ENGINE" rm -f "$SERVER" >/dev/null 2>&1 || true; fi
  # files a rootless container wrote belong to a sub-uid: podman unshare removes them
  rm -rf "$WORK" 2>/dev/null || { [ "$ENGINE" = podman ] && podman unshare rm -rf "$WORK"; } || true
}
trap cleanup EXIT
if [ "$ENGINE" = podman ]; then
  # podman's default open-files limit can exceed this sandbox's hard limit (runc: "error setting
  # rlimit type 7"): no default ulimits, for this check only
  printf '[containers]\ndefault_ulimits = []\n' > "$WORK/containers.conf"
  export CONTAINERS_CONF="$WORK/containers.conf"
  PULL=(--pull=never)
else
  PULL=()
fi

# --- the base image ---
BASE=${FOLIO_IMAGE_BASE:-}
if [ -z "$BASE" ]; then
  BASE=$BASE_TAG
  if ! "$ENGINE" image inspect "$BASE" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null || { can_apt && apt_install mmdebstrap; } \
      || skip "no base image: set FOLIO_IMAGE_BASE, or install mmdebstrap"
    # the Debian mirror apt uses here (deb822 .sources or one-line .list), else deb.debian.org
    DEBIAN_MIRROR=$(python3 - "$SUITE" <<'EOF'
import glob, sys
suite, found = sys.argv[1], []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = dict(l.split(":", 1) for l in stanza.splitlines() if ":" in l and not l.startswith(("#", " ")))
        if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
            found += fields.get("URIs", "").split()
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for words in (l.split() for l in lines):
        words = [w for w in words if not w.startswith("[")]
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            found.append(words[1])
print(found[0] if found else "http://deb.debian.org/debian")
EOF
)
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20).close()' \
      "$DEBIAN_MIRROR/dists/$SUITE/Release" 2>/dev/null \
      || skip "no base image and the Debian mirror $DEBIAN_MIRROR does not answer (set FOLIO_IMAGE_BASE)"
    step "base image: mmdebstrap $SUITE from $DEBIAN_MIRROR"
    start=$(date +%s)
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip \
      "$SUITE" "$WORK/rootfs.tar" "$DEBIAN_MIRROR" || fail "mmdebstrap could not build the base image"
    import=$("$ENGINE" import --change 'CMD=["/bin/bash"]' "$WORK/rootfs.tar" "$BASE" 2>&1) \
      || fail "$ENGINE import of the base image failed: $(printf '%s\n' "$import" | tail -n 1)"
    rm -f "$WORK/rootfs.tar"
    echo "built the base image $BASE in $(( $(date +%s) - start )) s"
  fi
fi
probe=$("$ENGINE" run --rm --network=none "$BASE" true 2>&1) \
  || skip "$ENGINE cannot run containers here: $(printf '%s\n' "$probe" | tail -n 1)"

# --- the package sources this machine's pip uses, for the build only ---
# `pip config list` names them; local folders, file:// indexes and the certificate bundle are
# mounted read-only at /mnt/<n> and a pip.conf naming them there is passed as PIP_CONF=/mnt/pip.conf.
# The folder mounted at /mnt holds the mount points (buildah would leave the ones it creates in
# the image). podman only: `docker build` mounts nothing, so its build uses the ordinary indexes.
BUILD_ARGS=(--build-arg "BASE=$BASE")
PIP=(python3 -m pip)
[ -x .venv/bin/python ] && PIP=(.venv/bin/python -m pip)
if [ "$ENGINE" = podman ] && pip_config=$("${PIP[@]}" config list 2>/dev/null); then
  mkdir "$WORK/pip"
  printf '%s\n' "$pip_config" > "$WORK/pip-config-list"
  mapfile -t MOUNTS < <(python3 - "$WORK/pip-config-list" "$WORK/pip/pip.conf" <<'EOF'
import ast, os, sys
from urllib.parse import urlparse
# pip's precedence: the environment over site over user over global
RANK = {":env:": 0, "site": 1, "user": 2, "global": 3}
KEYS = {"index-url", "extra-index-url", "find-links", "cert", "trusted-host", "default-timeout", "timeout", "retries"}
best = {}
for line in open(sys.argv[1]).read().splitlines():
    name, _, value = line.partition("=")
    scope, _, key = name.rpartition(".")
    if key in KEYS and (key not in best or RANK.get(scope, 9) < best[key][0]):
        best[key] = (RANK.get(scope, 9), ast.literal_eval(value))
mounts, conf = [], ["[global]"]
def mount(path):
    point = os.path.join(os.path.dirname(sys.argv[2]), str(len(mounts)))
    os.mkdir(point) if os.path.isdir(path) else open(point, "w").close()
    mounts.append(f"{path}:/mnt/{len(mounts)}:ro")
    return mounts[-1].split(":")[1]
for key, (_, value) in sorted(best.items()):
    if key == "timeout":
        key = "default-timeout"
    words = []
    for word in value.split():
        url = urlparse(word)
        if url.scheme == "file" and os.path.isdir(url.path):
            # a simple index links to ../../files: mount the folder above it
            parent = os.path.dirname(url.path.rstrip("/"))
            words.append("file://" + mount(parent) + "/" + os.path.basename(url.path.rstrip("/")))
        elif not url.scheme and os.path.exists(word):
            words.append(mount(os.path.abspath(word)))
        else:
            words.append(word)
    conf.append(f"{key} = {' '.join(words)}")
open(sys.argv[2], "w").write("\n".join(conf) + "\n")
print(*mounts, sep="\n")
EOF
)
  BUILD_ARGS+=(--volume "$WORK/pip:/mnt:ro" --build-arg PIP_CONF=/mnt/pip.conf)
  for m in "${MOUNTS[@]}"; do BUILD_ARGS+=(--volume "$m"); done
  # torch from the index pip uses here (its CPU wheel among its sources), not download.pytorch.org
  index=$(printf '%s\n' "$pip_config" | sed -n "s/^[^=]*\.index-url='\(.*\)'$/\1/p" | head -n 1)
  BUILD_ARGS+=(--build-arg "TORCH_INDEX=${index:-https://pypi.org/simple}")
  echo "pip sources for the build: $(grep -v '^\[' "$WORK/pip/pip.conf" | tr '\n' ';')"
fi

# --- build ---
step "$ENGINE build --target cpu -t $IMAGE (base $BASE)"
start=$(date +%s)
"$ENGINE" build "${PULL[@]}" --network=host --target cpu -t "$IMAGE" -f Containerfile "${BUILD_ARGS[@]}" . \
  || fail "$ENGINE build failed (the output above says where)"
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE in $(( $(date +%s) - start )) s; size $(( size / 1000000 )) MB"

run() { "$ENGINE" run --rm "$@"; }

# --- nothing of this machine in the image; the CPU torch ---
step "the image holds no pip.conf, certificate copy or host wheels, and a CPU torch"
cert=$(printf '%s\n' "${pip_config:-}" | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -n 1)
cert_sum=""
[ -n "$cert" ] && [ -f "$cert" ] && cert_sum=$(sha256sum "$cert" | cut -d' ' -f1)
run --network=none --entrypoint /bin/sh -e CERT_SUM="$cert_sum" "$IMAGE" -c '
  bad=0
  for p in /opt/wheels /opt/pypi /opt/pypi-more; do
    if [ -e "$p" ]; then echo "left in the image: $p"; bad=1; fi
  done
  if [ -n "$(ls -A /mnt 2>/dev/null)" ]; then echo "left in the image: /mnt/$(ls -A /mnt | head -n 1)"; bad=1; fi
  found=$(find / -xdev \( -name pip.conf -o -name pip.ini \) -not -path "/proc/*" 2>/dev/null)
  if [ -n "$found" ]; then echo "left in the image: $found"; bad=1; fi
  if [ -n "$CERT_SUM" ]; then
    copies=$(find / -xdev -type f \( -name "*.crt" -o -name "*.pem" \) -exec sha256sum {} + 2>/dev/null | grep "^$CERT_SUM" || true)
    if [ -n "$copies" ]; then echo "a copy of the build machine certificate bundle: $copies"; bad=1; fi
  fi
  env | grep -q "^PIP_CONFIG_FILE=" && { echo "PIP_CONFIG_FILE is set in the image"; bad=1; }
  python -c "import torch, sys; print(\"torch\", torch.__version__); sys.exit(torch.version.cuda and \"a CUDA torch in the cpu image\")" || bad=1
  cuda_libs=$(find /opt/venv -name "libcudart.so*" -o -name "libcublas.so*" | head -n 3)
  if [ -n "$cuda_libs" ]; then echo "CUDA libraries in the cpu image: $cuda_libs"; bad=1; fi
  exit $bad' || fail "the image holds what it should not (above)"

step "folio doctor"
run --network=none "$IMAGE" doctor || fail "folio doctor failed in the image"

step "a volume the image's user cannot write: one line, before the command"
mkdir "$WORK/not-writable"
if refused=$(run --network=none -v "$WORK/not-writable:/app/data" "$IMAGE" doctor 2>&1); then
  fail "the entrypoint ran a command with /app/data not writable"
fi
echo "$refused"
[ "$(printf '%s\n' "$refused" | wc -l)" = 1 ] && [[ $refused == "error: the volume at /app/data is not writable"* ]] \
  || fail "the refusal is not the entrypoint's one line"

# --- a short pipeline, offline, with the volumes as a user would mount them ---
step "dvc repro (tiny params, the corpus from the mirror, no network)"
# open to the image's user whatever uid it maps to (rootful or rootless)
mkdir -p "$WORK/data" "$WORK/models" "$WORK/mlflow" "$WORK/reports"
chmod 0777 "$WORK/data" "$WORK/models" "$WORK/mlflow" "$WORK/reports"
run --network=none "$IMAGE" python -c '
import yaml
p = yaml.safe_load(open("params.yaml"))
tiny = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "train": {"max_iters": 30, "batch_size": 8, "eval_interval": 10, "eval_iters": 2,
                  "warmup_iters": 5, "device": "cpu"},
        "evaluate": {"max_tokens": 2000}, "sample": {"max_new_tokens": 40}}
for section, values in tiny.items():
    p[section].update(values)
print(yaml.safe_dump(p, sort_keys=False))' > "$WORK/params.yaml"
VOLUMES=(-v "$WORK/data:/app/data" -v "$WORK/models:/app/models" -v "$WORK/mlflow:/app/mlflow")
start=$(date +%s)
run --network=none "${VOLUMES[@]}" -v "$WORK/reports:/app/reports" \
  -v "$WORK/params.yaml:/app/params.yaml:ro" -v "$(cd "$MIRROR_DIR" && pwd):/mirror:ro" \
  -e FOLIO_DATA_MIRROR=/mirror "$IMAGE" dvc repro || fail "dvc repro failed in the image"
[ -s "$WORK/reports/metrics.json" ] || fail "dvc repro left no reports/metrics.json in the reports volume"
[ -s "$WORK/mlflow/mlflow.db" ] || fail "dvc repro left no MLflow store in the mlflow volume"
echo "dvc repro in the image: $(( $(date +%s) - start )) s; reports/metrics.json: $(tr -d '\n ' < "$WORK/reports/metrics.json" | cut -c1-200)"

# --- the server: the image's default command ---
if ! run --network=none "$IMAGE" folio serve --help >/dev/null 2>&1; then
  echo "folio serve: not in this image's folio yet; the server check is left out"
  exit 0
fi
step "folio serve (the default command): refused without an API key, then one completion over HTTP"
# the default command listens on 0.0.0.0, which folio serve allows only with an API key
if refused=$(run --network=none "${VOLUMES[@]}" "$IMAGE" 2>&1); then
  fail "the default command started a server on 0.0.0.0 without an API key"
fi
echo "without FOLIO_API_KEY: $refused"
[ "$(printf '%s\n' "$refused" | wc -l)" = 1 ] || fail "the refusal is not one line"
key=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER=$("$ENGINE" run -d "${VOLUMES[@]}" -e FOLIO_API_KEY="$key" -p "127.0.0.1:$port:8000" "$IMAGE")
python3 - "$port" "$key" <<'EOF' || { "$ENGINE" logs "$SERVER" 2>&1 | tail -n 20; fail "folio serve in the image gave no completion"; }
import json, sys, time, urllib.request
base, auth = f"http://127.0.0.1:{sys.argv[1]}", {"Authorization": f"Bearer {sys.argv[2]}"}
deadline = time.monotonic() + 180
while True:
    try:
        models = json.load(urllib.request.urlopen(urllib.request.Request(f"{base}/v1/models", headers=auth), timeout=5))
        break
    except OSError as err:
        if time.monotonic() > deadline:
            sys.exit(f"no answer from {base}/v1/models in 180 s ({err})")
        time.sleep(2)
model = models["data"][0]["id"]
body = json.dumps({"model": model, "prompt": "ROMEO:", "max_tokens": 24, "temperature": 0}).encode()
request = urllib.request.Request(f"{base}/v1/completions", body, {"Content-Type": "application/json", **auth})
answer = json.load(urllib.request.urlopen(request, timeout=120))
text = answer["choices"][0]["text"]
print(f"POST /v1/completions (model {model}): {text!r}")
sys.exit(0 if text else "an empty completion")
EOF
echo "image check passed"
