"""The page `folio compare` writes, from what pipeline/commands/compare.py collected: the figure
of the eval curves (PNG bytes, matplotlib's Agg backend), the report as one self-contained HTML
page (CSS inline, the figure a data: URI, nothing fetched: it reads offline) and as Markdown (the
figure a PNG file beside it). Knows nothing of MLflow or models; every text is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field

COLORS = ("#1f77b4", "#d62728")  # side A, side B


@dataclass(frozen=True)
class Side:
    label: str  # v3, run 1a2b3c4d
    facts: list[tuple[str, str]]  # (what, value): version, run, weights digest, data digest, times


@dataclass(frozen=True)
class SharedRow:
    measure: str  # a score key: val.bits_per_byte, suite.<name>.<metric>, harness.<task>.<metric>
    digest: str  # of the text both were scored on
    a: float
    b: float
    direction: str | None  # lower | higher (is better); None: unknown
    better: str  # a side's label, "equal", or why it is not judged

    @property
    def difference(self) -> float:
        return self.b - self.a


@dataclass(frozen=True)
class UnsharedRow:
    measure: str
    a: list[tuple[float, str]]  # A's (value, digest) of this measure not matched by B's
    b: list[tuple[float, str]]
    reason: str  # only <A> has it | only <B> has it | not compared: different text


@dataclass(frozen=True)
class Curve:
    side: int  # 0: A, 1: B
    name: str  # val loss | train loss
    steps: list[int]
    values: list[float]


@dataclass(frozen=True)
class Sample:
    prompt: str
    texts: tuple[str | None, str | None]  # A's and B's: the prompt and its continuation; None: no model


@dataclass
class Report:
    a: Side
    b: Side
    shared: list[SharedRow]
    unshared: list[UnsharedRow]
    curves: list[Curve]
    curve_note: str
    samples: list[Sample]
    sample_settings: str  # the settings every sample was drawn with, as flags of `folio generate`
    sample_notes: tuple[str, str] = ("", "")  # why a side has no samples (no model logged)
    figure: bytes | None = field(default=None, repr=False)

    @property
    def labels(self) -> tuple[str, str]:
        return self.a.label, self.b.label


def number(value: float) -> str:
    return f"{value:.6g}"


def signed(value: float) -> str:
    return f"{value:+.6g}"


def figure_png(curves: list[Curve], labels: tuple[str, str]) -> bytes | None:
    """Both runs' curves on one set of axes (val solid, train dashed), as PNG bytes; None when
    neither run logged any. Written without a timestamp or version: the same curves, the same bytes."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), dpi=100)
    ax = fig.add_subplot()
    for curve in curves:
        ax.plot(curve.steps, curve.values, color=COLORS[curve.side],
                linestyle="-" if curve.name == "val loss" else "--",
                alpha=1.0 if curve.name == "val loss" else 0.55,
                label=f"{labels[curve.side]} {curve.name}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


# ---- HTML ----------------------------------------------------------------------------------

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .digest { font-family: ui-monospace, monospace; font-size: .9em; }
#sides-table .digest { word-break: break-all; }
.a { color: #1f77b4; } .b { color: #d62728; } .note { color: #555; }
.samples { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; margin-bottom: 1.2rem; }
pre.sample { white-space: pre-wrap; word-break: break-word; background: #f8f8f8; border: 1px solid #ddd;
             padding: .6rem; margin: 0; max-height: 24rem; overflow: auto; }
img { max-width: 100%; }
"""


def _e(value) -> str:
    """Escaped for HTML text and attributes. (A <pre>'s text starts with a newline of its own:
    HTML drops the first newline after <pre>, and a sample's prompt may be one.)"""
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], css_id: str) -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(value: str, cls: str = "") -> str:
    return f'<td class="{cls}">{value}</td>' if cls else f"<td>{value}</td>"


def _scores_html(scores: list[tuple[float, str]]) -> str:
    return "<br>".join(f'{_e(number(v))} on <span class="digest">{_e(d)}</span>' for v, d in scores) or "—"


def to_html(report: Report) -> str:
    a, b = report.labels
    title = f"{a} vs {b}"
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>folio compare: <span class=\"a\">{_e(a)}</span> vs "
             f"<span class=\"b\">{_e(b)}</span></h1>"]

    parts.append('<section id="sides"><h2>What each side is</h2>')
    facts = [name for name, _ in report.a.facts]
    facts += [name for name, _ in report.b.facts if name not in facts]
    of = [dict(report.a.facts), dict(report.b.facts)]
    parts.append(_table(["", f'<span class="a">{_e(a)}</span>', f'<span class="b">{_e(b)}</span>'],
                        [[f"<th>{_e(name)}</th>", *(_td(f'<span class="digest">{_e(side.get(name, "—"))}</span>'
                                                         if "digest" in name else _e(side.get(name, "—")))
                                                     for side in of)] for name in facts], "sides-table"))
    parts.append("</section>")

    parts.append('<section id="shared"><h2>Measures both share, on the same text</h2>')
    if report.shared:
        parts.append(_table(
            ["measure", "text digest", _e(a), _e(b), f"difference ({_e(b)} − {_e(a)})", "better is", "better"],
            [[_td(f"<code>{_e(r.measure)}</code>"), _td(f'<span class="digest">{_e(r.digest)}</span>'),
              _td(_e(number(r.a)), "num"), _td(_e(number(r.b)), "num"), _td(_e(signed(r.difference)), "num"),
              _td(_e(r.direction or "unknown")), _td(_e(r.better))] for r in report.shared], "shared-table"))
    else:
        parts.append('<p class="note">None: no measure of one of them was scored on the same text as the '
                     "other's. The table below says what each has.</p>")
    parts.append("</section>")

    parts.append('<section id="unshared"><h2>Measures they do not share</h2>')
    if report.unshared:
        parts.append(_table(["measure", _e(a), _e(b), "why"],
                            [[_td(f"<code>{_e(r.measure)}</code>"), _td(_scores_html(r.a)),
                              _td(_scores_html(r.b)), _td(_e(r.reason))] for r in report.unshared],
                            "unshared-table"))
    else:
        parts.append('<p class="note">None: every measure either has is shared, on the same text.</p>')
    parts.append("</section>")

    parts.append('<section id="curves"><h2>Eval curves</h2>')
    if report.figure:
        data = base64.b64encode(report.figure).decode("ascii")
        parts.append(f'<img id="curves-figure" alt="val and train loss per step of {_e(a)} and {_e(b)}" '
                     f'src="data:image/png;base64,{data}">')
    parts.append(f'<p class="note">{_e(report.curve_note)}</p></section>')

    parts.append('<section id="samples"><h2>Samples: the same prompts and seeds</h2>'
                 f'<p class="note">Each column is what <code>{_e(report.sample_settings)}</code> prints '
                 "for its model.</p>")
    for i, note in enumerate(report.sample_notes):
        if note:
            parts.append(f'<p class="note"><span class="{"ab"[i]}">{_e(report.labels[i])}</span>: {_e(note)}</p>')
    for sample in report.samples:
        cells = "".join(
            f'<div><h3 class="{"ab"[i]}">{_e(report.labels[i])}</h3>'
            + (f'<pre class="sample {"ab"[i]}-sample">\n{_e(text)}</pre>' if text is not None
               else f'<p class="note {"ab"[i]}-sample">{_e(report.sample_notes[i] or "no sample")}</p>')
            + "</div>" for i, text in enumerate(sample.texts))
        parts.append(f'<h3>prompt <code>{_e(repr(sample.prompt))}</code></h3><div class="samples">{cells}</div>')
    parts.append("</section></body></html>\n")
    return "".join(parts)


