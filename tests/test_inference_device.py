"""Inference runs on the chosen device: evaluate and sample on `train.device`, `folio generate` and
`folio attention` on `--device`, the registered pyfunc model on its model_config's `device` (all:
auto = CUDA when present, by folio.device.pick_device's rule). Checkpoints are read onto the device
(map_location) and the model moved there; generation computes in the device's inference dtype;
int8 stays on the CPU (auto falls back to it, saying so; a GPU named with it is refused).

This machine has no GPU, so the CUDA cases run with a fake one (`fake_gpu`: what each fake stands
for is in its docstring), and the CPU cases run for real, end to end on tiny checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

import folio.device
from folio import checkpoint
from folio.device import DeviceUnavailable, Hardware
from folio.generate import GenerationConfig, complete, for_generation
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer, save_tokenizer
from pipeline import artifacts
from pipeline.cli import app
from pipeline.commands import generate as generate_command
from pipeline.params import validate
from pipeline.stages import evaluate, prepare, sample, tokenize, train
from tests.conftest import PROJECT, record_gate_passes

runner = CliRunner()
H100 = Hardware(gpu="NVIDIA H100 80GB HBM3", gpu_capability=(9, 0), torch_cuda="12.8")


@pytest.fixture
def files(tmp_path):
    """A tiny checkpoint (random weights) and its character tokenizer."""
    torch.manual_seed(0)
    tok = CharTokenizer.train("abcdefgh \n")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16))
    ckpt = tmp_path / "best.pt"
    checkpoint.save(ckpt, {"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 1,
                           "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest}})
    save_tokenizer(tok, tmp_path / "tokenizer")
    return ckpt, tmp_path / "tokenizer"


def install_fake_gpu(monkeypatch) -> dict:
    """A machine with one CUDA GPU, as far as folio's code can tell, while everything still runs
    on the CPU. Each fake stands for one thing a real GPU machine does:
    - folio.device.torch_hardware reports an H100: what torch sees there (so auto picks cuda);
    - torch.cuda.is_available / device_count say 1 GPU: what pick_device checks for `cuda`;
    - torch.load records its map_location and reads onto the CPU: the read onto the GPU;
    - nn.Module.to records a cuda device and leaves the module where it is: the move to the GPU.
    Returns the record: {"map_location": [...], "to": [...]}."""
    record = {"map_location": [], "to": []}
    monkeypatch.setattr(folio.device, "torch_hardware", lambda device=None: H100)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    real_load, real_to = torch.load, torch.nn.Module.to

    def load(*args, map_location=None, **kwargs):
        record["map_location"].append(torch.device(map_location))
        return real_load(*args, map_location="cpu", **kwargs)

    def to(self, *args, **kwargs):
        device = kwargs.get("device", args[0] if args and isinstance(args[0], (str, torch.device)) else None)
        if device is not None and torch.device(device).type == "cuda":
            record["to"].append(torch.device(device))
            return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(torch.nn.Module, "to", to)
    return record


@pytest.fixture
def fake_gpu(monkeypatch):
    """`install_fake_gpu` for the whole test."""
    return install_fake_gpu(monkeypatch)


CUDA = torch.device("cuda")


# ---- folio generate / attention -----------------------------------------------------------------


def test_generate_loads_onto_the_gpu_auto_picks(files, fake_gpu):
    """With a GPU (faked), `--device auto` reads the checkpoint onto cuda and moves the model there."""
    ckpt, tokenizer_dir = files
    model, _ = generate_command.load(ckpt, tokenizer_dir, device="auto")
    assert fake_gpu["map_location"] == [CUDA] and fake_gpu["to"] == [CUDA]
    assert not model.training


def test_generate_on_the_cpu_when_asked_even_with_a_gpu(files, fake_gpu):
    """`--device cpu` on a machine with a GPU (faked) stays on the CPU, end to end."""
    ckpt, tokenizer_dir = files
    result = runner.invoke(app, ["generate", "abc", "--checkpoint", str(ckpt), "--tokenizer", str(tokenizer_dir),
                                 "--max-new-tokens", "12", "--seed", "1", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["settings"]["device"] == "cpu" and out["completions"][0]["new_tokens"] == 12
    assert fake_gpu["map_location"] == [torch.device("cpu")] and fake_gpu["to"] == []


def test_generate_device_cpu_end_to_end(files):
    """No fake: `--device cpu` generates on this machine, and says where in --json."""
    ckpt, tokenizer_dir = files
    result = runner.invoke(app, ["generate", "abc", "--checkpoint", str(ckpt), "--tokenizer", str(tokenizer_dir),
                                 "--max-new-tokens", "10", "--seed", "3", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["settings"]["device"] == "cpu" and len(out["completions"][0]["text"]) == 10


def test_generate_on_cuda_without_a_gpu_is_one_line(files):
    """No fake: this machine has no CUDA, so `--device cuda` is DeviceUnavailable, one line."""
    ckpt, tokenizer_dir = files
    result = runner.invoke(app, ["generate", "abc", "--checkpoint", str(ckpt), "--tokenizer", str(tokenizer_dir),
                                 "--device", "cuda"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("error: generate: device 'cuda' requested, but CUDA is not available")
    assert len(result.output.strip().splitlines()) == 1


def test_a_device_that_is_not_one_is_one_line(files):
    ckpt, tokenizer_dir = files
    result = runner.invoke(app, ["generate", "abc", "--checkpoint", str(ckpt), "--tokenizer", str(tokenizer_dir),
                                 "--device", "gpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--device 'gpu' is not a device; use auto, cpu, cuda, cuda:N or mps" in result.output


def test_int8_with_auto_runs_on_the_cpu_and_says_so(files, fake_gpu, capsys):
    """int8 is a CPU path: with a GPU (faked) and `--device auto`, it loads onto the CPU, with a note."""
    ckpt, tokenizer_dir = files
    model, _ = generate_command.load(ckpt, tokenizer_dir, quantization="int8", device="auto")
    assert fake_gpu["map_location"] == [torch.device("cpu")] and fake_gpu["to"] == []
    assert next(model.parameters()).device.type == "cpu"
    err = capsys.readouterr().err
    assert "note: --quantize int8 runs on the CPU only: generating on the CPU, not on cuda" in err


def test_int8_with_a_gpu_named_is_refused_in_one_line(files, fake_gpu):
    """With a GPU (faked) present, `--quantize int8 --device cuda` is refused before any loading."""
    ckpt, tokenizer_dir = files
    result = runner.invoke(app, ["generate", "abc", "--checkpoint", str(ckpt), "--tokenizer", str(tokenizer_dir),
                                 "--quantize", "int8", "--device", "cuda"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: generate: --quantize int8 runs on the CPU only, not on cuda; pass --device cpu" in result.output
    assert fake_gpu["map_location"] == []


def test_attention_loads_onto_the_gpu_auto_picks(files, fake_gpu, tmp_path):
    """`folio attention` with a GPU (faked): the same load onto cuda; the PNG is written."""
    ckpt, tokenizer_dir = files
    result = runner.invoke(app, ["attention", "abc", "--out", str(tmp_path / "a.png"), "--checkpoint", str(ckpt),
                                 "--tokenizer", str(tokenizer_dir)])
    assert result.exit_code == 0, result.output
    assert fake_gpu["map_location"] == [CUDA] and fake_gpu["to"] == [CUDA]


def test_generation_computes_in_the_devices_inference_dtype(files, monkeypatch):
    """On a CUDA GPU with native bf16 the weights, activations and KV cache are bfloat16. The fake:
    folio.generate.inference_dtype answers bfloat16, as it does for such a GPU, so the bf16 path
    (weights cast, cache allocated in the weights' dtype, sampling in float32) runs here on the
    CPU, with and without the cache, and with beams; on a float32 device the model is unchanged."""
    ckpt, tokenizer_dir = files
    tok = CharTokenizer.train("abcdefgh \n")
    _, model = checkpoint.load_model(ckpt, "cpu", tok.digest)
    assert for_generation(model) is model and next(model.parameters()).dtype == torch.float32
    monkeypatch.setattr("folio.generate.inference_dtype", lambda device: torch.bfloat16)
    bf16 = for_generation(model)
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    config = GenerationConfig(max_new_tokens=40, temperature=0, seed=0)  # past block_size 16: restarts
    cached, recomputed = (complete(bf16, tok, ["abc"], config, use_cache)[0] for use_cache in (True, False))
    assert len(cached.token_ids) == 40 and len(recomputed.token_ids) == 40
    beams = complete(bf16, tok, ["abc"], GenerationConfig(max_new_tokens=8, beams=2, num_samples=2))
    assert [len(c.token_ids) for c in beams] == [8, 8]


# ---- the registered pyfunc model ------------------------------------------------------------------


def test_pyfunc_model_loads_onto_its_model_configs_device(files, fake_gpu):
    """The registered model's load_context (what mlflow.pyfunc.load_model runs) with a GPU (faked):
    no device in model_config means auto, so cuda; model_config {"device": "cpu"} keeps the CPU."""
    from pipeline.tracking.pyfunc_model import FolioGPT

    ckpt, tokenizer_dir = files
    artifacts_ = {"checkpoint": str(ckpt), "tokenizer": str(tokenizer_dir)}
    FolioGPT().load_context(SimpleNamespace(artifacts=artifacts_, model_config={}))
    assert fake_gpu["map_location"] == [CUDA] and fake_gpu["to"] == [CUDA]
    served = FolioGPT()
    served.load_context(SimpleNamespace(artifacts=artifacts_, model_config={"device": "cpu"}))
    assert fake_gpu["map_location"][-1] == torch.device("cpu") and fake_gpu["to"] == [CUDA]
    (text,) = served.predict(None, ["abc"], {"max_new_tokens": 5, "seed": 1})
    assert text.startswith("abc") and len(text) == 8


def test_a_registered_model_loads_onto_the_device_asked(files, tmp_path, monkeypatch):
    """`folio generate --model`: registry.load_generator hands the device to the registered model
    (its model_config, which register logs as {"device": "auto"}). With a GPU (faked): no device
    means auto, so cuda; torch.device("cpu") keeps it on the CPU."""
    from pipeline.params import SampleParams
    from pipeline.tracking import registry, store as tracking
    from tests.servers import tracking_at

    ckpt, tokenizer_dir = files
    with tracking_at(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        monkeypatch.chdir(tmp_path)
        tracking.setup()
        with tracking.mlflow().start_run() as run:
            pass
        info = registry.log_model(run.info.run_id, ckpt, tokenizer_dir, SampleParams(prompts=["abc"], max_new_tokens=4))
        registry.register(info.model_uri, "folio-device", {})
        record = install_fake_gpu(monkeypatch)
        model, _ = registry.load_generator("models:/folio-device/1", torch.device("cpu"))
        assert record["map_location"] == [torch.device("cpu")] and record["to"] == []
        registry.load_generator("models:/folio-device/1")
        assert record["map_location"][-1] == CUDA and record["to"] == [CUDA]


# ---- the evaluate and sample stages ---------------------------------------------------------------

STAGE_PARAMS = {
    "data": {"name": "t", "url": "file:///unused", "sha256": "", "val_fraction": 0.1},
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
    "train": {"max_iters": 4, "batch_size": 4, "eval_interval": 2, "eval_iters": 1, "warmup_iters": 1,
              "device": "cpu"},
    "evaluate": {"batch_size": 8},
    "sample": {"prompts": ["Line"], "max_new_tokens": 12},
}


def _params(device: str):
    return validate({**STAGE_PARAMS, "train": {**STAGE_PARAMS["train"], "device": device}})


def test_evaluate_and_sample_run_on_train_device(stage_project, monkeypatch):
    """Trained on the CPU, then: evaluate with train.device cpu (for real), and with auto on a
    machine with a GPU (faked): the checkpoint is read onto cuda and the model moved there, and,
    since the fake computes on the CPU, the metrics are byte for byte the CPU's. sample likewise.
    train.device cuda on this machine (no fake) is DeviceUnavailable."""
    cpu = _params("cpu")
    record_gate_passes(cpu)
    tokenize.main(cpu)
    prepare.main(cpu)
    record_gate_passes(cpu)
    train.main(cpu)
    evaluate.main(cpu)
    on_cpu = artifacts.METRICS.read_bytes()
    with pytest.raises(DeviceUnavailable, match="device 'cuda' requested, but CUDA is not available"):
        evaluate.main(_params("cuda"))

    with monkeypatch.context() as patch:
        record = install_fake_gpu(patch)
        evaluate.main(_params("auto"))
        assert record["map_location"] == [CUDA] and record["to"] == [CUDA]
        assert artifacts.METRICS.read_bytes() == on_cpu
        sample.main(_params("auto"))
        assert record["map_location"] == [CUDA, CUDA] and record["to"] == [CUDA, CUDA]
    assert artifacts.SAMPLES.read_text().count("## Prompt") == 1 and artifacts.ATTENTION.exists()


# ---- the README's beam example ----------------------------------------------------------------


def _readme_beam_example() -> list[str]:
    """The arguments of the README's `folio generate ... --beams` line, as bash parses them."""
    (line,) = [l for l in (PROJECT / "README.md").read_text().splitlines()
               if l.startswith("folio generate") and "--beams" in l]
    command = line.split("  #")[0].removeprefix("folio generate")
    parsed = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True, text=True, check=True)
    return parsed.stdout.split("\0")[:-1]


def test_the_readme_beam_example_gives_text_on_the_trained_model(tmp_path):
    """The README's beam example (run as printed, with --json) on the trained models/best.pt:
    every hypothesis shown holds text (a stop string right after the prompt would leave none)."""
    ckpt, tokenizer_dir = PROJECT / "models" / "best.pt", PROJECT / "data" / "tokenizer"
    if not ckpt.is_file() or not (tokenizer_dir / "tokenizer.json").is_file():
        pytest.skip(f"no trained model at {ckpt} (with {tokenizer_dir}): `make repro` trains it")
    shutil.copyfile(ckpt, tmp_path / "best.pt")  # another process may rewrite models/ meanwhile
    shutil.copytree(tokenizer_dir, tmp_path / "tokenizer")
    args = _readme_beam_example()
    assert "--beams" in args and "--stop" in args
    result = runner.invoke(app, ["generate", *args, "--checkpoint", str(tmp_path / "best.pt"),
                                 "--tokenizer", str(tmp_path / "tokenizer"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    completions = json.loads(result.output)["completions"]
    assert len(completions) == int(args[args.index("--num-samples") + 1])
    assert all(c["text"].strip() for c in completions), completions
