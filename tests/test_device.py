"""The device and dtype choice (folio.device) and its two probes: the decision per kind of
hardware, as Hardware records; the torch probe that training uses, with torch's detection faked;
and the probe without torch that `folio doctor` uses (folio.hardware), with /proc/cpuinfo,
torch's version.py and nvidia-smi faked, and checked against torch's probe on this machine."""

import platform

import pytest
import torch

from folio import device as dev
from folio import hardware
from folio.device import Hardware
from folio.hardware import Gpu

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
H100 = Gpu("NVIDIA H100 80GB HBM3", (9, 0), "GPU-5c6f1e7a-0000-0000-0000-000000000001")
T4 = Gpu("Tesla T4", (7, 5), "GPU-9a3e2b10-0000-0000-0000-000000000002")


# the decision


def test_auto_takes_cuda_then_mps_then_cpu():
    assert dev.decide_device(Hardware(gpu=H100.name, gpu_capability=(9, 0), mps=True)) == (
        "cuda", f"auto: CUDA ({H100.name})")
    assert dev.decide_device(Hardware(mps=True, cpu_bf16_units=("AMX-BF16",))) == ("mps", "auto: Apple MPS")
    assert dev.decide_device(Hardware(torch_cuda="12.8")) == ("cpu", "auto: no CUDA or MPS")


@pytest.mark.parametrize("units, said", [(("AMX-BF16",), "AMX-BF16"), (("AVX512-BF16",), "AVX512-BF16"),
                                         (("AMX-BF16", "AVX512-BF16"), "AMX-BF16 and AVX512-BF16")])
def test_a_cpu_with_bf16_units_trains_in_bfloat16(units, said):
    hw = Hardware(cpu_bf16_units=units)
    assert dev.decide_dtype(hw, "cpu") == ("bfloat16", f"auto: this CPU has {said}")
    assert dev.decide_dtype(hw, "cpu", "bfloat16") == ("bfloat16", "requested")


def test_a_cpu_without_them_trains_in_float32_and_a_request_for_bf16_is_warned():
    laptop = Hardware()  # AVX2 only
    dtype, reason = dev.decide_dtype(laptop, "cpu")
    assert dtype == "float32" and "neither AMX nor AVX512-BF16" in reason
    dtype, reason = dev.decide_dtype(laptop, "cpu", "bfloat16")
    assert dtype == "bfloat16" and "slower than float32" in reason


@pytest.mark.parametrize("capability, dtype", [((7, 0), "float16"), ((7, 5), "float16"), ((8, 0), "bfloat16"),
                                               ((8, 9), "bfloat16"), ((9, 0), "bfloat16"), ((12, 0), "bfloat16")])
def test_gpus_from_compute_capability_8_on_train_in_bfloat16_older_ones_in_float16(capability, dtype):
    """V100 (7.0) and T4 (7.5) emulate bf16, slowly; Ampere (8.0) and later have it in hardware."""
    chosen, reason = dev.decide_dtype(Hardware(gpu="g", gpu_capability=capability), "cuda")
    said = f"this GPU (compute capability {capability[0]}.{capability[1]})"
    assert chosen == dtype
    assert reason == (f"auto: {said} has native bfloat16" if dtype == "bfloat16"
                      else f"auto: {said} has no native bfloat16; float16 with a gradient scaler")


def test_mps_trains_in_float32():
    assert dev.decide_dtype(Hardware(mps=True), "mps") == ("float32", "auto: float32 on mps")


def test_an_unknown_dtype_is_refused_by_name():
    with pytest.raises(ValueError, match="'fp16'"):
        dev.decide_dtype(Hardware(), "cpu", "fp16")


# the torch probe, which training uses


def fake_cpu(monkeypatch, **flags):
    caps = {"amx_bf16": False, "avx512_bf16": False, "avx2": True, **flags}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)


def fake_gpu(monkeypatch, gpu: Gpu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu.name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: gpu.capability)


