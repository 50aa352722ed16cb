"""The `folio` command: every dvc.yaml stage (pipeline/stages/), plus `generate`, `attention`,
`serve`, `promote`, `compare`, `runs`, `summary`, `gc`, `plots-template`, `import-gpt2`, `export-hf` and `harness` (pipeline/commands/).

Stage commands read params.yaml, apply `--set key=value` overrides and validate everything
before any work, then run the stage holding the workspace lock. Every failure a user can cause
prints one line, `error: <command>: <what>; <what to do>`, and exits 1 (FOLIO_DEBUG=1 adds the
traceback). Heavy libraries (torch, mlflow, GX) are imported inside the commands so that
`folio --help` answers at once.
"""

from __future__ import annotations

import errno
import os
import traceback
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="folio: train a small GPT reproducibly — each stage of dvc.yaml is a command here.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="params file to read")
SET_OPTION = typer.Option(
    None, "--set", "-S", help="override a param, e.g. --set train.max_iters=200 (repeatable)"
)
DEBUG_ENV = "FOLIO_DEBUG"  # set to 1: a failure shows its traceback too


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


# OSErrors a user causes and can fix; any other is a bug, and keeps its traceback
USER_OS_ERRORS = {errno.ENOENT: "check the path", errno.EACCES: "check its permissions",
                  errno.EPERM: "check its permissions", errno.ENOSPC: "free some space",
                  errno.EDQUOT: "free some space", errno.EROFS: "write somewhere writable"}


def guarded(name: str, action) -> None:
    """Run `action`; a failure the user can cause or fix becomes one line — `error: <name>:
    <what>; <what to do>` — and exit status 1. Anything else is a bug and keeps its traceback.
    The tracking server refusing the credentials or the action (401/403) is the user's to fix."""
    from folio.errors import FolioError
    from pipeline.errors import StageError

    try:
        action()
    except KeyboardInterrupt:
        if name == "train":
            fail(f"{name}: interrupted; rerun the command to continue (training resumes from its last checkpoint)")
        fail(f"{name}: interrupted; rerun the command to run it again (nothing is left half-written)")
    except Exception as caught:
        from pipeline.tracking.access import refusal  # only on a failure: not on every command's start

        err = refusal(caught) or caught
        if not isinstance(err, (StageError, FolioError)) and not (
                isinstance(err, OSError) and err.errno in USER_OS_ERRORS):
            raise
        if os.environ.get(DEBUG_ENV) == "1":
            traceback.print_exc()
        fail(f"{name}: {one_line(err)}")


def one_line(err: Exception) -> str:
    """The message of a user-fixable error: folio's own say what to do; an OSError gets a hint."""
    if isinstance(err, OSError) and err.filename and err.strerror and err.errno in USER_OS_ERRORS:
        return f"{err.strerror.lower()}: {err.filename}; {USER_OS_ERRORS[err.errno]} and rerun"
    return str(err)


def load_params(params_file: Path, overrides: list[str]):
    from pipeline import params as params_module

    return params_module.load(params_file, overrides)


def _stage_command(name: str):
    def command(
        params_file: Path = PARAMS_OPTION,
        overrides: Optional[list[str]] = SET_OPTION,
    ) -> None:
        from pipeline import stages

        guarded(name, lambda: stages.run(name, load_params(params_file, overrides or [])))

    command.__name__ = name
    return command


def _register_stages() -> None:
    from pipeline.stages import STAGES

    for name, help_text in STAGES.items():
        app.command(name, help=help_text)(_stage_command(name))


_register_stages()


