"""The model registry against a real sqlite MLflow store (the project's default), with a tiny GPT
built here: the pyfunc model logged as code loads and generates with its signature's params
(every sampling setting of sample.*, its default; stop strings and repetition penalty honoured), the
alias moves only to a better version (or forced), `--best` and rollback, every move recorded as
version tags, `folio promote`/`folio runs`/`folio generate --model` from the CLI, the model card,
and clear errors: a version that does not exist, a model with no versions, a model whose
artifacts are gone, a tracking server that is down."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from typer.testing import CliRunner

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer, save_tokenizer
from pipeline.tracking import store as tracking
from pipeline.commands import runs
from pipeline.tracking import model_card, registry
from pipeline.cli import app
from pipeline.params import SampleParams
from tests.conftest import PROJECT
from tests.servers import tracking_at

TEXT = "ROMEO: the quick brown fox jumps over the lazy dog.\nJULIET: PACK MY BOX WITH FIVE DOZEN JUGS!\n" * 20
SAMPLE = SampleParams(prompts=["ROMEO:"], max_new_tokens=8, temperature=0.8, top_k=20, seed=1)
PARAMS_FILE = str(PROJECT / "params.yaml")
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh sqlite store in a temp dir, which is also the working directory."""
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch, tracking_at(f"sqlite:///{root / 'mlflow.db'}"):
        patch.chdir(root)
        tracking.setup()
        yield root


@pytest.fixture(scope="module")
def model_files(store) -> tuple[Path, Path]:
    """best.pt (with optimizer state, as training writes it) and its tokenizer directory."""
    tokenizer = CharTokenizer.train(TEXT)
    save_tokenizer(tokenizer, store / "tokenizer")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16))
    checkpoint.save(store / "best.pt", {
        "model": model.state_dict(), "model_config": model.config.to_dict(), "step": 5,
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "digest": tokenizer.digest},
        "best_val_loss": 2.0, "optimizer": {"state": {"moments": torch.zeros(50_000)}},
    })
    return store / "best.pt", store / "tokenizer"


def _trained_run(bits_per_byte: float, max_iters: int) -> str:
    """A finished run as the pipeline leaves it: params, per-step throughput, final val metrics."""
    ml = tracking.mlflow()
    with ml.start_run(run_name=f"tiny-{max_iters}") as run:
        ml.log_params({"model.n_layer": 1, "train.max_iters": max_iters})
        for step, rate in enumerate([1000.0, 3000.0], 1):
            ml.log_metric("tokens_per_sec", rate, step=step)
        ml.log_metrics({"final_val_bits_per_byte": bits_per_byte, "final_val_loss": bits_per_byte * 0.69})
    return run.info.run_id


@pytest.fixture(scope="module")
def logged(model_files) -> list[tuple[str, float]]:
    """Three logged models (model URI, val bits per byte): v1 3.0, v2 3.5 (worse), v3 2.5 (best)."""
    result = []
    for bpb, iters in ((3.0, 30), (3.5, 20), (2.5, 60)):
        info = registry.log_model(_trained_run(bpb, iters), *model_files, SAMPLE)
        result.append((info.model_uri, bpb))
    return result


VAL_DIGEST = "0123456789abcdef"  # every version here was scored on one val text


def _registered(logged, name: str) -> str:
    for model_uri, bpb in logged:
        registry.register(model_uri, name, {"val_bits_per_byte": str(bpb), "val.digest": VAL_DIGEST})
    return name


def _tags(name: str, version: int) -> dict:
    return registry.get_version(name, version).tags


