"""ekd's modules import each other without cycles (also through imports inside functions), and
the orchestration is layered: report knows nothing of the stages, the stages nothing of the run."""

import ast
from pathlib import Path

import ekd

PACKAGE = Path(ekd.__file__).parent


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, top_level_only: bool) -> set[str]:
    """ekd modules ``path`` imports (at module level only, or anywhere, annotation-only
    TYPE_CHECKING imports included: a type checker follows them too)."""
    tree = ast.parse(path.read_text())
    found = set()
    top = [n for node in tree.body for n in ([node, *node.body] if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) else [node])]
    for node in top if top_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ekd":
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ekd"}
    return found & set(MODULES)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_even_through_imports_inside_functions():
    graph = {name: imports(path, top_level_only=False) for name, path in MODULES.items()}
    assert find_cycle(graph) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the finder finds one


def test_report_stages_and_run_are_layered_even_in_function_level_imports():
    everywhere = {name: imports(path, top_level_only=False) for name, path in MODULES.items()}
    assert not everywhere["ekd.report"] & {"ekd.pipeline", "ekd.run", "ekd.runconfig", "ekd.cli"}
    assert not everywhere["ekd.pipeline"] & {"ekd.run", "ekd.cli"}
    assert not everywhere["ekd.run"] & {"ekd.cli"}
    assert all("ekd.cli" not in found for name, found in everywhere.items() if name != "ekd.__main__")


def test_every_lazy_name_is_what_it_names_whatever_was_imported_first():
    import subprocess
    import sys

    # a module named like a function it exports would replace the function with itself once any
    # of its names is imported (ekd.grow after ekd.GrowSettings, say)
    code = "import ekd, types; [getattr(ekd, n) for n in ekd._LAZY]; print([n for n in ekd._LAZY if isinstance(getattr(ekd, n), types.ModuleType)])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    assert not {name for name in ekd._LAZY if f"ekd.{name}" in MODULES}
