"""`folio plots-template`: the page that `dvc plots show` and `dvc plots diff` fill in, with Vega,
Vega-Lite and Vega-Embed inlined so that it draws its charts offline. DVC's own page loads them
from a CDN, and without the network it stays blank.

Reads .dvc/config (and config.local) for `plots.html_template`, the file DVC fills in (relative
to .dvc/, as DVC reads it), and writes that file. The libraries come from the pinned
vl-convert-python package (`vl_convert.javascript_bundle`). `make setup` makes the page rather
than the repository committing ~900 KB of minified JavaScript: the same package version gives
the same bytes, and a package upgrade needs no hand-vendoring.

The page's second line records what it was made from (a key over the vl-convert-python and
dvc-render versions and this file) and the digest of what follows, so that a missing, stale or
edited page is one line saying what to do (`problem`, also in `folio doctor`) instead of a blank
page. DVC itself cannot say so: for a missing file it prints "unexpected error - HTML template
has to contain '{plot_divs}'".
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import StageError

PACKAGE = "vl-convert-python"
SETUP = "run `make setup` (or `folio plots-template`)"

# DVC fills {refresh_tag} and {plot_divs}. Its {scripts} would be the CDN <script> tags, so the
# page leaves it out: the inlined bundle defines window.vega, vegaLite and vegaEmbed, which the
# plots' own scripts call. The bundle is an ES module's code; a function keeps its top-level
# names out of the page's global scope (where DVC's `var spec` lives) and the script classic, so
# that it runs before the plots' scripts below it.
PAGE = """<!DOCTYPE html>
{header}
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC Plot</title>
    <script>
(function () {{
"use strict";
{bundle}
}})();
    </script>
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""
HEADER = ("<!-- folio plots page: Vega {vega}, Vega-Lite {vega_lite} and Vega-Embed {vega_embed} "
          "inlined from {package} {package_version} by `folio plots-template` (make setup); "
          "key {key}; sha256 {digest}. Do not edit: rerun make setup. -->")
HEADER_RE = re.compile(r"<!-- folio plots page: (?P<libraries>.*) inlined from .*; "
                       r"key (?P<key>[0-9a-f]+); sha256 (?P<digest>[0-9a-f]+)\. ")


@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    libraries: str
    changed: bool
    moved_aside: Path | None = None  # where an edited page went


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def template_path(project: Path) -> Path | None:
    """The file .dvc/config's `plots.html_template` names, resolved as DVC does (relative to
    .dvc/); None when the project names none."""
    config = configparser.ConfigParser()
    config.read([project / ".dvc" / "config", project / ".dvc" / "config.local"])
    value = config.get("plots", "html_template", fallback="").strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else project / ".dvc" / path


def configured_path(project: Path) -> Path:
    """`template_path`, or the error saying how to name one."""
    if (path := template_path(project)) is None:
        raise StageError(f"{project / '.dvc' / 'config'} names no plots.html_template; add "
                         "`[plots]` with `html_template = plots_offline.html` to it")
    return path


def shown(path: Path, project: Path) -> Path:
    return path.relative_to(project) if path.is_relative_to(project) else path


