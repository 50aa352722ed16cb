"""The model card: one markdown page per registered version — what data (with its digest), which
params, what it scores (val, and each suite with the digest of its text), how training went,
what it writes, and how to load it.

`render(facts)` is a pure function; pipeline/stages/register.py gathers the facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_EVAL_ROWS = 12
METRIC_LABELS = {"loss": "loss (nats/token)", "bits_per_byte": "bits per byte",
                 "bits_per_char": "bits per character", "bits_per_token": "bits per token",
                 "perplexity": "perplexity", "tokens": "tokens scored"}


@dataclass(frozen=True)
class CardFacts:
    name: str
    version: str
    run_id: str
    run_name: str
    data: dict  # name, url, sha256, pinned, size_bytes, val_fraction; a mixture's sources (mixture_rows)
    tokenizer: dict  # kind, vocab_size, bytes_per_token
    params: dict  # flat model.* and train.* params
    metrics: dict  # the val section of reports/metrics.json
    checkpoint: dict  # reports/metrics.json's checkpoint: step, weights_digest, run_id
    evals: list  # [step, train_loss, val_loss] rows
    samples: str  # reports/samples.md
    lineage: dict  # label -> value (git commit, DVC experiment, registered at)
    loss_curve: str = "loss.png"  # beside the card in the model's artifacts
    suites: dict = field(default_factory=dict)  # reports/metrics.json's suites: name -> scores and digests


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _thin(rows: list, limit: int = MAX_EVAL_ROWS) -> list:
    """At most `limit` rows, evenly spread, always keeping the first and the last."""
    if len(rows) <= limit:
        return rows
    picks = {round(i * (len(rows) - 1) / (limit - 1)) for i in range(limit)}
    return [rows[i] for i in sorted(picks)]


def _demoted(markdown: str) -> str:
    """samples.md under a `## Samples` heading: drop its title, push its headings one level down."""
    lines, in_code = [], False
    for line in markdown.strip().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("# "):
            continue
        elif not in_code and line.startswith("#"):
            line = "#" + line
        lines.append(line)
    return "\n".join(lines).strip()


def mixture_rows(sources: list[dict], meta: dict) -> list[dict]:
    """Each source of a mixture as the card shows it: the manifest's name, url, sha256, weight and
    bytes, and its train tokens from data/prepared/meta.json."""
    tokens = {m["name"]: m["train"][1] - m["train"][0] for m in meta.get("mixture", [])}
    return [{"name": s["name"], "url": s["url"], "sha256": s["sha256"], "weight": s["weight"],
             "bytes": s["bytes"], "train_tokens": tokens.get(s["name"], 0)} for s in sources]


def _mixture(sources: list[dict]) -> list[str]:
    total = sum(s["weight"] for s in sources)
    rows = [[s["name"], s["url"], f"`{s['sha256'][:16]}`", f"{s['weight']:g}", f"{s['weight'] / total:.1%}",
             f"{s['bytes']:,}", f"{s['train_tokens']:,}"] for s in sources]
    return ["", "A mixture: each epoch draws its training windows from the sources in proportion to their "
            "weights; each source's own last or seeded share is its validation split.", "",
            _table(["source", "url", "sha256", "weight", "share of windows", "bytes", "train tokens"], rows)]


def _data_section(f: CardFacts) -> str:
    d, t = f.data, f.tokenizer
    return "\n".join([
        "## Data",
        "",
        f"- corpus **{d['name']}** from " + (f"{len(d['sources'])} sources" if d.get("sources") else d["url"]),
        f"- sha256 `{d['sha256']}` ({'pinned by data.sha256' if d.get('pinned') else 'as downloaded; data.sha256 is unpinned'}), "
        f"{d['size_bytes']:,} bytes; the last {d['val_fraction']:.0%} is the validation split",
        f"- tokenizer `{t['kind']}`, {t['vocab_size']:,} tokens, {t['bytes_per_token']:.2f} bytes "
        "per token",
        *(_mixture(d["sources"]) if d.get("sources") else []),
    ])


def _training_section(f: CardFacts) -> str:
    rows = [[step, f"{train:.4f}", f"{val:.4f}"] for step, train, val in _thin(f.evals)]
    return "\n".join([
        "## Training",
        "",
        f"![loss curve]({f.loss_curve})",
        "",
        _table(["step", "train loss", "val loss"], rows),
    ])


def _how_to_load(f: CardFacts) -> str:
    uri = f"models:/{f.name}/{f.version}"
    return "\n".join([
        "## How to load",
        "",
        "```python",
        "import mlflow",
        "",
        f'model = mlflow.pyfunc.load_model("{uri}")',
        'model.predict(["ROMEO:"], params={"max_new_tokens": 200, "temperature": 0.8, "seed": 1})',
        "```",
        "",
        "```bash",
        f'folio generate --model {uri} "ROMEO:"',
        f"mlflow models serve -m {uri} --env-manager local -p 5001",
        "curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\",
        "  -d '{\"inputs\": [\"ROMEO:\"], \"params\": {\"max_new_tokens\": 100, \"seed\": 1}}'",
        "```",
        "",
        "Params: `max_new_tokens`, `temperature` (0 = greedy), `top_k`, `top_p`, "
        "`repetition_penalty`, `stop`, `seed`. "
        "Loading needs folio installed (`pip install -e .` in its repository).",
    ])


def _scored(metrics: dict) -> str:
    """What the metrics were measured over: the whole val split, or evaluate.max_tokens of it."""
    if metrics.get("subset"):
        return (f"{metrics['tokens']:,} tokens of the validation split, in windows evenly spaced "
                "over it: evaluate.max_tokens")
    return "the whole validation split"


def _suites_section(suites: dict) -> str:
    """Each fixed yardstick (evaluate.suites) with its scores and the digests of its text and files."""
    rows = [[name, f"{s['bits_per_byte']:.4f}", f"{s['loss']:.4f}", f"{s['tokens']:,}", f"`{s['text_digest']}`",
             f"`{s['sha256'][:16]}`", f"{s['contamination']['share']:.1%}" if "contamination" in s else "-"]
            for name, s in suites.items()]
    return "\n".join([
        "## Suites",
        "",
        "Fixed held-out texts (evaluate.suites), each scored whole; lower is better. Versions compare on a "
        "suite only where its text digest is the same.",
        "",
        _table(["suite", "bits per byte", "loss (nats/token)", "tokens", "text digest", "files sha256",
                "lines in train"], rows),
    ])


def render(f: CardFacts) -> str:
    metric_rows = [[METRIC_LABELS.get(k, k), _number(v)] for k, v in f.metrics.items()
                   if k not in ("subset", "text_digest")]
    digest = f"\n\nVal text digest `{f.metrics['text_digest']}`." if f.metrics.get("text_digest") else ""
    param_rows = [[f"`{k}`", _number(v)] for k, v in sorted(f.params.items())]
    lineage_rows = [[k, f"`{v}`"] for k, v in f.lineage.items()]
    sections = [
        f"# {f.name} version {f.version}",
        f"A folio GPT trained by MLflow run `{f.run_name}` (`{f.run_id}`); best checkpoint at "
        f"step {f.checkpoint['step']:,} (weights digest `{f.checkpoint['weights_digest']}`). "
        f"Val bits per byte **{f.metrics['bits_per_byte']:.4f}**.",
        _data_section(f),
        f"## Metrics ({_scored(f.metrics)})\n\n" + _table(["metric", "value"], metric_rows) + digest,
        *([_suites_section(f.suites)] if f.suites else []),
        "## Params\n\n" + _table(["param", "value"], param_rows),
        _training_section(f),
        "## Samples\n\n" + _demoted(f.samples),
        _how_to_load(f),
        "## Lineage\n\n" + _table(["", ""], lineage_rows),
    ]
    return "\n\n".join(sections) + "\n"
