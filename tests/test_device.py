"""`train.dtype: auto` per device, each branch with the hardware detection faked."""

import pytest
import torch

from folio import device as dev

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


def fake_cpu(monkeypatch, **flags):
    caps = {"amx_bf16": False, "avx512_bf16": False, "avx2": True, **flags}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)


def fake_gpu(monkeypatch, capability, native_bf16):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native_bf16 or including_emulation)


@pytest.mark.parametrize("flags, units", [({"amx_bf16": True}, "AMX-BF16"),
                                          ({"avx512_bf16": True}, "AVX512-BF16"),
                                          ({"amx_bf16": True, "avx512_bf16": True}, "AMX-BF16 and AVX512-BF16")])
def test_a_cpu_with_bf16_units_trains_in_bfloat16(monkeypatch, flags, units):
    fake_cpu(monkeypatch, **flags)
    assert dev.pick_dtype("auto", CPU) == (torch.bfloat16, f"auto: this CPU has {units}")
    assert dev.pick_dtype("bfloat16", CPU) == (torch.bfloat16, "requested")


def test_a_cpu_without_them_trains_in_float32_and_a_request_for_bf16_is_warned(monkeypatch):
    fake_cpu(monkeypatch)  # a laptop: AVX2 only
    dtype, reason = dev.pick_dtype("auto", CPU)
    assert dtype == torch.float32 and "neither AMX nor AVX512-BF16" in reason
    dtype, reason = dev.pick_dtype("bfloat16", CPU)
    assert dtype == torch.bfloat16 and "slower than float32" in reason
    assert dev.inference_dtype(CPU) == torch.float32  # evaluation stays exact on any CPU


def test_a_gpu_with_native_bf16_trains_in_bfloat16(monkeypatch):
    fake_gpu(monkeypatch, (9, 0), native_bf16=True)  # H100
    assert dev.pick_dtype("auto", CUDA) == (
        torch.bfloat16, "auto: this GPU (compute capability 9.0) has native bfloat16")
    assert dev.inference_dtype(CUDA) == torch.bfloat16


def test_a_gpu_that_only_emulates_bf16_trains_in_float16_with_a_scaler(monkeypatch):
    """A T4 or V100 reports bf16 as supported when emulation counts: auto must not take it."""
    fake_gpu(monkeypatch, (7, 5), native_bf16=False)
    dtype, reason = dev.pick_dtype("auto", CUDA)
    assert dtype == torch.float16
    assert reason == ("auto: this GPU (compute capability 7.5) has no native bfloat16; "
                      "float16 with a gradient scaler")
    assert dev.inference_dtype(CUDA) == torch.float32


def test_mps_trains_in_float32():
    assert dev.pick_dtype("auto", MPS) == (torch.float32, "auto: float32 on mps")


def test_this_machines_detection_uses_public_torch_apis():
    """No fakes: the real capability table answers (and the choice is one of the three)."""
    dtype, reason = dev.pick_dtype("auto", CPU)
    assert dtype in (torch.bfloat16, torch.float32) and reason.startswith("auto: ")
