"""`make setup` takes the torch build from TORCH and TORCH_INDEX (checked with `make -n`)."""

import shutil
import subprocess

import pytest

from tests.conftest import PROJECT


def pip_commands(*variables: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "-B", "setup", "VENV=/nonexistent-venv", *variables], cwd=PROJECT,
                         capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if "pip install" in line]


def test_the_default_torch_comes_from_pips_own_index():
    assert pip_commands()[0] == '/nonexistent-venv/bin/python -m pip install --quiet "torch==2.13.0"'


def test_torch_index_picks_the_build():
    cpu = "https://download.pytorch.org/whl/cpu"
    assert pip_commands(f"TORCH_INDEX={cpu}")[0].endswith(f'"torch==2.13.0" --index-url {cpu}')
    assert pip_commands("TORCH=torch==2.13.0+cu128")[0].endswith('"torch==2.13.0+cu128"')
    assert pip_commands(f"TORCH_INDEX={cpu}")[1].endswith('-c constraints.txt -e ".[dev,eval]"')  # the project after
