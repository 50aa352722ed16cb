"""`dvc plots show` and `dvc plots diff` draw their charts offline. In a copy of the project with
small reports/train/*.csv, `folio plots-template` makes the page template that .dvc/config names
(twice: the same bytes); DVC fills it in; headless Chromium loads the result with every request
off the machine refused, and each plot must hold a line with one point per row of its data, for
each revision, with no script error. DVC's own CDN page, under the same cut, draws nothing (so
the check can fail). A missing, stale or edited template is one line saying what to do, from
`folio plots-template --check` and `folio doctor`; `make setup` writes it."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.commands import doctor, plots_template
from tests import pipeline_project as pp
from tests.conftest import PROJECT

# What the train stage writes (pipeline/artifacts/reports.py): one row per step, one per eval.
STEPS = ["step,train_loss,lr"] + [f"{s},{4.0 - 0.3 * s:.3f},0.001" for s in range(1, 7)]
EVALS = ["step,train_loss,val_loss,train_seconds"] + [f"{s},{3.0 - 0.2 * s},{3.1 - 0.2 * s},{2.0 * s}"
                                                     for s in (0, 2, 4, 6)]
# each plot of the train stage and the column dvc.yaml draws of it
PLOTS = {path: spec["y"] for plot in yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]["train"]["plots"]
         for path, spec in plot.items()}


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed: apt-get install -y chromium (.ci/run does it as root)")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git copy of the project (its dvc.yaml and .dvc/config) whose reports/train/*.csv are
    committed, and the page template `folio plots-template` made in it."""
    root = pp.make_project(tmp_path_factory.mktemp("plots") / "folio", "http://127.0.0.1:9/unused")
    write_reports(root, STEPS, EVALS)
    pp.git(root, "add", "reports")
    pp.git(root, "commit", "-q", "-m", "plots")
    assert "wrote .dvc/plots_offline.html" in pp.run(root, "folio", "plots-template")
    return root


def write_reports(root: Path, steps: list[str], evals: list[str]) -> None:
    (root / "reports" / "train").mkdir(parents=True, exist_ok=True)
    (root / "reports" / "train" / "steps.csv").write_text("\n".join(steps) + "\n")
    (root / "reports" / "train" / "evals.csv").write_text("\n".join(evals) + "\n")


class LineMarks(html.parser.HTMLParser):
    """Vega's SVG line marks in a page, per enclosing DVC plot <div id=...>: (rev, points)."""

    def __init__(self, plot_ids: set[str]):
        super().__init__()
        self.plot_ids, self.divs, self.lines = plot_ids, [], {i: [] for i in plot_ids}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            self.divs.append(a.get("id"))
        elif tag == "path" and a.get("aria-roledescription") == "line mark":
            plot = next((d for d in self.divs if d in self.plot_ids), None)
            rev = re.search(r"rev: (\S+)", a.get("aria-label", ""))
            if plot and rev:
                self.lines[plot].append((rev[1], a.get("d", "").count("L") + 1))

    def handle_endtag(self, tag):
        if tag == "div" and self.divs:
            self.divs.pop()


def plot_id(name: str) -> str:
    from dvc_render.base import Renderer

    return Renderer.remove_special_chars(name)


def render(page: Path, profile: Path) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Load `page` in headless Chromium with the network cut; the most points a line of each
    revision has in each plot, and the page's console messages."""
    args = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}",
            # the cut: no host name resolves, and what gets past that goes to a port nothing serves
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
            page.as_uri()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    marks = LineMarks({plot_id(name) for name in PLOTS})
    marks.feed(proc.stdout)
    drawn = {}
    for plot, lines in marks.lines.items():
        for rev, points in lines:
            drawn.setdefault(plot, {})[rev] = max(points, drawn.get(plot, {}).get(rev, 0))
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return drawn, console


def no_script_errors(console: list[str]) -> None:
    errors = [line for line in console if "Uncaught" in line or "Error" in line]
    assert not errors, "\n".join(errors)


def test_the_template_is_the_same_bytes_each_time_and_current(project):
    template = project / ".dvc" / "plots_offline.html"
    first = template.read_bytes()
    assert "current: .dvc/plots_offline.html" in pp.run(project, "folio", "plots-template")
    assert template.read_bytes() == first
    template.unlink()
    assert "wrote .dvc/plots_offline.html" in pp.run(project, "folio", "plots-template")  # a new process
    assert template.read_bytes() == first
    assert pp.run(project, "folio", "plots-template", "--check").strip() == ".dvc/plots_offline.html is current"
    page = first.decode()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN <script> tags stay out
    assert not re.search(r"<script[^>]*\bsrc=", page)


def test_dvc_plots_show_draws_every_plot_offline(project, tmp_path):
    out = pp.run(project, "dvc", "plots", "show")
    page = project / "dvc_plots" / "index.html"
    assert page.as_uri() in out
    drawn, console = render(page, tmp_path / "profile")
    rows = {"reports/train/steps.csv": len(STEPS) - 1, "reports/train/evals.csv": len(EVALS) - 1}
    assert drawn == {plot_id(name): {"workspace": n} for name, n in rows.items()}
    no_script_errors(console)