def test_the_torch_probe_feeds_the_decision_on_a_cpu(monkeypatch):
    fake_cpu(monkeypatch, amx_bf16=True)
    assert dev.pick_dtype("auto", CPU) == (torch.bfloat16, "auto: this CPU has AMX-BF16")
    fake_cpu(monkeypatch)
    dtype, reason = dev.pick_dtype("bfloat16", CPU)
    assert dtype == torch.bfloat16 and "slower than float32" in reason
    assert dev.inference_dtype(CPU) == torch.float32  # evaluation stays exact on any CPU


def test_the_torch_probe_feeds_the_decision_on_gpus(monkeypatch):
    fake_gpu(monkeypatch, H100)
    choice = dev.pick_device("auto")
    assert (choice.device, choice.reason) == (CUDA, f"auto: CUDA ({H100.name})")
    assert dev.pick_dtype("auto", CUDA) == (
        torch.bfloat16, "auto: this GPU (compute capability 9.0) has native bfloat16")
    assert dev.inference_dtype(CUDA) == torch.bfloat16
    fake_gpu(monkeypatch, T4)
    assert dev.pick_dtype("auto", CUDA)[0] == torch.float16
    assert dev.inference_dtype(CUDA) == torch.float32


def test_the_torch_probe_leaves_the_gpu_out_for_a_cpu_device(monkeypatch):
    """A CPU run on a GPU machine must not initialise CUDA to ask for the GPU's name."""
    fake_gpu(monkeypatch, H100)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: pytest.fail("CUDA was asked"))
    assert dev.torch_hardware(CPU).gpu is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torchs_own_native_bf16_rule_is_compute_capability_8():
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert dev.native_bf16(torch.cuda.get_device_capability()) == native


# the probe without torch, which `folio doctor` uses


def test_the_probe_without_torch_sees_what_torch_sees_here():
    hw, unsure = hardware.probe()
    if unsure:
        pytest.skip(f"the probe is unsure here: {unsure}")
    assert hw.cpu_bf16_units == dev.cpu_bfloat16_units()
    assert hw.torch_cuda == torch.version.cuda
    assert hw == dev.torch_hardware()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="AMX and AVX512-BF16 are x86 flags")
def test_the_cpu_flags_read_are_the_keys_torch_reports():
    assert {key for key, _ in dev.CPU_BF16_UNITS} <= set(torch.cpu.get_capabilities())


CPUINFO = "processor\t: {n}\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 {flags}\n\n"


@pytest.mark.parametrize("flags, units", [("avx512f amx_tile amx_bf16 amx_int8 avx512_bf16",  # Sapphire Rapids
                                           ("AMX-BF16", "AVX512-BF16")),
                                          ("avx512f avx512_bf16 avx512_vnni", ("AVX512-BF16",)),  # Zen 4
                                          ("avx512f avx512_vnni", ()), ("", ())])
def test_cpu_bf16_units_come_from_the_cpu_flags(tmp_path, monkeypatch, flags, units):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    (tmp_path / "cpuinfo").write_text(CPUINFO.format(n=0, flags=flags) + CPUINFO.format(n=1, flags=flags))
    assert hardware.cpu_bf16_units(tmp_path / "cpuinfo") == (units, None)


