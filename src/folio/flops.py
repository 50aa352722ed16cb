"""Model FLOPs utilisation: the FLOPs a training step needs per token, and the dense tensor-core
peak of the GPUs whose peak is published. MFU = tokens/s x FLOPs per token / (peak x GPUs).

The peaks are the vendors' dense (no sparsity) bf16/fp16 figures, in TFLOP/s, matched on the
name torch reports (`torch.cuda.get_device_name`). Any other device, a GPU not listed, or float32
(whose TF32 peak depends on the matmul precision chosen) has no known peak: `peak_tflops` says None
and no MFU is shown."""

from __future__ import annotations

# (a piece of the device name, dense bf16/fp16 TFLOP/s); the first piece found wins, so longer
# names come before the names they contain (H100 PCIe before H100, A100 before A10, L40S before L4)
GPU_PEAK_TFLOPS: tuple[tuple[str, float | None], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (the name reads "NVIDIA H100 80GB HBM3")
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("A10G", None),  # AWS's variant of the A10: no peak NVIDIA publishes
    ("A10", 125.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("V100", 125.0),  # fp16 (no bf16)
    ("T4", 65.0),  # fp16 (no bf16)
)
HALF_DTYPES = ("bfloat16", "float16")


def flops_per_token(n_params: int, n_layer: int, n_head: int, n_embd: int, block_size: int) -> float:
    """Forward and backward FLOPs per trained token (PaLM, appendix B; nanoGPT's estimate_mfu):
    6 N for the weights' matmuls plus 12 L H Q T for attention."""
    return 6 * n_params + 12 * n_layer * n_head * (n_embd // n_head) * block_size


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """The published dense peak of the GPU named `device_name` in `dtype`; None where unknown."""
    if dtype.removeprefix("torch.") not in HALF_DTYPES:
        return None
    return next((peak for piece, peak in GPU_PEAK_TFLOPS if piece in device_name), None)


def mfu(tokens_per_sec: float, per_token: float, peak: float, devices: int = 1) -> float:
    """The fraction of `devices` GPUs' peak (TFLOP/s each) that `tokens_per_sec` amounts to."""
    return tokens_per_sec * per_token / (peak * 1e12 * devices)