def test_dvc_plots_diff_draws_both_revisions_offline(project, tmp_path):
    clone = pp.clone(project, tmp_path / "clone")
    write_reports(clone, STEPS + ["7,1.9,0.001", "8,1.8,0.001"], EVALS + ["8,1.4,1.5,16.0"])
    pp.run(clone, "dvc", "plots", "diff", "HEAD", "-o", "diff_plots")
    drawn, console = render(clone / "diff_plots" / "index.html", tmp_path / "profile")
    assert drawn == {plot_id("reports/train/steps.csv"): {"HEAD": 6, "workspace": 8},
                     plot_id("reports/train/evals.csv"): {"HEAD": 4, "workspace": 5}}
    no_script_errors(console)


def test_dvcs_own_cdn_page_draws_nothing_under_the_same_cut(project, tmp_path):
    """The control: without the inlined libraries the check above finds no line."""
    from dvc_render.html import PAGE_HTML

    cdn_template = tmp_path / "cdn.html"
    cdn_template.write_text(PAGE_HTML)
    pp.run(project, "dvc", "plots", "show", "--html-template", str(cdn_template), "-o", str(tmp_path / "cdn"))
    page = tmp_path / "cdn" / "index.html"
    assert "cdn.jsdelivr.net" in page.read_text()
    drawn, console = render(page, tmp_path / "profile")
    assert drawn == {}
    assert any("vegaEmbed is not defined" in line for line in console), console


def test_a_missing_stale_or_edited_template_is_one_line_saying_what_to_do(project, tmp_path):
    clone = pp.clone(project, tmp_path / "clone")
    template = clone / ".dvc" / "plots_offline.html"
    good = template.read_text()

    def check() -> str:
        proc = subprocess.run(["folio", "plots-template", "--check"], cwd=clone, env=pp.env(),
                              capture_output=True, text=True)
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert doctor.report(clone)["warnings"][-1] == proc.stderr.strip().removeprefix("error: plots-template: ")
        return proc.stderr.strip()

    template.unlink()
    assert check() == ("error: plots-template: the plots page template .dvc/plots_offline.html is "
                       "missing, so `dvc plots show` fails; run `make setup` (or `folio plots-template`)")
    # what DVC itself says then (docs/plots.md quotes it): one line, exit status non-zero
    dvc = subprocess.run(["dvc", "plots", "show"], cwd=clone, env=pp.env(), capture_output=True, text=True)
    assert dvc.returncode != 0 and "HTML template has to contain '{plot_divs}'" in dvc.stderr
    assert "Traceback" not in dvc.stderr

    template.write_text(good.replace("vegaEmbed", "vegaEmbeD", 1))
    assert check().endswith("was edited or cut short; run `make setup` (or `folio plots-template`)")
    template.write_text(good[: len(good) // 2])
    assert check().endswith("was edited or cut short; run `make setup` (or `folio plots-template`)")

    key = plots_template.HEADER_RE.match(good.split("\n")[1])["key"]
    template.write_text(good.replace(f"key {key}", "key 0000000000000000", 1))  # made from another version
    assert "was made by another vl-convert-python, dvc-render or folio" in check()

    assert "wrote .dvc/plots_offline.html" in pp.run(clone, "folio", "plots-template")  # the fix it names
    assert template.read_text() == good


def test_an_edited_template_is_moved_aside_not_overwritten(project, tmp_path):
    clone = pp.clone(project, tmp_path / "clone")
    template = clone / ".dvc" / "plots_offline.html"
    good = template.read_text()
    edited = good.replace("border-spacing: 15px", "border-spacing: 40px", 1)
    template.write_text(edited)
    out = pp.run(clone, "folio", "plots-template")
    (aside,) = (clone / ".dvc").glob("plots_offline.html.edited-*")
    assert f"aside to .dvc/{aside.name}" in out and aside.read_text() == edited
    assert template.read_text() == good
    assert aside.name not in pp.run(clone, "git", "status", "--porcelain", "--ignored=no")


def test_the_vega_lite_picked_is_the_newest_of_dvcs_major_as_numbers():
    assert plots_template.pick_vega_lite(["5.8", "5.21", "5.9", "6.4"], 5) == "5.21"  # not "5.9"
    assert plots_template.vega_lite_major() == 5  # DVC's plot specs: vega-lite/v5.json
    with pytest.raises(plots_template.StageError, match="bundles no Vega-Lite 7"):
        plots_template.pick_vega_lite(["5.21", "6.4"], 7)


def test_make_setup_writes_the_template_after_installing():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "--no-print-directory", "-n", "-B", "setup", "VENV=/nonexistent-venv"], cwd=PROJECT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[-1] == "/nonexistent-venv/bin/folio plots-template"
    assert any("pip install" in line for line in out[:-1])
    assert plots_template.template_path(PROJECT) == PROJECT / ".dvc" / "plots_offline.html"
