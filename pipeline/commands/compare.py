"""`folio compare A B` (not a dvc.yaml stage) — in: two model versions or training runs from the
tracking store (pipeline.tracking.store), params.yaml's sample.* — out: `<out>/<a>-vs-<b>.html`
(self-contained: CSS inline, the figure a data: URI), `<a>-vs-<b>.md` and `<a>-vs-<b>-curves.png`
beside it; `folio promote` attaches them to the challenger's version (`attach`).

A side is a version of the registered model (`3` or `v3`), a registry URI (`models:/name/3`,
`models:/name@champion`) or a training run (its id, or its name where one run has it). The
report holds what each side is, the measures both have on text of one digest (pipeline/measures.py)
and those they do not, both runs' eval curves on one figure, and samples of params' sample.prompts
drawn with sample.seed and its settings — each what `folio generate --seed` prints for that model.
The page itself says nothing of when it was written: the same two sides, the same report.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from folio.fileio import atomic_path, write_text
from pipeline import measures
from pipeline.commands import compare_report as page
from pipeline.tracking import registry, store
from pipeline.tracking.registry import RegistryError

DEFAULT_OUT = Path("reports/compare")
ATTACH_DIR = "compare"  # beside the version's logged model: compare/<a>-vs-<b>.html, .md, -curves.png
FIGURE_SUFFIX = "-curves.png"
VAL_CURVE = "eval_val_loss"  # logged at every eval (pipeline/tracking/training_run.py on_eval)
TRAIN_CURVES = ("train_loss", "eval_train_loss")  # every step's; else the eval's estimate
VERSION = re.compile(r"^v?(?P<version>\d+)$")
WHAT_A_SIDE_IS = ("a version of the registered model (3), models:/<name>/<version>, "
                  "models:/<name>@<alias>, or a training run's id (MLflow's run page shows it)")


@dataclass
class Side:
    label: str  # v3, folio-other v2, run 1a2b3c4d
    slug: str  # the label in a file name: v3, folio-other-v2, run-1a2b3c4d
    version: object | None  # the ModelVersion: the one asked for, or the one the run registered
    run: object | None  # the training run
    model: str | None  # what its samples come from: models:/<name>/<version> or models:/<model id>
    logged_model: bool = False  # `model` is a logged model, not a registered version
    model_note: str = ""  # why there is no model to sample


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _version_side(model_version, default_name: str, run) -> Side:
    name, number = model_version.name, model_version.version
    label = f"v{number}" if name == default_name else f"{name} v{number}"
    return Side(label, _slug(label), model_version, run, f"models:/{name}/{number}")


def _run_of(run_id: str | None):
    if not run_id:
        return None
    try:
        return registry.client().get_run(run_id)
    except Exception as err:
        if getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _find_run(spec: str):
    """The run with this id, or the one run with this name; None if there is none."""
    run = _run_of(spec)
    if run is not None or "'" in spec:
        return run
    client = registry.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, f"attributes.run_name = '{spec}'", max_results=2) if experiments else []
    if len(found) > 1:
        raise RegistryError(f"{spec!r} names more than one run; give the run's id instead "
                            "(MLflow's run page shows it)")
    return found[0] if found else None


def _logged_model_of(run) -> str | None:
    """The newest model the run logged (ready), as models:/<model id>."""
    found = registry.client().search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    ready = [m for m in found if str(m.status).endswith("READY")]
    return f"models:/{max(ready, key=lambda m: m.creation_timestamp).model_id}" if ready else None


def _registered_version_of(run):
    """The version the register stage made of this run (its `registry.version` tag), if it still exists."""
    name, _, number = run.data.tags.get("registry.version", "").rpartition("/")
    if not (name and number):
        return None
    try:
        return registry.get_version(name, number)
    except RegistryError:
        return None


def resolve(spec: str, model_name: str) -> Side:
    """The side `spec` names; RegistryError naming it and what to give instead."""
    spec = spec.strip()
    if match := VERSION.fullmatch(spec):
        model_version = registry.get_version(model_name, match["version"])
        return _version_side(model_version, model_name, _run_of(model_version.run_id))
    if spec.startswith("models:/"):
        model_version = registry.resolve(spec)
        return _version_side(model_version, model_name, _run_of(model_version.run_id))
    run = _find_run(spec) if spec else None
    if run is None:
        raise RegistryError(f"{spec!r} is neither a version of {model_name}, a registry URI nor a run in "
                            f"{store.tracking_uri()}; give {WHAT_A_SIDE_IS}")
    label = f"run {run.info.run_id[:8]}"
    side = Side(label, _slug(label), _registered_version_of(run), run, None)
    if side.version is not None:
        side.model = f"models:/{side.version.name}/{side.version.version}"
    elif logged := _logged_model_of(run):
        side.model, side.logged_model = logged, True
    else:
        side.model_note = "no model logged for this run"
    return side


# ---- what each side is and holds -----------------------------------------------------------

def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "—"


def _data_digest(side: Side) -> str:
    if side.version is not None and side.version.tags.get("data.sha256"):
        return side.version.tags["data.sha256"]
    if side.run is None:
        return "—"
    if side.run.data.tags.get("data.sha256"):
        return side.run.data.tags["data.sha256"]
    for dataset_input in getattr(side.run.inputs, "dataset_inputs", None) or []:
        for tag in dataset_input.tags:
            if tag.key == "sha256":
                return tag.value
    return side.run.data.params.get("data.sha256") or "—"


def _weights_digest(side: Side) -> str:
    if side.version is not None and side.version.tags.get(registry.DIGEST_TAG):
        return side.version.tags[registry.DIGEST_TAG]
    if side.logged_model:
        model = registry.client().get_logged_model(side.model.removeprefix("models:/"))
        return model.tags.get(registry.DIGEST_TAG, "—")
    return "—"


def _val_digest(side: Side) -> str | None:
    tag = measures.parse("bits_per_byte").digest_tag  # val.digest, on versions and runs alike
    if side.version is not None and side.version.tags.get(tag):
        return side.version.tags[tag]
    return side.run.data.tags.get(tag) if side.run is not None else None


def facts(side: Side) -> list[tuple[str, str]]:
    version, run = side.version, side.run
    rows = []
    if version is not None:
        aliases = "".join(f" @{alias}" for alias in sorted(version.aliases or []))
        rows.append(("version", f"{version.name} version {version.version}{aliases}"))
    elif side.logged_model:
        rows.append(("version", f"not registered (logged model {side.model.removeprefix('models:/')})"))
    else:
        rows.append(("version", "not registered"))
    rows.append(("run", f"{run.info.run_name} ({run.info.run_id})" if run is not None else "—"))
    rows.append(("weights digest", _weights_digest(side)))
    rows.append(("data digest", _data_digest(side)))
    rows.append(("val text digest", _val_digest(side) or "—"))
    rows.append(("registered", _when(version.creation_timestamp) if version is not None else "—"))
    rows.append(("trained", _when(run.info.end_time) if run is not None else "—"))
    rows.append(("samples from", side.model or side.model_note))
    return rows


def scores(side: Side) -> list[measures.Score]:
    """A version's scores (its tags, with those only its run holds: registry.scores_of); a run's
    from its metrics and tags."""
    if side.version is not None:
        return registry.scores_of(side.version, side.run)
    return measures.run_scores(side.run.data.metrics, side.run.data.tags) if side.run is not None else []


def _better(key: str, a: float, b: float, labels: tuple[str, str]) -> tuple[str | None, str]:
    measure = measures.measure_of_key(key)
    if measure is None:
        return None, "not judged: folio does not know which way is better"
    if a == b:
        return measure.direction, "equal"
    return measure.direction, labels[0] if measure.better(a, b) else labels[1]


def compared(a: list[measures.Score], b: list[measures.Score],
             labels: tuple[str, str]) -> tuple[list[page.SharedRow], list[page.UnsharedRow]]:
    """The measures both have on text of one digest, and the rest: each side's value and digest."""
    pairs = measures.shared(a, b)
    shared = [page.SharedRow(x.key, x.digest, x.value, y.value, *_better(x.key, x.value, y.value, labels))
              for x, y in pairs]
    matched = {(x.key, x.digest) for x, _ in pairs}
    unshared = []
    for key in {s.key for s in a + b}:
        left = [[(s.value, s.digest) for s in side if s.key == key and (s.key, s.digest) not in matched]
                for side in (a, b)]
        if not (left[0] or left[1]):
            continue
        has = [any(s.key == key for s in side) for side in (a, b)]
        reason = ("not compared: different text" if all(has)
                  else f"only {labels[0]} has it" if has[0] else f"only {labels[1]} has it")
        unshared.append(page.UnsharedRow(key, *left, reason))
    return sorted(shared, key=_order), sorted(unshared, key=_order)


