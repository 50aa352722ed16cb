"""Imports in src/folio and in pipeline/ go one way: no module takes part in an import circle.
Every import statement counts, at module level or inside a function (pipeline/code_deps.py reads
them, as it does for dvc.yaml's code deps), so a lazy import cannot hide a circle. And no function
or class there is kept alive only by tests or benchmarks."""

from __future__ import annotations

import ast

import pytest

from pipeline import code_deps

def _modules(package: str = "folio") -> list[str]:
    """Every module of a project package by name: folio, folio.model, folio.tokenizers, ..."""
    names, root = [], code_deps.PACKAGES[package]
    for path in sorted(root.rglob("*.py")):
        parts = (package,) + path.relative_to(root).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _graph(modules: list[str]) -> dict[str, set[str]]:
    """module -> the project modules its import statements name (itself excepted)."""
    return {m: {n for n in code_deps._imported_names(code_deps.module_file(m), m)
                if n in modules and n != m} for m in modules}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle found by a depth-first walk, as the modules along it (first repeated at the end)."""
    circles, done, path = [], set(), []

    def visit(module: str) -> None:
        if module in path:
            circles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return circles


def test_the_walker_sees_imports_inside_functions_and_finds_circles(tmp_path):
    source = tmp_path / "lazy.py"
    source.write_text("import folio.model\n\ndef f():\n    from folio import beam\n")
    assert {"folio.model", "folio.beam"} <= code_deps._imported_names(source, "folio.lazy")
    assert {"folio.model", "folio.beam"} <= _graph(_modules())["folio.generate"]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _circles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize("package", ["folio", "pipeline"])
def test_no_module_takes_part_in_an_import_circle(package):
    circles = _circles(_graph(_modules(package)))
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_no_function_or_class_is_kept_alive_only_by_tests():
    """Every module-level function and class of src/folio and pipeline/ is used by the library or
    the application themselves (a call, a reference, an import, an attribute): one that only tests
    or benchmarks use is dead code with a test holding it up. Decorated ones are registered by
    their decorator (the CLI's commands)."""
    sources = sorted(code_deps.PACKAGES["folio"].rglob("*.py")) + sorted(code_deps.PACKAGES["pipeline"].rglob("*.py"))
    used, defined = set(), []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.name.rpartition(".")[2])
        defined += [(path.relative_to(code_deps.ROOT), node.name) for node in tree.body
                    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.decorator_list
                    and not node.name.startswith("_")]
    dead = [f"{path}: {name}" for path, name in defined if name not in used]
    assert not dead, f"used only outside src/ and pipeline/ (tests, benchmarks): {dead}"