def test_logged_model_is_code_with_slim_artifacts_and_generates(logged):
    name = _registered(logged[:1], "folio-load")
    version = registry.get_version(name, 1)
    files = {f.path for f in tracking.mlflow().artifacts.list_artifacts(artifact_uri=version.source)}
    assert {"MLmodel", "pyfunc_model.py", "input_example.json"} <= files and "python_model.pkl" not in files
    model_dir = Path(urlparse(registry.client().get_logged_model(version.model_id or
                                                                 version.source.split("/")[-1]).artifact_location).path)
    assert "optimizer" not in checkpoint.load(model_dir / "artifacts" / "model.pt")
    model = tracking.mlflow().pyfunc.load_model(f"models:/{name}/1")
    params = {p.name for p in model.metadata.signature.params}
    assert params == {"max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "stop", "seed"}
    first = model.predict(["ROMEO:", "JULIET:"], params={"max_new_tokens": 12, "seed": 3})
    assert [t[:6] for t in first] == ["ROMEO:", "JULIET"] and all(len(t) > 7 for t in first)
    assert model.predict(["ROMEO:", "JULIET:"], params={"max_new_tokens": 12, "seed": 3}) == first
    nucleus = model.predict(["ROMEO:"], params={"max_new_tokens": 12, "top_p": 0.5, "seed": 3})
    assert nucleus[0].startswith("ROMEO:")
    gpt, tokenizer = registry.load_generator(f"models:/{name}/1")
    assert isinstance(gpt, GPT) and tokenizer.kind == "char"


def test_the_signature_offers_every_sampling_param_with_its_sample_value_as_default():
    sample = SampleParams(prompts=["x"], max_new_tokens=9, temperature=0.5, top_k=7, top_p=0.9,
                          repetition_penalty=1.3, stop=["\n", "END"], seed=4)
    defaults = {p.name: p.default for p in registry.signature(sample).params}
    assert set(SampleParams.model_fields) - {"prompts", "attention_prompt"} == set(defaults)
    assert defaults == {"max_new_tokens": 9, "temperature": 0.5, "top_k": 7, "top_p": 0.9,
                        "repetition_penalty": 1.3, "stop": ["\n", "END"], "seed": None}  # seed: fresh per call


def _first_line(text: str, prompt: str = "ROMEO:") -> str:
    """The prompt and its continuation up to (not including) the continuation's first newline."""
    assert "\n" in text[len(prompt):], "the continuation should hold a newline within max_new_tokens"
    return text[:text.index("\n", len(prompt))]


def test_the_loaded_model_honours_stop_strings_and_the_repetition_penalty(logged):
    model = tracking.mlflow().pyfunc.load_model(logged[0][0])
    seeded = {"max_new_tokens": 60, "seed": 0}
    free = model.predict(["ROMEO:"], params=seeded)[0]
    stopped = model.predict(["ROMEO:"], params={**seeded, "stop": ["\n"]})[0]
    assert stopped == _first_line(free) and len(stopped) > len("ROMEO:")  # the same draws, cut before the stop
    penalized = model.predict(["ROMEO:"], params={**seeded, "repetition_penalty": 5.0})
    assert penalized[0] != free
    assert model.predict(["ROMEO:"], params={**seeded, "repetition_penalty": 5.0}) == penalized


def test_a_model_logged_with_sample_settings_applies_them_by_default(model_files, tmp_path):
    """sample.stop and sample.repetition_penalty become the signature's defaults, and predict uses them."""
    def saved(path, **settings):
        tracking.mlflow().pyfunc.save_model(
            path, python_model=str(registry.PYFUNC_FILE), pip_requirements=registry.requirements(),
            artifacts={"checkpoint": str(model_files[0]), "tokenizer": str(model_files[1])},
            signature=registry.signature(SAMPLE.model_copy(update={"max_new_tokens": 60, **settings})))
        return tracking.mlflow().pyfunc.load_model(path)

    plain, tuned = saved(tmp_path / "plain"), saved(tmp_path / "tuned", stop=["\n"], repetition_penalty=5.0)
    penalized = plain.predict(["ROMEO:"], params={"seed": 0, "repetition_penalty": 5.0})[0]
    assert tuned.predict(["ROMEO:"], params={"seed": 0}) == [_first_line(penalized)]
    assert tuned.predict(["ROMEO:"], params={"seed": 0, "repetition_penalty": 1.0}) == \
        [_first_line(plain.predict(["ROMEO:"], params={"seed": 0})[0])]
    assert tuned.predict(["ROMEO:"], params={"seed": 0, "stop": []}) == [penalized]


def test_slim_checkpoint_keeps_the_weights_and_drops_the_optimizer(model_files, tmp_path):
    checkpoint.save(tmp_path / "slim.pt", registry.slim(checkpoint.load(model_files[0])))
    slim, full = checkpoint.load(tmp_path / "slim.pt"), checkpoint.load(model_files[0])
    assert "optimizer" not in slim and set(slim) <= set(registry.SLIM_KEYS)
    assert all(torch.equal(slim["model"][k], full["model"][k]) for k in full["model"])
    assert (tmp_path / "slim.pt").stat().st_size < model_files[0].stat().st_size / 2


def test_alias_moves_only_to_a_better_version_unless_forced(logged):
    name = _registered(logged, "folio-gate")
    assert registry.promote(name, 1, "champion", "bits_per_byte").previous is None
    with pytest.raises(registry.RegistryError, match=r"version 2 does not beat version 1 \(@champion\)"):
        registry.promote(name, 2, "champion", "bits_per_byte")
    assert registry.holder(name, "champion") == 1
    forced = registry.promote(name, 2, "champion", "bits_per_byte", force=True)
    assert (forced.reason, forced.previous, forced.delta) == ("force", 1, pytest.approx(0.5))
    tags = _tags(name, 2)
    assert tags["alias.champion.promoted_from"] == "1" and tags["alias.champion.promoted_by"] == "force"
    assert tags["alias.champion.delta_bits_per_byte"] == "+0.500000" and tags["alias.champion.promoted_at"]
    assert _tags(name, 1)["alias.champion.demoted_by"] == "2"
    better = registry.promote(name, 3, "champion", "bits_per_byte")
    assert better.delta == pytest.approx(-1.0) and registry.holder(name, "champion") == 3
    assert registry.promote(name, 3, "champion", "bits_per_byte").reason == "unchanged"


def test_the_alias_history_is_recorded_with_the_move_not_before(logged, monkeypatch):
    """A move that fails leaves the history as it was (a rollback would otherwise return to a
    version that never held the alias); the next move records it."""
    from mlflow import MlflowClient

    name = _registered(logged, "folio-history")
    registry.promote(name, 1, "champion", "bits_per_byte")
    history = registry.registered_model(name).tags["alias.champion.history"]

    def refused(*args, **kwargs):
        raise ConnectionError("the server went away")

    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "set_registered_model_alias", refused)
        with pytest.raises(ConnectionError):
            registry.promote(name, 3, "champion", "bits_per_byte")
    assert registry.registered_model(name).tags["alias.champion.history"] == history == "1"
    assert registry.holder(name, "champion") == 1 and "alias.champion.promoted_at" not in _tags(name, 3)
    registry.promote(name, 3, "champion", "bits_per_byte")
    assert registry.registered_model(name).tags["alias.champion.history"] == "1,3"


