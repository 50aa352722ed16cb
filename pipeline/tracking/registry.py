"""The model registry: log folio's pyfunc model, register versions, move an alias behind a metric
gate, roll it back, and load a registered model — with clear errors for what users get wrong.

Aliases (MLflow 3), never stages. A move records tags on the version that takes the alias
(`alias.<alias>.promoted_at`, `.promoted_from`, `.promoted_by`, and what decided it: `.measure`,
`.digest` of the text, `.value`, `.previous_value`, `.rescored`, `.delta_<metric>`) and on the one
that loses it (`.demoted_at`, `.demoted_by`). The registered model's tag `alias.<alias>.history`
lists the holders in order, so `roll_back` returns the alias to the previous one.

The gate is like for like (pipeline/measures.py): a version takes the alias only by beating the
holder on a measure both have over text of one digest — the challenger's own text. A holder never
scored on it is scored then by `rescore` (the caller's: `folio promote` loads the holder by alias
and scores it as evaluate does) and the score kept on its version (`rescored.<key>.<digest>`);
without a `rescore` the move is refused in one line naming both digests.
Call `store.setup()` first: every function here talks to the store it points at.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

from folio import checkpoint
from pipeline import measures
from pipeline.measures import Measure
from pipeline.tracking import access, store
from pipeline.errors import StageError
from pipeline.params import SampleParams

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
MODEL_ARTIFACT_NAME = "model"
SLIM_KEYS = ("model", "model_config", "tokenizer", "step", "best_val_loss")
# What the model needs at load time besides folio itself (installed from this repository).
RUNTIME_PACKAGES = ("mlflow", "torch", "numpy", "tiktoken")
HISTORY_LIMIT = 50
URI_PATTERN = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))")


class RegistryError(StageError):
    """A registry problem the user can fix: reported as a message, not a traceback."""


@dataclass(frozen=True)
class Move:
    """One alias move: `version` took `alias` from `previous` (None: nobody held it)."""

    alias: str
    version: int
    previous: int | None
    reason: str  # promote, force, best, rollback, unchanged
    metric: str  # the measure, as registry.metric names it
    delta: float | None = None  # measure(version) - measure(previous), on one text
    digest: str | None = None  # of the text both were scored on
    value: float | None = None
    previous_value: float | None = None
    rescored: bool = False  # the previous holder was scored on the text for this move

    def summary(self, name: str) -> str:
        if self.reason == "unchanged":
            return f"{name} version {self.version} already holds @{self.alias}"
        what = {"rollback": "rolled back to", "force": "forced to"}.get(self.reason, "moved to")
        since = f" from version {self.previous}" if self.previous is not None else ""
        change = ""
        if self.delta is not None:
            metric = f"val {self.metric}" if ":" not in self.metric else self.metric
            on = f" on text {self.digest}" if self.digest else ""
            rescored = f"; version {self.previous} rescored on it" if self.rescored else ""
            change = f" ({metric} {self.value:.4f} vs {self.previous_value:.4f}, {self.delta:+.4f}{on}{rescored})"
        return f"{name}@{self.alias} {what} version {self.version}{since}{change}"


# (holder version, measure, digest of the challenger's text, the challenger's ModelVersion)
#   -> the holder's score on that text
Rescore = Callable[[int, Measure, str, object], float]


def client():
    return store.mlflow().MlflowClient()


def _not_found(err: Exception) -> bool:
    return getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


# ---- logging and registering ---------------------------------------------------------------

def slim(state: dict) -> dict:
    """The part of a training checkpoint a model needs: weights, config, tokenizer, step."""
    return {key: state[key] for key in SLIM_KEYS if key in state}


def signature(sample: SampleParams):
    """Input: prompt strings; output: the continued texts; params default to `sample.*`."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([
            ParamSpec("max_new_tokens", "long", sample.max_new_tokens),
            ParamSpec("temperature", "double", float(sample.temperature)),
            ParamSpec("top_k", "long", sample.top_k),
            ParamSpec("top_p", "double", sample.top_p),  # None: no nucleus cut
            ParamSpec("repetition_penalty", "double", float(sample.repetition_penalty)),
            ParamSpec("stop", "string", list(sample.stop), shape=(-1,)),  # a list of strings
            ParamSpec("seed", "long", None),  # None: a fresh seed every call
        ]),
    )


