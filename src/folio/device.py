"""Choosing the device and precision, each with the reason, so logs can say why."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from folio.errors import FolioError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceUnavailable(FolioError, RuntimeError):
    """An explicitly requested device that this machine (or this torch build) does not have."""


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    reason: str

    @property
    def type(self) -> str:
        return self.device.type


def pick_device(requested: str = "auto") -> DeviceChoice:
    """`auto` takes cuda, then mps, then cpu; an explicit device must be available."""
    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, but no GPU is visible"
            raise DeviceUnavailable(f"device {requested!r} requested, but CUDA is not available "
                                    f"(torch {torch.__version__} is {build}); ask for 'auto' or 'cpu'")
        if requested.startswith("cuda:") and int(requested[5:]) >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {requested!r} requested, but this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s); ask for 'cuda' or 'auto'")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise DeviceUnavailable("device 'mps' requested, but MPS is not available; ask for 'auto' or 'cpu'")
        return DeviceChoice(torch.device(requested), "requested")
    if torch.cuda.is_available():
        return DeviceChoice(torch.device("cuda"), f"auto: CUDA ({torch.cuda.get_device_name()})")
    if torch.backends.mps.is_available():
        return DeviceChoice(torch.device("mps"), "auto: Apple MPS")
    return DeviceChoice(torch.device("cpu"), "auto: no CUDA or MPS")


def cpu_bfloat16_units() -> list[str]:
    """The bf16 matmul units this CPU has (AMX-BF16, AVX512-BF16), from torch's public
    `torch.cpu.get_capabilities()`: with either, bf16 matmuls run several times faster than
    float32; without, bf16 is emulated and slower."""
    capabilities = torch.cpu.get_capabilities()
    return [name for key, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
            if capabilities.get(key)]


def cuda_bfloat16_native() -> bool:
    """bf16 in hardware (compute capability 8.0+: Ampere and later). `including_emulation=False`:
    older GPUs emulate bf16, slowly, and would otherwise report it as supported."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def pick_dtype(requested: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The training compute dtype and why. `auto`: bf16 autocast where bf16 is fast (CUDA GPUs
    with native bf16, CPUs with AMX or AVX512-BF16), fp16 autocast with a GradScaler on CUDA GPUs
    without bf16, float32 elsewhere (other CPUs, where bf16 is slower than float32, and MPS)."""
    if requested != "auto":
        if requested == "bfloat16" and device.type == "cpu" and not cpu_bfloat16_units():
            return DTYPES[requested], ("requested, but this CPU has neither AMX nor AVX512-BF16: "
                                       "bfloat16 is slower than float32 here (auto picks float32)")
        return DTYPES[requested], "requested"
    if device.type == "cuda":
        capability = "compute capability {}.{}".format(*torch.cuda.get_device_capability(device))
        if cuda_bfloat16_native():
            return torch.bfloat16, f"auto: this GPU ({capability}) has native bfloat16"
        return torch.float16, (f"auto: this GPU ({capability}) has no native bfloat16; "
                               "float16 with a gradient scaler")
    if device.type == "cpu":
        units = cpu_bfloat16_units()
        if units:
            return torch.bfloat16, f"auto: this CPU has {' and '.join(units)}"
        return torch.float32, ("auto: this CPU has neither AMX nor AVX512-BF16, where bfloat16 "
                               "is slower than float32")
    return torch.float32, f"auto: float32 on {device.type}"


def inference_dtype(device: torch.device) -> torch.dtype:
    """What evaluation and generation compute in: bf16 on CUDA that supports it, float32 elsewhere
    (on a CPU, float32 inference is fast enough and keeps the reported metrics exact)."""
    return torch.bfloat16 if device.type == "cuda" and cuda_bfloat16_native() else torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (default: `inference_dtype`); float32 needs no autocast."""
    dtype = dtype or inference_dtype(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def enable_tf32(device: torch.device) -> None:
    """TF32 matmuls on CUDA: ~free speed for float32 work on Ampere and later."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_deterministic(device: torch.device) -> None:
    """On CUDA, PyTorch's deterministic kernels (cuBLAS workspace, cuDNN, no autotuning); an op
    without one warns instead of failing. CPU kernels here are deterministic already, for a
    fixed thread count."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