def test_rollback_walks_back_through_the_holders(logged):
    name = _registered(logged, "folio-rollback")
    for version in (1, 3):
        registry.promote(name, version, "champion", "bits_per_byte")
    registry.promote(name, 2, "champion", "bits_per_byte", force=True)
    assert registry.roll_back(name, "champion", "bits_per_byte").version == 3
    assert _tags(name, 3)["alias.champion.promoted_by"] == "rollback"
    assert registry.roll_back(name, "champion", "bits_per_byte").version == 1
    with pytest.raises(registry.RegistryError, match="no previous holder"):
        registry.roll_back(name, "champion", "bits_per_byte")
    assert registry.holder(name, "champion") == 1


def test_best_picks_the_lowest_version(logged):
    name = _registered(logged, "folio-best")
    registry.promote(name, 2, "champion", "bits_per_byte")
    move = registry.promote_best(name, "champion", "bits_per_byte")
    assert (move.version, move.previous, move.reason) == (3, 2, "best")
    assert registry.promote_best(name, "champion", "bits_per_byte").reason == "unchanged"


def test_promote_command(logged):
    name = _registered(logged, "folio-cli")
    result = runner.invoke(app, ["promote", "3", "--model", name, "--params", PARAMS_FILE])
    assert result.exit_code == 0, result.output
    assert f"{name}@champion moved to version 3" in result.output
    result = runner.invoke(app, ["promote", "1", "--model", name, "--params", PARAMS_FILE])
    assert result.exit_code == 1 and "does not beat version 3" in result.output
    result = runner.invoke(app, ["promote", "--rollback", "--model", name, "--params", PARAMS_FILE])
    assert result.exit_code == 1 and "no previous holder" in result.output
    result = runner.invoke(app, ["promote", "--best", "--rollback", "--model", name])
    assert result.exit_code == 1 and "exactly one of VERSION, --best or --rollback" in result.output


