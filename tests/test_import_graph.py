"""The import graph of the product (runtime_api, sandbox, bootstrap), read from the source with
`ast`: no cycles, imports run down the layers (runtime_api -> sandbox -> bootstrap), and the
product never imports `benchmarks` or the tests.

Every `import` and `from ... import` statement counts wherever it stands: at module level, and
deferred inside a function or a method (it runs all the same, only later). The one exception is
an import under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`), which never runs. Imports made
from a string at run time (`importlib.import_module`, runtime_api's lazy re-exports) are not seen.
A `from package import name` is an edge to the submodule `package.name` when there is one, to the
package itself otherwise.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from helpers import REPO

PRODUCT = ("runtime_api", "sandbox", "bootstrap")
# Each package may import only the packages after it in PRODUCT.
LAYERS = {package: set(PRODUCT[index + 1:]) for index, package in enumerate(PRODUCT)}
# What the product must never import: the benchmarks, and the tests with what they put on sys.path.
NEVER = ("benchmarks", "tests", "helpers", "bootstrap_handlers", "client_functions", "conformance")


# --- the graph -----------------------------------------------------------------------------

def modules_in(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """{dotted module name: source file} for every module of `packages` under `root`."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


class _Imports(ast.NodeVisitor):
    """Every module an AST imports, as written (relative imports resolved against `package`)."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[tuple[str, list[str]]] = []  # (module, names imported from it)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:  # the body never runs; an else branch does
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, []) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        self.found.append((module, [alias.name for alias in node.names]))


def imports_of(source: str, module: str, is_package: bool) -> list[str]:
    """The dotted names `module` (its `source`) imports, deferred ones included."""
    package = module if is_package else module.rpartition(".")[0]
    visitor = _Imports(package)
    visitor.visit(ast.parse(source))
    names = []
    for imported, members in visitor.found:  # `from a import b`: a.b (which import_graph reads as
        names += [f"{imported}.{member}" for member in members] or [imported]  # a where a.b is no module)
    return names


def import_graph(root: Path, packages: Iterable[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """({module: the modules of `packages` it imports}, {module: every top-level name it imports})."""
    modules = modules_in(root, packages)
    edges: dict[str, set[str]] = {}
    tops: dict[str, set[str]] = {}
    for module, path in modules.items():
        names = imports_of(path.read_text(), module, path.name == "__init__.py")
        tops[module] = {name.split(".")[0] for name in names}
        targets = set()
        for name in names:
            while name and name not in modules:  # `from a import b`: a.b if it is a module, else a
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    return edges, tops


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path that comes back to its start) per knot of modules that import each other,
    shortest, starting at the knot's smallest module."""
    return sorted(_cycle_through(component, edges) for component in knots(edges))


def knots(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of two or more modules (Tarjan's algorithm, without
    recursion): within one, every module imports every other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def _cycle_through(component: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle from the component's smallest module back to itself (breadth first)."""
    start = min(component)
    previous = {start: None}
    queue = [start]
    for node in queue:
        for child in sorted(edges[node] & component):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # a component of two or more always has one


def shown(edges: dict[str, set[str]]) -> str:
    """Each knot: its shortest cycle, and the other modules caught in it."""
    lines = []
    for knot in sorted(knots(edges), key=min):
        cycle = _cycle_through(knot, edges)
        rest = sorted(knot - set(cycle))
        lines.append(" -> ".join(cycle) + (f" (and, in the same knot: {', '.join(rest)})" if rest else ""))
    return "\n".join(lines)


EDGES, TOPS = import_graph(REPO, PRODUCT)


def _in(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


# --- the product ---------------------------------------------------------------------------

@pytest.mark.parametrize("package", PRODUCT)
def test_no_import_cycles(package):
    within = {module: {t for t in targets if _in(package, t)}
              for module, targets in EDGES.items() if _in(package, module)}
    if knots(within):
        pytest.fail(f"import cycles in {package}:\n{shown(within)}", pytrace=False)


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_never_imports_benchmarks_or_the_tests(package):
    offending = {module: sorted(TOPS[module] & set(NEVER)) for module in TOPS
                 if _in(package, module) and TOPS[module] & set(NEVER)}
    assert offending == {}


@pytest.mark.parametrize("package", PRODUCT)
def test_imports_run_down_the_layers(package):
    """runtime_api -> sandbox -> bootstrap: bootstrap imports neither of the others (it runs in
    every cold start) and sandbox does not import runtime_api."""
    upward = set(PRODUCT) - LAYERS[package] - {package}
    offending = {module: sorted(TOPS[module] & upward) for module in TOPS
                 if _in(package, module) and TOPS[module] & upward}
    assert offending == {}


def test_the_graph_is_the_whole_product():
    """Every package and module is in the graph, and the edges are there to be checked."""
    assert {module.split(".")[0] for module in EDGES} == set(PRODUCT)
    assert "runtime_api.protocol" in EDGES["runtime_api.environment"]
    assert "bootstrap.wire" in EDGES["bootstrap.client"]


# --- the reading of the source -------------------------------------------------------------

def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def test_deferred_imports_make_a_cycle_and_type_checking_ones_do_not(tmp_path):
    root = write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def later():\n    from pkg import b\n",
        "pkg/b.py": "class C:\n    def m(self):\n        import pkg.a\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n",
        "pkg/d.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    from .c import x\n",
    })
    edges, _ = import_graph(root, ["pkg"])
    assert edges == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set(), "pkg.d": {"pkg.c"}}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_relative_imports_resolve_against_the_package(tmp_path):
    root = write_package(tmp_path, {
        "pkg/__init__.py": "from .sub import mod\n",
        "pkg/top.py": "",
        "pkg/sub/__init__.py": "from .. import top\n",
        "pkg/sub/mod.py": "from ..top import name\nfrom . import other\n",
        "pkg/sub/other.py": "import json\nfrom pkg.sub import mod\n",
    })
    edges, tops = import_graph(root, ["pkg"])
    assert edges == {"pkg": {"pkg.sub.mod"}, "pkg.top": set(), "pkg.sub": {"pkg.top"},
                     "pkg.sub.mod": {"pkg.top", "pkg.sub.other"}, "pkg.sub.other": {"pkg.sub.mod"}}
    assert tops["pkg.sub.other"] == {"json", "pkg"}
    assert cycles(edges) == [["pkg.sub.mod", "pkg.sub.other", "pkg.sub.mod"]]


def test_each_cycle_is_shown_once_and_shortest(tmp_path):
    edges = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert cycles(edges) == [["a", "b", "a"], ["d", "e", "d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
