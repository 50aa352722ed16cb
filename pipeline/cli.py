"""The `folio` command: every dvc.yaml stage, plus `generate`.

Stage commands read params.yaml, apply `--set key=value` overrides and validate everything
before any work. Heavy libraries (torch, mlflow, GX) are imported inside the commands so that
`folio --help` answers at once.
"""

from __future__ import annotations

import importlib
import sys
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
    "download": "Download the corpus (the FOLIO_DATA_MIRROR mirror first, if set) and verify its sha256.",
    "validate": "Check the corpus with a Great Expectations suite; write reports/validation/.",
    "tokenize": "Build the tokenizer from the corpus into data/tokenizer/.",
    "prepare": "Encode the corpus and split it into data/prepared/{train,val}.bin.",
    "train": "Train the GPT (resuming an interrupted run), tracked in MLflow.",
    "evaluate": "Loss, bits per character and perplexity of the best checkpoint over the whole val split.",
    "sample": "Generate text from sample.prompts into reports/samples.md.",
}

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="params file to read")
SET_OPTION = typer.Option(
    None, "--set", "-S", help="override a param, e.g. --set train.max_iters=200 (repeatable)"
)


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def run_stage(name: str, params_file: Path, overrides: list[str]) -> None:
    from pipeline import params as params_module

    try:
        params = params_module.load(params_file, overrides)
    except params_module.ParamsError as err:
        fail(str(err))
    module = importlib.import_module(f"pipeline.{name}")
    try:
        module.main(params)
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


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="text to continue"),
    checkpoint_path: Path = typer.Option(Path("models/best.pt"), "--checkpoint", "-c", help="checkpoint file"),
    tokenizer_dir: Path = typer.Option(Path("data/tokenizer"), "--tokenizer", help="tokenizer directory"),
    max_new_tokens: int = typer.Option(500, min=1, help="tokens to generate"),
    temperature: float = typer.Option(0.8, min=0.0, help="0 = greedy"),
    top_k: Optional[int] = typer.Option(200, min=1, help="sample among the k likeliest tokens"),
    seed: Optional[int] = typer.Option(None, help="seed for reproducible samples"),
) -> None:
    """Continue PROMPT with a trained checkpoint, streaming tokens to the terminal."""
    from folio import checkpoint
    from folio.generate import generate_tokens
    from folio.tokenizers import load_tokenizer

    try:
        tokenizer = load_tokenizer(tokenizer_dir)
        model = checkpoint.build_model(checkpoint.load(checkpoint_path), tokenizer.digest)
        prompt_ids = tokenizer.encode(prompt)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    sys.stdout.write(prompt)
    for token in generate_tokens(model, prompt_ids, max_new_tokens, temperature, top_k, seed):
        sys.stdout.write(tokenizer.decode([token]))
        sys.stdout.flush()
    sys.stdout.write("\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
