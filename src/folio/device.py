"""Choosing the device and precision, each with the reason, so logs can say why."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("device 'mps' requested but MPS is not available")
        return DeviceChoice(torch.device(requested), "requested")
    if torch.cuda.is_available():
        return DeviceChoice(torch.device("cuda"), f"auto: CUDA ({torch.cuda.get_device_name()})")
    if torch.backends.mps.is_available():
        return DeviceChoice(torch.device("mps"), "auto: Apple MPS")
    return DeviceChoice(torch.device("cpu"), "auto: no CUDA or MPS")


def cpu_has_fast_bfloat16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls run several times faster than float32 (else slower)."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def pick_dtype(requested: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The compute dtype and why: `auto` is bf16 autocast on CUDA that supports it, else float32
    (bf16 matmuls are slower than float32 on most CPUs; the reason says so when asked for one)."""
    if requested != "auto":
        if requested == "bfloat16" and device.type == "cpu" and not cpu_has_fast_bfloat16():
            return DTYPES[requested], ("requested, but this CPU has neither AMX nor AVX512-BF16: "
                                       "bfloat16 is slower than float32 here (train.dtype=auto picks float32)")
        return DTYPES[requested], "requested"
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16, "auto: CUDA supports bfloat16"
    return torch.float32, f"auto: float32 on {device.type}"


def autocast_for(device: torch.device, dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (default: the `auto` choice); float32 needs no autocast."""
    dtype = dtype or pick_dtype("auto", device)[0]
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def enable_tf32(device: torch.device) -> None:
    """TF32 matmuls on CUDA: ~free speed for float32 work on Ampere and later."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
