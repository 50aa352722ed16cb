"""`folio doctor`: what folio sees here — the versions of its stack, the device and dtype it would
train with and why, the tracking store and whether it answers, the DVC remote, tiktoken's cache —
and what it would warn about, a missing or stale plots page template among it. Under torchrun
(RANK, WORLD_SIZE, MASTER_ADDR, ... set) also the distributed environment this rank sees. Fast: versions come
from package metadata, the hardware from the operating system (folio.hardware; `--torch` asks
torch, 2 s more), a tracking server gets one short health request, DVC's config is read as a file:
none of torch, mlflow, DVC, GX or pydantic is imported. The device and dtype come from the
same decision training makes (folio.device.decide_device, decide_dtype)."""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import os
import platform
from pathlib import Path

from folio.device import Hardware, decide_device, decide_dtype
from folio.errors import first_line
from pipeline.commands import plots_template
from pipeline.errors import StageError

PACKAGES = ("torch", "dvc", "mlflow", "great-expectations", "tiktoken")
SERVER_TIMEOUT_SECONDS = 2
PROBE_SOURCES = "/proc/cpuinfo, torch's version.py, nvidia-smi"


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def hardware(use_torch: bool) -> tuple[Hardware, list[str]]:
    """What this machine has, from the operating system (fast), or from torch itself; and what
    that could not be sure of."""
    if not use_torch:
        from folio.hardware import probe

        return probe()
    try:
        from folio.device import torch_hardware

        return torch_hardware(), []
    except ImportError as err:
        raise StageError(f"--torch needs torch, which does not import ({first_line(err)}); "
                         "run `make setup`, or leave out --torch") from err


def training_choice(hw: Hardware, unsure: list[str], use_torch: bool) -> tuple[dict, list[str]]:
    """The device and dtype `train.device: auto` and `train.dtype: auto` pick on `hw`, with the
    hardware behind the choice and how it was found, and warnings about it."""
    device, device_reason = decide_device(hw)
    dtype, dtype_reason = decide_dtype(hw, device)
    choice = {"device": device, "device_reason": device_reason, "dtype": dtype, "dtype_reason": dtype_reason,
              "cpu_bf16_units": list(hw.cpu_bf16_units), "torch_cuda_build": hw.torch_cuda,
              "mps_available": hw.mps, "probe": "torch" if use_torch else "without torch",
              "unsure": unsure}
    warnings = []
    if device == "cuda":
        choice["gpu"] = hw.gpu
        choice["gpu_capability"] = "{}.{}".format(*hw.gpu_capability)
        if dtype == "float16":
            warnings.append(f"this GPU ({choice['gpu']}) has no native bfloat16: training uses "
                            "float16 with a gradient scaler")
    elif hw.torch_cuda is not None:
        unless = " (unless the probe is wrong: see `unsure`)" if unsure else ""
        warnings.append(f"torch is built for CUDA {hw.torch_cuda} but sees no GPU{unless}: training "
                        "runs on the CPU (check the driver and CUDA_VISIBLE_DEVICES)")
    if device == "mps":
        warnings.append("Apple MPS: training runs in float32 and torch.compile stays off")
    if device == "cpu" and dtype == "float32":
        warnings.append("this CPU has neither AMX nor AVX512-BF16: training runs in float32 "
                        "(bfloat16 would be slower here), several times slower than on a CPU with them")
    return choice, warnings


def tracking() -> tuple[dict, list[str]]:
    from pipeline.tracking.store import TrackingUnavailable, check_server, tracking_uri

    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        exists = path.exists() if path else None
        return {"uri": uri, "kind": "local store", "exists": exists}, []
    try:
        check_server(uri, timeout=SERVER_TIMEOUT_SECONDS)
    except TrackingUnavailable as err:
        return {"uri": uri, "kind": "server", "answers": False}, [str(err)]
    return {"uri": uri, "kind": "server", "answers": True}, []


def dvc_remote(project: Path) -> dict:
    """The remotes in .dvc/config (and config.local) and the default one, read as INI files."""
    config = configparser.ConfigParser()
    config.read([project / ".dvc" / "config", project / ".dvc" / "config.local"])
    # DVC writes a remote's section as ['remote "name"'] (quotes included)
    remotes = {section.split('"')[1]: config[section].get("url") for section in config.sections()
               if section.strip("'").startswith("remote ")}
    return {"default": config.get("core", "remote", fallback=None), "remotes": remotes,
            "project": (project / ".dvc").is_dir()}


def tiktoken_cache(project: Path) -> tuple[dict, list[str]]:
    from folio.tokenizers.pretrained import cache_dir

    directory = Path(cache_dir())
    files = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    info, warnings = {"dir": str(directory), "files": len(files)}, []
    kind, problem = _tokenizer_kind(project)
    if problem:
        warnings.append(problem)
    if kind and kind.startswith("tiktoken:"):
        from folio.tokenizers.pretrained import PretrainedFilesMissing, load_pretrained

        try:
            load_pretrained(kind.removeprefix("tiktoken:"))
            info["params_encoding"] = f"{kind}: in the cache"
        except (PretrainedFilesMissing, ValueError) as err:
            info["params_encoding"] = f"{kind}: missing"
            warnings.append(str(err))
    return info, warnings