def requirements() -> list[str]:
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in RUNTIME_PACKAGES]


@contextlib.contextmanager
def _reopened(run_id: str) -> Iterator[None]:
    """Make a finished run active again, then give it back its status and end time (and so its
    duration): registering later must not look like a longer training run."""
    before = client().get_run(run_id).info
    try:
        with store.mlflow().start_run(run_id=run_id):
            yield
    finally:
        if before.end_time:
            client().set_terminated(run_id, before.status, end_time=before.end_time)


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str  # models:/m-...
    model_id: str


DIGEST_TAG = "checkpoint.digest"  # on logged models and versions: folio.checkpoint.weights_digest


def log_model(run_id: str, checkpoint_path: Path, tokenizer_dir: Path, sample: SampleParams) -> LoggedModel:
    """Log the pyfunc model (as code) under the training run, tagged with its weights' digest. A
    model of the same weights that this run logged already (a register cut short after logging)
    is returned instead of logging a second one."""
    ml = store.mlflow()
    state = checkpoint.load(checkpoint_path)
    digest = checkpoint.weights_digest(state)
    run = client().get_run(run_id)
    for found in client().search_logged_models(
            [run.info.experiment_id],
            filter_string=f"tags.`{DIGEST_TAG}` = '{digest}' AND source_run_id = '{run_id}'"):
        if str(found.status).endswith("READY"):
            return LoggedModel(f"models:/{found.model_id}", found.model_id)
    with tempfile.TemporaryDirectory() as tmp, _reopened(run_id):
        slim_file = Path(tmp) / "model.pt"
        checkpoint.save(slim_file, slim(state))
        info = ml.pyfunc.log_model(
            name=MODEL_ARTIFACT_NAME,
            python_model=str(PYFUNC_FILE),
            artifacts={"checkpoint": str(slim_file), "tokenizer": str(tokenizer_dir)},
            signature=signature(sample),
            input_example=([sample.prompts[0]], {"max_new_tokens": 8, "seed": 1}),
            pip_requirements=requirements(),
            model_config={"device": "auto"},  # a loader may override it (`load_model`)
            tags={DIGEST_TAG: digest},
        )
    return LoggedModel(info.model_uri, info.model_id)


def version_of_weights(name: str, digest: str):
    """The version of `name` that holds the weights with this digest, or None (no such version, or
    no such registered model yet)."""
    try:
        found = client().search_model_versions(f"name = '{name}' and tags.`{DIGEST_TAG}` = '{digest}'")
    except Exception as err:
        if _not_found(err):
            return None
        raise
    return min(found, key=lambda v: int(v.version)) if found else None


def model_id_of(model_version) -> str:
    """The logged model behind a version (its source is models:/<model id>)."""
    return model_version.model_id or model_version.source.removeprefix("models:/").split("/")[0]


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    with access.refusals(f"tag version {version} of {name}", f"EDIT on the registered model {name}"):
        for key, value in tags.items():
            client().set_model_version_tag(name, version, key, value)


def register(model_uri: str, name: str, tags: dict[str, str]):
    """A new version of the registered model `name` (created if missing); returns the ModelVersion.
    On a team server this needs EDIT on `name` (docs/team-server.md)."""
    with access.refusals(f"register a version of {name}", f"EDIT on the registered model {name}"):
        return store.mlflow().register_model(model_uri, name, tags=tags)


def attach_files(model_id: str, files: dict[str, Path], under: str | None = None) -> None:
    """Add files (artifact name -> local path) beside a logged model's MLmodel, or in its folder
    `under` (`compare`: compare/<name>)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in files.items():
            shutil.copyfile(path, Path(tmp) / name)
        client().log_model_artifacts(model_id, tmp, artifact_path=under)


def describe(name: str, version: str, run_id: str, summary: str) -> None:
    """The version's one-paragraph description, and a `registry.version` tag on its run."""
    client().update_model_version(name, version, description=summary)
    client().set_tag(run_id, "registry.version", f"{name}/{version}")


# ---- looking versions up -------------------------------------------------------------------

def registered_model(name: str):
    """The registered model `name` (its aliases and tags); RegistryError if there is none."""
    try:
        return client().get_registered_model(name)
    except Exception as err:
        if _not_found(err):
            raise RegistryError(f"no registered model named {name!r} in {store.tracking_uri()}; "
                                "the register stage creates it (`dvc repro`)") from None
        raise


