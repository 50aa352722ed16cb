"""Imports in src/folio go one way: no module takes part in an import circle. Every import
statement counts, at module level or inside a function (pipeline/code_deps.py reads them, as it
does for dvc.yaml's code deps), so a lazy import cannot hide a circle."""

from __future__ import annotations

from pipeline import code_deps

LIBRARY = code_deps.PACKAGES["folio"]


def _modules() -> list[str]:
    """Every module of src/folio by name: folio, folio.model, folio.tokenizers, ..."""
    names = []
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = ("folio",) + path.relative_to(LIBRARY).with_suffix("").parts
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


def test_no_library_module_takes_part_in_an_import_circle():
    circles = _circles(_graph(_modules()))
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)