class Quantization(str, Enum):
    int8 = "int8"


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="text to continue"),
    model_uri: Optional[str] = typer.Option(None, "--model", "-m", help="a registered model instead of --checkpoint/--tokenizer, e.g. models:/folio-tinyshakespeare@champion"),
    checkpoint_path: Path = typer.Option(Path("models/best.pt"), "--checkpoint", "-c", help="checkpoint file"),
    tokenizer_dir: Path = typer.Option(Path("data/tokenizer"), "--tokenizer", help="tokenizer directory"),
    max_new_tokens: int = typer.Option(500, min=1, help="tokens to generate"),
    temperature: float = typer.Option(0.8, min=0.0, help="0 = greedy"),
    top_k: Optional[int] = typer.Option(200, min=1, help="sample among the k likeliest tokens"),
    top_p: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="nucleus: sample among the likeliest tokens holding this much probability"),
    repetition_penalty: float = typer.Option(1.0, min=0.0, help="> 1 makes tokens already in the text less likely"),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="end the text before this string (repeatable)"),
    num_samples: int = typer.Option(1, min=1, help="samples to draw (in one batch); with --beams, best hypotheses to show"),
    beams: int = typer.Option(1, min=1, help="beam search with this many beams instead of sampling"),
    length_penalty: float = typer.Option(1.0, help="beams: score = log-probability / length ** this"),
    seed: Optional[int] = typer.Option(None, help="seed for reproducible samples"),
    quantize: Optional[Quantization] = typer.Option(None, help="int8 weights (CPU only): helps larger models at any length (10.8M: 1.6x less CPU at 5000 tokens); about even on the default 1.8M model"),
    device: str = typer.Option("auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps; --quantize int8 runs on the CPU"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="KV cache (--no-cache recomputes every token)"),
    compile_step: bool = typer.Option(False, "--compile", help="torch.compile the decoding step: 5-7 s of compiling in every run; pays only on thousands of tokens of larger models (10.8M + int8, 5000 tokens: 3-13% less CPU), not within 5000 tokens on the default model"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads [default: one per core]; 1 is often faster on a busy machine"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of streaming text"),
) -> None:
    """Continue PROMPT with a trained checkpoint, streaming tokens to the terminal.

    Speed (measured 2026-12-06 on a 2-core Xeon with AMX/AVX512-BF16, no GPU, one thread; see
    docs/benchmarks.md): on the default 1.8M model plain and --quantize int8 are about even and
    fastest, at 200 or 5000 tokens; on the 10.8M model --quantize int8 helps at any length, and
    --compile on top only for thousands of tokens.
    """
    from pipeline.commands import generate as run

    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    repetition_penalty=repetition_penalty, stop=tuple(stop or ()), seed=seed,
                    num_samples=num_samples, beams=beams, length_penalty=length_penalty,
                    compile=compile_step)
    guarded("generate", lambda: run.generate(
        prompt, settings, checkpoint_path, tokenizer_dir, model_uri,
        quantize.value if quantize else None, as_json, cache, threads, device))


@app.command()
def attention(
    prompt: str = typer.Argument(..., help="text whose attention to draw"),
    out: Path = typer.Option(Path("attention.png"), "--out", "-o", help="PNG file to write; an output of a dvc.yaml stage (reports/attention.png) only with --force"),
    checkpoint_path: Path = typer.Option(Path("models/best.pt"), "--checkpoint", "-c", help="checkpoint file"),
    tokenizer_dir: Path = typer.Option(Path("data/tokenizer"), "--tokenizer", help="tokenizer directory"),
    device: str = typer.Option("auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps"),
    force: bool = typer.Option(False, "--force", help="write --out even where a dvc.yaml stage declares it as its output"),
) -> None:
    """Save a PNG grid of PROMPT's attention maps: one per layer (rows) and head (columns)."""
    from pipeline.commands import generate as run

    guarded("attention", lambda: typer.echo(f"wrote {run.attention(prompt, out, checkpoint_path, tokenizer_dir, device, force)}"))


