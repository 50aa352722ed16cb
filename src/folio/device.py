"""Choosing the device and precision, each with the reason, so logs can say why.

The choice is a pure function of a small `Hardware` record (`decide_device`, `decide_dtype`),
kept apart from the probe that fills the record: `torch_hardware` asks torch, and is what
training uses (through `pick_device` and `pick_dtype`); `folio.hardware.probe` asks the operating
system without importing torch, for `folio doctor`. Both feed the same rule, so they cannot
disagree on it. Importing torch takes about 2 s, so this module imports it only inside the
functions that use it.
"""

from __future__ import annotations

import collections
import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from folio.errors import FolioError

if TYPE_CHECKING:
    import torch

# the CPU's bf16 matmul units: (key in torch.cpu.get_capabilities() = flag in Linux's
# /proc/cpuinfo, name). With either, bf16 matmuls run several times faster than float32;
# without, bf16 is emulated and slower.
CPU_BF16_UNITS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
# CUDA GPUs from this compute capability on (Ampere and later) have bf16 in hardware; older ones
# emulate it, slowly. torch.cuda.is_bf16_supported(including_emulation=False) uses the same rule.
NATIVE_BF16_CAPABILITY = (8, 0)
DTYPES = ("float32", "bfloat16", "float16")


class DeviceUnavailable(FolioError, RuntimeError):
    """An explicitly requested device that this machine (or this torch build) does not have."""


@dataclass(frozen=True)
class Hardware:
    """What `auto` decides from. `gpu`: the name of the CUDA GPU that device `cuda` is (None: no
    GPU torch can use), with its compute capability; `mps`: Apple's GPU backend is available;
    `cpu_bf16_units`: names from CPU_BF16_UNITS; `torch_cuda`: the CUDA version torch is built for
    (None: a build without CUDA)."""

    gpu: str | None = None
    gpu_capability: tuple[int, int] | None = None
    mps: bool = False
    cpu_bf16_units: tuple[str, ...] = ()
    torch_cuda: str | None = None


def decide_device(hw: Hardware) -> tuple[str, str]:
    """`auto`'s device type and why: cuda, then mps, then cpu."""
    if hw.gpu is not None:
        return "cuda", f"auto: CUDA ({hw.gpu})"
    if hw.mps:
        return "mps", "auto: Apple MPS"
    return "cpu", "auto: no CUDA or MPS"


def native_bf16(capability: tuple[int, int]) -> bool:
    return tuple(capability) >= NATIVE_BF16_CAPABILITY


def decide_dtype(hw: Hardware, device_type: str, requested: str = "auto") -> tuple[str, str]:
    """The training compute dtype's name and why. `auto`: bf16 autocast where bf16 is fast (CUDA
    GPUs with native bf16, CPUs with AMX or AVX512-BF16), fp16 autocast with a GradScaler on CUDA
    GPUs without, float32 elsewhere (other CPUs, where bf16 is slower than float32, and MPS).
    On cuda, `hw.gpu_capability` must be known."""
    if requested != "auto" and requested not in DTYPES:
        raise ValueError(f"dtype {requested!r}: use auto or one of {', '.join(DTYPES)}")
    if requested != "auto":
        if requested == "bfloat16" and device_type == "cpu" and not hw.cpu_bf16_units:
            return requested, ("requested, but this CPU has neither AMX nor AVX512-BF16: "
                               "bfloat16 is slower than float32 here (auto picks float32)")
        return requested, "requested"
    if device_type == "cuda":
        capability = "compute capability {}.{}".format(*hw.gpu_capability)
        if native_bf16(hw.gpu_capability):
            return "bfloat16", f"auto: this GPU ({capability}) has native bfloat16"
        return "float16", (f"auto: this GPU ({capability}) has no native bfloat16; "
                           "float16 with a gradient scaler")
    if device_type == "cpu":
        if hw.cpu_bf16_units:
            return "bfloat16", f"auto: this CPU has {' and '.join(hw.cpu_bf16_units)}"
        return "float32", "auto: this CPU has neither AMX nor AVX512-BF16, where bfloat16 is slower than float32"
    return "float32", f"auto: float32 on {device_type}"


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    reason: str

    @property
    def type(self) -> str:
        return self.device.type


def cpu_bfloat16_units() -> tuple[str, ...]:
    """The CPU_BF16_UNITS this CPU has, from torch's public `torch.cpu.get_capabilities()`."""
    import torch

    capabilities = torch.cpu.get_capabilities()
    return tuple(name for key, name in CPU_BF16_UNITS if capabilities.get(key))