def test_without_proc_cpuinfo_the_cpu_is_unknown_and_on_arm_it_has_no_x86_units(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    units, note = hardware.cpu_bf16_units(tmp_path / "no-cpuinfo")
    assert units == () and "AMX-BF16 or AVX512-BF16 is unknown" in note
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert hardware.cpu_bf16_units(tmp_path / "no-cpuinfo") == ((), None)


def test_the_torch_build_is_read_from_its_version_file_without_importing_it(tmp_path):
    here = hardware.torch_build()
    assert (here["__version__"], here["cuda"], here["hip"]) == (
        torch.__version__, torch.version.cuda, torch.version.hip)
    (tmp_path / "version.py").write_text("from typing import Optional\n__version__ = '2.8.0+cu128'\n"
                                         "cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n")
    assert hardware.torch_build(tmp_path / "version.py") == {"__version__": "2.8.0+cu128", "cuda": "12.8", "hip": None}
    assert hardware.torch_build(tmp_path / "missing.py") == {}


def fake_nvidia_smi(tmp_path, monkeypatch, script: str):
    """An `nvidia-smi` first on PATH that records its arguments and runs `script`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\n{script}\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def test_gpus_come_from_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, f"echo '{H100.name}, 9.0, {H100.uuid}'\necho '{T4.name}, 7.5, {T4.uuid}'")
    assert hardware.nvidia_gpus() == ([H100, T4], None)
    assert (tmp_path / "args").read_text().split() == list(hardware.NVIDIA_SMI_QUERY)


@pytest.mark.parametrize("script, note", [
    ("echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9",
     "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."),
    ("echo 'Field \"compute_cap\" is not a valid field to query.' >&2; exit 2",
     "nvidia-smi failed: Field \"compute_cap\" is not a valid field to query."),
    ("echo 'Tesla K80, [N/A], GPU-1'", "nvidia-smi printed what this probe cannot read: 'Tesla K80, [N/A], GPU-1'"),
    ("exec sleep 5", "nvidia-smi did not answer within 0.2 s")])
def test_an_nvidia_smi_that_fails_is_a_note_not_an_error(tmp_path, monkeypatch, script, note):
    monkeypatch.setattr(hardware, "NVIDIA_SMI_TIMEOUT_SECONDS", 0.2)
    fake_nvidia_smi(tmp_path, monkeypatch, script)
    assert hardware.nvidia_gpus() == ([], note)


def test_without_nvidia_smi_a_machine_without_an_nvidia_driver_has_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(hardware, "NVIDIA_SMI_ELSEWHERE", ())
    monkeypatch.setattr(hardware, "NVIDIA_DRIVER_SIGNS", (tmp_path / "proc-driver-nvidia",))
    assert hardware.nvidia_gpus() == ([], None)
    (tmp_path / "proc-driver-nvidia").mkdir()  # a driver, but nothing to list its GPUs with
    assert hardware.nvidia_gpus() == ([], "nvidia-smi is not on PATH, so no GPU was looked for")


@pytest.mark.parametrize("visible, gpu", [(None, H100), ("0", H100), ("1,0", T4), ("2", None), ("", None),
                                          ("-1", None), (T4.uuid[:12], T4), ("GPU-", None)])
def test_cuda_device_0_follows_cuda_visible_devices(visible, gpu):
    environ = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"} | ({} if visible is None else {"CUDA_VISIBLE_DEVICES": visible})
    assert hardware.cuda_device_zero([H100, T4], environ) == (gpu, None)


def test_cuda_device_0_is_unsure_among_different_gpus_in_cudas_own_order_and_for_mig():
    gpu, note = hardware.cuda_device_zero([H100, T4], {})
    assert gpu == H100 and "CUDA numbers them fastest first" in note
    assert hardware.cuda_device_zero([H100, H100._replace(uuid="GPU-2")], {}) == (H100, None)  # alike: no matter
    gpu, note = hardware.cuda_device_zero([H100], {"CUDA_VISIBLE_DEVICES": "MIG-0e1d"})
    assert gpu is None and "MIG" in note


def test_the_probe_on_a_cuda_build_reports_the_visible_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "torch_build", lambda: {"cuda": "12.8", "hip": None})
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake_nvidia_smi(tmp_path, monkeypatch, f"echo '{T4.name}, 7.5, {T4.uuid}'")
    hw, unsure = hardware.probe()
    assert (hw.gpu, hw.gpu_capability, hw.torch_cuda, hw.mps, unsure) == (T4.name, (7, 5), "12.8", False, [])
    assert dev.decide_dtype(hw, dev.decide_device(hw)[0])[0] == "float16"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert hardware.probe()[0].gpu is None


def test_the_probe_on_a_rocm_build_says_it_cannot_see_amd_gpus(monkeypatch):
    monkeypatch.setattr(hardware, "torch_build", lambda: {"cuda": None, "hip": "6.4.0"})
    hw, unsure = hardware.probe()
    assert hw.gpu is None and unsure == ["torch is a ROCm build (HIP 6.4.0): AMD GPUs are seen only by torch"]


def test_the_probe_on_apple_silicon_sees_mps(monkeypatch):
    monkeypatch.setattr(hardware, "torch_build", lambda: {"__version__": "2.8.0"})
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    hw, unsure = hardware.probe()
    assert (hw, unsure) == (Hardware(mps=True), [])
    assert dev.decide_device(hw) == ("mps", "auto: Apple MPS")