def test_errors_name_the_missing_version_model_or_alias(logged):
    name = _registered(logged[:2], "folio-errors")
    with pytest.raises(registry.RegistryError, match=r"folio-errors has no version 7 \(versions: 2, 1\)"):
        registry.promote(name, 7, "champion", "bits_per_byte")
    with pytest.raises(registry.RegistryError, match="no registered model named 'folio-nope'"):
        registry.promote("folio-nope", 1, "champion", "bits_per_byte")
    registry.client().create_registered_model("folio-empty")
    with pytest.raises(registry.RegistryError, match="folio-empty: no version to promote .it has no versions yet"):
        registry.promote_best("folio-empty", "champion", "bits_per_byte")
    with pytest.raises(registry.RegistryError, match="no version with alias @champion .it has no versions yet"):
        registry.load_model("models:/folio-empty@champion")
    with pytest.raises(registry.RegistryError, match="not a registry URI"):
        registry.resolve("runs:/abc/model")
    result = runner.invoke(app, ["promote", "1", "--model", "folio-empty", "--params", PARAMS_FILE])
    assert result.exit_code == 1 and "folio-empty has no version 1 (it has no versions yet)" in result.output


def test_a_model_whose_artifacts_are_gone_is_reported(model_files):
    info = registry.log_model(_trained_run(3.0, 30), *model_files, SAMPLE)
    registry.register(info.model_uri, "folio-gone", {})
    location = registry.client().get_logged_model(info.model_id).artifact_location
    shutil.rmtree(urlparse(location).path)
    with pytest.raises(registry.RegistryError, match="artifacts are gone"):
        registry.load_model("models:/folio-gone/1")
    result = runner.invoke(app, ["generate", "--model", "models:/folio-gone/1", "ROMEO:"])
    assert result.exit_code == 1 and "artifacts are gone" in result.output