def _order(row) -> tuple:
    """val first, then suites, then harness tasks; by key within each."""
    return ("val", "suite", "harness").index(row.measure.split(".")[0]), row.measure


def _history(run_id: str, key: str) -> tuple[list[int], list[float]]:
    points = {}
    for m in sorted(registry.client().get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
        points[m.step] = m.value  # a step logged twice (a resumed run): its last value
    return list(points), list(points.values())


def curves(sides: tuple[Side, Side]) -> tuple[list[page.Curve], str]:
    """Each run's val loss and train loss per step, and a note on which val text each is over."""
    found, notes = [], []
    for i, side in enumerate(sides):
        if side.run is None:
            notes.append(f"{side.label} has no training run to draw.")
            continue
        val = _history(side.run.info.run_id, VAL_CURVE)
        if val[0]:
            found.append(page.Curve(i, "val loss", *val))
        for key in TRAIN_CURVES:
            train = _history(side.run.info.run_id, key)
            if train[0]:
                found.append(page.Curve(i, "train loss", *train))
                break
        if not val[0]:
            notes.append(f"{side.label}'s run logged no {VAL_CURVE}.")
    digests = [_val_digest(side) for side in sides]
    labels = [side.label for side in sides]
    if all(digests) and digests[0] == digests[1]:
        notes.insert(0, f"Both val curves are over the same val text (digest {digests[0]}).")
    elif all(digests):
        notes.insert(0, f"The val curves are over each run's own val text ({labels[0]}: {digests[0]}, "
                        f"{labels[1]}: {digests[1]}): different text, so compare their shapes, not their values.")
    else:
        unknown = " and ".join(label for label, d in zip(labels, digests) if not d)
        notes.insert(0, f"Each val curve is over its own run's val text; the digest of {unknown}'s is not "
                        "recorded, so whether both are the same text is unknown.")
    notes.append("Train loss is over each run's own training batches.")
    return found, " ".join(notes)


# ---- samples -------------------------------------------------------------------------------

def generation_config(sample, max_new_tokens: int):
    from folio.generate import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, temperature=sample.temperature,
                            top_k=sample.top_k, top_p=sample.top_p,
                            repetition_penalty=sample.repetition_penalty, stop=tuple(sample.stop),
                            seed=sample.seed)


