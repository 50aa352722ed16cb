"""The container image without building it: the Containerfile's targets, build arguments, user and
layer order; what the build context leaves out; the entrypoint's dispatch; and that `make image`
and scripts/image_check.sh say why in one line where there is no podman or docker. The real build
and run are scripts/image_check.sh's (run by .ci/run), not the suite's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT

CONTAINERFILE = PROJECT / "Containerfile"
ENTRYPOINT = PROJECT / "scripts" / "container-entrypoint.sh"
IMAGE_CHECK = PROJECT / "scripts" / "image_check.sh"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), " ".join(rest.split())))
    return pairs


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions after its FROM; the ones before the first FROM under ''."""
    result: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for word, rest in instructions(CONTAINERFILE.read_text()):
        if word == "FROM":
            current = rest.split()[-1] if " AS " in rest.upper() else rest
            result[current] = [(word, rest)]
        else:
            result[current].append((word, rest))
    return result


def arg_default(stage: list[tuple[str, str]], name: str) -> str | None:
    for word, rest in stage:
        if word == "ARG" and rest.split("=", 1)[0] == name:
            return rest.split("=", 1)[1] if "=" in rest else ""
    return None


def test_cpu_and_cuda_targets_built_on_the_base_argument():
    found = stages()
    assert {"cpu", "cuda"} <= found.keys()
    assert arg_default(found[""], "BASE"), "BASE is a build argument with a default"
    assert found["base"][0] == ("FROM", "${BASE} AS base")
    assert found["cpu"][0][1].startswith("base ") and found["cuda"][0][1].startswith("base ")
    assert list(found)[-1] == "cpu", "a build without --target gives the cpu image"


def test_each_target_takes_torch_from_its_torch_index_argument():
    found = stages()
    assert arg_default(found["cpu"], "TORCH_INDEX").endswith("/whl/cpu")
    assert re.search(r"/whl/cu\d+$", arg_default(found["cuda"], "TORCH_INDEX"))
    for target in ("cpu", "cuda"):
        runs = " ".join(rest for word, rest in found[target] if word == "RUN")
        assert '--index-url "$TORCH_INDEX"' in runs
        assert "--extra-index-url" not in runs  # never a second index next to torch's


def test_the_targets_differ_only_in_their_torch_index_and_cuda_environment():
    found = stages()
    def steps(target):
        return [(word, rest) for word, rest in found[target][1:]
                if not (word == "ARG" and rest.startswith("TORCH_INDEX=")) and word != "ENV"]
    assert steps("cpu") == steps("cuda")


def test_a_non_root_user_runs_each_target():
    found = stages()
    for target in ("cpu", "cuda"):
        users = [rest for word, rest in found[target] if word == "USER"]
        assert users and users[-1] not in ("root", "0", "0:0"), target
    assert "useradd" in " ".join(rest for word, rest in found["base"] if word == "RUN")


def test_dependencies_install_in_a_layer_that_only_pyproject_and_constraints_feed():
    for target in ("cpu", "cuda"):
        steps = stages()[target]
        copies = [i for i, (word, _) in enumerate(steps) if word in ("COPY", "ADD")]
        install = next(i for i, (word, rest) in enumerate(steps)
                       if word == "RUN" and "-c constraints.txt" in rest)
        before = [steps[i][1] for i in copies if i < install]
        assert len(before) == 1, before
        assert before[0].split()[:-1] == ["pyproject.toml", "constraints.txt"]
        source = [steps[i][1] for i in copies if i > install]
        assert source and source[0].split()[-2:] == [".", "/app"], "the source comes after"


def test_the_default_command_is_folio_serve_and_the_stores_are_volumes():
    base = dict(stages()["base"][1:])
    assert base["ENTRYPOINT"] == '["/app/scripts/container-entrypoint.sh"]'
    assert base["CMD"].startswith('["folio", "serve"')
    assert base["VOLUME"] == '["/app/data", "/app/models", "/app/mlflow"]'
    assert "MLFLOW_TRACKING_URI=sqlite:////app/mlflow/mlflow.db" in base["ENV"]


def test_the_build_context_leaves_out_the_environment_data_models_and_stores():
    ignored = set((PROJECT / ".containerignore").read_text().split())
    assert {".venv", "data", "models", "mlruns", "mlartifacts", "mlflow.db", ".dvc/cache", ".git"} <= ignored
    assert (PROJECT / ".dockerignore").read_text() == (PROJECT / ".containerignore").read_text()


def fake_bin(tmp_path: Path, tools: dict[str, str]) -> Path:
    """A folder for PATH holding bash, the coreutils the scripts call, and `tools` (name: script)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "sh", "dirname", "id", "awk", "cat", "mkdir"):
        if found := shutil.which(name):
            (bin_dir / name).symlink_to(found)
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("args, ran", [
    (["doctor"], "folio doctor"),
    (["--help"], "folio --help"),
    (["folio", "runs", "--wide"], "folio runs --wide"),
    (["dvc", "repro"], "dvc repro"),
    ([], "folio --help"),
])
def test_the_entrypoint_runs_programs_on_path_and_folio_commands_otherwise(tmp_path, args, ran):
    bin_dir = fake_bin(tmp_path, {"folio": 'echo "folio $*"', "dvc": 'echo "dvc $*"'})
    volumes = " ".join(str(tmp_path / name) for name in ("data", "models"))
    proc = subprocess.run([str(ENTRYPOINT), *args], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "FOLIO_VOLUMES": volumes})
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, ran, "")


def test_make_image_without_podman_or_docker_says_so_in_one_line(tmp_path):
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    proc = subprocess.run([make, "image"], cwd=PROJECT, capture_output=True, text=True,
                          env={"PATH": str(fake_bin(tmp_path, {}))})
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode != 0
    assert len(output.splitlines()) == 1 and "needs podman or docker" in output, output


@pytest.mark.parametrize("tools, reason", [
    ({}, "neither podman nor a running docker, and this job cannot apt-get podman"),
    ({"docker": "exit 1"}, "neither podman nor a running docker, and this job cannot apt-get podman"),
])
def test_image_check_skips_saying_why_without_a_container_engine(tmp_path, tools, reason):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tinyshakespeare.txt").write_text("First Citizen:\n")
    bin_dir = fake_bin(tmp_path, tools)
    proc = subprocess.run([str(IMAGE_CHECK)], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "FOLIO_DATA_MIRROR": str(mirror)})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"image check skipped: {reason}\n", "")


def test_image_check_skips_saying_why_without_the_corpus(tmp_path):
    proc = subprocess.run([str(IMAGE_CHECK)], capture_output=True, text=True,
                          env={**os.environ, "FOLIO_DATA_MIRROR": str(tmp_path)})
    assert proc.returncode == 0
    assert proc.stdout == f"image check skipped: no corpus at {tmp_path}/tinyshakespeare.txt " \
                          "(set FOLIO_DATA_MIRROR to its folder)\n"