def torch_hardware(device: torch.device | None = None) -> Hardware:
    """The torch probe: the Hardware torch sees. The GPU is `device`'s where that is a CUDA
    device; with no `device`, the one `cuda` is, if CUDA is available; a CPU or MPS `device`
    leaves the GPU out (and CUDA uninitialised)."""
    import torch

    gpu = capability = None
    if (device.type == "cuda") if device is not None else torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device)
        capability = tuple(torch.cuda.get_device_capability(device))
    return Hardware(gpu=gpu, gpu_capability=capability, mps=torch.backends.mps.is_available(),
                    cpu_bf16_units=cpu_bfloat16_units(), torch_cuda=torch.version.cuda)


def pick_device(requested: str = "auto") -> DeviceChoice:
    """`auto` takes cuda, then mps, then cpu; an explicit device must be available."""
    import torch

    if requested == "auto":
        kind, reason = decide_device(torch_hardware())
        return DeviceChoice(torch.device(kind), reason)
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


def pick_dtype(requested: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The training compute dtype on `device` and why: `decide_dtype` over what torch sees."""
    import torch

    name, reason = decide_dtype(torch_hardware(device), device.type, requested)
    return getattr(torch, name), reason


def inference_dtype(device: torch.device) -> torch.dtype:
    """What evaluation and generation compute in: bf16 on CUDA that supports it, float32 elsewhere
    (on a CPU, float32 inference is fast enough and keeps the reported metrics exact)."""
    import torch

    if device.type == "cuda" and native_bf16(torch.cuda.get_device_capability(device)):
        return torch.bfloat16
    return torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (default: `inference_dtype`); float32 needs no autocast."""
    import torch

    dtype = dtype or inference_dtype(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def enable_tf32(device: torch.device) -> None:
    """TF32 matmuls on CUDA: ~free speed for float32 work on Ampere and later."""
    import torch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


class DeviceQueue:
    """The steps a device has been given but may not have finished. GPU work is queued: the host
    returns from a step long before the device has run it, so a clock read right after a step
    measures the host, not the device. `mark()` after each step; `wait(behind)` blocks until at
    most `behind` marked steps are still unfinished (CUDA events; MPS waits for all); `drain()`
    until none are. On the CPU a step is finished when it returns: both return at once."""

    def __init__(self, device: torch.device):
        self.device = device
        self.unfinished: collections.deque = collections.deque()

    def mark(self) -> None:
        import torch

        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            self.unfinished.append(event)

    def wait(self, behind: int = 0) -> None:
        import torch

        while len(self.unfinished) > behind:
            self.unfinished.popleft().synchronize()
        if self.device.type == "mps":
            torch.mps.synchronize()

    def drain(self) -> None:
        """Wait until the device has finished all it was given, marked or not."""
        import torch

        self.wait(0)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def make_deterministic(device: torch.device) -> str:
    """Deterministic kernels where the device needs them; returns what applied, for the run's tags.

    CUDA: PyTorch's strict deterministic mode (`use_deterministic_algorithms(True)`: cuBLAS
    workspace, cuDNN not autotuned, and scaled_dot_product_attention's deterministic backward for
    the flash and memory-efficient kernels), so a repeat run on the same GPU gives the same
    weights. An op with no deterministic CUDA kernel raises instead of silently varying
    (`NotDeterministic`). New tensors are not NaN-filled (`fill_uninitialized_memory`): folio
    reads no uninitialised memory, and the fill costs ~15% of a step. The CPU's kernels are
    deterministic already, for a fixed thread count: nothing to change."""
    import torch

    if device.type != "cuda":
        return f"{device.type} kernels (deterministic for a fixed thread count)"
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.utils.deterministic.fill_uninitialized_memory = False
    return "cuda strict (use_deterministic_algorithms, deterministic SDPA backward, no NaN fill)"


class NotDeterministic(FolioError, RuntimeError):
    """An op has no deterministic kernel on this device, and deterministic mode was asked for."""

    def __init__(self, op: str):
        self.op = op
        super().__init__(f"{op} has no deterministic kernel on this device, and deterministic training "
                         "was asked for; turn deterministic training off to train with it")


def not_deterministic(err: BaseException) -> NotDeterministic | None:
    """PyTorch's refusal of an op with no deterministic kernel, as one line; None for any other error."""
    text = str(err)
    if "does not have a deterministic implementation" not in text:
        return None
    return NotDeterministic(text.split(" does not have", 1)[0].strip())