def versions(name: str) -> list:
    """Every version of `name`, newest first; RegistryError if no such registered model."""
    registered_model(name)
    return sorted(client().search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version))


def _listing(name: str) -> str:
    numbers = [str(v.version) for v in versions(name)]
    return f"versions: {', '.join(numbers)}" if numbers else "it has no versions yet"


def get_version(name: str, version: int | str):
    try:
        return client().get_model_version(name, str(version))
    except Exception as err:
        if _not_found(err):
            raise RegistryError(f"{name} has no version {version} ({_listing(name)})") from None
        raise


def holder(name: str, alias: str) -> int | None:
    """The version that holds `alias`, if any."""
    aliases = registered_model(name).aliases
    return int(aliases[alias]) if alias in aliases else None


def _run_of(model_version):
    """The version's training run, or None (it has none, or it was deleted)."""
    if not model_version.run_id:
        return None
    try:
        return client().get_run(model_version.run_id)
    except Exception as err:
        if not _not_found(err):
            raise
        return None


def scores_of(model_version, run=None) -> list[measures.Score]:
    """Every score a version has, each with its text's digest: its tags (its own scores, and those
    of rescoring), then those only its training run holds (suites or harness tasks scored after
    registering). `run`: the version's run, if the caller has it."""
    scores = measures.version_scores(model_version.tags)
    run = run or _run_of(model_version)
    if run is not None:
        have = {(s.key, s.digest) for s in scores}
        scores += [s for s in measures.run_scores(run.data.metrics, run.data.tags) if (s.key, s.digest) not in have]
    return scores


def _measure(metric: str | Measure) -> Measure:
    return metric if isinstance(metric, Measure) else measures.parse(metric)


def own_score(model_version, measure: Measure) -> measures.Score:
    """The version's score on `measure` over its own text; RegistryError naming what is missing."""
    run = _run_of(model_version)
    scores = scores_of(model_version, run)
    found = measures.own(scores, measure, model_version.tags)
    if found is None and run is not None:  # scored after registering: its run holds the digest
        found = measures.own(scores, measure, run.data.tags)
    if found is None:
        digest = model_version.tags.get(measure.digest_tag)
        why = (f"it has none (was {measure.section} scored when it was evaluated?)" if digest
               else "no digest of the text it was scored on (registered by an older folio, or never "
                    f"scored on {measure.section})")
        raise RegistryError(f"{model_version.name} version {model_version.version} has no {measure.name} "
                            f"to compare: {why}; evaluate and register it again, or use --force")
    return found


# ---- moving aliases ------------------------------------------------------------------------

def _history_key(alias: str) -> str:
    return f"alias.{alias}.history"


def _history(name: str, alias: str) -> list[int]:
    raw = registered_model(name).tags.get(_history_key(alias), "")
    return [int(v) for v in raw.split(",") if v]


def _save_history(name: str, alias: str, history: list[int]) -> None:
    value = ",".join(str(v) for v in history[-HISTORY_LIMIT:])
    client().set_registered_model_tag(name, _history_key(alias), value)


def _delta_tag(metric: str) -> str:
    """delta_<val metric>, as before; delta_<key> for a suite's or a task's (suite:x.m -> suite.x.m)."""
    return f"delta_{metric.replace(':', '.', 1)}"


def _move(name: str, move: Move, history: list[int]) -> Move:
    """Point the alias at the version, then record the move: the alias's `history` (its holders,
    the new one last) and tags on both versions. Recorded after the alias moved, so a move that
    failed leaves no trace of having happened; a record cut short after it is mended by the next
    move (a holder missing from the history is added then)."""
    c = client()
    c.set_registered_model_alias(name, move.alias, str(move.version))
    _save_history(name, move.alias, history)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    prefix = f"alias.{move.alias}."
    tags = {"promoted_at": now, "promoted_by": move.reason,
            "promoted_from": str(move.previous) if move.previous is not None else "none",
            "measure": move.metric}
    if move.digest is not None:
        tags |= {"digest": move.digest, "rescored": str(move.rescored).lower()}
    if move.value is not None:
        tags["value"] = f"{move.value:.6f}"
    if move.previous_value is not None:
        tags["previous_value"] = f"{move.previous_value:.6f}"
    if move.delta is not None:
        tags[_delta_tag(move.metric)] = f"{move.delta:+.6f}"
    for key, value in tags.items():
        c.set_model_version_tag(name, str(move.version), prefix + key, value)
    if move.previous is not None:
        c.set_model_version_tag(name, str(move.previous), prefix + "demoted_at", now)
        c.set_model_version_tag(name, str(move.previous), prefix + "demoted_by", str(move.version))
    return move


