"""The project code a module executes: its import closure inside pipeline/ and src/folio/.

Every `import` statement counts, at module level or inside a function, so the closure is a superset
of what one run executes (a lazily imported branch is in it). Package `__init__` files count: Python
runs them first. dvc.yaml lists each stage's closure as its deps (tests/test_dvc_yaml.py checks),
and the train stage's fingerprint holds the closure's digest, so a checkpoint is resumed only by
the code that wrote it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"pipeline": ROOT / "pipeline", "folio": ROOT / "src" / "folio"}


def module_file(name: str) -> Path | None:
    """The source file of project module `name` (e.g. "folio.model"), or None if it is not one.
    Found by path, without importing anything."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*rest)
    for path in (base.with_suffix(".py") if rest else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name an import statement in `path` may bring in (`from a import b` gives a
    and a.b: b may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def closure(module: str) -> frozenset[Path]:
    """The source files of `module` and of every project module it imports, transitively."""
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        for candidate in _with_parents(name):  # importing a.b.c runs a/__init__ and a/b/__init__
            if candidate in seen:
                continue
            seen.add(candidate)
            path = module_file(candidate)
            if path is not None:
                files.add(path)
                todo.extend(_imported_names(path, candidate))
    return frozenset(files)


def relative(files) -> list[str]:
    """Paths relative to the project root, sorted: the form dvc.yaml uses."""
    return sorted(str(f.relative_to(ROOT)) for f in files)


def digest(module: str) -> str:
    """sha256 over the closure's files (path and content), in a stable order."""
    h = hashlib.sha256()
    for path in sorted(closure(module)):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def stage_module(stage: str) -> str:
    return f"pipeline.stages.{stage}"


def rewrite_dvc_yaml(path: Path = ROOT / "dvc.yaml") -> None:
    """Replace each stage's code deps in dvc.yaml (the `- pipeline/...` and `- src/...` lines of
    its deps) with its closure, keeping everything else as it is."""
    lines, out, stage = path.read_text(encoding="utf-8").splitlines(), [], None
    for line in lines:
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip().rstrip(":")
        if line.strip().startswith(("- pipeline/", "- src/")):
            if not out[-1].strip().startswith(("- pipeline/", "- src/")):
                out += [f"      - {p}" for p in relative(closure(stage_module(stage)))]
            continue
        out.append(line)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m pipeline.code_deps [--write] [stage ...]
    import sys

    from pipeline.stages import STAGES

    if "--write" in sys.argv:
        rewrite_dvc_yaml()
    else:
        for stage in sys.argv[1:] or STAGES:
            print(f"  {stage}:")
            for path in relative(closure(stage_module(stage))):
                print(f"      - {path}")
