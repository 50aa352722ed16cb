"""The playground page of `folio serve` in headless Chromium (Playwright driving the system's
Chromium): it loads with nothing from outside the server, offers the registry's versions, and one
press of Generate streams one prompt and seed into both columns — the served @champion on the
left, the newest version on the right — each exactly the text the API gives for that version and
seed. Skipped, saying why, without Chromium or the playwright package."""

from __future__ import annotations

import shutil

import pytest

from tests.serving import NAME, build_registry, folio_serve, request

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")

SETTINGS = {"prompt": "ROMEO:", "max_tokens": 60, "temperature": 0.8, "top_p": 0.9, "seed": 4}


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed: apt-get install -y chromium (.ci/run does it as root)")


def test_generate_streams_one_prompt_and_seed_into_both_columns(tmp_path_factory):
    chromium = find_chromium()
    reg = build_registry(tmp_path_factory.mktemp("playground"))
    with folio_serve([f"models:/{NAME}@champion", "--threads", "1"], reg.root, reg.uri) as (url, _log):
        expected = {version: request(f"{url}/v1/completions", {**SETTINGS, "model": version})[2]["choices"][0]["text"]
                    for version in ("1", "2")}
        assert expected["1"] != expected["2"]
        outside = []
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            try:
                page = browser.new_page()

                def only_the_server(route):
                    if route.request.url.startswith(url):
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()

                page.route("**/*", only_the_server)
                page.goto(url)
                expect = sync_api.expect
                expect(page.locator("#model-b option")).to_have_count(3)  # served, version 2, version 1
                expect(page.locator("#model-b")).to_have_value(f"{NAME}/2")  # the newest
                expect(page.locator("#model-a")).to_have_value("")  # the served alias
                page.fill("#prompt", SETTINGS["prompt"])
                page.fill("#max-tokens", str(SETTINGS["max_tokens"]))
                page.fill("#temperature", str(SETTINGS["temperature"]))
                page.fill("#top-p", str(SETTINGS["top_p"]))
                page.fill("#seed", str(SETTINGS["seed"]))
                page.click("#generate")
                expect(page.locator("#stats-a")).to_contain_text(f"{NAME}/1 · 60 tokens", timeout=30_000)
                expect(page.locator("#stats-b")).to_contain_text(f"{NAME}/2 · 60 tokens", timeout=30_000)
                assert page.inner_text("#out-a") == SETTINGS["prompt"] + expected["1"]
                assert page.inner_text("#out-b") == SETTINGS["prompt"] + expected["2"]
            finally:
                browser.close()
        assert outside == []