@app.command()
def serve(
    target: str = typer.Argument("models/best.pt", help="models:/<name>@<alias> (followed as it moves), models:/<name>/<version>, or a checkpoint file"),
    host: str = typer.Option("127.0.0.1", help="address to listen on; anything but loopback needs an API key"),
    port: int = typer.Option(8000, min=0, max=65535, help="port to listen on"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FOLIO_API_KEY", help="require `Authorization: Bearer KEY` on /v1 (required with --host)"),
    tokenizer_dir: Path = typer.Option(Path("data/tokenizer"), "--tokenizer", help="tokenizer directory (a checkpoint file only)"),
    max_batch: int = typer.Option(16, min=1, help="rows decoded together (requests x n)"),
    max_queue: int = typer.Option(64, min=0, help="requests waiting for room in the batch; past it, 429 with Retry-After"),
    poll_seconds: float = typer.Option(5.0, help="how often to ask the registry who holds the alias"),
    device: str = typer.Option("auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads [default: one per core]"),
) -> None:
    """Serve a model over OpenAI's completions API (/v1/completions, /v1/models), with a
    playground at / that compares two versions side by side; see docs/serving.md."""
    from pipeline.commands import serve as run
    from pipeline.serve.models import BatchSettings

    guarded("serve", lambda: run.serve(target, host, port, api_key, tokenizer_dir,
                                       BatchSettings(max_batch, max_queue, device), poll_seconds, threads))


@app.command()
def promote(
    version: Optional[int] = typer.Argument(None, help="the model version to give the alias"),
    alias: Optional[str] = typer.Option(None, help="the alias to move (default: registry.alias)"),
    best: bool = typer.Option(False, "--best", help="pick the version best on registry.metric among those scored on one text (the holder's)"),
    rollback: bool = typer.Option(False, "--rollback", help="return the alias to its previous holder"),
    force: bool = typer.Option(False, "--force", help="move the alias even if VERSION does not beat the holder, or they share no text"),
    rescore: bool = typer.Option(True, "--rescore/--no-rescore", help="score the holder on VERSION's text when it never was (--no-rescore: refuse instead)"),
    report: bool = typer.Option(True, "--report/--no-report", help="write the side-by-side report (folio compare) and attach it to VERSION"),
    model_name: Optional[str] = typer.Option(None, "--model", help="registered model (default: registry.model_name, or folio-<data.name>)"),
    params_file: Path = PARAMS_OPTION,
) -> None:
    """Move an alias (@champion) to VERSION only if it beats the holder on registry.metric over the same text."""
    if (version is not None) + best + rollback != 1:
        fail("promote: give exactly one of VERSION, --best or --rollback")

    def move() -> None:
        from pipeline.commands import promote as promote_command

        params = load_params(params_file, [])
        name = model_name or params.registered_model_name()
        for line in promote_command.promote(params, name, alias or params.registry.alias, version=version,
                                            best=best, rollback=rollback, force=force, rescore=rescore,
                                            report=report):
            typer.echo(line)

    guarded("promote", move)


@app.command()
def compare(
    a: str = typer.Argument(..., help="a version of the registered model (3), models:/<name>/<version>, models:/<name>@<alias>, or a training run's id"),
    b: str = typer.Argument(..., help="the other side, given the same ways"),
    out: Path = typer.Option(Path("reports/compare"), "--out", "-o", help="folder for <a>-vs-<b>.html and .md (and the figure)"),
    max_new_tokens: int = typer.Option(200, min=1, help="tokens in each sample"),
    model_name: Optional[str] = typer.Option(None, "--model", help="registered model of a bare version number (default: registry.model_name, or folio-<data.name>)"),
    device: str = typer.Option("auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps"),
    params_file: Path = PARAMS_OPTION,
) -> None:
    """A side-by-side report of two versions or runs (HTML readable offline, and Markdown): what
    each is, the measures both share on the same text, those they do not, the eval curves overlaid,
    and samples of sample.prompts with sample.seed from both; see docs/evaluation.md."""
    from pipeline.commands import compare as run

    guarded("compare", lambda: run.show(a, b, load_params(params_file, []), out, max_new_tokens,
                                        model_name, device))


@app.command()
def runs(limit: int = typer.Option(10, min=1, help="how many recent runs to show"),
         wide: bool = typer.Option(False, "--wide", help="every differing param, whole digests, URLs and run names"),
         sweep: Optional[str] = typer.Option(None, help="only the runs tagged with this sweep (FOLIO_SWEEP, or the commit `dvc exp run` started from)")) -> None:
    """Recent runs side by side: differing params, val loss, bits/byte, tokens/s, the model version."""
    from pipeline.commands.runs import show

    guarded("runs", lambda: show(limit, wide, sweep))


@app.command()
def summary(params_file: Path = PARAMS_OPTION) -> None:
    """What the pipeline made: the registered version, val loss, bits/byte, time, what to run next."""
    from pipeline.commands import summary as summary_command

    guarded("summary", lambda: summary_command.show(load_params(params_file, [])))


class GcKind(str, Enum):
    runs = "runs"
    checkpoints = "checkpoints"
    versions = "versions"


@app.command()
def gc(
    delete: bool = typer.Option(False, "--delete/--dry-run", help="remove every row marked `can go`, one line each; a dry run removes nothing"),
    only: Optional[list[GcKind]] = typer.Option(None, "--only", help="look only at runs (models/previous/), checkpoints (old step-*.pt) or versions (model versions without an alias); repeatable"),
    model_name: Optional[str] = typer.Option(None, "--model", help="registered model (default: registry.model_name, or folio-<data.name>)"),
    params_file: Path = PARAMS_OPTION,
) -> None:
    """What takes disk space — runs moved aside, old step checkpoints, model versions without an
    alias, the DVC cache — with sizes; --delete removes only what is safe (see the README)."""
    def run() -> None:
        from pipeline.commands import gc as gc_command

        name = model_name or load_params(params_file, []).registered_model_name()
        kinds = tuple(k.value for k in only) if only else gc_command.KINDS
        gc_command.show(name, delete, kinds)

    guarded("gc", run)


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    use_torch: bool = typer.Option(False, "--torch", help="ask torch for the hardware (2 s more) instead of the operating system"),
) -> None:
    """What folio sees: versions, the device and dtype it would train with and why, the tracking
    store and whether it answers, the DVC remote, tiktoken's cache, and any warnings."""
    from pipeline.commands.doctor import show

    guarded("doctor", lambda: show(as_json, use_torch))


