"""`folio doctor`: what it reports matches what folio decides (with the probe without torch and
with `--torch`), it imports none of torch, mlflow, dvc, GX or pydantic, and each thing it warns
about or is unsure of says so in a line."""

import json
import subprocess
import sys

import torch
from typer.testing import CliRunner

from folio.device import Hardware, pick_device, pick_dtype
from pipeline.cli import app
from pipeline.commands import doctor


def test_the_json_report_is_what_folio_would_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    assert r["versions"]["torch"] == torch.__version__
    assert set(r["versions"]) == {"python", "torch", "dvc", "mlflow", "great-expectations", "tiktoken"}
    device = pick_device("auto")
    dtype, reason = pick_dtype("auto", device.device)
    assert (r["training"]["device"], r["training"]["dtype"]) == (str(device.device), str(dtype).removeprefix("torch."))
    assert (r["training"]["device_reason"], r["training"]["dtype_reason"]) == (device.reason, reason)
    assert r["training"]["probe"] == "without torch"
    assert r["tracking"] == {"uri": f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}", "kind": "local store",
                             "exists": False}
    assert r["dvc"] == {"default": None, "remotes": {}, "project": False}


def test_with_torch_it_reports_the_same_choice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    without, with_torch = (json.loads(CliRunner().invoke(app, ["doctor", "--json", *flag]).output)["training"]
                           for flag in ([], ["--torch"]))
    assert with_torch.pop("probe") == "torch" and without.pop("probe") == "without torch"
    if without["unsure"]:
        assert with_torch["unsure"] == []
        return  # the probe said where it may be wrong; --torch is what settles it
    assert with_torch == without


# the heavy modules imported (a module set to None in sys.modules is blocked, not imported)
IMPORTS = ("print([m for m in ('torch', 'mlflow', 'great_expectations', 'dvc', 'pydantic') "
           "if sys.modules.get(m) is not None])")


def test_it_imports_none_of_torch_mlflow_great_expectations_dvc_or_pydantic(tmp_path):
    code = f"import sys; from pipeline.commands import doctor; doctor.report(); {IMPORTS}"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_runs_with_torch_unimportable_and_says_so_in_a_line_for_torch(tmp_path):
    """torch blocked: `folio doctor` works (the CLI imports pydantic through typer itself, no
    more), and `folio doctor --torch` is one line and exit status 1, not a traceback."""
    block = "import sys; sys.modules['torch'] = None; from pipeline.cli import app"
    run = f"{block}\ntry:\n    app(['doctor'])\nexcept SystemExit as done:\n    print(done.code)\n{IMPORTS}"
    out = subprocess.run([sys.executable, "-c", run], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["0", "['pydantic']"]
    assert f"torch {torch.__version__}" in out.stdout
    out = subprocess.run([sys.executable, "-c", f"{block}; app(['doctor', '--torch'])"], cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("error: doctor: --torch needs torch, which does not import (")
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_tracking_server_that_does_not_answer_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on port 9
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0
    assert "tracking  http://127.0.0.1:9 (does not answer)" in result.output
    assert "warning: the MLflow tracking server at http://127.0.0.1:9 does not answer" in result.output


def report_of(tmp_path, **training) -> dict:
    return {"versions": {"python": "3"},
            "training": {"device": "cpu", "device_reason": "r", "dtype": "float32", "dtype_reason": "r",
                         "probe": "without torch", "unsure": [], **training},
            "tracking": {"uri": "sqlite:///x", "kind": "local store", "exists": True},
            "dvc": doctor.dvc_remote(tmp_path), "tiktoken_cache": {"dir": "/c", "files": 0}, "warnings": []}


def test_the_dvc_remote_is_read_from_the_project_config(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(
        "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://folio-ml/dvc-cache\n")
    assert doctor.dvc_remote(tmp_path) == {"default": "storage", "remotes": {"storage": "s3://folio-ml/dvc-cache"},
                                           "project": True}
    assert "dvc       remote: storage = s3://folio-ml/dvc-cache" in doctor.text(report_of(tmp_path))


def test_the_text_says_how_the_hardware_was_found_and_what_is_unsure(tmp_path):
    lines = doctor.text(report_of(tmp_path, unsure=["nvidia-smi did not answer within 3 s"])).splitlines()
    assert f"probe     without torch: {doctor.PROBE_SOURCES}; `folio doctor --torch` asks torch" in lines
    assert "unsure    nvidia-smi did not answer within 3 s; `folio doctor --torch` asks torch" in lines
    assert "probe     torch" in doctor.text(report_of(tmp_path, probe="torch")).splitlines()


def test_a_tiktoken_encoding_missing_from_the_cache_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    (tmp_path / "params.yaml").write_text("tokenizer:\n  kind: tiktoken:gpt2\n")
    info, warnings = doctor.tiktoken_cache(tmp_path)
    assert info == {"dir": str(tmp_path / "empty-cache"), "files": 0, "params_encoding": "tiktoken:gpt2: missing"}
    assert len(warnings) == 1 and "tiktoken encoding 'gpt2' needs" in warnings[0]


def test_a_cpu_without_bf16_units_and_a_cuda_build_without_a_gpu_are_warned():
    choice, warnings = doctor.training_choice(Hardware(torch_cuda="12.8"), [], use_torch=False)
    assert (choice["device"], choice["dtype"], choice["torch_cuda_build"]) == ("cpu", "float32", "12.8")
    assert len(warnings) == 2
    assert any("neither AMX nor AVX512-BF16" in w for w in warnings)
    assert any("built for CUDA 12.8 but sees no GPU" in w for w in warnings)
    assert doctor.training_choice(Hardware(cpu_bf16_units=("AMX-BF16",)), [], use_torch=False)[1] == []
    _, warnings = doctor.training_choice(Hardware(torch_cuda="12.8", cpu_bf16_units=("AMX-BF16",)),
                                         ["nvidia-smi did not answer within 3 s"], use_torch=False)
    assert warnings == [("torch is built for CUDA 12.8 but sees no GPU (unless the probe is wrong: see `unsure`): "
                         "training runs on the CPU (check the driver and CUDA_VISIBLE_DEVICES)")]


def test_a_gpu_without_native_bf16_and_mps_are_warned():
    t4 = Hardware(gpu="Tesla T4", gpu_capability=(7, 5), torch_cuda="12.8")
    choice, warnings = doctor.training_choice(t4, [], use_torch=False)
    assert (choice["device"], choice["dtype"], choice["gpu"], choice["gpu_capability"]) == (
        "cuda", "float16", "Tesla T4", "7.5")
    assert warnings == ["this GPU (Tesla T4) has no native bfloat16: training uses float16 with a gradient scaler"]
    h100 = Hardware(gpu="NVIDIA H100", gpu_capability=(9, 0), torch_cuda="12.8")
    assert doctor.training_choice(h100, [], use_torch=False)[1] == []
    choice, warnings = doctor.training_choice(Hardware(mps=True), [], use_torch=False)
    assert (choice["device"], choice["dtype"]) == ("mps", "float32")
    assert warnings == ["Apple MPS: training runs in float32 and torch.compile stays off"]


def test_a_params_file_that_is_not_yaml_is_a_warning_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("tokenizer: [\n")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0
    assert f"warning: {tmp_path / 'params.yaml'} is not valid YAML" in result.output