def _holder_score(old, measure: Measure, digest: str, rescore: Rescore | None, challenger) -> tuple[float, bool]:
    """(the holder's score on the challenger's text, whether it was scored just now)."""
    value = measures.value_on(scores_of(old), measure, digest)
    if value is not None:
        return value, False
    if rescore is None:
        own = old.tags.get(measure.digest_tag) or "none"
        raise RegistryError(
            f"version {old.version} (the holder) was never scored on {measure.name} over the text version "
            f"{challenger.version} was (digest {digest}; its own: {own}); promote without --no-rescore "
            "to score it now, or use --force")
    value = float(rescore(int(old.version), measure, digest, challenger))
    set_version_tags(old.name, str(old.version), {measure.rescored_tag(digest): str(value)})
    return value, True


def promote(name: str, version: int | str, alias: str, metric: str | Measure, force: bool = False,
            reason: str = "promote", rescore: Rescore | None = None) -> Move:
    """Give `alias` to `version` if it beats the current holder on `metric` over the challenger's
    own text (or `force`). A holder not scored on that text is scored by `rescore`, and the score is
    kept on its version; without `rescore` that is refused, naming both digests."""
    measure = _measure(metric)
    new = get_version(name, version)
    current = holder(name, alias)
    if current == int(new.version):
        return Move(alias, current, current, "unchanged", measure.name, 0.0)
    move = Move(alias, int(new.version), current, reason, measure.name)
    if current is not None:
        try:
            mine = own_score(new, measure)
            old = get_version(name, current)
            theirs, rescored = _holder_score(old, measure, mine.digest, rescore, new)
        except RegistryError:
            if not force:
                raise
            move = Move(alias, int(new.version), current, "force", measure.name)
        else:
            delta = mine.value - theirs
            if not measure.better(mine.value, theirs):
                if not force:
                    raise RegistryError(
                        f"version {new.version} does not beat version {current} (@{alias}) on {measure.name} "
                        f"({measure.direction} is better) over text {mine.digest}: {mine.value:.4f} vs "
                        f"{theirs:.4f}{' (version ' + str(current) + ' rescored on it)' if rescored else ''}; "
                        f"use --force to move @{alias} anyway")
                reason = "force"
            move = Move(alias, int(new.version), current, reason, measure.name, delta, mine.digest,
                        mine.value, theirs, rescored)
    history = _history(name, alias)
    if current is not None and (not history or history[-1] != current):
        history.append(current)  # the alias was set outside folio: remember its holder
    return _move(name, move, history + [int(new.version)])


def promote_best(name: str, alias: str, metric: str | Measure) -> Move:
    """Give `alias` to the version best on `metric` among those scored on one text: the holder's
    own (else that of the newest version that has the measure). Versions never scored on that text
    are left out: `folio promote VERSION` scores a holder on a challenger's text."""
    measure = _measure(metric)
    existing = versions(name)
    scored = {int(mv.version): scores_of(mv) for mv in existing}
    current = holder(name, alias)
    order = [mv for mv in existing if int(mv.version) == current] + existing
    reference = next((found.digest for mv in order
                      if (found := measures.own(scored[int(mv.version)], measure, mv.tags))), None)
    values = {v: measures.value_on(found, measure, reference) for v, found in scored.items()} if reference else {}
    values = {v: value for v, value in values.items() if value is not None}
    if not values:
        why = ("it has no versions yet" if not existing
               else f"none of its versions has a {measure.name} with the digest of its text")
        raise RegistryError(f"{name}: no version to promote ({why})")
    best = min(values, key=lambda v: (-values[v] if measure.higher_is_better else values[v], v))
    if best == current or (current in values and not measure.better(values[best], values[current])):
        return Move(alias, current, current, "unchanged", measure.name, 0.0)
    theirs = values.get(current)
    move = Move(alias, best, current, "best", measure.name,
                None if theirs is None else values[best] - theirs, reference, values[best], theirs)
    history = _history(name, alias)
    if current is not None and (not history or history[-1] != current):
        history.append(current)
    return _move(name, move, history + [best])


