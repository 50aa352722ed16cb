"""int8 CPU inference: weight-only int8 Linear layers.

Decoding one token at a time is bound by reading the weights, so `quantize_int8` stores every
Linear weight as int8 with one scale per output row (symmetric: scale = max |w| / 127), a quarter
of the float32 bytes. Each call rounds the activations to bfloat16 and runs PyTorch's
`_weight_int8pack_mm` kernel, which dequantizes the weights on the fly (the kernel gpt-fast and
torchao use for int8 weight-only on CPU). Outputs and biases stay float32. The head is quantized
like every other Linear, which unties it from the token embedding (the embedding stays float32):
fine for inference, not for training. Measured against PyTorch's dynamic quantization (int8
weights and activations, one scale per tensor) this is both faster and closer to float32; see
reports/bench_generate.md.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from folio.model import GPT

MODES = ("int8",)


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights (out, in), a bfloat16 scale per output and a float32 bias."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(flat, self.weight, self.scale).to(x.dtype)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _replace_linears(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            _replace_linears(child)


def quantize_int8(model: GPT) -> GPT:
    """An int8 copy of `model` for CPU inference; `model` itself is left unchanged."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 inference runs on the CPU; the model is on {device}")
    quantized = copy.deepcopy(model).eval()
    _replace_linears(quantized)
    return quantized


def quantize(model: GPT, mode: str | None) -> GPT:
    """`mode` None returns the model as it is; "int8" see `quantize_int8`."""
    if mode is None:
        return model
    if mode not in MODES:
        raise ValueError(f"unknown quantization {mode!r}: use one of {', '.join(MODES)}")
    return quantize_int8(model)