# ---- Markdown ------------------------------------------------------------------------------

def _cell(value) -> str:
    """A Markdown table cell: HTML escaped, pipes escaped, one line."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows] + [""]


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def to_markdown(report: Report, figure_file: str | None) -> str:
    """`figure_file`: the PNG's name beside the Markdown file (None: no figure)."""
    a, b = report.labels
    lines = [f"# folio compare: {_cell(a)} vs {_cell(b)}", "", "## What each side is", ""]
    of = [dict(report.a.facts), dict(report.b.facts)]
    facts = [name for name, _ in report.a.facts]
    facts += [name for name, _ in report.b.facts if name not in facts]
    lines += _md_table(["", a, b], [[name, *(side.get(name, "—") for side in of)] for name in facts])

    lines += ["## Measures both share, on the same text", ""]
    if report.shared:
        lines += _md_table(["measure", "text digest", a, b, f"difference ({b} − {a})", "better is", "better"],
                           [[r.measure, r.digest, number(r.a), number(r.b), signed(r.difference),
                             r.direction or "unknown", r.better] for r in report.shared])
    else:
        lines += ["None: no measure of one of them was scored on the same text as the other's.", ""]

    lines += ["## Measures they do not share", ""]
    if report.unshared:
        lines += _md_table(["measure", a, b, "why"],
                           [[r.measure, *("; ".join(f"{number(v)} on {d}" for v, d in s) or "—" for s in (r.a, r.b)),
                             r.reason] for r in report.unshared])
    else:
        lines += ["None: every measure either has is shared, on the same text.", ""]

    lines += ["## Eval curves", ""]
    if figure_file:
        lines += [f"![val and train loss per step of {_cell(a)} and {_cell(b)}]({figure_file})", ""]
    lines += [_cell(report.curve_note), ""]

    lines += ["## Samples: the same prompts and seeds", "",
              f"Each is what `{report.sample_settings}` prints for its model.", ""]
    for i, note in enumerate(report.sample_notes):
        if note:
            lines += [f"{_cell(report.labels[i])}: {_cell(note)}", ""]
    for sample in report.samples:
        lines += [f"### prompt {_cell(repr(sample.prompt))}", ""]
        for label, text in zip(report.labels, sample.texts):
            if text is None:
                continue
            fence = _fence(text)
            lines += [f"**{_cell(label)}**", "", fence + "text", text, fence, ""]
    return "\n".join(lines)