@app.command()
def preset(path: Path = typer.Argument(..., help="a preset file, e.g. presets/cpu-speedrun.yaml")) -> None:
    """Print a preset's keys as `-S key=value` arguments: `dvc exp run $(folio preset FILE)`."""
    def show() -> None:
        from pipeline import params as params_module

        params_module.load(path)  # the preset, laid over what it extends, must validate
        typer.echo(" ".join(f"-S {a}" for a in params_module.preset_assignments(path)))

    guarded("preset", show)


@app.command("plots-template")
def plots_template(check: bool = typer.Option(False, "--check", help="write nothing; exit 1 saying what to do if the page is missing or stale")) -> None:
    """Write the page `dvc plots show` and `dvc plots diff` fill in (.dvc/config's
    plots.html_template) with Vega, Vega-Lite and Vega-Embed inlined from vl-convert-python, so
    the plots draw offline. `make setup` runs it; a page that is current is left as it is."""
    from pipeline.commands import plots_template as run

    guarded("plots-template", lambda: run.show(check))


@app.command("import-gpt2")
def import_gpt2(
    directory: Path = typer.Argument(..., help="a Hugging Face GPT-2 directory: config.json + model.safetensors or pytorch_model.bin"),
    out: Path = typer.Option(Path("checkpoints/gpt2.pt"), "--out", "-o", help="folio checkpoint to write"),
) -> None:
    """Convert Hugging Face GPT-2 weights (gpt2 … gpt2-xl, any GPT2Config) into a folio checkpoint
    with tokenizer tiktoken:gpt2; fine-tune it with train.init_from. Nothing is downloaded."""
    from pipeline.commands import hf

    guarded("import-gpt2", lambda: hf.import_gpt2(directory, out))


@app.command("export-hf")
def export_hf(
    out_dir: Path = typer.Argument(..., help="directory to write (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)"),
    checkpoint_path: Path = typer.Option(Path("models/best.pt"), "--checkpoint", "-c", help="checkpoint file"),
    tokenizer_dir: Path = typer.Option(Path("data/tokenizer"), "--tokenizer", help="the checkpoint's tokenizer directory (char, bpe, word; tiktoken:<name> comes from tiktoken's cache)"),
) -> None:
    """Write a GPT-2-architecture folio checkpoint and its tokenizer as a Hugging Face directory
    that AutoModelForCausalLM, AutoTokenizer and transformers.pipeline load without folio."""
    from pipeline.commands import hf

    guarded("export-hf", lambda: hf.export_hf(out_dir, checkpoint_path, tokenizer_dir))


@app.command()
def harness(
    model: str = typer.Option("models/best.pt", "--model", "-m", help="a checkpoint file (with --tokenizer) or a registered model, e.g. models:/folio-tinyshakespeare@champion"),
    tasks: str = typer.Option(..., "--tasks", "-t", help="lm-eval task names, comma-separated, e.g. hellaswag or mytask"),
    tokenizer_dir: Path = typer.Option(Path("data/tokenizer"), "--tokenizer", help="the checkpoint's tokenizer directory (a registered model brings its own)"),
    include_path: Optional[Path] = typer.Option(None, "--include-path", help="a folder of task YAMLs of your own (docs/evaluation.md)"),
    limit: Optional[int] = typer.Option(None, min=1, help="score only the first N documents of each task"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="sequences per forward pass"),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", min=0, help="examples in each prompt [default: the task's]"),
    device: str = typer.Option("auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps"),
    log: bool = typer.Option(False, "--log", help="log the metrics and the harness's JSON to the model's MLflow run"),
) -> None:
    """Score a model on lm-evaluation-harness tasks (HellaSwag and friends, or your own), offline;
    needs the eval extra, lm-eval (make setup installs it; docs/evaluation.md)."""
    from pipeline.commands import harness as run

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    guarded("harness", lambda: run.show(model, names, tokenizer_dir, include_path, limit, batch_size,
                                        device, num_fewshot, log))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
