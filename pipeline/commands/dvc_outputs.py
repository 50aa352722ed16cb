"""Which dvc.yaml stage declares a path as its output. A command that is no stage (`folio
attention`) refuses to write there unless asked: DVC would then see that stage's output changed
(`dvc status`), and the next `dvc repro` would put the stage's own file back.

Read from the project's dvc.yaml itself (outs, metrics and plots of every stage, `${key}` filled
in from params.yaml), so the answer follows whatever the pipeline declares.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pipeline.errors import StageError

DVC_FILE = Path("dvc.yaml")
PARAMS_FILE = Path("params.yaml")
DECLARING_KEYS = ("outs", "metrics", "plots")
REFERENCE = re.compile(r"\$\{\s*([^}\s]+)\s*\}")


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise StageError(f"{path} is not valid YAML ({str(err).splitlines()[0]}); fix it and rerun") from None


def _param(params: dict, key: str) -> str:
    value = params
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return str(value)


def declared_outputs() -> dict[Path, str]:
    """Every output path dvc.yaml declares (resolved), mapped to the stage that writes it."""
    stages = _read_yaml(DVC_FILE).get("stages") or {}
    params = _read_yaml(PARAMS_FILE)
    found = {}
    for stage_name, stage in stages.items():
        for key in DECLARING_KEYS:
            for entry in (stage or {}).get(key) or []:
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                resolved = REFERENCE.sub(lambda match: _param(params, match[1]), str(path))
                found[Path(resolved).resolve()] = stage_name
    return found


def stage_writing(path: Path) -> str | None:
    """The dvc.yaml stage whose output `path` is or lies inside, or None."""
    target = Path(path).resolve()
    for output, stage_name in declared_outputs().items():
        if target == output or output in target.parents:
            return stage_name
    return None