def roll_back(name: str, alias: str, metric: str | Measure) -> Move:
    """Return `alias` to the version that held it before the current holder."""
    measure = _measure(metric)
    current = holder(name, alias)
    if current is None:
        raise RegistryError(f"{name} has no @{alias} to roll back ({_listing(name)})")
    history = _history(name, alias)
    if not history or history[-1] != current:
        history.append(current)
    history.pop()
    existing = {int(v.version) for v in versions(name)}
    while history and history[-1] not in existing:
        history.pop()  # a deleted version cannot take the alias back
    if not history:
        raise RegistryError(f"@{alias} of {name} has no previous holder to return to "
                            f"(version {current} is the first)")
    previous = history[-1]
    back, now = get_version(name, previous), get_version(name, current)
    move = Move(alias, previous, current, "rollback", measure.name)
    mine = measures.own(scores_of(back), measure, back.tags)
    theirs = measures.value_on(scores_of(now), measure, mine.digest) if mine else None
    if mine is not None and theirs is not None:  # the change, where both were scored on one text
        move = Move(alias, previous, current, "rollback", measure.name, mine.value - theirs, mine.digest,
                    mine.value, theirs)
    return _move(name, move, history)


def move_alias(name: str, alias: str, metric: str | Measure, *, version: int | None = None,
               best: bool = False, rollback: bool = False, force: bool = False,
               rescore: Rescore | None = None) -> Move:
    """`folio promote`: one of VERSION (gated unless `force`), `best` or `rollback`. On a team
    server this needs EDIT on `name` (docs/team-server.md): without it the first write, before the
    alias moves, is refused (TrackingRefused)."""
    store.setup()
    with access.refusals(f"move @{alias} of {name}", f"EDIT on the registered model {name}"):
        if best:
            return promote_best(name, alias, metric)
        if rollback:
            return roll_back(name, alias, metric)
        return promote(name, version, alias, metric, force, rescore=rescore)


# ---- loading -------------------------------------------------------------------------------

def resolve(uri: str):
    """The ModelVersion behind `models:/<name>@<alias>` or `models:/<name>/<version>`."""
    match = URI_PATTERN.fullmatch(uri)
    if match is None:
        raise RegistryError(f"{uri!r} is not a registry URI: use models:/<name>@<alias> "
                            "or models:/<name>/<version>")
    name, alias = match["name"], match["alias"]
    if alias is None:
        return get_version(name, match["version"])
    if holder(name, alias) is None:
        raise RegistryError(f"{name} has no version with alias @{alias} ({_listing(name)})")
    return client().get_model_version_by_alias(name, alias)


def load_model(uri: str, device=None):
    """The registered pyfunc model behind `uri`; RegistryError if its artifacts are gone. `device`
    goes to pyfunc_model.py as model_config's `device` (None: its default, auto), where the version
    takes one: those logged before models took a device load onto the CPU."""
    ml = store.mlflow()
    model_version = resolve(uri)
    try:
        files = ml.artifacts.list_artifacts(artifact_uri=model_version.source)
    except Exception:
        files = []
    if not any(f.path.endswith("MLmodel") for f in files):
        raise RegistryError(
            f"{uri} is version {model_version.version} of {model_version.name}, but its artifacts "
            f"are gone from {model_version.source} (deleted, or the artifact store is unreachable); "
            "register the model again with `folio register`")
    takes_device = device is not None and ml.pyfunc.MODEL_CONFIG in ml.models.Model.load(uri).flavors.get(
        ml.pyfunc.FLAVOR_NAME, {})  # the model_config it was logged with
    return ml.pyfunc.load_model(uri, model_config={"device": str(device)} if takes_device else None)


def load_generator(uri: str, device=None):
    """(GPT, tokenizer) of a registered folio model on `device` (None: the model's default, auto),
    for streaming generation (`folio generate`)."""
    from folio.generate import for_generation

    store.setup()
    python_model = load_model(uri, device).unwrap_python_model()
    model = python_model.model
    if device is not None:  # a no-op, but for a version logged before models took a device (on the CPU)
        model = for_generation(model.to(device))
    return model, python_model.tokenizer
