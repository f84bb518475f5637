"""Who may import whom, read from the source (every import statement, the lazy ones inside functions included):
no import cycles between the project's modules; the device runtime imports nothing from the training side, the
exporter or the benchmarks, and neither torch nor transformers; nothing in the packages imports the `edge-askd`
entry point (`edge_askd.cli`), which only wires the packages' own command-line modules together."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# installed name -> source folder (pyproject.toml's package-dir)
PACKAGES = {
    "edge_askd": "edge_askd",
    "edge_askd_runtime": "runtimes",
    "edge_askd_export": "export",
    "edge_askd_bench": "benchmarks",
}
TRAINING_ONLY = ("torch", "transformers")


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imports(name: str, path: Path, is_package: bool, modules: dict) -> set[str]:
    """Every module `name` imports (absolute names; `from . import x` is x, not the package)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            submodules = {f"{prefix}.{alias.name}" for alias in node.names} & set(modules)
            targets.update(submodules or {prefix})
    return {t for t in targets if t != name}


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(first-party edges, every import) per module."""
    modules = _modules()
    every = {name: _imports(name, path, is_package, modules) for name, (path, is_package) in modules.items()}
    return {name: targets & set(modules) for name, targets in every.items()}, every


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    graph, _ = _graph()
    assert len(graph) > 80  # the scan found the packages
    assert _cycles(graph) == []


def test_the_device_runtime_imports_nothing_from_the_training_side():
    graph, every = _graph()
    runtime = [name for name in graph if name.split(".")[0] == "edge_askd_runtime"]
    assert len(runtime) > 15
    for name in runtime:
        outside = sorted(t for t in graph[name] if t.split(".")[0] != "edge_askd_runtime")
        heavy = sorted(t for t in every[name] if t.split(".")[0] in TRAINING_ONLY)
        assert outside == [] and heavy == [], (name, outside, heavy)


def test_nothing_imports_the_command_line_entry_point():
    graph, _ = _graph()
    assert [name for name, targets in graph.items() if "edge_askd.cli" in targets] == []


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The scan itself: a cycle, a relative import and a lazy import inside a function are all seen."""
    modules = {
        "p": (tmp_path / "p" / "__init__.py", True),
        "p.a": (tmp_path / "a.py", False),
        "p.b": (tmp_path / "b.py", False),
    }
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import x\n    import torch\n")
    edges = {name: _imports(name, path, pkg, modules) for name, (path, pkg) in modules.items() if name != "p"}
    assert edges == {"p.a": {"p.b"}, "p.b": {"p.a", "torch"}}
    assert _cycles({"p.a": {"p.b"}, "p.b": {"p.a"}}) == [["p.a", "p.b"]]