def _tokenizer_kind(project: Path) -> tuple[str | None, str | None]:
    """params.yaml's tokenizer.kind, or why it could not be read. Read as plain YAML: the params
    schema (pydantic) would cost half a second more here, and `folio train` validates anyway."""
    import yaml

    path = project / "params.yaml"
    if not path.exists():
        return None, None
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None, f"{path} is not valid YAML; `folio train` says where"
    tokenizer = tree.get("tokenizer") if isinstance(tree, dict) else None
    return (tokenizer.get("kind") if isinstance(tokenizer, dict) else None), None


# torchrun's environment for its workers, as doctor shows it (key -> variable)
DISTRIBUTED_ENV = {"world_size": "WORLD_SIZE", "rank": "RANK", "local_rank": "LOCAL_RANK",
                   "local_world_size": "LOCAL_WORLD_SIZE", "node_rank": "GROUP_RANK",
                   "master_addr": "MASTER_ADDR", "master_port": "MASTER_PORT",
                   "rdzv_id": "TORCHELASTIC_RUN_ID", "restart_count": "TORCHELASTIC_RESTART_COUNT",
                   "max_restarts": "TORCHELASTIC_MAX_RESTARTS", "gloo_socket_ifname": "GLOO_SOCKET_IFNAME",
                   "nccl_socket_ifname": "NCCL_SOCKET_IFNAME"}


def distributed(device: str) -> tuple[dict | None, list[str]]:
    """The DDP environment this process sees under torchrun (None outside it): the backend
    training would use on `device` and torchrun's variables; warnings for what would fail."""
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        return None, []
    info = {"backend": "nccl" if device == "cuda" else "gloo",
            **{key: os.environ.get(var) for key, var in DISTRIBUTED_ENV.items()}}
    warnings = [f"{var} is not set, though RANK/WORLD_SIZE are: start folio through torchrun, which sets "
                "them all" for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(var)]
    return info, warnings


def report(project: Path | None = None, use_torch: bool = False) -> dict:
    project = Path(project or Path.cwd())
    versions = {"python": platform.python_version(), **{p: version(p) for p in PACKAGES}}
    warnings = [f"{p} is not installed" for p, v in versions.items() if v is None]
    choice, more = training_choice(*hardware(use_torch), use_torch)
    warnings += more
    store, more = tracking()
    warnings += more
    cache, more = tiktoken_cache(project)
    warnings += more
    if plots := plots_template.problem(project):  # the page `dvc plots show` fills in
        warnings.append(plots)
    ddp, more = distributed(choice["device"])
    warnings += more
    return {"versions": versions, "training": choice, "tracking": store, "dvc": dvc_remote(project),
            "tiktoken_cache": cache, "distributed": ddp, "warnings": warnings}


def text(r: dict) -> str:
    t, s, d, c = r["training"], r["tracking"], r["dvc"], r["tiktoken_cache"]
    versions = ", ".join(f"{name} {v or 'missing'}" for name, v in r["versions"].items())
    if s["kind"] == "server":
        store = f"{s['uri']} ({'answers' if s['answers'] else 'does not answer'})"
    else:
        store = f"{s['uri']} (local store{'' if s['exists'] else ', not created yet'})"
    remote = (f"{d['default']} = {d['remotes'].get(d['default'])}" if d["default"]
              else ", ".join(f"{k} = {v}" for k, v in d["remotes"].items()) or "none")
    lines = [
        f"versions  {versions}",
        f"device    {t['device']} ({t['device_reason']})",
        f"dtype     {t['dtype']} ({t['dtype_reason']})",
        "probe     " + ("torch" if t["probe"] == "torch" else
                        f"without torch: {PROBE_SOURCES}; `folio doctor --torch` asks torch"),
        *(f"unsure    {note}; `folio doctor --torch` asks torch" for note in t["unsure"]),
        f"tracking  {store}",
        f"dvc       remote: {remote}" + ("" if d["project"] else " (not a DVC project here)"),
        f"tiktoken  cache {c['dir']}: {c['files']} file(s)"
        + (f"; {c['params_encoding']}" if "params_encoding" in c else ""),
    ]
    if (ddp := r.get("distributed")) is not None:
        def value(key):
            return ddp[key] if ddp[key] is not None else "unset"
        lines += [
            f"ddp       {ddp['backend']}, world size {value('world_size')}: rank {value('rank')}, local rank "
            f"{value('local_rank')} of {value('local_world_size')}, node {value('node_rank')}",
            f"rdzv      master {value('master_addr')}:{value('master_port')}, id {value('rdzv_id')}"
            + (f", restart {ddp['restart_count']} of {value('max_restarts')}" if ddp["restart_count"] else "")
            + "".join(f", {var} {ddp[key]}" for key, var in (("gloo_socket_ifname", "GLOO_SOCKET_IFNAME"),
                                                              ("nccl_socket_ifname", "NCCL_SOCKET_IFNAME"))
                      if ddp[key]),
        ]
    lines += [f"warning: {w}" for w in r["warnings"]] or ["no warnings"]
    return "\n".join(lines)


def show(as_json: bool, use_torch: bool = False) -> None:
    import typer

    r = report(use_torch=use_torch)
    typer.echo(json.dumps(r, indent=2) if as_json else text(r))
