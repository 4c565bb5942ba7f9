"""No import circles in the product's packages, found by reading their imports with ``ast``.

Every import counts, at module level or inside a function, except under
``if TYPE_CHECKING:``. ``from x import y`` is an import of ``x.y`` when that is
a module, else of ``x``; relative imports are resolved against the importer.
A package's ``__init__`` that a submodule's import runs first is not counted:
Python always runs it, and a package importing its own submodules is no circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def modules_under(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` (directories under ``root``), by dotted name."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST):
    """The import statements under ``node``, in functions too, but not under ``if TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _type_checking(child.test):
            for branch in child.orelse:
                yield from _import_nodes(ast.Module(body=[branch], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name``, or the longest leading part of it that is one of ``modules``."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(name: str, modules: dict[str, Path]) -> set[str]:
    """The modules among ``modules`` that module ``name`` imports."""
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        found |= {known for known in (_known(target, modules) for target in targets) if known}
    return found


def circles(modules: dict[str, Path]) -> list[list[str]]:
    """One circle (a → ... → a) through each group of modules that import each other."""
    graph = {name: sorted(imports_of(name, modules)) for name in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_path_around(group, graph) for group in groups]


def _path_around(group: list[str], graph: dict[str, list[str]]) -> list[str]:
    """The shortest circle from the group's first module back to itself, inside the group."""
    start = group[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in graph[node]:
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if target in group and target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle through {group}")


@pytest.mark.parametrize(
    "packages",
    [
        pytest.param(("webapp",), id="webapp"),
        pytest.param(("core",), id="core"),
        pytest.param(("jobrunner",), id="jobrunner"),
        pytest.param(("webapp", "jobrunner", "core"), id="all"),
    ],
)
def test_no_import_circles(packages):
    modules = modules_under(REPO, packages)
    assert len(modules) > 5 * len(packages), f"too few modules found under {packages}: {sorted(modules)}"
    found = circles(modules)
    assert not found, "import circles:\n" + "\n".join(" → ".join(circle) for circle in found)


def test_the_walker_finds_every_kind_of_import(tmp_path):
    files = {
        "pkg/__init__.py": "from pkg import a\n",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def later():\n    from pkg.sub.c import thing\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "import pkg.a\nfrom ..d import x\n",
        "pkg/d.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg import a\nelse:\n    x = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = modules_under(tmp_path, ("pkg",))
    assert imports_of("pkg", modules) == {"pkg.a"}
    assert imports_of("pkg.a", modules) == {"pkg.b"}
    assert imports_of("pkg.b", modules) == {"pkg.sub.c"}
    assert imports_of("pkg.sub.c", modules) == {"pkg.a", "pkg.d"}
    assert imports_of("pkg.d", modules) == set()
    assert circles(modules) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
