"""`folio doctor`: what it reports matches what folio decides, it imports none of the heavy stack
but torch, and each thing it warns about says so in a line."""

import json
import subprocess
import sys

import torch
from typer.testing import CliRunner

from folio.device import pick_device, pick_dtype
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
    assert r["training"]["dtype_reason"] == reason
    assert r["tracking"] == {"uri": f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}", "kind": "local store",
                             "exists": False}
    assert r["dvc"] == {"default": None, "remotes": {}, "project": False}


def test_it_imports_neither_mlflow_nor_great_expectations_nor_dvc(tmp_path):
    code = ("import sys; from pipeline.commands import doctor; doctor.report(); "
            "print([m for m in ('mlflow', 'great_expectations', 'dvc') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_tracking_server_that_does_not_answer_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on port 9
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0
    assert "tracking  http://127.0.0.1:9 (does not answer)" in result.output
    assert "warning: the MLflow tracking server at http://127.0.0.1:9 does not answer" in result.output


def test_the_dvc_remote_is_read_from_the_project_config(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(
        "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://folio-ml/dvc-cache\n")
    assert doctor.dvc_remote(tmp_path) == {"default": "storage", "remotes": {"storage": "s3://folio-ml/dvc-cache"},
                                           "project": True}
    r = {"versions": {"python": "3"}, "training": {"device": "cpu", "device_reason": "r", "dtype": "float32",
                                                  "dtype_reason": "r"},
         "tracking": {"uri": "sqlite:///x", "kind": "local store", "exists": True},
         "dvc": doctor.dvc_remote(tmp_path), "tiktoken_cache": {"dir": "/c", "files": 0}, "warnings": []}
    assert "dvc       remote: storage = s3://folio-ml/dvc-cache" in doctor.text(r)


def test_a_tiktoken_encoding_missing_from_the_cache_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    (tmp_path / "params.yaml").write_text("tokenizer:\n  kind: tiktoken:gpt2\n")
    info, warnings = doctor.tiktoken_cache(tmp_path)
    assert info == {"dir": str(tmp_path / "empty-cache"), "files": 0, "params_encoding": "tiktoken:gpt2: missing"}
    assert len(warnings) == 1 and "tiktoken encoding 'gpt2' needs" in warnings[0]


def test_a_cpu_without_bf16_units_and_a_cuda_build_without_a_gpu_are_warned(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": False})
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    choice, warnings = doctor.training_choice()
    assert choice["dtype"] == "float32"
    assert any("neither AMX nor AVX512-BF16" in w for w in warnings)
    assert any("built for CUDA 12.8 but sees no GPU" in w for w in warnings)


def test_a_params_file_that_is_not_yaml_is_a_warning_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("tokenizer: [\n")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0
    assert f"warning: {tmp_path / 'params.yaml'} is not valid YAML" in result.output