def generate_command(config) -> str:
    """The `folio generate` flags that draw the same sample (MODEL: a side's `samples from`)."""
    flags = [f"--seed {config.seed}", f"--max-new-tokens {config.max_new_tokens}",
             f"--temperature {config.temperature:g}"]
    if config.top_k is not None:
        flags.append(f"--top-k {config.top_k}")
    if config.top_p is not None:
        flags.append(f"--top-p {config.top_p:g}")
    if config.repetition_penalty != 1.0:
        flags.append(f"--repetition-penalty {config.repetition_penalty:g}")
    flags += [f"--stop {shlex.quote(s)}" for s in config.stop]
    note = " (with sample.top_k null: no top-k cut)" if config.top_k is None else ""
    return f"folio generate --model MODEL {' '.join(flags)} PROMPT{note}"


def _load(side: Side, device: str):
    """(model, tokenizer) as `folio generate --model` loads them; a logged model by its id."""
    from pipeline.commands import generate

    if not side.logged_model:
        return generate.load(Path(), Path(), side.model, None, device)
    from folio.generate import for_generation

    on = generate.inference_device(device)
    ml = store.mlflow()
    try:
        python_model = ml.pyfunc.load_model(side.model, model_config={"device": str(on)}).unwrap_python_model()
    except ml.exceptions.MlflowException as err:  # its artifacts deleted, or the store unreachable
        raise RegistryError(f"{side.model} does not load ({str(err).splitlines()[0]})") from None
    return for_generation(python_model.model.to(on)), python_model.tokenizer


