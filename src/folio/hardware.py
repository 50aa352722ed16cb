"""The `folio.device.Hardware` record found without importing torch (which takes about 2 s): the
CPU's bf16 units from /proc/cpuinfo, the CUDA version torch is built for from torch's installed
version.py, the GPU from `nvidia-smi`, MPS from the platform. `probe` also says, a line each,
what it could not be sure of. Training asks torch instead (`folio.device.torch_hardware`); both
records go through the same decision."""

from __future__ import annotations

import ast
import importlib.util
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from folio.device import CPU_BF16_UNITS, Hardware

CPUINFO = Path("/proc/cpuinfo")
X86 = ("x86_64", "amd64", "i386", "i686")  # AMX and AVX512-BF16 exist only there
NVIDIA_SMI_QUERY = ("--query-gpu=name,compute_cap,uuid", "--format=csv,noheader")
NVIDIA_SMI_TIMEOUT_SECONDS = 3
NVIDIA_SMI_ELSEWHERE = (Path("/usr/lib/wsl/lib/nvidia-smi"),)  # WSL's, often not on PATH
# on Linux, an NVIDIA driver leaves one of these; with neither, no GPU is usable by CUDA
NVIDIA_DRIVER_SIGNS = (Path("/proc/driver/nvidia"), Path("/dev/dxg"))


class Gpu(NamedTuple):
    name: str
    capability: tuple[int, int]
    uuid: str


def probe() -> tuple[Hardware, list[str]]:
    """The Hardware torch would report here, and what this probe could not be sure of."""
    units, cpu_note = cpu_bf16_units()
    build = torch_build()
    gpu, gpu_notes = None, []
    if build.get("cuda"):
        gpus, listed = nvidia_gpus()
        gpu, chosen = cuda_device_zero(gpus, os.environ)
        gpu_notes = [listed, chosen]
    elif build.get("hip"):
        gpu_notes = [f"torch is a ROCm build (HIP {build['hip']}): AMD GPUs are seen only by torch"]
    mps = platform.system() == "Darwin" and platform.machine() == "arm64"
    hw = Hardware(gpu=gpu.name if gpu else None, gpu_capability=gpu.capability if gpu else None,
                  mps=mps, cpu_bf16_units=units, torch_cuda=build.get("cuda"))
    return hw, [note for note in (cpu_note, *gpu_notes) if note]


def cpu_bf16_units(cpuinfo: Path = CPUINFO) -> tuple[tuple[str, ...], str | None]:
    """The CPU_BF16_UNITS whose flags the CPU has (in `cpuinfo`: its first processor's), and
    why that may be wrong (None: it is sure)."""
    if platform.machine().lower() not in X86:
        return (), None
    try:
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return (), f"no {cpuinfo} here, so whether this CPU has AMX-BF16 or AVX512-BF16 is unknown"
    flags = next((set(value.split()) for key, _, value in (line.partition(":") for line in lines)
                  if key.strip() == "flags"), set())
    return tuple(name for flag, name in CPU_BF16_UNITS if flag in flags), None


def torch_build(version_file: Path | None = None) -> dict:
    """The constants in torch's installed version.py (`__version__`, `cuda`, `hip`, ...), read
    as a file: `import torch.version` would import all of torch. {} where torch is missing."""
    if version_file is None:
        spec = importlib.util.find_spec("torch")  # finds the package, runs none of it
        if spec is None or not spec.submodule_search_locations:
            return {}
        version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        tree = ast.parse(version_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    constants = {}
    for node in tree.body:
        target = (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                  else node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
            constants[target.id] = node.value.value
    return constants


def nvidia_gpus() -> tuple[list[Gpu], str | None]:
    """The GPUs `nvidia-smi` lists, in its order, and why that may not be all of them (None: it
    is sure)."""
    found = shutil.which("nvidia-smi") or next((str(p) for p in NVIDIA_SMI_ELSEWHERE if p.is_file()), None)
    if found is None:
        if platform.system() == "Linux" and not any(p.exists() for p in NVIDIA_DRIVER_SIGNS):
            return [], None
        return [], "nvidia-smi is not on PATH, so no GPU was looked for"
    try:
        done = subprocess.run([found, *NVIDIA_SMI_QUERY], capture_output=True, text=True,
                              timeout=NVIDIA_SMI_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return [], f"nvidia-smi did not answer within {NVIDIA_SMI_TIMEOUT_SECONDS} s"
    except OSError as err:
        return [], f"nvidia-smi did not run ({err.strerror})"
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().splitlines() or [f"exit status {done.returncode}"]
        return [], f"nvidia-smi failed: {said[0]}"
    try:
        return [_gpu(line) for line in done.stdout.splitlines() if line.strip()], None
    except ValueError:
        return [], f"nvidia-smi printed what this probe cannot read: {done.stdout.strip()[:120]!r}"


def _gpu(line: str) -> Gpu:
    name, capability, uuid = (field.strip() for field in line.rsplit(",", 2))
    major, minor = capability.split(".")
    return Gpu(name, (int(major), int(minor)), uuid)


def cuda_device_zero(gpus: list[Gpu], environ) -> tuple[Gpu | None, str | None]:
    """The GPU in `gpus` (nvidia-smi's list) that CUDA calls device 0 (torch's `cuda`) under
    `environ`'s CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, and why that may be wrong (None: it
    is sure). CUDA reads CUDA_VISIBLE_DEVICES up to its first entry that names no GPU."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    first = visible.split(",")[0].strip() if visible is not None else "0"
    if first.startswith("GPU-"):
        matches = [gpu for gpu in gpus if gpu.uuid.startswith(first)]
        return (matches[0] if len(matches) == 1 else None), None
    if first.startswith("MIG-"):
        return None, "CUDA_VISIBLE_DEVICES names a MIG instance, which nvidia-smi's list of GPUs does not show"
    if not first.isdigit() or int(first) >= len(gpus):
        return None, None
    gpu = gpus[int(first)]
    if len({(g.name, g.capability) for g in gpus}) == 1 or environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return gpu, None
    return gpu, ("these GPUs differ, and CUDA numbers them fastest first, not in nvidia-smi's order "
                 "(unless CUDA_DEVICE_ORDER=PCI_BUS_ID), so `cuda` may be another of them")
