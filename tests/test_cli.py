"""The CLI: every stage is a command, --help is quick (no torch/mlflow/GX on import), bad params
give a one-line error naming key and value."""

import subprocess
import sys

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.stages import STAGES
from tests.conftest import PROJECT

runner = CliRunner()


COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert {*STAGES, "generate", "attention", "promote", "runs", "import-gpt2", "export-hf"} <= set(COMMANDS)
    for name in COMMANDS:
        assert name in result.output


def test_every_command_has_help():
    for name in COMMANDS:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage" in result.output


def test_importing_the_cli_loads_no_heavy_library():
    code = ("import sys, pipeline.cli; heavy = {'torch', 'mlflow', 'great_expectations', 'dvc'}"
            " & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_override_is_reported_with_key_and_value(tmp_path):
    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    result = runner.invoke(app, ["tokenize", "--params", str(tmp_path / "params.yaml"),
                                 "--set", "train.batch_size=0"])
    assert result.exit_code == 1
    assert "train.batch_size" in result.output and "0" in result.output