def samples_of(side: Side, prompts: list[str], config, device: str) -> tuple[list[str | None], str]:
    """Each prompt continued by the side's model with `config` (one prompt a batch, as `folio
    generate` draws it), or Nones and why."""
    from folio.generate import complete
    from pipeline.errors import StageError

    if side.model is None:
        return [None] * len(prompts), side.model_note
    try:
        model, tokenizer = _load(side, device)
    except StageError as err:
        print(f"warning: compare: no samples of {side.label}: {err}", file=sys.stderr)
        return [None] * len(prompts), f"could not load its model: {err}"
    texts = []
    for prompt in prompts:
        try:
            texts.append(prompt + complete(model, tokenizer, [prompt], config)[0].text)
        except ValueError as err:  # a prompt its tokenizer cannot encode
            texts.append(f"[no sample: {err}]")
    del model
    return texts, ""


# ---- the report ----------------------------------------------------------------------------

def collect(sides: tuple[Side, Side], sample, max_new_tokens: int, device: str = "auto") -> page.Report:
    labels = (sides[0].label, sides[1].label)
    shared, unshared = compared(scores(sides[0]), scores(sides[1]), labels)
    found, curve_note = curves(sides)
    config = generation_config(sample, max_new_tokens)
    drawn = [samples_of(side, list(sample.prompts), config, device) for side in sides]
    report = page.Report(
        page.Side(labels[0], facts(sides[0])), page.Side(labels[1], facts(sides[1])), shared, unshared,
        found, curve_note,
        [page.Sample(prompt, (drawn[0][0][i], drawn[1][0][i])) for i, prompt in enumerate(sample.prompts)],
        generate_command(config), (drawn[0][1], drawn[1][1]))
    report.figure = page.figure_png(found, labels)
    return report


def figure_of(path: Path) -> Path:
    """The curves' PNG beside a report file."""
    return path.with_name(path.stem + FIGURE_SUFFIX)


def write(report: page.Report, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """<stem>.html, <stem>.md and (with curves) <stem>-curves.png in `out_dir`, each written whole
    or not at all; a figure left from an earlier report with curves is removed."""
    html_path, md_path = out_dir / f"{stem}.html", out_dir / f"{stem}.md"
    figure = figure_of(md_path)
    if report.figure:
        with atomic_path(figure) as tmp:
            tmp.write_bytes(report.figure)
    else:
        figure.unlink(missing_ok=True)
    write_text(md_path, page.to_markdown(report, figure.name if report.figure else None))
    write_text(html_path, page.to_html(report))
    return html_path, md_path


def write_report(a: str, b: str, params, out_dir: Path, max_new_tokens: int = 200,
                 model_name: str | None = None, device: str = "auto") -> tuple[Path, Path]:
    """Compare A and B (each a version of `model_name`, default params' registered model, a
    registry URI or a run id) into `out_dir`; returns the (HTML, Markdown) paths. Both sides are
    resolved before any model loads: a bad one fails at once, in one line."""
    store.setup()
    name = model_name or params.registered_model_name()
    sides = (resolve(a, name), resolve(b, name))
    report = collect(sides, params.sample, max_new_tokens, device)
    return write(report, Path(out_dir), f"{sides[0].slug}-vs-{sides[1].slug}")


def attach(name: str, version: int | str, paths: list[Path]) -> None:
    """Add report files (and the figure beside a Markdown one) to the version's logged model, under
    compare/ beside its MLmodel."""
    store.setup()
    files = {}
    for path in map(Path, paths):
        files[path.name] = path
        if path.suffix == ".md" and figure_of(path).is_file():
            files[figure_of(path).name] = figure_of(path)
    registry.attach_files(registry.model_id_of(registry.get_version(name, version)), files, under=ATTACH_DIR)


def show(a: str, b: str, params, out_dir: Path, max_new_tokens: int, model_name: str | None,
         device: str) -> None:
    html_path, md_path = write_report(a, b, params, out_dir, max_new_tokens, model_name, device)
    print(f"wrote {html_path} and {md_path}")
