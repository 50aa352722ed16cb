#!/usr/bin/env bash
# Redo docs/plots.png: the page `dvc plots show` writes for the pipeline's plots (dvc.yaml,
# reports/train/*.csv), rendered offline by headless Chromium (apt-get install -y chromium) with
# every request off the machine refused, so the picture shows what the inlined Vega libraries
# draw (docs/plots.md).
#
#   scripts/screenshot_plots.sh              # the workspace's plots (`dvc plots show`)
#   scripts/screenshot_plots.sh HEAD~1       # against revisions (`dvc plots diff HEAD~1`)
#   OUT=/tmp/x.png scripts/screenshot_plots.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
BIN=$PROJECT/.venv/bin
OUT=${OUT:-$PROJECT/docs/plots.png}
export PATH=$BIN:$PATH MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1 \
       GX_ANALYTICS_ENABLED=false
fail() { echo "error: screenshot_plots: $*" >&2; exit 1; }
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || fail "headless Chromium is not installed; apt-get install -y chromium"
[ -x "$BIN/folio" ] || fail "no $BIN/folio; run make setup"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

folio plots-template >/dev/null  # what make setup does: the page template, if not current
if [ $# -gt 0 ]; then
  dvc plots diff "$@" -o "$WORK/plots" >/dev/null
else
  dvc plots show -o "$WORK/plots" >/dev/null
fi
PAGE=$WORK/plots/index.html
[ -f "$PAGE" ] || fail "dvc wrote no plots page (no plot data? run dvc repro first)"

# No host name resolves, and what gets past that goes to a port nothing serves.
chrome() {
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --user-data-dir="$WORK/chromium" --host-resolver-rules="MAP * ~NOTFOUND" \
    --proxy-server=http://127.0.0.1:9 --virtual-time-budget=10000 "$@" "file://$PAGE" 2>/dev/null
}
chrome --dump-dom | grep -q 'aria-roledescription="line mark"' \
  || fail "the plots page drew no chart offline; run make setup (docs/plots.md)"
mkdir -p "$(dirname "$OUT")"
chrome --window-size=1000,1200 --screenshot="$OUT" >/dev/null
# Crop to the charts and keep 256 colours: plenty for line charts, a fraction of the size.
"$BIN/python" - "$OUT" <<'EOF'
import sys
from PIL import Image, ImageChops

path = sys.argv[1]
image = Image.open(path).convert("RGB")
box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
if box:
    margin = 12
    image = image.crop((max(box[0] - margin, 0), max(box[1] - margin, 0),
                        min(box[2] + margin, image.width), min(box[3] + margin, image.height)))
image.quantize(256).save(path, optimize=True)
EOF
echo "wrote $OUT"
