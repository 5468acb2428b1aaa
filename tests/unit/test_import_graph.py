"""The import graph of service/signet: no package's parts import each other in a cycle, and the
lower layers (watermark, scoring and provenance, then engine, then queue, cache and
registry) never import the higher ones.

Read with the standard library's ``ast``, nothing imported: every import statement counts,
also those inside functions and methods (a deferred import still ties the two modules
together, it only hides the cycle until the function runs), and
``importlib.import_module("signet...")`` with a literal name. Imports under
``if TYPE_CHECKING:`` do not count: that block never runs, so they are not runtime imports.

For every package P (signet, signet.api, signet.api.score, ...) the graph is taken over P's
direct children: each child module, and each child subpackage with everything inside it
collapsed into one node; P's own ``__init__.py`` is a node of that graph too. Importing a
package ``signet.x`` is an edge to its ``__init__.py`` (at the parent's level: to the package).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
FORBIDDEN_LAYERS = {  # modules under the key import nothing under the values
    "signet.watermark": ("signet.engine", "signet.queue", "signet.cache", "signet.api"),
    "signet.scoring": ("signet.engine", "signet.queue", "signet.cache", "signet.api"),
    "signet.provenance": ("signet.engine", "signet.queue", "signet.cache", "signet.registry", "signet.api"),
    "signet.engine": ("signet.queue", "signet.cache", "signet.registry", "signet.api"),
    "signet.queue": ("signet.api",),
    "signet.cache": ("signet.api",),
    "signet.registry": ("signet.api",),
}
MAX_CYCLES = 200  # per package: enough to read, bounded on a dense graph


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class ModuleTree:
    """The modules of one top-level package under ``root``: dotted name -> file. A package's
    name stands for its ``__init__.py``."""

    root: Path
    files: dict[str, Path]

    @classmethod
    def scan(cls, root: Path, package: str) -> ModuleTree:
        files = {}
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        return cls(root, files)

    def is_package(self, name: str) -> bool:
        return self.files[name].name == "__init__.py"

    def packages(self) -> list[str]:
        return sorted(name for name in self.files if self.is_package(name))

    def known(self, dotted: str) -> str | None:
        """The module ``dotted`` runs: itself if in the tree, else its longest known prefix
        (``signet.x.name`` for a name defined in signet/x.py); None outside the tree."""
        parts = dotted.split(".")
        while parts:
            if (name := ".".join(parts)) in self.files:
                return name
            parts.pop()
        return None

    def imports(self) -> list[Import]:
        found = []
        for importer, path in self.files.items():
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in _runtime_imports(tree):
                for target in self._targets(importer, node):
                    if target is not None and target != importer:
                        found.append(Import(importer, target, path.relative_to(self.root), node.lineno))
        return found

    def _targets(self, importer: str, node: ast.AST) -> Iterator[str | None]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield self.known(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = importer.split(".") if self.is_package(importer) else importer.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            for alias in node.names:
                # from signet.api import state: the submodule signet.api.state when there is one
                submodule = f"{base}.{alias.name}"
                yield submodule if alias.name != "*" and submodule in self.files else self.known(base)
        else:  # importlib.import_module("signet....")
            yield self.known(node.args[0].value)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_import_module_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not node.args:
        return False
    function = node.func
    named = (isinstance(function, ast.Attribute) and function.attr == "import_module") or (
        isinstance(function, ast.Name) and function.id == "import_module"
    )
    first = node.args[0]
    return named and isinstance(first, ast.Constant) and isinstance(first.value, str)


def _runtime_imports(node: ast.AST) -> Iterator[ast.AST]:
    """Every import that can run, at any depth (functions, methods, try blocks, ...)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            # `if TYPE_CHECKING:` runs only under a type checker: not a runtime import. Its
            # else branch does run.
            for statement in child.orelse:
                yield from _runtime_imports(ast.Module(body=[statement], type_ignores=[]))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom) or _is_import_module_call(child):
            yield child
        yield from _runtime_imports(child)