def key() -> str:
    """What a page is made from: the two packages' versions and this generator's code. A page
    with another key was made from something else, and is stale."""
    h = hashlib.sha256()
    for package in (PACKAGE, "dvc-render"):
        h.update(f"{package} {version(package)}\n".encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def vega_lite_major() -> int:
    """The Vega-Lite major version of DVC's plot specs (their `$schema`, e.g. .../vega-lite/v5.json):
    Vega-Embed warns when the library's major differs from the spec's."""
    from dvc_render.vega_templates import LinearTemplate

    return int(re.search(r"vega-lite/v(\d+)", LinearTemplate.DEFAULT_CONTENT["$schema"]).group(1))


def pick_vega_lite(available: list[str], major: int) -> str:
    """The newest of vl-convert's Vega-Lite versions ('5.21', '6.4', ...) with `major`."""
    matching = [v for v in available if int(v.split(".")[0]) == major]
    if not matching:
        raise StageError(f"{PACKAGE} {version(PACKAGE)} bundles no Vega-Lite {major} (it has "
                         f"{', '.join(available)}); install the version constraints.txt pins "
                         "(make setup)")
    return max(matching, key=lambda v: tuple(int(part) for part in v.split(".")))


def build() -> str:
    """The page, from the installed vl-convert-python: the same version gives the same text."""
    try:
        import vl_convert
    except ImportError:
        raise StageError(f"{PACKAGE} is not installed; run `make setup`") from None
    vega_lite = pick_vega_lite(vl_convert.get_vegalite_versions(), vega_lite_major())
    bundle = vl_convert.javascript_bundle(vl_version=vega_lite).strip()
    # inlined in a <script>: these would end it early (and `{...}` placeholders are DVC's)
    for forbidden in ("</script", "<!--", "{plot_divs}", "{refresh_tag}", "{scripts}"):
        assert forbidden not in bundle, f"the Vega bundle contains {forbidden!r}"
    body = PAGE.format(header="", bundle=bundle).removeprefix("<!DOCTYPE html>\n\n")
    header = HEADER.format(vega=vl_convert.get_vega_version(), vega_lite=vega_lite,
                           vega_embed=vl_convert.get_vega_embed_version(), package=PACKAGE,
                           package_version=version(PACKAGE), key=key(), digest=_digest(body))
    return f"<!DOCTYPE html>\n{header}\n{body}"


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def _split(page: str) -> tuple[str, str]:
    """(the header line, what follows it) of a page this module wrote; ('', page) otherwise."""
    parts = page.split("\n", 2)
    if len(parts) < 3 or parts[0] != "<!DOCTYPE html>":
        return "", page
    return parts[1], parts[2]


def _intact_header(path: Path) -> re.Match | None:
    """The header of a page this module wrote and nobody changed since (current or stale);
    None for an edited or cut-short page, or one this module did not write."""
    header, body = _split(path.read_text(encoding="utf-8", errors="replace"))
    match = HEADER_RE.match(header)
    return match if match is not None and match["digest"] == _digest(body) else None


def problem(project: Path) -> str | None:
    """Why `dvc plots show` would not draw the page this project names, as one line that says
    what to do; None when the page is current or the project names none."""
    path = template_path(project)
    if path is None:
        return None
    where = shown(path, project)
    if not path.is_file():
        return f"the plots page template {where} is missing, so `dvc plots show` fails; {SETUP}"
    match = _intact_header(path)
    if match is None:
        return f"the plots page template {where} was edited or cut short; {SETUP}"
    if version(PACKAGE) is None:
        return (f"{PACKAGE} is not installed, so the plots page template {where} cannot be "
                "checked; run `make setup`")
    if match["key"] != key():
        return (f"the plots page template {where} was made by another {PACKAGE}, dvc-render or "
                f"folio; {SETUP}")
    return None


def write(project: Path) -> Written:
    """Write the page where .dvc/config says, unless the one there is current already. A page
    someone edited (or one this module did not write) is moved aside first, never overwritten."""
    from folio import fileio

    path = configured_path(project)
    moved = None
    if problem(project) is None:
        page, changed = path.read_text(encoding="utf-8"), False
    else:
        page, changed = build(), True
        if path.is_file() and _intact_header(path) is None:  # edited, or not ours at all
            moved = path.with_name(f"{path.name}.edited-{time.strftime('%Y%m%d-%H%M%S')}")
            path.replace(moved)
        fileio.write_text(path, page)
    return Written(path, len(page.encode("utf-8")), HEADER_RE.match(_split(page)[0])["libraries"],
                   changed, moved)




def show(check: bool) -> None:
    import typer

    project = Path.cwd()
    if check:
        path = configured_path(project)
        if message := problem(project):
            raise StageError(message)
        typer.echo(f"{shown(path, project)} is current")
        return
    written = write(project)
    if written.moved_aside is not None:
        typer.echo(f"moved the edited {shown(written.path, project)} aside to {shown(written.moved_aside, project)}")
    state = "wrote" if written.changed else "current:"
    typer.echo(f"{state} {shown(written.path, project)} ({written.size / 1e3:.0f} kB: {written.libraries})")
