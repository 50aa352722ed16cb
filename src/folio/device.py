"""Choosing the device and precision, each with the reason, so logs can say why."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


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


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA that supports it; full float32 elsewhere (bf16 is slower on CPUs)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
