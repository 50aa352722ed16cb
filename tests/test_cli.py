"""The CLI: every stage is a command, --help is quick (no torch/mlflow/GX on import), bad params
give a one-line error naming key and value."""

import subprocess
import sys

from typer.testing import CliRunner

from pipeline.cli import STAGES, app
from tests.conftest import PROJECT

runner = CliRunner()


def test_help_lists_every_stage_and_generate():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in [*STAGES, "generate"]:
        assert name in result.output


def test_every_command_has_help():
    for name in [*STAGES, "generate"]:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name


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
