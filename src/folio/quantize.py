"""int8 inference on CPU: PyTorch's dynamic quantization of the Linear layers.

Weights are stored as int8 (per tensor scale); activations are quantized on the fly, each call,
so no calibration data is needed. The head is quantized like every other Linear, which unties it
from the token embedding (the embedding stays float32): fine for inference, not for training.
`torch.ao.quantization` is deprecated in favour of torchao but still ships with torch 2.13.
torchao (0.18) was slower here in eager mode: its int8 dynamic-activation and weight-only
configs ran a 10.7M-parameter model at about 0.4x and 0.6x float32 speed, where this runs faster
than float32 (see reports/bench_generate.md).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from folio.model import GPT

MODES = ("int8",)


def quantize_int8(model: GPT) -> GPT:
    """An int8 copy of `model` for CPU inference; `model` itself is left unchanged."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantized tensor).*")
        warnings.filterwarnings("ignore", message=r".*torch\.quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8)


def quantize(model: GPT, mode: str | None) -> GPT:
    """`mode` None returns the model as it is; "int8" see `quantize_int8`."""
    if mode is None:
        return model
    if mode not in MODES:
        raise ValueError(f"unknown quantization {mode!r}: use one of {', '.join(MODES)}")
    return quantize_int8(model)