def _child(package: str, module: str) -> str | None:
    """The node ``module`` is in the graph of ``package``'s children; None outside it."""
    if module == package:
        return f"{package}.__init__"
    if module.startswith(package + "."):
        return ".".join(module.split(".")[: package.count(".") + 2])
    return None


def _elementary_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle once, starting from its smallest node (by name)."""
    nodes = sorted(set(graph) | {target for targets in graph.values() for target in targets})
    rank = {node: index for index, node in enumerate(nodes)}
    cycles: list[list[str]] = []
    for start in nodes:
        path, on_path = [start], {start}
        stack = [iter(sorted(graph.get(start, ())))]
        while stack:
            for successor in stack[-1]:
                if successor == start:
                    cycles.append([*path, start])
                    if len(cycles) >= MAX_CYCLES:
                        return cycles
                elif rank[successor] > rank[start] and successor not in on_path:
                    path.append(successor)
                    on_path.add(successor)
                    stack.append(iter(sorted(graph.get(successor, ()))))
                    break
            else:
                stack.pop()
                on_path.discard(path.pop())
    return cycles


def import_cycles(tree: ModuleTree) -> list[str]:
    """Every cycle among the children of every package, as "a -> b -> a", each followed by
    one import that makes each of its edges."""
    imports = tree.imports()
    report = []
    for package in tree.packages():
        graph: dict[str, set[str]] = defaultdict(set)
        witness: dict[tuple[str, str], Import] = {}
        for found in imports:
            source, target = _child(package, found.importer), _child(package, found.imported)
            if source and target and source != target:
                graph[source].add(target)
                witness.setdefault((source, target), found)
        for cycle in _elementary_cycles(graph):
            lines = [" -> ".join(cycle)]
            for source, target in zip(cycle, cycle[1:], strict=False):
                edge = witness[source, target]
                lines.append(f"    {source} -> {target}: {edge.where()} imports {edge.imported}")
            report.append("\n".join(lines))
    return report


def layer_violations(tree: ModuleTree, forbidden: dict[str, tuple[str, ...]]) -> list[str]:
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return [
        f"{found.importer} imports {found.imported} ({found.where()})"
        for found in tree.imports()
        for layer, higher in forbidden.items()
        if within(found.importer, layer) and any(within(found.imported, other) for other in higher)
    ]


def test_no_package_has_an_import_cycle_among_its_children():
    cycles = import_cycles(ModuleTree.scan(SERVICE, "signet"))
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(cycles)


def test_lower_layers_import_nothing_from_higher_ones():
    violations = layer_violations(ModuleTree.scan(SERVICE, "signet"), FORBIDDEN_LAYERS)
    assert not violations, f"{len(violations)} layer violations:\n" + "\n".join(violations)


def test_the_checker_finds_cycles_hidden_in_functions_and_across_subpackages(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\nimport pkg.sub\nfrom . import c\n",
        "pkg/b.py": "def later():\n    from . import a\n    return a\n",  # the hidden half of a <-> b
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",  # no cycle
        "pkg/sub/__init__.py": "",
        "pkg/sub/inner.py": "from ..a import name\n",  # pkg.sub -> pkg.a, collapsed at pkg's level
        "pkg/sub/other.py": "import importlib\nimportlib.import_module('pkg.sub.inner')\n",
        "pkg/low.py": "class Widget:\n    def grow(self):\n        import pkg.sub.other\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    tree = ModuleTree.scan(tmp_path, "pkg")

    cycles = {report.splitlines()[0] for report in import_cycles(tree)}

    assert cycles == {"pkg.a -> pkg.b -> pkg.a", "pkg.a -> pkg.sub -> pkg.a"}
    assert layer_violations(tree, {"pkg.low": ("pkg.sub",), "pkg.c": ("pkg.a",)}) == [
        "pkg.low imports pkg.sub.other (pkg/low.py:3)"
    ]
