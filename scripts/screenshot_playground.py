"""Redo docs/images/playground.png: the playground of `folio serve` comparing two versions.

    .venv/bin/python scripts/screenshot_playground.py [--older models/step-0003250.pt] [--newer models/best.pt]

Registers two checkpoints of this workspace in a throwaway sqlite registry (nothing is written to
the project's mlflow.db): --older as version 1, which takes @champion, and --newer as version 2,
the newest. It serves `models:/folio-tinyshakespeare@champion` on a free loopback port, opens the
playground in headless Chromium (Playwright driving the system's chromium), presses Generate on
"ROMEO:" with seed 1 and saves the page once both columns are done.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "folio-tinyshakespeare"


def register(root: Path, checkpoints: list[Path]) -> str:
    from pipeline import params as folio_params
    from pipeline.tracking import registry, store

    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    sample = folio_params.load(ROOT / "params.yaml").sample
    with contextlib.chdir(root):
        store.setup()
        for path in checkpoints:
            with store.mlflow().start_run(run_name=path.stem) as run:
                pass
            logged = registry.log_model(run.info.run_id, path, ROOT / "data" / "tokenizer", sample)
            registry.register(logged.model_uri, NAME, {})
        registry.promote(NAME, 1, "champion", "bits_per_byte", force=True)
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--older", type=Path, default=ROOT / "models" / "step-0003250.pt")
    parser.add_argument("--newer", type=Path, default=ROOT / "models" / "best.pt")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "playground.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: chromium is not installed: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = register(root, [args.older.resolve(), args.newer.resolve()])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(root / "serve.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", f"models:/{NAME}@champion",
                                 "--port", str(port)], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "MLFLOW_TRACKING_URI": uri}, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2).close()
                    break
                except OSError:
                    if proc.poll() is not None:
                        raise SystemExit((root / "serve.log").read_text())
                    time.sleep(0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                page = browser.new_page(viewport={"width": 1200, "height": 640})
                page.goto(url)
                expect(page.locator("#model-b")).to_have_value(f"{NAME}/2")
                page.fill("#max-tokens", "240")
                page.fill("#seed", "1")
                page.click("#generate")
                for column in ("a", "b"):
                    expect(page.locator(f"#stats-{column}")).to_contain_text("tokens", timeout=60_000)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
            log.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
