"""The `folio` command: every dvc.yaml stage, plus `generate`, `attention`, `promote`, `runs`,
`import-gpt2` and `export-hf`.

Stage commands read params.yaml, apply `--set key=value` overrides and validate everything
before any work. Heavy libraries (torch, mlflow, GX) are imported inside the commands so that
`folio --help` answers at once.
"""

from __future__ import annotations

import importlib
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

# One registry: command name -> (pipeline module, help). dvc.yaml runs `folio <name>`.
STAGES = {
    "download": "Download the corpus (the FOLIO_DATA_MIRROR mirror first, if set) and verify or record its sha256.",
    "validate": "Check the corpus with a Great Expectations suite; write reports/validation/corpus/.",
    "tokenize": "Build the tokenizer from the corpus into data/tokenizer/.",
    "prepare": "Encode the corpus and split it into data/prepared/{train,val}.bin.",
    "validate_tokens": "Check the prepared tokens with a Great Expectations suite; write reports/validation/tokens/.",
    "train": "Train the GPT (resuming an interrupted run), tracked in MLflow.",
    "evaluate": "Loss, bits per character and perplexity of the best checkpoint over the whole val split.",
    "sample": "Generate text from sample.prompts into reports/samples.md.",
    "register": "Log the model to MLflow (pyfunc, as code) and register a new version with its model card.",
}

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="params file to read")
SET_OPTION = typer.Option(
    None, "--set", "-S", help="override a param, e.g. --set train.max_iters=200 (repeatable)"
)


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def load_params(params_file: Path, overrides: list[str]):
    from pipeline import params as params_module

    try:
        return params_module.load(params_file, overrides)
    except params_module.ParamsError as err:
        fail(str(err))


def run_stage(name: str, params_file: Path, overrides: list[str]) -> None:
    params = load_params(params_file, overrides)
    module = importlib.import_module(f"pipeline.{name}")
    guarded(name, lambda: module.main(params))


def guarded(name: str, action) -> None:
    """Run `action`; errors the user can fix become a one-line message instead of a traceback."""
    try:
        action()
    except KeyboardInterrupt:
        fail(f"{name} interrupted")
    except Exception as err:
        # Errors folio raises on purpose (bad checksum, failed validation, ...) and missing inputs
        # are the user's to fix: a message, not a traceback.
        if isinstance(err, FileNotFoundError) or type(err).__module__.split(".")[0] in ("folio", "pipeline"):
            fail(f"{name}: {err}")
        raise


def _stage_command(name: str):
    def command(
        params_file: Path = PARAMS_OPTION,
        overrides: Optional[list[str]] = SET_OPTION,
    ) -> None:
        run_stage(name, params_file, overrides or [])

    command.__name__ = name
    return command


for _name, _help in STAGES.items():
    app.command(_name, help=_help)(_stage_command(_name))


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
    quantize: Optional[Quantization] = typer.Option(None, help="run the model in int8 (CPU)"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="KV cache (--no-cache recomputes every token)"),
    compile_step: bool = typer.Option(False, "--compile", help="torch.compile the decoding step: ~10 s once, then faster (long generations)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads [default: one per core]; 1 is often faster on a busy machine"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of streaming text"),
) -> None:
    """Continue PROMPT with a trained checkpoint, streaming tokens to the terminal."""
    from pipeline import generate as run

    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    repetition_penalty=repetition_penalty, stop=tuple(stop or ()), seed=seed,
                    num_samples=num_samples, beams=beams, length_penalty=length_penalty,
                    compile=compile_step)
    guarded("generate", lambda: run.generate(
        prompt, settings, checkpoint_path, tokenizer_dir, model_uri,
        quantize.value if quantize else None, as_json, cache, threads))


@app.command()
def attention(
    prompt: str = typer.Argument(..., help="text whose attention to draw"),
    out: Path = typer.Option(Path("reports/attention.png"), "--out", "-o", help="PNG file to write"),
    checkpoint_path: Path = typer.Option(Path("models/best.pt"), "--checkpoint", "-c", help="checkpoint file"),
    tokenizer_dir: Path = typer.Option(Path("data/tokenizer"), "--tokenizer", help="tokenizer directory"),
) -> None:
    """Save a PNG grid of PROMPT's attention maps: one per layer (rows) and head (columns)."""
    from pipeline import generate as run

    guarded("attention", lambda: typer.echo(f"wrote {run.attention(prompt, out, checkpoint_path, tokenizer_dir)}"))


@app.command()
def promote(
    version: Optional[int] = typer.Argument(None, help="the model version to give the alias"),
    alias: Optional[str] = typer.Option(None, help="the alias to move (default: registry.alias)"),
    best: bool = typer.Option(False, "--best", help="pick the version lowest on registry.metric"),
    rollback: bool = typer.Option(False, "--rollback", help="return the alias to its previous holder"),
    force: bool = typer.Option(False, "--force", help="move the alias even if VERSION does not beat the holder"),
    model_name: Optional[str] = typer.Option(None, "--model", help="registered model (default: registry.model_name, or folio-<data.name>)"),
    params_file: Path = PARAMS_OPTION,
) -> None:
    """Move an alias (@champion) to VERSION only if it beats the holder on registry.metric."""
    from pipeline import registry

    if (version is not None) + best + rollback != 1:
        fail("give exactly one of VERSION, --best or --rollback")
    params = load_params(params_file, [])
    name = model_name or params.registered_model_name()
    guarded("promote", lambda: typer.echo(registry.move_alias(
        name, alias or params.registry.alias, params.registry.metric,
        version=version, best=best, rollback=rollback, force=force).summary(name)))


@app.command()
def runs(limit: int = typer.Option(10, min=1, help="how many recent runs to show")) -> None:
    """Recent runs side by side: differing params, val loss, bits/byte, tokens/s, versions."""
    from pipeline.runs import show

    guarded("runs", lambda: show(limit))


@app.command("import-gpt2")
def import_gpt2(
    directory: Path = typer.Argument(..., help="a Hugging Face GPT-2 directory: config.json + model.safetensors or pytorch_model.bin"),
    out: Path = typer.Option(Path("checkpoints/gpt2.pt"), "--out", "-o", help="folio checkpoint to write"),
) -> None:
    """Convert Hugging Face GPT-2 weights (gpt2 … gpt2-xl, any GPT2Config) into a folio checkpoint
    with tokenizer tiktoken:gpt2; fine-tune it with train.init_from. Nothing is downloaded."""
    from pipeline import hf

    guarded("import-gpt2", lambda: hf.import_gpt2(directory, out))


@app.command("export-hf")
def export_hf(
    out_dir: Path = typer.Argument(..., help="directory to write (config.json, model.safetensors)"),
    checkpoint_path: Path = typer.Option(Path("models/best.pt"), "--checkpoint", "-c", help="checkpoint file"),
) -> None:
    """Write a GPT-2-architecture folio checkpoint as a Hugging Face directory that
    GPT2LMHeadModel.from_pretrained loads."""
    from pipeline import hf

    guarded("export-hf", lambda: hf.export_hf(out_dir, checkpoint_path))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