def test_generate_from_the_registry(logged):
    name = _registered(logged[:1], "folio-generate")
    registry.promote(name, 1, "champion", "bits_per_byte")
    result = runner.invoke(app, ["generate", "--model", f"models:/{name}@champion", "--max-new-tokens",
                                 "10", "--seed", "1", "ROMEO:"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ROMEO:") and len(result.output.strip()) > len("ROMEO:")


def test_runs_table_shows_differing_params_metrics_versions_and_aliases(logged):
    name = _registered(logged, "folio-runs")
    registry.promote(name, 3, "champion", "bits_per_byte")
    recent = runs.recent_runs(3)  # the three runs `logged` made, newest first
    table = runs.table(recent, runs.versions_by_run([r.info.run_id for r in recent]), wide=True)
    assert table.header[2] == "train.max_iters" and "model.n_layer" not in table.header
    rows = {row[0]: dict(zip(table.header, row)) for row in table.rows}
    best = rows["tiny-60"]
    assert best["bits/byte"] == "2.5000" and best["tokens/s"] == "1,500"  # 2 steps: 1000 and 3000 tok/s
    assert "folio-runs v3 @champion" in best["model"].split(", ")
    assert "@champion" not in rows["tiny-20"]["model"]
    result = runner.invoke(app, ["runs", "--limit", "3", "--wide"])
    assert result.exit_code == 0, result.output
    assert "tiny-60" in result.output and "folio-runs v3 @champion" in result.output


def test_tracking_server_that_is_down_fails_fast_with_a_clear_message(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(tracking.TrackingUnavailable, match=f"127.0.0.1:{port} does not answer"):
        tracking.setup()
    for args in (["runs"], ["promote", "1", "--params", PARAMS_FILE]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "does not answer" in result.output, result.output
    assert time.monotonic() - started < 10


def test_model_card_renders_every_section():
    facts = model_card.CardFacts(
        name="folio-x", version="3", run_id="abc", run_name="x-char-L1d16",
        data={"name": "x", "url": "https://example.invalid/x.txt", "sha256": "ab" * 32,
              "size_bytes": 12345, "val_fraction": 0.1},
        tokenizer={"kind": "char", "vocab_size": 65, "bytes_per_token": 1.0},
        params={"model.n_layer": "1", "train.max_iters": "30"},
        metrics={"loss": 1.5, "bits_per_byte": 2.25, "perplexity": 4.48, "tokens": 1000},
        checkpoint={"step": 30, "weights_digest": "0123456789abcdef"}, evals=[[s, 2.0, 2.1] for s in range(0, 200, 10)],
        samples="# Samples\n\n## Prompt 1: 'ROMEO:'\n\n```text\nROMEO:\n# not a heading\n```\n",
        lineage={"git commit": "1234abcd"},
    )
    card = model_card.render(facts)
    for expected in ("# folio-x version 3", "sha256 `" + "ab" * 32, "12,345 bytes", "| bits per byte | 2.2500 |",
                     "| `train.max_iters` | 30 |", "![loss curve](loss.png)", "### Prompt 1: 'ROMEO:'",
                     "# not a heading", 'mlflow.pyfunc.load_model("models:/folio-x/3")',
                     "folio generate --model models:/folio-x/3", "| git commit | `1234abcd` |"):
        assert expected in card, expected
    assert "## Suites" not in card  # no evaluate.suites: no section
    suite = {"loss": 1.25, "bits_per_byte": 1.8, "tokens": 4321, "text_digest": "0123456789abcdef",
             "sha256": "cd" * 32, "contamination": {"lines": 10, "in_train": 1, "share": 0.1}}
    with_suites = model_card.render(dataclasses.replace(
        facts, metrics={**facts.metrics, "text_digest": "fedcba9876543210"}, suites={"wiki": suite}))
    assert "## Suites" in with_suites and "Val text digest `fedcba9876543210`" in with_suites
    assert "| wiki | 1.8000 | 1.2500 | 4,321 | `0123456789abcdef` | `cdcdcdcdcdcdcdcd` | 10.0% |" in with_suites
    assert "| text_digest |" not in with_suites
    eval_rows = [line for line in card.splitlines() if line.startswith("| ") and "2.1000" in line]
    assert len(eval_rows) == model_card.MAX_EVAL_ROWS and eval_rows[0].startswith("| 0 ") and "| 190 " in eval_rows[-1]
    assert "\n# Samples" not in card


# ---- like for like: the gate compares only scores over text of one digest -------------------

def _with_tags(logged, name: str, *tags: dict) -> str:
    for (model_uri, _), version_tags in zip(logged, tags):
        registry.register(model_uri, name, version_tags)
    return name


def test_a_holder_never_scored_on_the_challengers_text_is_rescored_and_the_score_kept(logged):
    name = _with_tags(logged, "folio-rescore",
                      {"val_bits_per_byte": "3.0", "val.digest": "aaaaaaaaaaaaaaaa"},
                      {"val_bits_per_byte": "2.5", "val.digest": "bbbbbbbbbbbbbbbb"},
                      {"val_bits_per_byte": "2.0", "val.digest": "bbbbbbbbbbbbbbbb"})
    registry.promote(name, 1, "champion", "bits_per_byte")
    with pytest.raises(registry.RegistryError, match=r"version 1 \(the holder\) was never scored on bits_per_byte "
                       r"over the text version 2 was \(digest bbbbbbbbbbbbbbbb; its own: aaaaaaaaaaaaaaaa\)"):
        registry.promote(name, 2, "champion", "bits_per_byte")  # no rescore: refused, not compared 2.5 vs 3.0
    asked = []

    def rescore(version, measure, digest, challenger):
        asked.append((version, measure.key, digest, int(challenger.version)))
        return 2.75

    move = registry.promote(name, 2, "champion", "bits_per_byte", rescore=rescore)
    assert asked == [(1, "val.bits_per_byte", "bbbbbbbbbbbbbbbb", 2)]
    assert (move.version, move.previous, move.digest, move.value, move.previous_value, move.rescored) == (
        2, 1, "bbbbbbbbbbbbbbbb", 2.5, 2.75, True)
    assert move.delta == pytest.approx(-0.25)
    assert "on text bbbbbbbbbbbbbbbb; version 1 rescored on it" in move.summary(name)
    assert _tags(name, 1)["rescored.val.bits_per_byte.bbbbbbbbbbbbbbbb"] == "2.75"
    tags = _tags(name, 2)
    assert {k.removeprefix("alias.champion."): v for k, v in tags.items() if k.startswith("alias.champion.")
            and not k.endswith("_at")} == {
        "promoted_by": "promote", "promoted_from": "1", "measure": "bits_per_byte",
        "digest": "bbbbbbbbbbbbbbbb", "value": "2.500000", "previous_value": "2.750000", "rescored": "true",
        "delta_bits_per_byte": "-0.250000"}
    asked.clear()
    registry.promote(name, 3, "champion", "bits_per_byte", rescore=rescore)  # same text: no rescoring
    assert asked == [] and registry.holder(name, "champion") == 3


def test_a_rescored_holder_that_is_better_keeps_the_alias_and_its_score(logged):
    name = _with_tags(logged, "folio-rescore-keeps",
                      {"val_bits_per_byte": "3.0", "val.digest": "aaaaaaaaaaaaaaaa"},
                      {"val_bits_per_byte": "2.5", "val.digest": "bbbbbbbbbbbbbbbb"})
    registry.promote(name, 1, "champion", "bits_per_byte")
    with pytest.raises(registry.RegistryError, match=r"version 2 does not beat version 1 \(@champion\) on "
                       r"bits_per_byte \(lower is better\) over text bbbbbbbbbbbbbbbb: 2.5000 vs 2.4000 "
                       r"\(version 1 rescored on it\)"):
        registry.promote(name, 2, "champion", "bits_per_byte", rescore=lambda *args: 2.4)
    assert registry.holder(name, "champion") == 1
    assert _tags(name, 1)["rescored.val.bits_per_byte.bbbbbbbbbbbbbbbb"] == "2.4"


def test_a_measure_where_higher_is_better_moves_the_alias_to_the_higher(logged):
    task = {"harness.mc.digest": "cccccccccccccccc"}
    name = _with_tags(logged, "folio-higher", {"harness.mc.acc_norm": "0.30", **task},
                      {"harness.mc.acc_norm": "0.25", **task}, {"harness.mc.acc_norm": "0.40", **task})
    registry.promote(name, 1, "champion", "harness:mc.acc_norm")
    with pytest.raises(registry.RegistryError, match=r"higher is better"):
        registry.promote(name, 2, "champion", "harness:mc.acc_norm")
    move = registry.promote(name, 3, "champion", "harness:mc.acc_norm")
    assert move.delta == pytest.approx(0.10) and _tags(name, 3)["alias.champion.delta_harness.mc.acc_norm"] == "+0.100000"
    assert registry.promote_best(name, "champion", "harness:mc.acc_norm").reason == "unchanged"


def test_best_compares_only_versions_scored_on_the_holders_text(logged):
    name = _with_tags(logged, "folio-best-text",
                      {"val_bits_per_byte": "3.0", "val.digest": "aaaaaaaaaaaaaaaa"},
                      {"val_bits_per_byte": "1.0", "val.digest": "bbbbbbbbbbbbbbbb"},  # other text: not compared
                      {"val_bits_per_byte": "2.5", "val.digest": "aaaaaaaaaaaaaaaa"})
    registry.promote(name, 1, "champion", "bits_per_byte")
    move = registry.promote_best(name, "champion", "bits_per_byte")
    assert (move.version, move.digest, move.previous_value) == (3, "aaaaaaaaaaaaaaaa", 3.0)


def test_promote_no_rescore_refuses_in_one_line_naming_both_digests(logged):
    name = _with_tags(logged, "folio-no-rescore",
                      {"val_bits_per_byte": "3.0", "val.digest": "aaaaaaaaaaaaaaaa"},
                      {"val_bits_per_byte": "2.5", "val.digest": "bbbbbbbbbbbbbbbb"})
    registry.promote(name, 1, "champion", "bits_per_byte")
    result = runner.invoke(app, ["promote", "2", "--no-rescore", "--model", name, "--params", PARAMS_FILE])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "bbbbbbbbbbbbbbbb" in result.output and "aaaaaaaaaaaaaaaa" in result.output
    old = registry.client().get_model_version(name, "1")
    assert not any(k.startswith("rescored.") for k in old.tags)
